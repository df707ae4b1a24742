//! Packet-in, packet-out tests of the XDP program through BPF_PROG_TEST_RUN:
//! the real program and maps in the kernel, one crafted packet at a time.
//! Covers parsing, DNAT with checksums, IPIP encapsulation and decapsulation,
//! and the malformed cases, each of which must pass untouched or be dropped
//! with its reason counted. Needs root and BPF; fails without them.

mod support;

use std::net::Ipv4Addr;
use support::*;
use swarm_mesh::dataplane::{Dataplane, Proto};
use swarm_mesh::testrun::{checksum, XDP_DROP, XDP_PASS};

// ---- the tests ----

#[test]
fn tcp_to_a_published_port_is_dnated_to_a_local_backend_with_valid_checksums() {
    let h = harness(&local_web());
    let (verdict, out) = h.run(&tcp_packet(NODE, 8000, vec![]));
    assert_eq!(verdict, XDP_PASS);
    let ip = &out[14..];
    let hlen = assert_valid_ipv4(ip);
    assert_eq!(addr_at(ip, 12), CLIENT, "the client's address is kept");
    assert_eq!(addr_at(ip, 16), LOCAL_BACKEND);
    assert_eq!(port_at(ip, hlen + 2), 8080);
    assert_eq!(port_at(ip, hlen), 40000);
}

#[test]
fn ip_options_are_skipped_not_misparsed() {
    let h = harness(&local_web());
    // Four bytes of options (NOPs and an end marker): ihl = 6.
    let (verdict, out) = h.run(&tcp_packet(NODE, 8000, vec![1, 1, 1, 0]));
    assert_eq!(verdict, XDP_PASS);
    let ip = &out[14..];
    let hlen = assert_valid_ipv4(ip);
    assert_eq!(hlen, 24);
    assert_eq!(
        (addr_at(ip, 16), port_at(ip, hlen + 2)),
        (LOCAL_BACKEND, 8080)
    );
}

#[test]
fn udp_is_dnated_and_a_zero_udp_checksum_stays_zero() {
    let h = harness(&local_web());
    let seg = l4(17, CLIENT, NODE, 5353, 9000, b"q");
    let pkt = udp_packet(&seg);
    let (verdict, out) = h.run(&pkt);
    assert_eq!(verdict, XDP_PASS);
    assert_valid_ipv4(&out[14..]);
    assert_eq!(
        (addr_at(&out, 30), port_at(&out, 36)),
        (LOCAL_BACKEND, 8081)
    );

    let mut seg = l4(17, CLIENT, NODE, 5353, 9000, b"q");
    seg[6] = 0;
    seg[7] = 0;
    let pkt = udp_packet(&seg);
    let (_, out) = h.run(&pkt);
    assert_eq!(&out[40..42], &[0, 0], "no checksum stays no checksum");
    assert_valid_ipv4(&out[14..]);
}

#[test]
fn vips_are_not_served_to_the_underlay() {
    let vip = Ipv4Addr::new(10, 0, 1, 2);
    let mut svc = service(1, Proto::Tcp, 8000, &[(LOCAL_BACKEND, 8080, NODE)]);
    svc.vip = Some(std::net::SocketAddrV4::new(vip, 80));
    let h = harness(&[svc]);
    let pkt = tcp_packet(vip, 80, vec![]);
    let (verdict, out) = h.run(&pkt);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(
        out, pkt,
        "a packet to a VIP from the underlay passes untouched"
    );
    // The published port on this node still is.
    let (_, out) = h.run(&tcp_packet(NODE, 8000, vec![]));
    assert_eq!(addr_at(&out[14..], 16), LOCAL_BACKEND);
}

#[test]
fn a_udp_checksum_that_the_nat_makes_zero_is_sent_as_ffff() {
    let h = harness(&local_web());
    // A payload that makes the DNATed datagram's checksum come out 0, which
    // on the wire would mean "no checksum".
    let post = |w: u16| {
        let mut seg = l4(17, CLIENT, LOCAL_BACKEND, 5353, 8081, &w.to_be_bytes());
        seg[6] = 0;
        seg[7] = 0;
        checksum(
            &seg,
            pseudo(CLIENT.octets(), LOCAL_BACKEND.octets(), 17, seg.len()),
        )
    };
    let w = (0..=u16::MAX)
        .find(|w| post(*w) == 0)
        .expect("some payload sums to zero");
    let seg = l4(17, CLIENT, NODE, 5353, 9000, &w.to_be_bytes());
    assert_ne!(&seg[6..8], &[0, 0], "the client sent a checksum");
    let pkt = udp_packet(&seg);
    let (verdict, out) = h.run(&pkt);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(
        (addr_at(&out, 30), port_at(&out, 36)),
        (LOCAL_BACKEND, 8081)
    );
    assert_eq!(&out[40..42], &[0xff, 0xff], "zero is written as 0xffff");
    let udp = &out[34..];
    assert_eq!(
        checksum(
            udp,
            pseudo(CLIENT.octets(), LOCAL_BACKEND.octets(), 17, udp.len())
        ),
        0,
        "and the datagram still checks"
    );
}

