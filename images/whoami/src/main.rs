//! Test image server: tells who answered and whom it saw.
//!
//! HTTP on `PORT` (default 80) and, when `UDP_PORT` is set, UDP as well.
//! Every answer is two lines, `hostname: <name>` and `peer: <ip:port>`, so a
//! test can check both load balancing (which backend answered) and source-IP
//! preservation (which address the backend saw).
//!
//! It must never fall over on bad input: each connection lives in its own
//! thread, reads are bounded in time and size, and errors only close that
//! one connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

/// Longest a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head we read; anything longer is refused.
const MAX_HEAD: usize = 16 * 1024;
/// Bound on what we drain after answering, so an unread request body does not
/// make the kernel reset the connection before the client reads the answer.
const MAX_DRAIN: usize = 64 * 1024;

fn main() {
    exit_on_term_signals();
    if let Err(e) = run() {
        eprintln!("whoami: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let port = port_from_env("PORT")?.unwrap_or(80);
    let hostname = hostname();

    if let Some(udp_port) = port_from_env("UDP_PORT")? {
        let sock = UdpSocket::bind(("0.0.0.0", udp_port))
            .map_err(|e| format!("binding udp 0.0.0.0:{udp_port}: {e}"))?;
        let name = hostname.clone();
        thread::Builder::new()
            .name("udp".into())
            .spawn(move || serve_udp(sock, &name))
            .map_err(|e| format!("starting udp thread: {e}"))?;
        eprintln!("whoami: udp on 0.0.0.0:{udp_port}");
    }

    let listener = TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| format!("binding tcp 0.0.0.0:{port}: {e}"))?;
    eprintln!("whoami: http on 0.0.0.0:{port} as {hostname}");
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            // e.g. EMFILE or ECONNABORTED: drop this one, keep serving.
            Err(e) => {
                eprintln!("whoami: accept: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let name = hostname.clone();
        let spawned = thread::Builder::new().spawn(move || {
            if let Err(e) = serve_http(stream, &name) {
                // Client-side trouble (timeouts, resets) is routine; note it only.
                eprintln!("whoami: connection: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("whoami: spawning connection thread: {e}");
        }
    }
    Ok(())
}

/// As PID 1 of a container, the kernel ignores SIGTERM unless a handler is
/// installed, and `docker stop` would wait out its timeout and then kill.
/// Exit at once instead. std has no signal API; std links libc anyway.
fn exit_on_term_signals() {
    use std::os::raw::c_int;
    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
        fn _exit(status: c_int) -> !;
    }
    extern "C" fn on_term(_sig: c_int) {
        // _exit is async-signal-safe; nothing here needs flushing.
        unsafe { _exit(0) }
    }
    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    let handler: extern "C" fn(c_int) = on_term;
    for sig in [SIGINT, SIGTERM] {
        unsafe { signal(sig, handler as usize) };
    }
}

fn port_from_env(var: &str) -> Result<Option<u16>, String> {
    match std::env::var(var) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{var}={v:?} is not a port number")),
        Err(_) => Ok(None),
    }
}

/// The container's name, from the first source that has one: an explicit
/// `WHOAMI_NAME` (for backends run outside containers, which share the
/// host's name), the file Docker bind-mounts, the environment, then the
/// kernel's UTS nodename.
fn hostname() -> String {
    let from_file = |p: &str| std::fs::read_to_string(p).ok();
    [
        std::env::var("WHOAMI_NAME").ok(),
        from_file("/etc/hostname"),
        std::env::var("HOSTNAME").ok(),
        from_file("/proc/sys/kernel/hostname"),
    ]
    .into_iter()
    .flatten()
    .map(|s| s.trim().to_string())
    .find(|s| !s.is_empty())
    .unwrap_or_else(|| "unknown".to_string())
}

fn body(hostname: &str, peer: &SocketAddr) -> String {
    format!("hostname: {hostname}\npeer: {peer}\n")
}

fn serve_udp(sock: UdpSocket, hostname: &str) {
    let mut buf = [0u8; 2048];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((_, peer)) => {
                if let Err(e) = sock.send_to(body(hostname, &peer).as_bytes(), peer) {
                    eprintln!("whoami: udp reply to {peer}: {e}");
                }
            }
            Err(e) => {
                eprintln!("whoami: udp recv: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// What the request head turned out to be.
enum Head {
    /// A well-formed HTTP/1.x request line; `head_only` for HEAD.
    Http { head_only: bool },
    /// Not something we answer with 200.
    Bad,
}

fn serve_http(mut stream: TcpStream, hostname: &str) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(HEADER_TIMEOUT))?;
    stream.set_write_timeout(Some(HEADER_TIMEOUT))?;

    let head = match read_head(&mut stream)? {
        Some(raw) => parse_head(&raw),
        None => return Ok(()), // closed before sending a full head
    };
    let response = match head {
        Head::Http { head_only } => {
            let body = body(hostname, &peer);
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if !head_only {
                r.push_str(&body);
            }
            r
        }
        Head::Bad => "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n".to_string(),
    };
    stream.write_all(response.as_bytes())?;
    stream.flush()?;
    linger_close(stream);
    Ok(())
}

/// Reads until the blank line that ends the head. `None` if the peer closed
/// first; an error on timeout or an oversized head.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find_head_end(&buf) {
            buf.truncate(end);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
    }
}

/// Index just past the head's terminating blank line (CRLF or bare LF).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn parse_head(raw: &[u8]) -> Head {
    let text = String::from_utf8_lossy(raw);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Head::Bad;
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || !version.starts_with("HTTP/1.") {
        return Head::Bad;
    }
    Head::Http {
        head_only: method == "HEAD",
    }
}

/// Half-close, then read (bounded) whatever the client still sends, so that
/// unread request bytes do not turn our close into a reset that could
/// destroy the answer before the client has read it.
fn linger_close(mut stream: TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http1_requests() {
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Http { head_only: false }
        ));
        assert!(matches!(
            parse_head(b"HEAD /x HTTP/1.0\r\n\r\n"),
            Head::Http { head_only: true }
        ));
        assert!(matches!(parse_head(b"GET / HTTP/2\r\n\r\n"), Head::Bad));
        assert!(matches!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n"),
            Head::Bad
        ));
        assert!(matches!(parse_head(b"\r\n\r\n"), Head::Bad));
    }

    #[test]
    fn finds_end_of_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn body_has_two_lines() {
        let peer: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(body("h1", &peer), "hostname: h1\npeer: 127.0.0.1:4242\n");
    }
}
