/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tc egress on a node's underlay interface: restores the frontend as the
 * source of replies from local backends (reverse NAT), using the entries
 * the XDP program recorded. Replies leave straight from the backend's node
 * to the client (direct server return), carrying the address and port the
 * client connected to.
 *
 * The kernel's checksum helpers are used because replies from local tasks
 * usually carry partial (offloaded) checksums.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <stddef.h>
#include "lib/maps.h"
#include "lib/parse.h"

char LICENSE[] SEC("license") = "GPL";

#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

SEC("classifier")
int swarm_tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct packet p = {};

	if (parse_eth(&p, data, end) != PARSE_OK)
		return TC_ACT_OK;

	struct swarm_reply key = {
		.backend_addr = p.ip->saddr,
		.client_addr = p.ip->daddr,
		.backend_port = *p.sport,
		.client_port = *p.dport,
		.proto = p.ip->protocol,
	};
	struct swarm_reply_nat *nat = bpf_map_lookup_elem(&swarm_v4_rnat, &key);

	if (!nat)
		return TC_ACT_OK;

	__u32 old_addr = p.ip->saddr;
	__u16 old_port = *p.sport;
	__u32 new_addr = nat->frontend_addr;
	__u16 new_port = nat->frontend_port;
	__u32 l4_off = ETH_HLEN + p.ip->ihl * 4;
	__u32 csum_off = l4_off + (p.ip->protocol == IPPROTO_TCP ? offsetof(struct tcphdr, check)
								  : offsetof(struct udphdr, check));
	__u32 flags = p.ip->protocol == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, flags | BPF_F_PSEUDO_HDR | 4);
	bpf_l4_csum_replace(skb, csum_off, old_port, new_port, flags | 2);
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4);
	bpf_skb_store_bytes(skb, IP_SRC_OFF, &new_addr, 4, 0);
	/* Source port: first field of both TCP and UDP headers. */
	bpf_skb_store_bytes(skb, l4_off, &new_port, 2, 0);
	return TC_ACT_OK;
}
