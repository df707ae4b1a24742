/* SPDX-License-Identifier: Apache-2.0 */
/* Host program run by build.rs: prints every shared struct's size and each
 * field's offset and size as a Rust table, which a test in src/abi.rs
 * compares with the Rust mirror. */
#include <stdio.h>
#include <stddef.h>
#include "swarm_abi.h"

#define S(t) printf("    (\"%s\", \"\", 0, %zu),\n", #t, sizeof(struct t));
#define F(t, f) printf("    (\"%s\", \"%s\", %zu, %zu),\n", #t, #f, offsetof(struct t, f), \
		       sizeof(((struct t *)0)->f));

int main(void)
{
	printf("/// (struct, field, offset, size) from swarm_abi.h; field \"\" is the whole struct.\n");
	printf("pub const LAYOUT: &[(&str, &str, usize, usize)] = &[\n");
	S(swarm_frontend) F(swarm_frontend, addr) F(swarm_frontend, port) F(swarm_frontend, proto)
	F(swarm_frontend, pad)
	S(swarm_frontend_info) F(swarm_frontend_info, svc_id) F(swarm_frontend_info, slot)
	S(swarm_backend) F(swarm_backend, addr) F(swarm_backend, node) F(swarm_backend, port)
	F(swarm_backend, state) F(swarm_backend, pad)
	S(swarm_service) F(swarm_service, table_size) F(swarm_service, backend_count)
	F(swarm_service, generation) F(swarm_service, backends)
	S(swarm_maglev_key) F(swarm_maglev_key, svc_id) F(swarm_maglev_key, chunk)
	F(swarm_maglev_key, generation)
	S(swarm_maglev_chunk) F(swarm_maglev_chunk, entries)
	S(swarm_flow) F(swarm_flow, saddr) F(swarm_flow, daddr) F(swarm_flow, sport)
	F(swarm_flow, dport) F(swarm_flow, proto) F(swarm_flow, pad)
	S(swarm_flow_target) F(swarm_flow_target, created_ns) F(swarm_flow_target, seen_ns)
	F(swarm_flow_target, backend) F(swarm_flow_target, svc_id)
	F(swarm_flow_target, slot) F(swarm_flow_target, pad)
	S(swarm_reply) F(swarm_reply, backend_addr) F(swarm_reply, client_addr)
	F(swarm_reply, backend_port) F(swarm_reply, client_port) F(swarm_reply, proto)
	F(swarm_reply, pad)
	S(swarm_reply_nat) F(swarm_reply_nat, frontend_addr) F(swarm_reply_nat, frontend_port)
	F(swarm_reply_nat, scope) F(swarm_reply_nat, pad)
	S(swarm_svc_stats) F(swarm_svc_stats, packets) F(swarm_svc_stats, bytes)
	F(swarm_svc_stats, new_flows)
	S(swarm_endpoint) F(swarm_endpoint, ifindex) F(swarm_endpoint, mac)
	F(swarm_endpoint, port_mac) F(swarm_endpoint, mtu) F(swarm_endpoint, pad)
	S(swarm_config) F(swarm_config, node_addr) F(swarm_config, flags)
	printf("];\n");
	return 0;
}
