//! Published ports (`--publish`): their two syntaxes, their checks, and how
//! `service ls` and `service ps` show them.

pub use crate::types::{PortConfig, Proto, PublishMode};

/// The data plane's name for a protocol.
pub fn mesh_proto(p: Proto) -> swarm_mesh::dataplane::Proto {
    match p {
        Proto::Tcp => swarm_mesh::dataplane::Proto::Tcp,
        Proto::Udp => swarm_mesh::dataplane::Proto::Udp,
    }
}

/// Parse one `--publish` value: `[PUBLISHED:]TARGET[/PROTO]` (ingress mode,
/// as in Docker) or `published=P,target=T[,protocol=tcp|udp][,mode=host|ingress]`.
pub fn parse(s: &str) -> Result<PortConfig, String> {
    let bad = |why: &str| format!("invalid --publish {s:?}: {why}");
    let port = |v: &str, what: &str| -> Result<u16, String> {
        v.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(&format!("{what} {v:?} is not a port (1-65535)")))
    };
    let proto = |v: &str| v.parse::<Proto>().map_err(|e| bad(&e));
    if s.contains('=') {
        let mut p = PortConfig {
            protocol: Proto::Tcp,
            published: 0,
            target: 0,
            mode: PublishMode::Ingress,
            force: false,
        };
        for field in s.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("{field:?} is not key=value")))?;
            match k.trim() {
                "published" => p.published = port(v, "published port")?,
                "target" => p.target = port(v, "target port")?,
                "protocol" => p.protocol = proto(v)?,
                "mode" => p.mode = v.parse().map_err(|e: String| bad(&e))?,
                "force" => {
                    p.force = v
                        .parse()
                        .map_err(|_| bad(&format!("force {v:?} is not true or false")))?
                }
                other => return Err(bad(&format!("unknown field {other:?}"))),
            }
        }
        if p.target == 0 {
            return Err(bad("target=PORT is required"));
        }
        return Ok(p);
    }
    let (ports, protocol) = match s.split_once('/') {
        Some((ports, pr)) => (ports, proto(pr)?),
        None => (s, Proto::Tcp),
    };
    let (published, target) = match ports.split_once(':') {
        Some((p, t)) => (port(p, "published port")?, port(t, "target port")?),
        None => (0, port(ports, "target port")?),
    };
    Ok(PortConfig {
        protocol,
        published,
        target,
        mode: PublishMode::Ingress,
        force: false,
    })
}

/// The port the swarm's own node API listens on by default: no service
/// may take it, or nodes would stop reaching each other.
pub const CLUSTER_PORT: u16 = 2377;

/// The overlays' VXLAN port: a service on it would take every node's
/// overlay traffic.
pub const VXLAN_PORT: u16 = 4789;
/// The node's own remote shell: refused unless the port says `force=true`.
pub const SSH_PORT: u16 = 22;

/// First and last port handed to ingress-mode ports published without a
/// number, as Docker does.
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// Checks a service's ports as a whole. Ingress-mode ports may leave the
/// published port 0: the daemon gives them one from `DYNAMIC_PORTS`.
pub fn validate(ports: &[PortConfig]) -> Result<(), String> {
    for (i, p) in ports.iter().enumerate() {
        if p.mode == PublishMode::Host && p.published == 0 {
            return Err(format!(
                "host-mode port {}/{} needs published=PORT",
                p.target,
                p.protocol.name()
            ));
        }
        if p.published == CLUSTER_PORT {
            return Err(format!(
                "cannot publish port {CLUSTER_PORT}/{}: it is the swarm's cluster port, which nodes use to reach each other",
                p.protocol.name()
            ));
        }
        if p.published == VXLAN_PORT && p.protocol == Proto::Udp {
            return Err(format!(
                "cannot publish port {VXLAN_PORT}/udp: it carries the overlay networks between nodes"
            ));
        }
        if p.published == SSH_PORT && p.protocol == Proto::Tcp && !p.force {
            return Err(format!(
                "port {SSH_PORT}/tcp is the nodes' ssh port: publishing it would take every node's remote shell; add force=true to publish it anyway"
            ));
        }
        if p.published != 0
            && ports[..i]
                .iter()
                .any(|q| q.published == p.published && q.protocol == p.protocol)
        {
            return Err(format!(
                "port {}/{} is published twice",
                p.published,
                p.protocol.name()
            ));
        }
    }
    Ok(())
}

