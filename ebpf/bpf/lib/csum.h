/* SPDX-License-Identifier: Apache-2.0 */
/* Incremental Internet checksum updates (RFC 1624) for address and port
 * rewrites, and a full checksum for headers we build. */
#ifndef SWARM_CSUM_H
#define SWARM_CSUM_H

#include <linux/types.h>

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Update checksum *csum for a 32-bit field changing from `from` to `to`. */
static __always_inline void csum_replace4(__u16 *csum, __u32 from, __u32 to)
{
	__u32 sum = (__u16)~*csum;

	sum += (__u16)~from + (__u16)~(from >> 16);
	sum += (__u16)to + (__u16)(to >> 16);
	*csum = csum_fold(sum);
}

/* Update checksum *csum for a 16-bit field changing from `from` to `to`. */
static __always_inline void csum_replace2(__u16 *csum, __u16 from, __u16 to)
{
	__u32 sum = (__u16)~*csum;

	sum += (__u16)~from;
	sum += to;
	*csum = csum_fold(sum);
}

/* Checksum of a 20-byte IPv4 header (no options), its csum field zero. */
static __always_inline __u16 ipv4_csum(const void *hdr)
{
	const __u16 *w = hdr;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold(sum);
}

#endif
