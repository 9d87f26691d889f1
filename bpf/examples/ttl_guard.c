// SPDX-License-Identifier: GPL-2.0
/* A minimal user NF: drop IP packets whose TTL / hop limit is at or below a
 * threshold, count them, and send everything else to port 0 ("out").
 *
 * Build alone:   nfpipe.build.nf.build_nf("bpf/examples/ttl_guard.c", hook="xdp")
 * In a pipeline: a node with `nf: ./bpf/examples/ttl_guard.c` and
 *                `config: {min_ttl: 2}`.
 */
#include <nfpipe/nf.h>

NFP_CONST(__u8, min_ttl) = 1; /* drop when ttl <= min_ttl */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(dropped) SEC(".maps");

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	if (nfp_parse(ctx, meta) < 0)
		return NFP_DROP; /* malformed: never guess */
	if (!nfp_is_ipv4(meta) && !nfp_is_ipv6(meta))
		return NFP_PORT(0);
	if (meta->pkt.ttl > NFP_CFG(min_ttl))
		return NFP_PORT(0);
	/* not `*n += 1` on a lookup: nfp_percpu_inc is also right offloaded, where the
	 * per-CPU array becomes one shared array that only atomic adds may change */
	nfp_percpu_inc(&NFP_NAME(dropped), 0);
	return NFP_DROP;
}
