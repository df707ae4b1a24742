//! `--network` values and `network create` options: their syntax and
//! checks. The state machine settles subnets and refuses overlaps; this
//! only reads what the user typed.

use crate::types::NetworkAttachmentSpec;
use ipnet::Ipv4Net;

/// Parse one `--network` value: `NAME` or `name=NAME[,alias=A]...` (docker's
/// long form; `target=` is accepted as a synonym of `name=`).
pub fn parse_attachment(s: &str) -> Result<NetworkAttachmentSpec, String> {
    let bad = |why: &str| format!("invalid --network {s:?}: {why}");
    if !s.contains('=') {
        if s.is_empty() {
            return Err(bad("the network name is empty"));
        }
        return Ok(NetworkAttachmentSpec {
            target: s.to_string(),
            aliases: Vec::new(),
        });
    }
    let mut a = NetworkAttachmentSpec {
        target: String::new(),
        aliases: Vec::new(),
    };
    for field in s.split(',') {
        let (k, v) = field
            .split_once('=')
            .ok_or_else(|| bad(&format!("{field:?} is not key=value")))?;
        match k.trim() {
            "name" | "target" => a.target = v.to_string(),
            "alias" => {
                crate::types::validate_name("alias", v).map_err(|e| bad(&e))?;
                a.aliases.push(v.to_string())
            }
            other => return Err(bad(&format!("unknown field {other:?}"))),
        }
    }
    if a.target.is_empty() {
        return Err(bad("name=NETWORK is required"));
    }
    Ok(a)
}

/// `--subnet`: an IPv4 network in CIDR form, given by its network address.
pub fn parse_subnet(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s
        .parse()
        .map_err(|_| format!("invalid subnet {s:?}: use CIDR notation such as 10.0.9.0/24"))?;
    if net.trunc() != net {
        return Err(format!(
            "invalid subnet {s:?}: host bits are set; did you mean {}?",
            net.trunc()
        ));
    }
    if net.prefix_len() > 29 {
        return Err(format!(
            "invalid subnet {s:?}: /{} leaves too few addresses; use /29 or larger",
            net.prefix_len()
        ));
    }
    Ok(net)
}

/// `--default-addr-pool-mask-length`: the size of the subnets carved from
/// the pools, which must fit in every pool.
pub fn check_pool(pools: &[Ipv4Net], mask_len: u8) -> Result<(), String> {
    if !(16..=29).contains(&mask_len) {
        return Err(format!(
            "invalid --default-addr-pool-mask-length {mask_len}: use 16 to 29"
        ));
    }
    for p in pools {
        if p.trunc() != *p {
            return Err(format!(
                "invalid --default-addr-pool {p}: host bits are set; did you mean {}?",
                p.trunc()
            ));
        }
        if p.prefix_len() > mask_len {
            return Err(format!(
                "--default-addr-pool {p} is smaller than the /{mask_len} subnets carved from it"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_values_parse_in_both_forms() {
        assert_eq!(parse_attachment("backend").unwrap().target, "backend");
        let long = parse_attachment("name=backend,alias=db,alias=cache").unwrap();
        assert_eq!(long.target, "backend");
        assert_eq!(long.aliases, vec!["db", "cache"]);
        for (input, why) in [
            ("alias=db", "name=NETWORK is required"),
            ("name=x,colour=red", "unknown field \"colour\""),
            ("name=x,alias=-bad", "invalid alias name"),
            ("", "empty"),
        ] {
            let e = parse_attachment(input).unwrap_err();
            assert!(e.contains(why), "{input}: {e}");
        }
    }

    #[test]
    fn subnets_and_pools_are_checked_with_a_reason() {
        assert_eq!(
            parse_subnet("10.0.9.0/24").unwrap().to_string(),
            "10.0.9.0/24"
        );
        assert!(parse_subnet("10.0.9.1/24")
            .unwrap_err()
            .contains("did you mean 10.0.9.0/24"));
        assert!(parse_subnet("10.0.9.0/30").unwrap_err().contains("too few"));
        assert!(parse_subnet("bogus").unwrap_err().contains("CIDR"));
        let pool: Vec<Ipv4Net> = vec!["10.20.0.0/16".parse().unwrap()];
        assert!(check_pool(&pool, 24).is_ok());
        assert!(check_pool(&pool, 12).unwrap_err().contains("16 to 29"));
        let small: Vec<Ipv4Net> = vec!["10.20.0.0/26".parse().unwrap()];
        assert!(check_pool(&small, 24).unwrap_err().contains("smaller"));
    }
}
