/* SPDX-License-Identifier: Apache-2.0 */
/* Every map, defined once and pinned by name, so all programs and every
 * restart of the loader share the same maps (and so the same flows). */
#ifndef SWARM_MAPS_H
#define SWARM_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "swarm_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct swarm_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SWARM_MAX_FRONTENDS);
	__type(key, struct swarm_frontend);
	__type(value, struct swarm_frontend_info);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_frontends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SWARM_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct swarm_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* Room for every service's table twice (two generations) at 2 chunks. */
	__uint(max_entries, SWARM_MAX_SERVICES * 4);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct swarm_maglev_key);
	__type(value, struct swarm_maglev_chunk);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SWARM_MAX_FLOWS);
	__type(key, struct swarm_flow);
	__type(value, struct swarm_flow_target);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, SWARM_MAX_FLOWS);
	__type(key, struct swarm_reply);
	__type(value, struct swarm_reply_nat);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_rnat SEC(".maps");

/* Indexed by slot: an array lookup the verifier inlines, with no hashing
 * and no insert when a service is new. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SWARM_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct swarm_svc_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SWARM_DROP_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_drops SEC(".maps");

/* Underlay addresses of the swarm's nodes (value unused): the only
 * sources of IPIP this node unwraps. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SWARM_MAX_NODES);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SWARM_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct swarm_endpoint);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} swarm_v4_endpoints SEC(".maps");

static __always_inline void count_drop(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&swarm_v4_drops, &reason);

	if (n)
		*n += 1;
}

#endif
