/* SPDX-License-Identifier: Apache-2.0 */
/* Address and port rewrites on socket buffers (tc programs). The kernel's
 * checksum helpers are used because packets from local tasks usually carry
 * partial (offloaded) checksums, which plain incremental updates corrupt. */
#ifndef SWARM_SKB_NAT_H
#define SWARM_SKB_NAT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include "maps.h"
#include "parse.h"

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

/* Rewrite the source (is_src) or destination address and port of the
 * parsed packet. `p` is invalid afterwards (the helpers may move data). */
static __always_inline void skb_nat(struct __sk_buff *skb, struct packet *p, int is_src, __u32 addr,
				    __u16 port)
{
	__u32 ip_off = ETH_HLEN + (is_src ? offsetof(struct iphdr, saddr) : offsetof(struct iphdr, daddr));
	__u32 old_addr = is_src ? p->ip->saddr : p->ip->daddr;
	__u16 old_port = is_src ? *p->sport : *p->dport;
	__u32 l4_off = ETH_HLEN + p->ip->ihl * 4;
	__u32 port_off = l4_off + (is_src ? 0 : 2); /* same offsets in TCP and UDP */
	__u32 csum_off = l4_off + (p->ip->protocol == IPPROTO_TCP ? offsetof(struct tcphdr, check)
								   : offsetof(struct udphdr, check));
	__u32 flags = p->ip->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	bpf_l4_csum_replace(skb, csum_off, old_addr, addr, flags | BPF_F_PSEUDO_HDR | 4);
	bpf_l4_csum_replace(skb, csum_off, old_port, port, flags | 2);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, addr, 4);
	bpf_skb_store_bytes(skb, ip_off, &addr, 4, 0);
	bpf_skb_store_bytes(skb, port_off, &port, 2, 0);
}

/* If the packet is a reply of a load-balanced connection whose source is
 * restored at this `scope`, restore the frontend as its source. Returns 1
 * when it rewrote the packet. */
static __always_inline int skb_reverse_nat(struct __sk_buff *skb, struct packet *p, __u8 scope)
{
	struct swarm_reply key = {
		.backend_addr = p->ip->saddr,
		.client_addr = p->ip->daddr,
		.backend_port = *p->sport,
		.client_port = *p->dport,
		.proto = p->ip->protocol,
	};
	struct swarm_reply_nat *nat = bpf_map_lookup_elem(&swarm_v4_rnat, &key);

	if (!nat || nat->scope != scope)
		return 0;
	skb_nat(skb, p, 1, nat->frontend_addr, nat->frontend_port);
	return 1;
}

#endif
