// SPDX-License-Identifier: GPL-2.0
/* An NF with two ports: UDP goes to port 1 ("udp"), everything else to port 0
 * (examples/split-guard.yaml).  Sets meta->mark, so later nodes can be checked
 * to see the metadata a node before them wrote. */
#include <nfpipe/nf.h>

NFP_CONST(__u32, mark) = 7;

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	if (nfp_parse(ctx, meta) < 0)
		return NFP_DROP;
	meta->mark = NFP_CFG(mark);
	return meta->pkt.l4_proto == IPPROTO_UDP ? NFP_PORT(1) : NFP_PORT(0);
}
