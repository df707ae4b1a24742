/* SPDX-License-Identifier: Apache-2.0 */
/*
 * XDP on a node's underlay interface: the routing mesh.
 *
 * A packet to a service frontend (a published port on this node) gets a
 * backend from connection tracking or Maglev. For a backend on this node,
 * the destination is rewritten (DNAT) and the packet is redirected straight
 * to the task's port (swarm_v4_endpoints), as the stack would forward it but
 * without routing, bridging and netfilter on the way; a backend the loader
 * has no endpoint for goes up the stack instead. For a backend on another
 * node, the packet is DNATed the same
 * way and then wrapped in IPIP to that node; the outer source is this node
 * and the outer IP ID carries the frontend port, so the backend's node can
 * answer the client directly as this node's address (direct server return).
 * The client's own address is never rewritten: backends see real client IPs.
 *
 * The outer header's DF bit marks a flow's first packet and its refreshes
 * (once a second): only then does the backend's node renew the flow's reply
 * translation, so it looks nothing up in its reply table per packet.
 *
 * An IPIP packet addressed to this node is unwrapped, its reply translation
 * recorded, and handed to the local backend the same way.
 *
 * Everything else passes untouched. Malformed packets to a service are
 * dropped and counted by reason (swarm_v4_drops).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/csum.h"
#include "lib/lb.h"

#ifndef AF_INET
#define AF_INET 2
#endif

char LICENSE[] SEC("license") = "GPL";

static __always_inline void nat_dst(struct packet *p, __u32 addr, __u16 port)
{
	__u32 old_addr = p->ip->daddr;
	__u16 old_port = *p->dport;
	int udp_nocsum = p->ip->protocol == IPPROTO_UDP && *p->l4_csum == 0;

	csum_replace4(&p->ip->check, old_addr, addr);
	if (!udp_nocsum) {
		csum_replace4(p->l4_csum, old_addr, addr);
		csum_replace2(p->l4_csum, old_port, port);
		/* In UDP a zero checksum means "none": a sum that comes out
		 * zero is sent as its other form, 0xffff (RFC 768). */
		if (p->ip->protocol == IPPROTO_UDP && *p->l4_csum == 0)
			*p->l4_csum = 0xffff;
	}
	p->ip->daddr = addr;
	*p->dport = port;
}

/* Forward a packet for a local backend to its task's port, doing what the
 * stack's forwarding would (TTL, MACs). What forwarding must refuse or
 * split (an expiring TTL, a packet bigger than the task's MTU) and backends
 * with no endpoint go up the stack, which handles them in full. */
static __always_inline int to_endpoint(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)(ip + 1) > end)
		return XDP_PASS;
	struct swarm_endpoint *ep = bpf_map_lookup_elem(&swarm_v4_endpoints, &ip->daddr);

	if (!ep || ip->ttl <= 1 || bpf_ntohs(ip->tot_len) > ep->mtu)
		return XDP_PASS;
	/* TTL is the high byte of its 16-bit word: RFC 1624 update. */
	__u32 check = ip->check;

	check += bpf_htons(0x0100);
	ip->check = (__u16)(check + (check >= 0xFFFF));
	ip->ttl -= 1;
	__builtin_memcpy(eth->h_dest, ep->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, ep->port_mac, ETH_ALEN);
	return bpf_redirect(ep->ifindex, 0);
}

/* Wrap the packet at ctx in IPIP from this node to `node`. */
static __always_inline int encap(struct xdp_md *ctx, __u32 self, __u32 node, __u16 fe_port,
				 int fresh)
{
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr))) {
		count_drop(SWARM_DROP_ENCAP_FAILED);
		return XDP_DROP;
	}
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = (void *)(eth + 1);
	struct iphdr *inner = (void *)(outer + 1);

	if ((void *)(inner + 1) > end) {
		count_drop(SWARM_DROP_ENCAP_FAILED);
		return XDP_DROP;
	}
	/* The old Ethernet header sits right after the new room. */
	__builtin_memcpy(eth, (void *)eth + sizeof(struct iphdr), sizeof(*eth));
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(bpf_ntohs(inner->tot_len) + sizeof(struct iphdr));
	outer->id = fe_port;
	outer->frag_off = fresh ? bpf_htons(IP_DF) : 0;
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = self;
	outer->daddr = node;
	outer->check = ipv4_csum(outer);

	struct bpf_fib_lookup fib = {
		.family = AF_INET,
		.ipv4_src = self,
		.ipv4_dst = node,
		.tot_len = bpf_ntohs(outer->tot_len),
		.ifindex = ctx->ingress_ifindex,
	};
	long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);

	/* The lookup checks the encapsulated size against the route's MTU.
	 * TCP never gets here: backends sit on overlay ports whose MTU is
	 * the underlay's less 50, so the MSS they announce leaves room for
	 * the 20 bytes of IPIP. A datagram that is too big is dropped and
	 * counted rather than sent to be lost silently. */
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		count_drop(SWARM_DROP_TOO_BIG);
		return XDP_DROP;
	}
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
		if (fib.ifindex == ctx->ingress_ifindex)
			return XDP_TX;
		return bpf_redirect(fib.ifindex, 0);
	}
	/* No neighbour entry for the node: the stack cannot forward this
	 * either (its source is our own address), so drop and count it; the
	 * loader resolves every backend node's neighbour when it programs
	 * services, and TCP resends its first packet. */
	count_drop(SWARM_DROP_ENCAP_FAILED);
	return XDP_DROP;
}

