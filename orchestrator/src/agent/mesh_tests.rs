use super::*;
use crate::types::{Attachment, BackendView, NetworkView, PortConfig, Proto, ServiceView};

fn a(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(id: &str, ingress: bool) -> NetworkView {
    NetworkView {
        id: id.into(),
        name: id.into(),
        subnet: "10.0.0.0/24".parse().unwrap(),
        gateway: a("10.0.0.1"),
        vni: 4096,
        internal: false,
        ingress,
        node_addr: Some(a("10.0.0.250")),
        remote: vec![],
    }
}

fn at(net: &str, addr: &str) -> Attachment {
    Attachment {
        network_id: net.into(),
        addr: a(addr),
    }
}

fn view() -> NodeView {
    NodeView {
        networks: vec![net("ing", true), net("back", false)],
        services: vec![ServiceView {
            id: "s".into(),
            name: "web".into(),
            endpoint_mode: EndpointMode::Vip,
            ports: vec![PortConfig {
                protocol: Proto::Tcp,
                published: 8000,
                target: 80,
                mode: PublishMode::Ingress,
                force: false,
            }],
            vips: vec![at("ing", "10.0.0.2"), at("back", "10.0.1.2")],
            backends: vec![
                BackendView {
                    task_id: "t1".into(),
                    node: a("198.18.0.11"),
                    addrs: vec![at("ing", "10.0.0.3"), at("back", "10.0.1.3")],
                },
                BackendView {
                    task_id: "t2".into(),
                    node: a("198.18.0.12"),
                    addrs: vec![at("ing", "10.0.0.4"), at("back", "10.0.1.4")],
                },
            ],
            declared: 2,
        }],
        dns: vec![],
        nodes: vec![a("198.18.0.11"), a("198.18.0.12")],
    }
}

#[test]
fn published_ports_go_to_ingress_addresses_and_vips_take_every_port() {
    let lb = lb_services(&view());
    let names: Vec<&str> = lb.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "web:8000/tcp",
            "web@back/tcp",
            "web@back/udp",
            "web@ing/tcp",
            "web@ing/udp"
        ]
    );
    let published = &lb[0];
    assert_eq!(published.published_port, Some(8000));
    let addrs: Vec<String> = published
        .backends
        .iter()
        .map(|b| b.addr.to_string())
        .collect();
    assert_eq!(addrs, vec!["10.0.0.3:80", "10.0.0.4:80"]);
    assert_eq!(published.backends[1].node, a("198.18.0.12"));
    let vip = &lb[1];
    assert_eq!(vip.vip, Some("10.0.1.2:0".parse().unwrap()));
    let addrs: Vec<String> = vip.backends.iter().map(|b| b.addr.to_string()).collect();
    assert_eq!(addrs, vec!["10.0.1.3:0", "10.0.1.4:0"]);
    // IDs are stable across calls and distinct.
    let again = lb_services(&view());
    assert_eq!(lb, again);
    let mut ids: Vec<u32> = lb.iter().map(|s| s.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), lb.len());
    assert_eq!(local_vips(&view()), vec![a("10.0.0.2"), a("10.0.1.2")]);
}

#[test]
fn dnsrr_services_have_no_vip_frontends() {
    let mut v = view();
    v.services[0].endpoint_mode = EndpointMode::Dnsrr;
    v.services[0].ports.clear();
    assert!(lb_services(&v).is_empty());
    assert!(local_vips(&v).is_empty());
}
