/* SPDX-License-Identifier: Apache-2.0 */
/* Service load balancing: frontend lookup, connection tracking and Maglev
 * backend selection. Every node holds the same tables, so every node picks
 * the same backend for a new flow. */
#ifndef SWARM_LB_H
#define SWARM_LB_H

#include "maps.h"
#include "parse.h"

static __always_inline __u32 mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 flow_hash(const struct swarm_flow *f)
{
	__u32 h = mix32(f->saddr ^ 0x9e3779b9);

	h = mix32(h ^ f->daddr);
	h = mix32(h ^ (((__u32)f->sport << 16) | f->dport));
	return mix32(h ^ f->proto);
}

/* A parsed packet's flow key, as the client sent it. */
static __always_inline struct swarm_flow flow_of(const struct packet *p)
{
	struct swarm_flow f = {
		.saddr = p->ip->saddr,
		.daddr = p->ip->daddr,
		.sport = *p->sport,
		.dport = *p->dport,
		.proto = p->ip->protocol,
	};
	return f;
}

/* The service a packet from the underlay addresses: a published port on
 * this node's own address. */
static __always_inline struct swarm_frontend_info *
find_frontend(const struct packet *p, const struct swarm_config *cfg)
{
	/* The underlay is served published ports, on this node's address;
	 * VIPs are for task ports (tc_task) only, never for the underlay. */
	if (p->ip->daddr != cfg->node_addr)
		return NULL;
	struct swarm_frontend key = {
		.addr = 0,
		.port = *p->dport,
		.proto = p->ip->protocol,
	};
	return bpf_map_lookup_elem(&swarm_v4_frontends, &key);
}

/* Pick a backend for a new flow with the service's Maglev table. Only
 * active backends are in the table, so draining ones get no new flows. */
static __always_inline int maglev_pick(__u32 svc_id, const struct swarm_flow *flow,
				       struct swarm_backend *out)
{
	struct swarm_service *svc = bpf_map_lookup_elem(&swarm_v4_services, &svc_id);

	if (!svc || svc->table_size == 0)
		return -1;
	__u32 bucket = flow_hash(flow) % svc->table_size;
	struct swarm_maglev_key key = {
		.svc_id = svc_id,
		.chunk = bucket / SWARM_MAGLEV_CHUNK,
		.generation = svc->generation,
	};
	struct swarm_maglev_chunk *chunk = bpf_map_lookup_elem(&swarm_v4_maglev, &key);

	if (!chunk)
		return -1;
	__u16 idx = chunk->entries[bucket % SWARM_MAGLEV_CHUNK];

	if (idx >= svc->backend_count || idx >= SWARM_MAX_BACKENDS)
		return -1;
	*out = svc->backends[idx];
	return 0;
}

/* The backend for this flow: the tracked one, or a new Maglev pick that is
 * then tracked, so the flow stays put while backends come and go. A tracked
 * flow costs two lookups and no map write: its seen_ns is refreshed only
 * every SWARM_SEEN_REFRESH_NS. Returns -1 when there is no backend, 1 for a
 * new flow or a refresh (when the caller renews its per-flow state, such as
 * the reply translation), and 0 otherwise. */
static __always_inline int lb_select(const struct swarm_frontend_info *fe,
				     const struct swarm_flow *flow, __u64 bytes,
				     struct swarm_backend *out)
{
	__u32 slot = fe->slot;
	__u32 svc_id = fe->svc_id;
	struct swarm_svc_stats *st = bpf_map_lookup_elem(&swarm_v4_svc_stats, &slot);
	struct swarm_flow_target *t = bpf_map_lookup_elem(&swarm_v4_flows, flow);
	__u64 now = bpf_ktime_get_coarse_ns();

	if (st) {
		st->packets += 1;
		st->bytes += bytes;
	}
	if (t && t->svc_id == svc_id && t->slot == slot) {
		*out = t->backend;
		if (now - t->seen_ns <= SWARM_SEEN_REFRESH_NS)
			return 0;
		t->seen_ns = now;
		return 1;
	}
	if (maglev_pick(svc_id, flow, out))
		return -1;
	struct swarm_flow_target nt = {
		.created_ns = now,
		.seen_ns = now,
		.backend = *out,
		.svc_id = svc_id,
		.slot = slot,
	};
	bpf_map_update_elem(&swarm_v4_flows, flow, &nt, BPF_ANY);
	if (st)
		st->new_flows += 1;
	return 1;
}

/* Remember how to restore the frontend as the source of the backend's
 * replies (done by the tc egress program). Written only when the entry is
 * missing or says something else: an LRU update allocates a node, which
 * per packet would cost more than the rest of the fast path. Callers with
 * a flow entry call this for a new flow and at its refreshes, not for every
 * packet; the lookup marks the entry used, so it ages with its flow (and
 * replies, which read it, keep it fresh too). */
static __always_inline void remember_reply(__u32 backend_addr, __u16 backend_port, __u32 client_addr,
					   __u16 client_port, __u8 proto, __u32 fe_addr, __u16 fe_port,
					   __u8 scope)
{
	struct swarm_reply key = {
		.backend_addr = backend_addr,
		.client_addr = client_addr,
		.backend_port = backend_port,
		.client_port = client_port,
		.proto = proto,
	};
	struct swarm_reply_nat *have = bpf_map_lookup_elem(&swarm_v4_rnat, &key);

	if (have && have->frontend_addr == fe_addr && have->frontend_port == fe_port &&
	    have->scope == scope)
		return;
	struct swarm_reply_nat val = {
		.frontend_addr = fe_addr,
		.frontend_port = fe_port,
		.scope = scope,
	};

	bpf_map_update_elem(&swarm_v4_rnat, &key, &val, BPF_ANY);
}

#endif
