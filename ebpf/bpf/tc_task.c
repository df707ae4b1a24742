/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tc on both directions of a task's port (the node end of its veth): the
 * east-west load balancer.
 *
 * A connection from a task to a service VIP gets a backend from connection
 * tracking or Maglev, as north-south traffic does, and its destination is
 * rewritten to that backend before the packet leaves the task's port. Replies
 * get the VIP back as their source, whichever way they come: straight over
 * the bridge from a backend on the same node (seen at that backend's port on
 * ingress), or routed in from another node (seen at the client's port on
 * egress). Tasks address services by VIP and never see backend addresses.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "lib/lb.h"
#include "lib/skb_nat.h"

char LICENSE[] SEC("license") = "GPL";

SEC("classifier")
int swarm_tc_task(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct packet p = {};

	if (parse_eth(&p, data, end) != PARSE_OK)
		return TC_ACT_OK;
	if (skb_reverse_nat(skb, &p, SWARM_RNAT_TASK))
		return TC_ACT_OK;

	/* Only VIPs: published ports are the underlay's business. */
	struct swarm_frontend key = {
		.addr = p.ip->daddr,
		.port = *p.dport,
		.proto = p.ip->protocol,
	};
	struct swarm_frontend_info *fe = bpf_map_lookup_elem(&swarm_v4_frontends, &key);

	/* A VIP with port 0 takes every port, as Swarm's VIPs do: services
	 * reach each other on whatever port the task listens on. */
	if (!fe) {
		key.port = 0;
		fe = bpf_map_lookup_elem(&swarm_v4_frontends, &key);
	}
	if (!fe)
		return TC_ACT_OK;
	struct swarm_flow flow = flow_of(&p);
	struct swarm_backend be;

	int fresh = lb_select(fe, &flow, skb->len, &be);

	if (fresh < 0) {
		count_drop(SWARM_DROP_NO_BACKEND);
		return TC_ACT_SHOT;
	}
	/* Backends of an every-port VIP have port 0: keep the client's. */
	__u16 port = be.port ? be.port : *p.dport;

	if (fresh)
		remember_reply(be.addr, port, flow.saddr, flow.sport, flow.proto, flow.daddr,
			       flow.dport, SWARM_RNAT_TASK);
	skb_nat(skb, &p, 0, be.addr, port);
	return TC_ACT_OK;
}
