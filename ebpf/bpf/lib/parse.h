/* SPDX-License-Identifier: Apache-2.0 */
/* Bounds-checked parsing of Ethernet / IPv4 / TCP|UDP. Anything that is not
 * a well-formed IPv4 TCP or UDP packet is reported as such, never guessed at. */
#ifndef SWARM_PARSE_H
#define SWARM_PARSE_H

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

enum parse_result {
	PARSE_OK = 0,
	PARSE_NOT_OURS,   /* not IPv4 TCP/UDP: leave it to the kernel */
	PARSE_BAD_HEADER, /* IPv4 with an impossible header length */
	PARSE_FRAGMENT,   /* a fragment: ports are unknown or partial */
};

struct packet {
	struct ethhdr *eth;
	struct iphdr *ip;
	void *l4;        /* TCP or UDP header */
	__u16 *l4_csum;  /* its checksum field */
	__u16 *sport;
	__u16 *dport;
};

/* Parse an IPv4 header at `ip`, and its TCP/UDP header if complete. */
static __always_inline enum parse_result parse_ipv4(struct packet *p, struct iphdr *ip, void *end)
{
	if ((void *)(ip + 1) > end)
		return PARSE_NOT_OURS;
	p->ip = ip;
	if (ip->version != 4)
		return PARSE_NOT_OURS;
	if (ip->ihl < 5)
		return PARSE_BAD_HEADER;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return PARSE_NOT_OURS;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return PARSE_FRAGMENT;

	/* IP options are allowed and skipped. */
	__u32 hlen = ip->ihl * 4;
	void *l4 = (void *)ip + hlen;

	if (l4 > end)
		return PARSE_BAD_HEADER;
	p->l4 = l4;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > end)
			return PARSE_NOT_OURS;
		p->l4_csum = &tcp->check;
		p->sport = &tcp->source;
		p->dport = &tcp->dest;
	} else {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > end)
			return PARSE_NOT_OURS;
		p->l4_csum = &udp->check;
		p->sport = &udp->source;
		p->dport = &udp->dest;
	}
	return PARSE_OK;
}

/* Parse from the Ethernet header. */
static __always_inline enum parse_result parse_eth(struct packet *p, void *data, void *end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return PARSE_NOT_OURS;
	p->eth = eth;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_OURS;
	return parse_ipv4(p, (void *)(eth + 1), end);
}

#endif
