// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The live benchmark's generator, as xdp-trafficgen does it: run with
 * BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES on the generator's end of a veth,
 * each frame it returns XDP_TX for is transmitted for real (the kernel turns XDP_TX
 * into a redirect to the same device), and arrives at the device under test.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int trafficgen(struct xdp_md *ctx)
{
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
