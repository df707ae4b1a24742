//! The XDP fast path through BPF_PROG_TEST_RUN: packets for a local backend
//! with an endpoint are redirected straight to its task's port, as the
//! stack would forward them (TTL, MACs), both when they arrive and when
//! they are unwrapped from another node; what forwarding must refuse goes
//! to the stack instead; per-service counters live in the service's slot,
//! and a service removed and added again does not inherit its old flows.
//! Needs root and BPF; fails without them.

mod support;

use support::*;
use swarm_mesh::dataplane::{Dataplane, LocalEndpoint, Proto};
use swarm_mesh::testrun::{checksum, XDP_PASS, XDP_REDIRECT};

const TASK_MAC: [u8; 6] = [0x02, 0x42, 198, 19, 101, 11];
const PORT_MAC: [u8; 6] = [0x0a, 0, 0, 0, 0, 7];

fn endpoint(mtu: u16) -> LocalEndpoint {
    LocalEndpoint {
        addr: LOCAL_BACKEND,
        ifindex: 42,
        mac: TASK_MAC,
        port_mac: PORT_MAC,
        mtu,
    }
}

/// The frame handed to the task: MACs set for it, TTL one less, headers
/// valid, and the client's address kept.
fn assert_forwarded_to_task(out: &[u8], dport: u16) {
    assert_eq!(&out[0..6], &TASK_MAC, "destination MAC is the task's");
    assert_eq!(&out[6..12], &PORT_MAC, "source MAC is the port's");
    let ip = &out[14..];
    let hlen = assert_valid_ipv4(ip);
    assert_eq!(ip[8], 63, "TTL goes down by one, as when routed");
    assert_eq!(addr_at(ip, 12), CLIENT, "the client's address is kept");
    assert_eq!(addr_at(ip, 16), LOCAL_BACKEND);
    assert_eq!(port_at(ip, hlen + 2), dport);
}

#[test]
fn a_packet_for_a_local_backend_with_an_endpoint_is_redirected_to_its_port() {
    let mut h = harness(&local_web());
    h.p.dataplane.add_endpoint(&endpoint(1500)).unwrap();
    let (verdict, out) = h.run(&tcp_packet(NODE, 8000, vec![]));
    assert_eq!(verdict, XDP_REDIRECT);
    assert_forwarded_to_task(&out, 8080);

    // Forgotten (its task is gone): back to the stack.
    h.p.dataplane.remove_endpoint(LOCAL_BACKEND).unwrap();
    let (verdict, _) = h.run(&tcp_packet(NODE, 8000, vec![]));
    assert_eq!(verdict, XDP_PASS);
}

