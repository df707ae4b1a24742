/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tc egress on a node's underlay interface: restores the frontend as the
 * source of replies from local backends (reverse NAT), using the entries the
 * XDP program recorded. Replies leave straight from the backend's node to the
 * client (direct server return), carrying the address and port the client
 * connected to.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "lib/maps.h"
#include "lib/skb_nat.h"

char LICENSE[] SEC("license") = "GPL";

SEC("classifier")
int swarm_tc_egress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct packet p = {};

	if (parse_eth(&p, data, end) == PARSE_OK)
		skb_reverse_nat(skb, &p, SWARM_RNAT_UNDERLAY);
	return TC_ACT_OK;
}
