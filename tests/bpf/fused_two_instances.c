// SPDX-License-Identifier: GPL-2.0
/* Fused-mode check: two instances of one NF inlined into one program, each
 * with its own constant and its own map.  a (min_ttl set by the test) runs
 * first; what it passes goes to b. */
#define NFP_HOOK_XDP 1
#define NFP_INSTANCE a
#include "../../bpf/examples/ttl_guard.c"
#undef NFP_INSTANCE
#define NFP_INSTANCE b
#include "../../bpf/examples/ttl_guard.c"
#undef NFP_INSTANCE

SEC("xdp")
int fused(struct xdp_md *hook)
{
	struct nfp_ctx ctx;
	struct nfp_meta meta = {};
	int r;

	nfp_ctx_init(&ctx, hook);
	r = a__process(&ctx, &meta);
	if (r == NFP_PORT(0))
		r = b__process(&ctx, &meta);
	if (r == NFP_PORT(0))
		r = NFP_PASS;
	return nfp_hook_verdict(&ctx, &meta, r);
}

char LICENSE[] SEC("license") = "GPL";
