/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one header that defines every map key and value shared between the
 * BPF programs and Rust (ebpf/src/abi.rs mirrors it; a test checks sizes and
 * offsets against the layout table the build emits from this file).
 *
 * Byte order: addresses and ports are stored in network order, exactly as
 * they appear in packets, so the fast path never swaps bytes.
 * Every struct has explicit padding so C and Rust agree without packing.
 */
#ifndef SWARM_ABI_H
#define SWARM_ABI_H

#include <linux/types.h>

/* A service's Maglev table has a prime number of buckets, sized by
 * mesh/src/maglev.rs from the service's declared backend count (at most
 * SWARM_MAGLEV_MAX). It is stored in chunks of SWARM_MAGLEV_CHUNK buckets,
 * so small services cost little memory and few map updates. */
#define SWARM_MAGLEV_CHUNK 1024
#define SWARM_MAGLEV_MAX 131071
/* Backends one service can have. */
#define SWARM_MAX_BACKENDS 256
/* Services (load-balancing groups) and frontends a node can hold. */
#define SWARM_MAX_SERVICES 65536
#define SWARM_MAX_FRONTENDS 131072
/* Tracked flows per node; least recently used flows are evicted first. */
#define SWARM_MAX_FLOWS 1048576
/* Nodes whose tunnelled packets a node accepts (swarm_v4_nodes). */
#define SWARM_MAX_NODES 16384
/* Local backends XDP can hand packets to directly (swarm_v4_endpoints). */
#define SWARM_MAX_ENDPOINTS 65536
/* A tracked flow's seen_ns is refreshed at most this often: writing it on
 * every packet would bounce its cache line between cores for nothing. */
#define SWARM_SEEN_REFRESH_NS 1000000000ULL

/* swarm_backend.state */
#define SWARM_BACKEND_ACTIVE 0   /* takes new flows */
#define SWARM_BACKEND_DRAINING 1 /* keeps its flows, gets no new ones */

/* Why a packet was dropped: index into swarm_v4_drops. Userspace prints the
 * same names (ebpf/src/abi.rs DROP_REASONS). */
#define SWARM_DROP_NO_BACKEND 0   /* service has no active backend */
#define SWARM_DROP_FRAGMENT 1     /* fragment of a packet to a service */
#define SWARM_DROP_BAD_HEADER 2   /* IPv4 header length invalid */
#define SWARM_DROP_ENCAP_FAILED 3 /* no room to encapsulate, or no route */
#define SWARM_DROP_DECAP_FAILED 4 /* malformed tunnelled packet */
#define SWARM_DROP_FOREIGN_TUNNEL 5 /* IPIP from an address that is no node */
#define SWARM_DROP_TOO_BIG 6      /* too big for the underlay once encapsulated */
#define SWARM_DROP_MAX 7

/* Key of swarm_v4_frontends: how a packet addresses a service. */
struct swarm_frontend {
	__u32 addr;  /* VIP, or 0 for a published port on this node's address */
	__u16 port;  /* destination port */
	__u8 proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
};

/* Value of swarm_v4_frontends. */
struct swarm_frontend_info {
	__u32 svc_id; /* key into swarm_v4_services */
	__u32 slot;   /* the service's index into swarm_v4_svc_stats (below
	               * SWARM_MAX_SERVICES; the loader hands them out) */
};

struct swarm_backend {
	__u32 addr;  /* the backend task's address */
	__u32 node;  /* underlay address of the node running it; 0 = this node */
	__u16 port;  /* the backend's port */
	__u8 state;  /* SWARM_BACKEND_* */
	__u8 pad;
};

/* Value of swarm_v4_services, keyed by svc_id. */
struct swarm_service {
	__u32 table_size;     /* Maglev buckets; 0 when no backend is active */
	__u16 backend_count;  /* valid entries in backends[] */
	__u16 generation;     /* which swarm_v4_maglev chunks are current */
	struct swarm_backend backends[SWARM_MAX_BACKENDS];
};

/* Key of swarm_v4_maglev: one chunk of a service's Maglev table. */
struct swarm_maglev_key {
	__u32 svc_id;
	__u16 chunk;       /* bucket / SWARM_MAGLEV_CHUNK */
	__u16 generation;  /* chunks of a new table are written under a new
	                    * generation, then swarm_service switches to it in
	                    * one update: a reader never mixes two tables */
};

/* Value of swarm_v4_maglev: bucket -> index into swarm_service.backends. */
struct swarm_maglev_chunk {
	__u16 entries[SWARM_MAGLEV_CHUNK];
};

/* Key of swarm_v4_flows: a client's flow as it arrives at the frontend. */
struct swarm_flow {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Value of swarm_v4_flows: the backend a flow is pinned to. */
struct swarm_flow_target {
	__u64 created_ns;  /* bpf_ktime_get_coarse_ns() at the first packet */
	__u64 seen_ns;     /* at a recent packet (SWARM_SEEN_REFRESH_NS) */
	struct swarm_backend backend;
	__u32 svc_id;
	__u32 slot;        /* with svc_id, names the service's incarnation: the
	                    * loader never hands a removed service's slot to its
	                    * successor at once, so flows of a service that was
	                    * removed and added again are balanced afresh */
	__u32 pad;
};

/* Key of swarm_v4_rnat: a reply as it leaves a local backend. */
struct swarm_reply {
	__u32 backend_addr;
	__u32 client_addr;
	__u16 backend_port;
	__u16 client_port;
	__u8 proto;
	__u8 pad[3];
};

/* swarm_reply_nat.scope: where the reply gets its source restored. */
#define SWARM_RNAT_UNDERLAY 0 /* north-south: at the underlay's tc egress */
#define SWARM_RNAT_TASK 1     /* east-west: at a task port */

/* Value of swarm_v4_rnat: the frontend the client addressed, restored as the
 * reply's source so the client sees the address it connected to. */
struct swarm_reply_nat {
	__u32 frontend_addr;
	__u16 frontend_port;
	__u8 scope;  /* SWARM_RNAT_* */
	__u8 pad;
};

/* Value of swarm_v4_svc_stats (a per-CPU array), indexed by the service's
 * slot. */
struct swarm_svc_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
};

/* Value of swarm_v4_endpoints, keyed by a local backend's address (network
 * order): the task port XDP redirects that backend's packets to, so they are
 * not routed and bridged again by the node's stack. */
struct swarm_endpoint {
	__u32 ifindex;  /* the node end of the task's veth */
	__u8 mac[6];    /* the task interface's MAC: the frame's destination */
	__u8 port_mac[6]; /* the port's own MAC: the frame's source */
	__u16 mtu;      /* the task interface's MTU; bigger packets go to the
	                 * stack, which fragments them or says why not */
	__u16 pad;
};

/* swarm_v4_config[0]: this node's settings. */
struct swarm_config {
	__u32 node_addr;  /* this node's underlay address */
	__u32 flags;      /* reserved */
};

#endif /* SWARM_ABI_H */
