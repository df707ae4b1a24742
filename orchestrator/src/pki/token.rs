//! Join tokens: `SWMTKN-1-<CA digest>-<secret>`. The digest lets a joiner
//! check that the manager it reached belongs to the cluster it meant before
//! it sends the secret; the secret says which role the joiner gets.

use rand::Rng;
use std::fmt;

const PREFIX: &str = "SWMTKN-1-";
const SECRET_LEN: usize = 25;

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Hex SHA-256 of the root CA certificate.
    pub ca_digest: String,
    pub secret: String,
}

// Debug must not print the secret into logs.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({PREFIX}{}-…)", self.ca_digest)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}-{}", self.ca_digest, self.secret)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid join token: {0}. A token looks like SWMTKN-1-<64 hex digits>-<25 characters>; get one with `swarm join-token worker` on a manager")]
pub struct TokenError(&'static str);

impl JoinToken {
    pub fn parse(s: &str) -> Result<JoinToken, TokenError> {
        let rest = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(TokenError("it does not start with SWMTKN-1-"))?;
        let (digest, secret) = rest
            .split_once('-')
            .ok_or(TokenError("the secret is missing"))?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError("the CA digest is not 64 hex digits"));
        }
        if secret.len() != SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(TokenError("the secret is not 25 letters and digits"));
        }
        Ok(JoinToken {
            ca_digest: digest.to_ascii_lowercase(),
            secret: secret.into(),
        })
    }
}

/// A new random secret for a token.
pub fn new_secret() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..SECRET_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Compare secrets in time independent of where they differ.
pub fn secrets_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let t = JoinToken {
            ca_digest: "ab".repeat(32),
            secret: new_secret(),
        };
        assert_eq!(JoinToken::parse(&t.to_string()).unwrap(), t);
        assert!(!format!("{t:?}").contains(&t.secret));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for (bad, why) in [
            ("SWMTKN-2-x-y", "does not start"),
            ("SWMTKN-1-abc", "secret is missing"),
            ("SWMTKN-1-abc-0123456789012345678901234", "64 hex"),
            (&format!("SWMTKN-1-{}-short", "a".repeat(64)), "25 letters"),
        ] {
            let e = JoinToken::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secrets_match("abc", "abc"));
        assert!(!secrets_match("abc", "abd"));
        assert!(!secrets_match("abc", "abcd"));
    }
}
