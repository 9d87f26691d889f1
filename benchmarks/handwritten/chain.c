// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The kernel's own cost of a tail call: what a hop of nfpipe's tail-call linking is
 * measured against (`nfpipe bench chain`, the `chainN-handwritten` cases).
 *
 * Eight XDP programs, hop0 .. hop7, each nothing but a tail call to the next slot
 * of `hops`, a constant key (so the JIT emits a direct jump, as nfpipe's entry.h
 * arranges for its ports).  The bench fills slots 1 .. N-1 and runs hop0: N
 * programs, N - 1 jumps; the last program's call finds its slot empty and falls
 * through to XDP_PASS, as hop0's does when N is 1.  No metadata, no counters, no
 * look at the packet: (chainN - chain1) / (N - 1) is one hop and nothing else.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define NHOPS 8

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NHOPS + 1); /* slot 8: hop7's, always empty */
	__type(key, __u32);
	__type(value, __u32);
} hops SEC(".maps");

#define HOP(i)                                   \
	SEC("xdp")                               \
	int hop##i(struct xdp_md *ctx)           \
	{                                        \
		bpf_tail_call(ctx, &hops, i + 1); \
		return XDP_PASS;                 \
	}

HOP(0)
HOP(1)
HOP(2)
HOP(3)
HOP(4)
HOP(5)
HOP(6)
HOP(7)

char LICENSE[] SEC("license") = "Dual BSD/GPL";
