#!/usr/bin/env python3
"""Writes the hand-made seed inputs (fuzz/corpus/<target>/seed-*) of the
text, DNS and packet targets. The command, join and CSR seeds come from
real values: `cargo test -p swarm-orchestrator -- --ignored write_seeds`.
Everything else in the corpus was found by the fuzzer (scripts/fuzz.sh)."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

# The addresses of fuzz/src/packets.rs.
NODE, OTHER_NODE, CLIENT = "198.18.1.11", "198.18.1.12", "198.18.1.2"
LOCAL_BACKEND, VIP = "198.19.101.11", "10.0.0.2"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def text_seeds():
    root = os.path.dirname(HERE)
    with open(os.path.join(root, "examples/tutorial/docker-compose.yml")) as f:
        write("compose", "tutorial", f.read())
    write("compose", "long-forms", """services:
  web:
    image: nginx:1.27
    ports:
      - target: 80
        published: 8080
        protocol: tcp
        mode: ingress
    deploy:
      replicas: 2
      update_config: {parallelism: 1, delay: 10s, order: start-first}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3}
      placement:
        constraints: [node.role == worker]
      resources:
        reservations: {cpus: '0.25', memory: 64M}
    healthcheck:
      test: ["CMD", "true"]
      interval: 1m30s
    environment:
      A: ${A:-default}
    networks: [back]
    secrets: [pw]
networks:
  back:
    driver: overlay
secrets:
  pw:
    external: true
""")
    write("token", "worker", "SWMTKN-1-" + "a1" * 32 + "-" + "b" * 25)
    for i, p in enumerate(["8080:80", "80/udp", "published=53,target=5353,protocol=udp,mode=host",
                           "target=80", "1:65535/tcp"]):
        write("publish", str(i), p)
    for i, c in enumerate(["node.role==manager", "node.labels.zone != a", "node.hostname == n1",
                           "node.id!=abc"]):
        write("constraint", str(i), c)
    for i, d in enumerate(["1m30s", "500ms", "1.5h", "0", "2h45m10.5s", "300us"]):
        write("duration", str(i), d)


def dns_query(qid, name, qtype):
    q = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label)
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + b"\0" + struct.pack("!HH", qtype, 1)


def dns_seeds():
    write("dns_query", "a-web", dns_query(1, "web", 1))
    write("dns_query", "a-tasks", dns_query(2, "tasks.web", 1))
    write("dns_query", "aaaa-web", dns_query(3, "WEB.", 28))
    write("dns_query", "unknown", dns_query(4, "example.invalid", 1))
    write("dns_query", "hidden", dns_query(5, "hidden", 255))


def addr(a):
    return bytes(int(x) for x in a.split("."))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, ident=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
                    addr(src), addr(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def l4(proto, src, dst, sport, dport, payload=b"hello"):
    if proto == 6:
        seg = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
        at = 16
    else:
        seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        at = 6
    pseudo = addr(src) + addr(dst) + struct.pack("!BBH", 0, proto, len(seg))
    c = csum(pseudo + seg)
    return seg[:at] + struct.pack("!H", c) + seg[at + 2:]


def eth(payload):
    return bytes.fromhex("020000000001020000000002") + b"\x08\x00" + payload


def packet(src, dst, proto, sport, dport):
    return eth(ipv4(src, dst, proto, l4(proto, src, dst, sport, dport)))


def packet_seeds():
    write("xdp_packet", "tcp-published", packet(CLIENT, NODE, 6, 40000, 8000))
    write("xdp_packet", "udp-published", packet(CLIENT, NODE, 17, 40000, 9000))
    write("xdp_packet", "tcp-remote", packet(CLIENT, NODE, 6, 40001, 8001))
    write("xdp_packet", "tcp-other-port", packet(CLIENT, NODE, 6, 40000, 22))
    inner = ipv4(CLIENT, LOCAL_BACKEND, 6, l4(6, CLIENT, LOCAL_BACKEND, 40000, 8080))
    write("xdp_packet", "ipip", eth(ipv4(OTHER_NODE, NODE, 4, inner, ident=8000)))
    write("tc_task_packet", "to-vip", packet("198.19.101.20", VIP, 6, 40000, 80))
    write("tc_task_packet", "reply", packet(LOCAL_BACKEND, "198.19.101.20", 6, 8080, 40000))
    write("tc_egress_packet", "reply", packet(LOCAL_BACKEND, CLIENT, 6, 8080, 40000))
    write("tc_egress_packet", "udp-reply", packet(LOCAL_BACKEND, CLIENT, 17, 8080, 40000))


if __name__ == "__main__":
    text_seeds()
    dns_seeds()
    packet_seeds()
