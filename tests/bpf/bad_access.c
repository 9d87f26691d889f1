// SPDX-License-Identifier: GPL-2.0
/* Loader test: the verifier must reject this (no bounds check before the read). */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int unchecked(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	if (eth->h_proto == 0x0008)          /* BAD_LINE: read without checking data_end */
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