/* Unwrap IPIP from another node, whose packet is already DNATed. */
static __always_inline int decap(struct xdp_md *ctx, struct iphdr *outer, void *end)
{
	struct packet p = {};

	if (parse_ipv4(&p, (void *)(outer + 1), end) != PARSE_OK) {
		count_drop(SWARM_DROP_DECAP_FAILED);
		return XDP_DROP;
	}
	if (outer->frag_off & bpf_htons(IP_DF))
		remember_reply(p.ip->daddr, *p.dport, p.ip->saddr, *p.sport, p.ip->protocol,
			       outer->saddr, outer->id, SWARM_RNAT_UNDERLAY);

	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) + sizeof(struct iphdr) > end) {
		count_drop(SWARM_DROP_DECAP_FAILED);
		return XDP_DROP;
	}
	/* Move the Ethernet header over the outer IP header, then drop the gap. */
	__builtin_memcpy((void *)eth + sizeof(struct iphdr), eth, sizeof(*eth));
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct iphdr))) {
		count_drop(SWARM_DROP_DECAP_FAILED);
		return XDP_DROP;
	}
	return to_endpoint(ctx);
}

SEC("xdp")
int swarm_xdp_ingress(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct swarm_config *cfg = bpf_map_lookup_elem(&swarm_v4_config, &zero);
	struct packet p = {};

	if (!cfg)
		return XDP_PASS;

	enum parse_result r = parse_eth(&p, data, end);

	if (r == PARSE_NOT_OURS && p.ip && (void *)(p.ip + 1) <= end && p.ip->version == 4 &&
	    p.ip->ihl == 5 && p.ip->protocol == IPPROTO_IPIP && p.ip->daddr == cfg->node_addr &&
	    !(p.ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))) {
		/* Only another node may hand us a connection: anyone else
		 * could reach any backend, past every frontend. */
		if (!bpf_map_lookup_elem(&swarm_v4_nodes, &p.ip->saddr)) {
			count_drop(SWARM_DROP_FOREIGN_TUNNEL);
			return XDP_DROP;
		}
		return decap(ctx, p.ip, end);
	}
	if (r == PARSE_NOT_OURS)
		return XDP_PASS;
	if (r == PARSE_BAD_HEADER) {
		count_drop(SWARM_DROP_BAD_HEADER);
		return XDP_DROP;
	}
	if (r == PARSE_FRAGMENT) {
		/* Only a first fragment carries ports; later ones pass untouched
		 * (the stack discards them without their first fragment). */
		if (p.ip->frag_off & bpf_htons(IP_OFFSET))
			return XDP_PASS;
		struct udphdr *ports = (void *)p.ip + p.ip->ihl * 4; /* same offsets in TCP */

		if ((void *)(ports + 1) > end)
			return XDP_PASS;
		p.dport = &ports->dest;
		if (find_frontend(&p, cfg)) {
			count_drop(SWARM_DROP_FRAGMENT);
			return XDP_DROP;
		}
		return XDP_PASS;
	}

	struct swarm_frontend_info *fe = find_frontend(&p, cfg);

	if (!fe)
		return XDP_PASS;

	struct swarm_flow flow = flow_of(&p);
	struct swarm_backend be;

	int fresh = lb_select(fe, &flow, end - data, &be);

	if (fresh < 0) {
		count_drop(SWARM_DROP_NO_BACKEND);
		return XDP_DROP;
	}
	nat_dst(&p, be.addr, be.port);
	if (be.node == 0 || be.node == cfg->node_addr) {
		if (fresh)
			remember_reply(be.addr, be.port, flow.saddr, flow.sport, flow.proto,
				       flow.daddr, flow.dport, SWARM_RNAT_UNDERLAY);
		return to_endpoint(ctx);
	}
	return encap(ctx, cfg->node_addr, be.node, flow.dport, fresh);
}
