/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A program that passes everything, for the far end of a veth pair. The
 * kernel only accepts XDP_TX/redirected frames into a veth whose peer runs
 * an XDP program, so a lab whose nodes hang off veths attaches this to the
 * host side of each node's link. Real NICs need nothing like it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int swarm_xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