#[test]
fn what_forwarding_must_refuse_or_split_goes_to_the_stack() {
    let mut h = harness(&local_web());
    // Bigger than the task's MTU: the stack fragments it or says why not.
    h.p.dataplane.add_endpoint(&endpoint(40)).unwrap();
    let (verdict, out) = h.run(&tcp_packet(NODE, 8000, vec![]));
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(addr_at(&out[14..], 16), LOCAL_BACKEND, "still DNATed");
    assert_eq!(out[14 + 8], 64, "the TTL is the stack's to lower");

    // A TTL that would expire: the stack answers with ICMP.
    h.p.dataplane.add_endpoint(&endpoint(1500)).unwrap();
    let mut last_hop = tcp_packet(NODE, 8000, vec![]);
    last_hop[14 + 8] = 1;
    last_hop[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&last_hop[14..34], 0);
    last_hop[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    let (verdict, _) = h.run(&last_hop);
    assert_eq!(verdict, XDP_PASS);
}

#[test]
fn a_packet_unwrapped_from_another_node_is_redirected_to_the_local_backend() {
    let mut h = harness(&local_web());
    h.p.dataplane.set_nodes(&[OTHER_NODE]).unwrap();
    h.p.dataplane.sync(&local_web()).unwrap();
    h.p.dataplane.add_endpoint(&endpoint(1500)).unwrap();
    let (frame, inner) = tunnelled(0, 40000);
    let (verdict, out) = h.run(&frame);
    assert_eq!(verdict, XDP_REDIRECT);
    assert_eq!(out.len(), 14 + inner.len(), "the outer header is gone");
    assert_forwarded_to_task(&out, 8080);
}

/// (packets, new flows) the dump shows for service `id`.
fn counters(h: &mut Harness, id: u32) -> (u64, u64) {
    let d = h.p.dataplane.dump().unwrap();
    let s = d.services.iter().find(|s| s.id == id).expect("service");
    (s.packets, s.new_flows)
}

#[test]
fn each_service_counts_in_its_own_slot_and_a_new_incarnation_starts_afresh() {
    let mut h = harness(&local_web());
    for _ in 0..3 {
        assert_eq!(h.run(&tcp_packet(NODE, 8000, vec![])).0, XDP_PASS);
    }
    assert_eq!(counters(&mut h, 1), (3, 1), "one flow, three packets");
    assert_eq!(counters(&mut h, 2), (0, 0), "the UDP service saw nothing");

    // Removed and added again: zeroed counters, and its old flow is not
    // taken for its own (it is balanced again: a new flow).
    h.p.dataplane.sync(&local_web()[1..]).unwrap();
    h.p.dataplane.sync(&local_web()).unwrap();
    assert_eq!(counters(&mut h, 1), (0, 0));
    assert_eq!(h.run(&tcp_packet(NODE, 8000, vec![])).0, XDP_PASS);
    assert_eq!(counters(&mut h, 1), (1, 1));

    // A resync that changes nothing keeps counters and flows.
    h.p.dataplane.sync(&local_web()).unwrap();
    assert_eq!(h.run(&tcp_packet(NODE, 8000, vec![])).0, XDP_PASS);
    assert_eq!(counters(&mut h, 1), (2, 1));
}

#[test]
fn an_update_changes_only_the_services_it_names() {
    let mut h = harness(&local_web());
    let extra = service(9, Proto::Tcp, 7100, &[(LOCAL_BACKEND, 9090, NODE)]);
    h.p.dataplane.update(&[extra], &[]).unwrap();
    let (verdict, out) = h.run(&tcp_packet(NODE, 7100, vec![]));
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(
        (addr_at(&out[14..], 16), port_at(&out[14..], 22)),
        (LOCAL_BACKEND, 9090)
    );

    // Another service cannot take its frontend; nothing changes.
    let thief = service(10, Proto::Tcp, 7100, &[(LOCAL_BACKEND, 9999, NODE)]);
    assert!(h.p.dataplane.update(&[thief], &[]).is_err());
    let (_, out) = h.run(&tcp_packet(NODE, 7100, vec![]));
    assert_eq!(port_at(&out[14..], 22), 9090);

    // Removed: its port is nobody's, and the other services stay.
    h.p.dataplane.update(&[], &[9]).unwrap();
    let (verdict, out) = h.run(&tcp_packet(NODE, 7100, vec![]));
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(addr_at(&out[14..], 16), NODE, "passed untouched");
    let (_, out) = h.run(&tcp_packet(NODE, 8000, vec![]));
    assert_eq!(addr_at(&out[14..], 16), LOCAL_BACKEND);
}

#[test]
fn forgetting_flows_makes_the_next_packet_a_new_flow() {
    let mut h = harness(&local_web());
    for _ in 0..2 {
        h.run(&tcp_packet(NODE, 8000, vec![]));
    }
    assert_eq!(counters(&mut h, 1), (2, 1));
    assert_eq!(h.p.dataplane.forget_flows().unwrap(), 1);
    h.run(&tcp_packet(NODE, 8000, vec![]));
    assert_eq!(counters(&mut h, 1), (3, 2));
    assert!(h.p.dataplane.dump().unwrap().flows.len() == 1);
}

#[test]
fn a_flows_first_tunnelled_packet_is_marked_so_the_far_node_renews_its_reply_state() {
    let h = harness(&[service(
        1,
        Proto::Tcp,
        8000,
        &[(REMOTE_BACKEND, 8080, OTHER_NODE)],
    )]);
    let pkt = tcp_packet(NODE, 8000, vec![]);
    let df = |out: &[u8]| out[14 + 6] & 0x40 != 0;
    assert!(df(&h.run(&pkt).1), "a new flow's packet carries DF");
    assert!(
        !df(&h.run(&pkt).1),
        "the next one, within a second, does not"
    );
}

/// The backend's reply to the client's port `dport`, as it leaves this node.
fn reply(dport: u16) -> Vec<u8> {
    let seg = l4(6, LOCAL_BACKEND, CLIENT, 8080, dport, b"y");
    eth(
        0x0800,
        &ipv4(
            &Ip {
                src: LOCAL_BACKEND,
                dst: CLIENT,
                proto: 6,
                options: vec![],
                frag: 0,
            },
            &seg,
        ),
    )
}

#[test]
fn only_a_marked_tunnelled_packet_records_the_reply_translation() {
    let mut h = harness(&local_web());
    h.p.dataplane.set_nodes(&[OTHER_NODE]).unwrap();
    h.p.dataplane.sync(&local_web()).unwrap();
    for (frag, sport) in [(0x4000, 41000), (0, 42000)] {
        assert_eq!(h.run(&tunnelled(frag, sport).0).0, XDP_PASS);
    }
    // Marked: the reply leaves with the frontend it was addressed to.
    let (_, out) = h.p.tc_egress(&reply(41000)).unwrap();
    assert_eq!(
        (addr_at(&out[14..], 12), port_at(&out[14..], 20)),
        (OTHER_NODE, 8000)
    );
    // Unmarked, and never marked: nothing recorded, the reply is untouched.
    let (_, out) = h.p.tc_egress(&reply(42000)).unwrap();
    assert_eq!(addr_at(&out[14..], 12), LOCAL_BACKEND);
}
