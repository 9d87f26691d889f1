// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * telemetry: count what goes by, never change it.
 *
 * Per packet, each part switched on by a load-time constant (a part that is
 * off is removed by the verifier's dead-code elimination):
 *
 *   flows        LRU hash, 5-tuple (IPv4 and IPv6) -> packets, bytes, first/last seen
 *   syn_sources  LRU hash, source address -> TCP SYNs without ACK
 *   histograms   per-CPU arrays: protocol class, log2 packet size
 *   sampling     1 in sample_rate packets (per-CPU counter): its first snaplen
 *                bytes into a BPF ring buffer, for pcap output in user space
 *
 * Always returns port 0 ("out"): the packet goes on unchanged.  The verdicts
 * of every node are already counted by the pipeline (nfp_stats, pipeline.h).
 * See docs/nf/telemetry.md.
 */
#include <nfpipe/nf.h>

#ifndef NFP_TELEMETRY_TYPES
#define NFP_TELEMETRY_TYPES
/* Types shared by every instance of this file in one translation unit. */

#define NFP_TLM_MAX_SNAPLEN 256 /* the fixed data area of one sample record */

/* A flow: IPv4 addresses in word 0 of addr[] (as nfp_pkt), ports as on the wire. */
struct nfp_tlm_flow_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;  /* IPPROTO_* */
	__u8 family; /* 4 or 6 */
	__u16 pad;
};

struct nfp_tlm_flow {
	__u64 packets;
	__u64 bytes;
	__u64 first_ns; /* bpf_ktime_get_coarse_ns(): CLOCK_MONOTONIC_COARSE */
	__u64 last_ns;
};

struct nfp_tlm_src_key {
	__be32 addr[4];
	__u8 family; /* 4 or 6 */
	__u8 pad[3];
};

struct nfp_tlm_bucket {
	__u64 packets;
	__u64 bytes;
};

/* One sampled packet in the ring buffer (fixed size: every reservation alike). */
struct nfp_tlm_sample {
	__u64 ts_ns;   /* bpf_ktime_get_ns() */
	__u32 pkt_len; /* the packet's length */
	__u32 cap_len; /* bytes of data[] that hold it: min(pkt_len, snaplen) */
	__u8 data[NFP_TLM_MAX_SNAPLEN];
};

/* Protocol classes (index of the proto_hist array). */
enum {
	NFP_TLM_P_OTHER_L3 = 0, /* not IPv4/IPv6 (ARP, LLDP, ...) */
	NFP_TLM_P_IPV4_TCP,
	NFP_TLM_P_IPV4_UDP,
	NFP_TLM_P_IPV4_ICMP,
	NFP_TLM_P_IPV4_OTHER,
	NFP_TLM_P_IPV6_TCP,
	NFP_TLM_P_IPV6_UDP,
	NFP_TLM_P_IPV6_ICMP,
	NFP_TLM_P_IPV6_OTHER,
	NFP_TLM_P_MALFORMED,
	NFP_TLM_P_CLASSES,
};

#define NFP_TLM_SIZE_BUCKETS 17 /* floor(log2(len)), 16 = 64 KiB and more */

/* Counters (index of the counters array). */
enum {
	NFP_TLM_C_PACKETS = 0,  /* every packet seen */
	NFP_TLM_C_MALFORMED,    /* nfp_parse said malformed */
	NFP_TLM_C_SAMPLED,      /* records written to the ring buffer */
	NFP_TLM_C_RINGBUF_FULL, /* samples lost: the ring buffer was full */
	NFP_TLM_C_FLOW_FAIL,    /* flow entry could not be created */
	NFP_TLM_C_SYN_FAIL,     /* SYN-source entry could not be created */
	NFP_TLM_C_COPY_FAIL,    /* the packet bytes could not be copied (not expected) */
	NFP_TLM_C_COUNT,
};
#endif /* NFP_TELEMETRY_TYPES */

