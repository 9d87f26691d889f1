"""Test scaffolding: one NF inlined twice into a single XDP program, as fused mode does.

Instances ``a`` then ``b``: a's port 0 leads to b, b's port 0 passes, any verdict
ends the packet.  Several NF tests use it to prove that everything an NF declares
at file scope is per instance (two instances compile, load and keep their own maps
and constants apart).
"""
from __future__ import annotations

from pathlib import Path


def two_instances(source: str | Path, a: str = "a", b: str = "b") -> str:
    """The C text of program ``fused`` running NF *source* as instance *a*, then *b*."""
    return f"""
#define NFP_HOOK_XDP 1
#define NFP_INSTANCE {a}
#include "{source}"
#undef NFP_INSTANCE
#define NFP_INSTANCE {b}
#include "{source}"
#undef NFP_INSTANCE

SEC("xdp")
int fused(struct xdp_md *hook)
{{
	struct nfp_ctx ctx;
	struct nfp_meta meta = {{}};
	int r;

	nfp_ctx_init(&ctx, hook);
	r = {a}__process(&ctx, &meta);
	if (r == NFP_PORT(0))
		r = {b}__process(&ctx, &meta);
	return nfp_hook_verdict(&ctx, &meta, r == NFP_PORT(0) ? NFP_PASS : r);
}}

char LICENSE[] SEC("license") = "GPL";
"""
