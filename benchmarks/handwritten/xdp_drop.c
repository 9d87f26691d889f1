// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/* The floor of the live benchmark: the device under test drops every frame at XDP,
 * looking at nothing. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