NFP_CONST(__u32, flows_on) = 1;
NFP_CONST(__u32, syn_on) = 1;
NFP_CONST(__u32, hist_on) = 1;
NFP_CONST(__u32, sample_rate) = 0; /* 0: off; N: the N-th, 2N-th, ... packet of a CPU */
NFP_CONST(__u32, snaplen) = 128;   /* 1 .. NFP_TLM_MAX_SNAPLEN */

/* Map sizes are the defaults; nfpipe resizes them from the config before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nfp_tlm_flow_key);
	__type(value, struct nfp_tlm_flow);
} NFP_NAME(flows) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct nfp_tlm_src_key);
	__type(value, __u64);
} NFP_NAME(syn_sources) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NFP_TLM_P_CLASSES);
	__type(key, __u32);
	__type(value, struct nfp_tlm_bucket);
} NFP_NAME(proto_hist) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NFP_TLM_SIZE_BUCKETS);
	__type(key, __u32);
	__type(value, struct nfp_tlm_bucket);
} NFP_NAME(size_hist) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NFP_TLM_C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(counters) SEC(".maps");

/* The sampling tick of each CPU: packets seen while sampling is on. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(sample_tick) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 262144);
} NFP_NAME(samples) SEC(".maps");

static __always_inline void NFP_NAME(bucket)(void *map, __u32 idx, __u32 len)
{
	struct nfp_tlm_bucket *b = bpf_map_lookup_elem(map, &idx);

	if (b) {
		b->packets++;
		b->bytes += len;
	}
}

static __always_inline __u32 NFP_NAME(proto_class)(const struct nfp_pkt *p, int malformed)
{
	if (malformed)
		return NFP_TLM_P_MALFORMED;
	if (p->l3_proto == ETH_P_IP) {
		switch (p->l4_proto) {
		case IPPROTO_TCP:
			return NFP_TLM_P_IPV4_TCP;
		case IPPROTO_UDP:
			return NFP_TLM_P_IPV4_UDP;
		case IPPROTO_ICMP:
			return NFP_TLM_P_IPV4_ICMP;
		default:
			return NFP_TLM_P_IPV4_OTHER;
		}
	}
	if (p->l3_proto == ETH_P_IPV6) {
		switch (p->l4_proto) {
		case IPPROTO_TCP:
			return NFP_TLM_P_IPV6_TCP;
		case IPPROTO_UDP:
			return NFP_TLM_P_IPV6_UDP;
		case IPPROTO_ICMPV6:
			return NFP_TLM_P_IPV6_ICMP;
		default:
			return NFP_TLM_P_IPV6_OTHER;
		}
	}
	return NFP_TLM_P_OTHER_L3;
}

/* floor(log2(len)) capped at 16; 0 for len 0 and 1. */
static __always_inline __u32 NFP_NAME(size_bucket)(__u32 len)
{
	__u32 b = 0;

	if (len >= 1 << 16)
		return 16;
	if (len >> 8) {
		b += 8;
		len >>= 8;
	}
	if (len >> 4) {
		b += 4;
		len >>= 4;
	}
	if (len >> 2) {
		b += 2;
		len >>= 2;
	}
	if (len >> 1) {
		b += 1;
	}
	return b;
}

static __always_inline void NFP_NAME(flow)(const struct nfp_pkt *p, __u32 len, __u64 now)
{
	struct nfp_tlm_flow_key key = {};
	struct nfp_tlm_flow *f, init;

	__builtin_memcpy(key.saddr, p->saddr, sizeof(key.saddr));
	__builtin_memcpy(key.daddr, p->daddr, sizeof(key.daddr));
	key.sport = p->sport;
	key.dport = p->dport;
	key.proto = p->l4_proto;
	key.family = p->l3_proto == ETH_P_IP ? 4 : 6;

	f = bpf_map_lookup_elem(&NFP_NAME(flows), &key);
	if (!f) {
		init.packets = 1;
		init.bytes = len;
		init.first_ns = now;
		init.last_ns = now;
		if (!bpf_map_update_elem(&NFP_NAME(flows), &key, &init, BPF_NOEXIST))
			return;
		/* Another CPU created it first: add to that one. */
		f = bpf_map_lookup_elem(&NFP_NAME(flows), &key);
		if (!f) {
			nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_FLOW_FAIL);
			return;
		}
	}
	__sync_fetch_and_add(&f->packets, 1);
	__sync_fetch_and_add(&f->bytes, len);
	if (f->last_ns < now)
		f->last_ns = now;
}

