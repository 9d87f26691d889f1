/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * What every program of a pipeline shares: the program array that links nodes
 * in tail-call mode, and the per-node, per-outcome counters.  nfpipe creates
 * each of these maps once per pipeline and hands the same map to every node.
 */
#ifndef NFPIPE_PIPELINE_H
#define NFPIPE_PIPELINE_H

#include <nfpipe/nf.h>

#define NFP_MAX_NODES 64

/* Outcome slots of one node in nfp_stats: its ports, then its final verdicts,
 * then tail calls that found an empty slot. */
#define NFP_STAT_SLOTS 16
#define NFP_STAT_VERDICT(v) (NFP_MAX_PORTS + (-(v) - 1)) /* NFP_PASS..NFP_ABORTED: 8..12 */
#define NFP_STAT_MISS 13

struct nfp_stat {
	__u64 packets;
	__u64 bytes;
};

#ifdef NFP_OFFLOAD
/* Offloaded programs (NFP_OFFLOAD, always fused) can use neither per-CPU maps nor
 * tail calls: one shared array, updated with atomic adds. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NFP_MAX_NODES *NFP_STAT_SLOTS);
	__type(key, __u32);
	__type(value, struct nfp_stat);
} nfp_stats SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NFP_MAX_NODES *NFP_STAT_SLOTS);
	__type(key, __u32);
	__type(value, struct nfp_stat);
} nfp_stats SEC(".maps");
#endif

#ifndef NFP_FUSED
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, NFP_MAX_NODES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} nfp_jmp SEC(".maps");
#endif

static __always_inline void nfp_count(__u32 node, __u32 slot, __u32 bytes)
{
	__u32 key = (node % NFP_MAX_NODES) * NFP_STAT_SLOTS + (slot % NFP_STAT_SLOTS);
	struct nfp_stat *st = bpf_map_lookup_elem(&nfp_stats, &key);

	if (st) {
#ifdef NFP_OFFLOAD
		nfp_atomic_add64(&st->packets, 1);
		nfp_atomic_add64(&st->bytes, bytes);
#else
		st->packets++;
		st->bytes += bytes;
#endif
	}
}

static __always_inline __u32 nfp_outcome_slot(int r)
{
	if (r >= 0 && r < NFP_MAX_PORTS)
		return r;
	if (r < 0 && r >= NFP_VERDICT_MIN)
		return NFP_STAT_VERDICT(r);
	return NFP_STAT_VERDICT(NFP_ABORTED);
}

#ifdef NFP_HOOK_XDP
/* Tiered placement: the NIC runs the pipeline's first nodes (offloaded), the host
 * the rest (native XDP on the same interface).  Where a packet leaves the NIC's
 * nodes, the NIC program writes this record in front of the packet (the XDP
 * metadata area) and passes it up; the host program finds it, takes the metadata
 * over, drops the record and goes on at the node it names.  A packet without one
 * runs the host's program from the entry.  32 bytes: the most the area holds. */
#define NFP_HANDOVER_MAGIC 0x6e700000u /* "np" in the high half, the node in the low */
struct nfp_handover {
	__u32 magic_node;
	__u32 mark;
	__u32 backend;
	__u32 hops;
	__u32 user[4];
};

static __always_inline int nfp_handover(struct nfp_ctx *ctx, struct nfp_meta *meta, __u32 node)
{
	struct nfp_handover *h;

	if (bpf_xdp_adjust_meta(ctx->hook, -(int)sizeof(*h)))
		return NFP_ABORTED;
	h = (void *)(long)ctx->hook->data_meta;
	if ((void *)(h + 1) > (void *)(long)ctx->hook->data)
		return NFP_ABORTED;
	h->magic_node = NFP_HANDOVER_MAGIC | (node & 0xffff);
	h->mark = meta->mark;
	h->backend = meta->backend;
	h->hops = meta->hops;
	h->user[0] = meta->user[0];
	h->user[1] = meta->user[1];
	h->user[2] = meta->user[2];
	h->user[3] = meta->user[3];
	return NFP_PASS;
}

/* The node a handed-over packet goes on at, its metadata restored; -1 if none. */
static __always_inline int nfp_resume(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	struct nfp_handover *h = (void *)(long)ctx->hook->data_meta;
	int node;

	if ((void *)(h + 1) > (void *)(long)ctx->hook->data)
		return -1;
	if ((h->magic_node & 0xffff0000u) != NFP_HANDOVER_MAGIC)
		return -1;
	node = h->magic_node & 0xffff;
	meta->mark = h->mark;
	meta->backend = h->backend;
	meta->hops = h->hops;
	meta->user[0] = h->user[0];
	meta->user[1] = h->user[1];
	meta->user[2] = h->user[2];
	meta->user[3] = h->user[3];
	bpf_xdp_adjust_meta(ctx->hook, (int)sizeof(*h));
	nfp_ctx_reload(ctx);
	return node;
}
#endif

#endif /* NFPIPE_PIPELINE_H */
