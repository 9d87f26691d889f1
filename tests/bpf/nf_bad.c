// SPDX-License-Identifier: GPL-2.0
/* Test NF the verifier must reject: it reads the packet without a bounds check. */
#include <nfpipe/nf.h>

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	__u8 *p = ctx->data;

	return p[20] == 6 ? NFP_PORT(0) : NFP_DROP;     /* BAD: no check against data_end */
}