static __always_inline void NFP_NAME(syn)(const struct nfp_pkt *p)
{
	struct nfp_tlm_src_key key = {};
	__u64 one = 1, *n;

	__builtin_memcpy(key.addr, p->saddr, sizeof(key.addr));
	key.family = p->l3_proto == ETH_P_IP ? 4 : 6;
	n = bpf_map_lookup_elem(&NFP_NAME(syn_sources), &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	if (!bpf_map_update_elem(&NFP_NAME(syn_sources), &key, &one, BPF_NOEXIST))
		return;
	n = bpf_map_lookup_elem(&NFP_NAME(syn_sources), &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_SYN_FAIL);
}

static __always_inline void NFP_NAME(sample)(struct nfp_ctx *ctx, __u32 len)
{
	__u32 zero = 0, cap;
	__u64 *tick = bpf_map_lookup_elem(&NFP_NAME(sample_tick), &zero);
	struct nfp_tlm_sample *s;

	if (!tick)
		return;
	*tick += 1;
	if (*tick % NFP_CFG(sample_rate))
		return;
	s = bpf_ringbuf_reserve(&NFP_NAME(samples), sizeof(*s), 0);
	if (!s) {
		nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_RINGBUF_FULL);
		return;
	}
	cap = len < NFP_CFG(snaplen) ? len : NFP_CFG(snaplen);
	if (cap > NFP_TLM_MAX_SNAPLEN)
		cap = NFP_TLM_MAX_SNAPLEN;
	s->ts_ns = bpf_ktime_get_ns(); /* a sample's time is precise: 1 packet in sample_rate */
	s->pkt_len = len;
	s->cap_len = cap;
	if (cap == 0) {
		bpf_ringbuf_submit(s, 0);
		nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_SAMPLED);
		return;
	}
	/* The one hook-specific call: copy from the (possibly non-linear) packet. */
#ifdef NFP_HOOK_XDP
	if (bpf_xdp_load_bytes(ctx->hook, 0, s->data, cap)) {
#else
	if (bpf_skb_load_bytes(ctx->hook, 0, s->data, cap)) {
#endif
		bpf_ringbuf_discard(s, 0);
		nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_COPY_FAIL);
		return;
	}
	bpf_ringbuf_submit(s, 0);
	nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_SAMPLED);
}

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	struct nfp_pkt *p = &meta->pkt;
	__u32 len = nfp_pkt_len(ctx);
	__u64 now = 0;
	int malformed = nfp_parse(ctx, meta) < 0;

	nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_PACKETS);
	if (malformed)
		nfp_percpu_inc(&NFP_NAME(counters), NFP_TLM_C_MALFORMED);
	/* A flow's first and last seen are as fine as the kernel's tick (as conntrack's
	 * times are): the coarse clock is a read of the timekeeper's last update, where
	 * bpf_ktime_get_ns() reads the clock source, about a quarter of this NF's cost. */
	if (NFP_CFG(flows_on))
		now = bpf_ktime_get_coarse_ns();

	if (NFP_CFG(hist_on)) {
		NFP_NAME(bucket)(&NFP_NAME(proto_hist), NFP_NAME(proto_class)(p, malformed), len);
		NFP_NAME(bucket)(&NFP_NAME(size_hist), NFP_NAME(size_bucket)(len), len);
	}
	if (!malformed && (p->l3_proto == ETH_P_IP || p->l3_proto == ETH_P_IPV6)) {
		if (NFP_CFG(flows_on))
			NFP_NAME(flow)(p, len, now);
		if (NFP_CFG(syn_on) && p->l4_proto == IPPROTO_TCP && (p->flags & NFP_F_L4) &&
		    (p->tcp_flags & 0x12) == 0x02)
			NFP_NAME(syn)(p);
	}
	if (NFP_CFG(sample_rate))
		NFP_NAME(sample)(ctx, len);
	return NFP_PORT(0);
}