#[test]
fn a_remote_backend_gets_the_packet_in_ipip_carrying_the_frontend_port() {
    let h = harness(&[service(
        1,
        Proto::Tcp,
        8000,
        &[(REMOTE_BACKEND, 8080, OTHER_NODE)],
    )]);
    let pkt = tcp_packet(NODE, 8000, vec![]);
    let (_, out) = h.run(&pkt);
    // The verdict depends on this host's neighbour table; the bytes do not.
    assert_eq!(out.len(), pkt.len() + 20);
    let outer = &out[14..];
    assert_valid_ipv4(outer);
    assert_eq!(outer[9], 4, "IPIP");
    assert_eq!((addr_at(outer, 12), addr_at(outer, 16)), (NODE, OTHER_NODE));
    assert_eq!(
        port_at(outer, 4),
        8000,
        "outer IP ID carries the frontend port"
    );
    let inner = &outer[20..];
    let hlen = assert_valid_ipv4(inner);
    assert_eq!(addr_at(inner, 12), CLIENT);
    assert_eq!(
        (addr_at(inner, 16), port_at(inner, hlen + 2)),
        (REMOTE_BACKEND, 8080)
    );
}

#[test]
fn ipip_to_this_node_is_unwrapped_for_the_local_backend() {
    let mut h = harness(&local_web());
    h.p.dataplane.set_nodes(&[OTHER_NODE]).unwrap();
    h.p.dataplane.sync(&local_web()).unwrap();
    let (frame, inner) = tunnelled(0, 40000);
    let (verdict, out) = h.run(&frame);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(&out[12..14], &[0x08, 0x00]);
    assert_eq!(&out[14..], &inner[..], "exactly the inner packet remains");

    // A tunnelled packet whose inner header is garbage is dropped and counted.
    let bad = ipv4(
        &Ip {
            src: OTHER_NODE,
            dst: NODE,
            proto: 4,
            options: vec![],
            frag: 0,
        },
        &[0x45, 0, 0],
    );
    let before = h.drops("decap_failed");
    let (verdict, _) = h.run(&eth(0x0800, &bad));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(h.drops("decap_failed"), before + 1);

    // IPIP from an address that is no node of the swarm is dropped and
    // counted: it could otherwise reach any backend directly.
    let mut foreign = frame[14..].to_vec();
    foreign[12..16].copy_from_slice(&Ipv4Addr::new(192, 0, 2, 66).octets());
    let c = checksum(
        &{
            let mut h = foreign[..20].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        },
        0,
    );
    foreign[10..12].copy_from_slice(&c.to_be_bytes());
    let before = h.drops("foreign_tunnel");
    let (verdict, _) = h.run(&eth(0x0800, &foreign));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(h.drops("foreign_tunnel"), before + 1);
}

#[test]
fn malformed_and_foreign_packets_pass_untouched() {
    let h = harness(&local_web());
    let full = tcp_packet(NODE, 8000, vec![]);
    let ipv6 = eth(0x86dd, &[0x60; 60]);
    let icmp = eth(
        0x0800,
        &ipv4(
            &Ip {
                src: CLIENT,
                dst: NODE,
                proto: 1,
                options: vec![],
                frag: 0,
            },
            &[8, 0, 0, 0, 0, 0, 0, 0],
        ),
    );
    let other_port = tcp_packet(NODE, 22, vec![]);
    let later_fragment = {
        let seg = l4(6, CLIENT, NODE, 40000, 8000, b"hello");
        eth(
            0x0800,
            &ipv4(
                &Ip {
                    src: CLIENT,
                    dst: NODE,
                    proto: 6,
                    options: vec![],
                    frag: 0x0010,
                },
                &seg,
            ),
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // (Frames shorter than an Ethernet header never reach XDP: the
        // kernel refuses them, in test runs too.)
        ("Ethernet header alone", full[..14].to_vec()),
        ("truncated IPv4 header", full[..14 + 12].to_vec()),
        ("truncated TCP header", full[..14 + 20 + 10].to_vec()),
        ("IPv6", ipv6),
        ("ICMP", icmp),
        ("TCP to a port that is no service", other_port),
        ("non-first fragment", later_fragment),
    ];
    for (what, pkt) in cases {
        let (verdict, out) = h.run(&pkt);
        assert_eq!(verdict, XDP_PASS, "{what}");
        assert_eq!(out, pkt, "{what} must pass untouched");
    }
}

#[test]
fn bad_headers_fragments_and_empty_services_are_dropped_with_their_reason() {
    let mut h = harness(&[local_web()[0].clone(), service(3, Proto::Tcp, 7000, &[])]);
    let mut bad_ihl = tcp_packet(NODE, 8000, vec![]);
    bad_ihl[14] = 0x44; // header length 16 bytes: impossible
    let first_fragment = {
        let seg = l4(6, CLIENT, NODE, 40000, 8000, b"hello");
        eth(
            0x0800,
            &ipv4(
                &Ip {
                    src: CLIENT,
                    dst: NODE,
                    proto: 6,
                    options: vec![],
                    frag: 0x2000,
                },
                &seg,
            ),
        )
    };
    for (reason, pkt) in [
        ("bad_header", bad_ihl),
        ("fragment", first_fragment),
        ("no_backend", tcp_packet(NODE, 7000, vec![])),
    ] {
        let before = h.drops(reason);
        let (verdict, _) = h.run(&pkt);
        assert_eq!(verdict, XDP_DROP, "{reason}");
        assert_eq!(h.drops(reason), before + 1, "{reason} is counted");
    }
}
