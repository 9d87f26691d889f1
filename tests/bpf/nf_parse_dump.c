// SPDX-License-Identifier: GPL-2.0
/* Test NF: runs nfp_parse and leaves its result in a global for the test. */
#include <nfpipe/nf.h>

struct nfp_pkt NFP_NAME(dump);

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	int r = nfp_parse(ctx, meta);

	/* A second call must hit the cache and agree. */
	if (nfp_parse(ctx, meta) != r)
		return NFP_ABORTED;
	NFP_NAME(dump) = meta->pkt;
	return r < 0 ? NFP_DROP : NFP_PORT(1);
}
