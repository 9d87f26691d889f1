// SPDX-License-Identifier: GPL-2.0
/* Loader test: a prog array with initial contents (.values) naming programs.
 * Each stage leaves a mark in the packet so the test sees the path taken. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int stage0(struct xdp_md *ctx);
int stage1(struct xdp_md *ctx);

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, sizeof(__u32));
	__array(values, int (void *));
} jump SEC(".maps") = {
	.values = {
		[0] = (void *)&stage0,
		[1] = (void *)&stage1,
	},
};

__u64 fallthrough_count;

static __always_inline int mark(struct xdp_md *ctx, int pos, char c)
{
	char *data = (void *)(long)ctx->data;
	char *data_end = (void *)(long)ctx->data_end;

	if (data + 4 > data_end)
		return -1;
	data[pos & 3] = c;
	return 0;
}

SEC("xdp")
int entry(struct xdp_md *ctx)
{
	if (mark(ctx, 0, 'E'))
		return XDP_ABORTED;
	bpf_tail_call(ctx, &jump, 0);
	__sync_fetch_and_add(&fallthrough_count, 1);
	return XDP_DROP;                     /* slot 0 empty */
}

SEC("xdp/stage0")
int stage0(struct xdp_md *ctx)
{
	if (mark(ctx, 1, 'A'))
		return XDP_ABORTED;
	bpf_tail_call_static(ctx, &jump, 1);
	__sync_fetch_and_add(&fallthrough_count, 1);
	return XDP_DROP;                     /* slot 1 empty */
}

SEC("xdp/stage1")
int stage1(struct xdp_md *ctx)
{
	if (mark(ctx, 2, 'B'))
		return XDP_ABORTED;
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