/// Comma-separated renderings, for the PORTS columns.
pub fn display(ports: &[PortConfig]) -> String {
    ports
        .iter()
        .map(PortConfig::display)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(published: u16, target: u16, protocol: Proto) -> PortConfig {
        PortConfig {
            protocol,
            published,
            target,
            mode: PublishMode::Host,
            force: false,
        }
    }

    #[test]
    fn the_nodes_own_ports_are_refused() {
        let e = validate(&[host(2377, 80, Proto::Tcp)]).unwrap_err();
        assert!(e.contains("cluster port"), "{e}");
        let e = validate(&[host(4789, 80, Proto::Udp)]).unwrap_err();
        assert!(e.contains("overlay networks"), "{e}");
        assert!(validate(&[host(4789, 80, Proto::Tcp)]).is_ok());
        let e = validate(&[parse("22:22").unwrap()]).unwrap_err();
        assert!(e.contains("force=true"), "{e}");
        let forced = parse("published=22,target=22,mode=host,force=true").unwrap();
        assert!(validate(&[forced]).is_ok());
    }

    #[test]
    fn both_syntaxes_parse_as_docker_reads_them() {
        assert_eq!(
            parse("mode=host,published=8080,target=80").unwrap(),
            host(8080, 80, Proto::Tcp)
        );
        assert_eq!(
            parse("published=53,target=5353,protocol=udp,mode=host").unwrap(),
            host(53, 5353, Proto::Udp)
        );
        let short = parse("8080:80/udp").unwrap();
        assert_eq!((short.published, short.target), (8080, 80));
        assert_eq!(
            (short.protocol, short.mode),
            (Proto::Udp, PublishMode::Ingress)
        );
        assert_eq!(parse("80").unwrap().published, 0);
        assert_eq!(
            parse("mode=host,published=8080,target=80")
                .unwrap()
                .display(),
            "*:8080->80/tcp"
        );
    }

    #[test]
    fn bad_values_name_the_field_at_fault() {
        for (input, why) in [
            ("mode=host,published=8080", "target=PORT is required"),
            ("published=70000,target=80", "published port \"70000\""),
            ("target=0", "target port \"0\""),
            ("8080:80/sctp", "protocol \"sctp\""),
            ("mode=bridge,target=80", "mode \"bridge\""),
            ("target=80,color=red", "unknown field \"color\""),
            ("x:80", "published port \"x\""),
        ] {
            let err = parse(input).unwrap_err();
            assert!(err.contains(why), "{input}: {err}");
            assert!(
                err.starts_with(&format!("invalid --publish {input:?}")),
                "{err}"
            );
        }
    }

    #[test]
    fn validation_refuses_the_cluster_port_missing_and_duplicate_ports() {
        assert!(validate(&[host(8080, 80, Proto::Tcp), host(8080, 80, Proto::Udp)]).is_ok());
        assert!(validate(&[parse("8080:80").unwrap(), parse("80").unwrap()]).is_ok());
        let cluster = validate(&[host(2377, 80, Proto::Tcp)]).unwrap_err();
        assert_eq!(
            cluster,
            "cannot publish port 2377/tcp: it is the swarm's cluster port, which nodes use to reach each other"
        );
        let missing = validate(&[host(0, 80, Proto::Tcp)]).unwrap_err();
        assert!(missing.contains("needs published=PORT"), "{missing}");
        let twice =
            validate(&[host(8080, 80, Proto::Tcp), host(8080, 81, Proto::Tcp)]).unwrap_err();
        assert!(twice.contains("8080/tcp is published twice"), "{twice}");
    }
}
