// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * lb: an L4 load balancer (IPv4 and IPv6, TCP and UDP).
 *
 * A packet to a VIP (daddr, dport, proto) is sent to one of the VIP's backends
 * by rewriting its destination address and port (DNAT) and passing it on
 * (port "out") for the kernel to route; a reply from a backend to a client is
 * rewritten back so its source is the VIP.  The backend of a new flow comes
 * from the VIP's Maglev lookup table (computed by the control plane in
 * nfpipe/catalog/lb_hash.py) at slot hash(5-tuple) % table_size; the choice is then
 * pinned in a connection table (LRU hash), so established flows stay on their
 * backend when the backend set changes, and a draining backend (left out of
 * the lookup table, kept in the backend map) keeps its flows.
 *
 * Tables come in two generations per VIP; the control plane fills the inactive
 * one and then flips the VIP's one-word generation, so a packet sees either the
 * old table or the new one, never a mix.
 *
 * See docs/nf/lb.md for the config, the map layout and the design choices.
 */
#include <nfpipe/nf.h>

/* Types and limits shared by every instance of this NF (guarded: fused mode
 * includes this file once per node). */
#ifndef NFP_LB_SHARED
#define NFP_LB_SHARED

#ifndef LB_MAX_VIPS
#define LB_MAX_VIPS 16
#endif
#ifndef LB_MAX_TABLE
#define LB_MAX_TABLE 65537 /* largest table_size a VIP may have */
#endif
#ifndef LB_MAX_BACKENDS
#define LB_MAX_BACKENDS 1024 /* backend ids 1..LB_MAX_BACKENDS-1; 0 is "none" */
#endif
#ifndef LB_MAX_CONNS
#define LB_MAX_CONNS 65536 /* connection-table entries (each direction) */
#endif

#define LB_MAX_L3_OFF 0x3f   /* Ethernet + 2 VLAN tags is 22 */
#define LB_MAX_L4_OFF 0x3fff /* IPv6 extension headers can push L4 far out */

#define LB_FAMILY_V4 4
#define LB_FAMILY_V6 6

/* struct lb_vip.flags */
#define LB_VIP_F_ADDR_ONLY 1 /* (addr, 0, proto): marks a VIP address for fragments */

/* struct lb_backend.flags */
#define LB_BE_F_VALID 1    /* configured (active or draining) */
#define LB_BE_F_DRAINING 2 /* out of the lookup table: no new flows */

/* Global counters (index of the lb stats array). */
#define LB_STAT_MALFORMED 0      /* nfp_parse refused the packet: dropped */
#define LB_STAT_FRAGMENT 1       /* a fragment to a VIP address: dropped */
#define LB_STAT_PASSED 2         /* not VIP traffic, not a reply: untouched */
#define LB_STAT_REWRITE_FAILED 3 /* a store or checksum helper failed: aborted */
#define LB_STAT_COUNT 4

struct lb_vip_key {
	__be32 addr[4]; /* IPv4 in addr[0], other words zero */
	__be16 port;    /* 0 only in an ADDR_ONLY marker */
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;    /* LB_FAMILY_V4 / LB_FAMILY_V6 */
};

struct lb_vip {
	__u32 index; /* 0..LB_MAX_VIPS-1: row of the per-VIP arrays */
	__u32 flags;
};

struct lb_backend {
	__be32 addr[4];
	__be16 port;
	__u8 family;
	__u8 flags; /* LB_BE_F_* (0: free id or removed backend) */
	__u32 vip;  /* index of the VIP it serves */
};

/* A flow as seen on the wire: client -> VIP for conns, backend -> client for rconns. */
struct lb_flow {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct lb_conn {
	__u32 backend;
	__u32 vip;
};

struct lb_rconn {
	__be32 vaddr[4]; /* the VIP the client talked to */
	__be16 vport;
	__u16 pad;
	__u32 backend;
	__u32 vip;
};

struct lb_vip_stats {
	__u64 packets; /* client -> VIP packets forwarded */
	__u64 bytes;
	__u64 new_flows;     /* flows given a backend from the lookup table */
	__u64 no_backend;    /* dropped: the table had no backend (all draining) */
	__u64 reply_packets; /* backend -> client packets translated back */
	__u64 reply_bytes;
};

struct lb_backend_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 reply_packets;
	__u64 reply_bytes;
};

/* One address and port rewrite, for NFP_NAME(rewrite): the packet's offsets and
 * protocols, the old and the new address and port (network order). */
struct lb_rewrite {
	__be32 old[4];
	__be32 addr[4];
	__u32 l3_off;
	__u32 l4_off;
	__be16 old_port;
	__be16 port;
	__u8 v4;       /* 1: IPv4, 0: IPv6 */
	__u8 l4_proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 is_src;   /* 1: the source (replies), 0: the destination */
	__u8 pad;
};

/*
 * The VIPs (and the ADDR_ONLY markers) of one generation: an open-addressing table in
 * an array, so that finding a packet's VIP is a few inlined array reads instead of a
 * hash-map lookup (a call, and on this kind of CPU an expensive return).  A key is at
 * slot lb_vip_slot(seed, key) or one of the LB_VIP_PROBES slots after it; an empty
 * slot (family 0) ends the search.  The control plane (lb_hash.place_vips) rebuilds a
 * generation's half whole, with a seed that puts every key within the probes, and
 * switches to it with one word (vip_gen: seed << 1 | generation).  A table nobody has
 * written is empty: no VIP.
 */
#define LB_VIP_SLOT_BITS 7
#define LB_VIP_SLOTS (1 << LB_VIP_SLOT_BITS) /* per generation: 2 * LB_MAX_VIPS keys */
#define LB_VIP_PROBES 4

struct lb_vip_slot {
	struct lb_vip_key key; /* family 0: an empty slot */
	struct lb_vip vip;
};

static __always_inline __u32 lb_vip_mix(__u32 h, __u32 w)
{
	h = (h ^ w) * 0x9E3779B1u;
	return h ^ (h >> 15);
}

/* The first slot of a key: its words (wire bytes read as little-endian u32s: addr[0..3],
 * port | proto << 16 | family << 24) chained through a multiply from the seed. */
static __always_inline __u32 lb_vip_slot(__u32 seed, const struct lb_vip_key *k)
{
	__u32 h = seed;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		h = lb_vip_mix(h, k->addr[i]);
	h = lb_vip_mix(h, (__u32)k->port | (__u32)k->proto << 16 | (__u32)k->family << 24);
	return (h * 0x85EBCA6Bu) >> (32 - LB_VIP_SLOT_BITS);
}

static __always_inline int lb_vip_key_eq(const struct lb_vip_key *a, const struct lb_vip_key *b)
{
	return a->addr[0] == b->addr[0] && a->port == b->port && a->proto == b->proto &&
	       a->family == b->family && a->addr[1] == b->addr[1] && a->addr[2] == b->addr[2] &&
	       a->addr[3] == b->addr[3];
}

/* Which addresses may be a backend's (a reply's source), so that other traffic skips
 * the rconns lookup (40-byte keys): one bit per hash of the address (lb_hint_bit; the
 * control plane's hint_bit computes the same), set before the backend is written and
 * not cleared while the node runs, so a bit is never missing -- a stale one costs the
 * lookup, never a verdict.  ready 0 (a map not yet written, e.g. one a newer program
 * found beside older maps): every packet takes the lookup. */
#define LB_HINT_WORDS 512 /* 32768 bits */

struct lb_hint {
	__u32 ready;
	__u32 pad;
	__u64 backend[LB_HINT_WORDS];
};

static __always_inline __u32 lb_hint_bit(const __be32 *a)
{
	return ((__u32)(a[0] ^ a[1] ^ a[2] ^ a[3]) * 0x9E3779B1u) >> 17;
}

static __always_inline int lb_hint_has(const __u64 *set, const __be32 *a)
{
	__u32 b = lb_hint_bit(a);

	return (set[(b >> 6) & (LB_HINT_WORDS - 1)] >> (b & 63)) & 1;
}

#endif /* NFP_LB_SHARED */

/* Seed of the flow hash (the control plane's model uses the same). */
NFP_CONST(__u32, hash_seed) = 0x6c62;

/* gen * LB_VIP_SLOTS + slot -> a VIP (addr, port, proto) and its index, an ADDR_ONLY
 * marker (port 0), or nothing; see struct lb_vip_slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * LB_VIP_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_vip_slot);
} NFP_NAME(vips) SEC(".maps");

/* The vips generation packets use, and its seed: seed << 1 | gen.  Written last. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(vip_gen) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_hint);
} NFP_NAME(hint) SEC(".maps");

/* VIP index -> its active table generation (0 or 1); written last on an update. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(active) SEC(".maps");

/* vip * 2 + gen -> that generation's table size (a prime <= LB_MAX_TABLE). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * LB_MAX_VIPS);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(table_size) SEC(".maps");

/* (vip * 2 + gen) * LB_MAX_TABLE + slot -> backend id (0: no backend). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * LB_MAX_VIPS * LB_MAX_TABLE);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(tables) SEC(".maps");

/* backend id -> where it is; kept while draining, cleared when removed. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend);
} NFP_NAME(backends) SEC(".maps");

/* client -> VIP flow -> its backend. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_CONNS);
	__type(key, struct lb_flow);
	__type(value, struct lb_conn);
} NFP_NAME(conns) SEC(".maps");

/* backend -> client flow -> the VIP to put back as the source. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LB_MAX_CONNS);
	__type(key, struct lb_flow);
	__type(value, struct lb_rconn);
} NFP_NAME(rconns) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct lb_vip_stats);
} NFP_NAME(vip_stats) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend_stats);
} NFP_NAME(backend_stats) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(stats) SEC(".maps");

/* ---- flow hash (nfpipe/catalog/lb_hash.py: flow_hash is its twin) ------------------------ */

static __always_inline __u32 NFP_NAME(rotl)(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* One 32-bit word into the state: the Murmur3 block step. */
static __always_inline __u32 NFP_NAME(mix)(__u32 h, __u32 w)
{
	w *= 0xcc9e2d51;
	w = NFP_NAME(rotl)(w, 15);
	w *= 0x1b873593;
	h ^= w;
	h = NFP_NAME(rotl)(h, 13);
	return h * 5 + 0xe6546b64;
}

/* The words are the flow's bytes read as little-endian u32s: saddr[0..3],
 * daddr[0..3], sport | dport << 16 (wire bytes), proto | family << 8. */
static __always_inline __u32 NFP_NAME(flow_hash)(const struct lb_flow *f)
{
	__u32 h = NFP_CFG(hash_seed);
	int i;

#pragma unroll
	for (i = 0; i < 4; i++)
		h = NFP_NAME(mix)(h, f->saddr[i]);
#pragma unroll
	for (i = 0; i < 4; i++)
		h = NFP_NAME(mix)(h, f->daddr[i]);
	h = NFP_NAME(mix)(h, (__u32)f->sport | (__u32)f->dport << 16);
	h = NFP_NAME(mix)(h, (__u32)f->proto | (__u32)f->family << 8);
	h ^= 40; /* bytes hashed */
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* The value unchanged, but unknown to the optimizer from here on. */
static __always_inline __u32 NFP_NAME(opaque)(__u32 v)
{
	asm volatile("" : "+r"(v));
	return v;
}

/* ---- rewriting ---------------------------------------------------------------------- */

/*
 * Replace the source or destination address (4 or 16 bytes, per family) and port
 * of the packet by rw->addr / rw->port, keeping the IPv4 header checksum and the
 * TCP/UDP checksum (whose pseudo-header holds the address) right.  Returns 0 or -1.
 *
 * A global function, verified once on its own with unknown offsets: inlined, it
 * was verified again for every distinct set of header offsets the parser had
 * found (IPv4 options, each IPv6 extension chain), which made the LB the most
 * expensive NF to verify and put two inlined LB instances past the verifier's
 * budget with clang 14.  Packet pointers of the caller are stale after it.
 */
__noinline int NFP_NAME(rewrite)(nfp_hook_ctx_t *hook, const struct lb_rewrite *rw)
{
	struct nfp_ctx c, *ctx = &c;
	__u32 l3, l4, csum_off, addr_off, port_off;
	int udp, i;

	if (!rw)
		return -1;
	c.hook = hook;
	nfp_ctx_reload(ctx);
	udp = rw->l4_proto == IPPROTO_UDP ? NFP_CSUM_UDP : 0;
	l3 = rw->l3_off;
	l4 = rw->l4_off;
	/* Bound the offsets for the verifier (nfp_ptr's mask alone leaves 0xffff,
	 * too far for a packet-pointer range); real packets are far below these. */
	if (l3 > LB_MAX_L3_OFF || l4 > LB_MAX_L4_OFF)
		return -1;
	l3 &= LB_MAX_L3_OFF;
	l4 &= LB_MAX_L4_OFF;
	csum_off = l4 + (rw->l4_proto == IPPROTO_TCP ? 16 : 6);
	port_off = l4 + (rw->is_src ? 0 : 2);
	if (rw->v4)
		addr_off = l3 + (rw->is_src ? 12 : 16);
	else
		addr_off = l3 + (rw->is_src ? 8 : 24);

	/*
	 * Each offset goes through NFP_NAME(opaque) so the compiler cannot derive
	 * one bounds check from another (the verifier tracks each packet pointer on
	 * its own and would reject the store whose check was folded away).  The
	 * checksum updates take the old values as arguments, so their order with
	 * the stores does not matter.
	 */
	if (rw->v4) {
		if (nfp_l3_csum_replace(ctx, NFP_NAME(opaque)(l3 + 10), rw->old[0], rw->addr[0], 4))
			return -1;
		if (nfp_store(ctx, NFP_NAME(opaque)(addr_off), rw->addr, 4))
			return -1;
	} else {
		if (nfp_store(ctx, NFP_NAME(opaque)(addr_off), rw->addr, 16))
			return -1;
	}
	if (nfp_store(ctx, NFP_NAME(opaque)(port_off), &rw->port, 2))
		return -1;
	if (rw->v4) {
		if (nfp_l4_csum_replace(ctx, NFP_NAME(opaque)(csum_off), rw->old[0], rw->addr[0],
		                        NFP_CSUM_PSEUDO | udp | 4))
			return -1;
	} else {
#pragma unroll
		for (i = 0; i < 4; i++)
			if (nfp_l4_csum_replace(ctx, NFP_NAME(opaque)(csum_off), rw->old[i],
			                        rw->addr[i], NFP_CSUM_PSEUDO | udp | 4))
				return -1;
	}
	if (nfp_l4_csum_replace(ctx, NFP_NAME(opaque)(csum_off), rw->old_port, rw->port, udp | 2))
		return -1;
	return 0;
}

#ifndef NFP_HOOK_TC
/*
 * XDP, IPv4 (the common case): NFP_NAME(rewrite)'s stores and checksum updates, in the
 * same order and so to the same bytes, inline.  A BPF-to-BPF call and its return cost
 * ~10 ns a packet where returns are mitigated (SRSO, retbleed).  The offsets are read
 * back from memory and masked, so the verifier goes on from one state whatever
 * headers the parse walked (which made the inlined general form too costly to verify):
 * the IPv4 header starts within LB_MAX_L3_OFF and ends within 0x7f.
 */
static __always_inline int NFP_NAME(rewrite4)(struct nfp_ctx *ctx, const struct nfp_pkt *p,
                                              int is_src, __be32 addr, __be16 port)
{
	__u32 l3 = *(volatile const __u16 *)&p->l3_off, l4 = *(volatile const __u16 *)&p->l4_off;
	int tcp = p->l4_proto == IPPROTO_TCP, udp = tcp ? 0 : NFP_CSUM_UDP;
	struct iphdr *ip;
	__be32 *ap, old;
	__be16 *pp, oldp;
	__u16 *check;
	__u8 *h;

	if (l3 > LB_MAX_L3_OFF || l4 > 0x7f)
		return -1;
	ip = ctx->data + (l3 & LB_MAX_L3_OFF);
	h = ctx->data + (l4 & 0x7f);
	if ((void *)(ip + 1) > ctx->data_end || (void *)(h + 8) > ctx->data_end)
		return -1;
	check = (__u16 *)(h + 6);
	if (tcp) {
		if ((void *)(h + 20) > ctx->data_end)
			return -1;
		check = (__u16 *)(h + 16);
	}
	ap = is_src ? &ip->saddr : &ip->daddr;
	pp = (__be16 *)(is_src ? h : h + 2);
	old = *ap;
	oldp = *pp;
	ip->check = nfp_csum_update(ip->check, old, addr, 4);
	*ap = addr;
	*pp = port;
	*check = nfp_l4_csum(nfp_l4_csum(*check, old, addr, NFP_CSUM_PSEUDO | udp | 4), oldp, port,
	                     udp | 2);
	return 0;
}
#endif

/* NFP_NAME(rewrite) of the parsed packet; the context's packet pointers are reloaded. */
static __always_inline int NFP_NAME(rewrite_pkt)(struct nfp_ctx *ctx, const struct nfp_pkt *p,
                                                 int is_src, const __be32 *old, const __be32 *addr,
                                                 __be16 old_port, __be16 port)
{
	struct lb_rewrite rw = {};
	int err;

#ifndef NFP_HOOK_TC
	if (p->l3_proto == ETH_P_IP)
		return NFP_NAME(rewrite4)(ctx, p, is_src, addr[0], port);
#endif
	__builtin_memcpy(rw.old, old, 16);
	__builtin_memcpy(rw.addr, addr, 16);
	rw.l3_off = p->l3_off;
	rw.l4_off = p->l4_off;
	rw.old_port = old_port;
	rw.port = port;
	rw.v4 = p->l3_proto == ETH_P_IP;
	rw.l4_proto = p->l4_proto;
	rw.is_src = is_src;
	err = NFP_NAME(rewrite)(ctx->hook, &rw);
	nfp_ctx_reload(ctx);
	return err;
}

/* ---- client -> VIP ------------------------------------------------------------------------ */

static __always_inline int NFP_NAME(forward)(struct nfp_ctx *ctx, struct nfp_meta *meta, __u32 vip,
                                             __u32 len)
{
	struct nfp_pkt *p = &meta->pkt;
	struct lb_flow flow = {};
	struct lb_conn *c;
	struct lb_backend *be = 0, target;
	struct lb_vip_stats *vs;
	struct lb_backend_stats *bs;
	__u32 id = 0, *gen, *size, *slot_id, key;
	int is_new = 0;

	__builtin_memcpy(flow.saddr, p->saddr, 16);
	__builtin_memcpy(flow.daddr, p->daddr, 16);
	flow.sport = p->sport;
	flow.dport = p->dport;
	flow.proto = p->l4_proto;
	flow.family = p->l3_proto == ETH_P_IP ? LB_FAMILY_V4 : LB_FAMILY_V6;

	vs = bpf_map_lookup_elem(&NFP_NAME(vip_stats), &vip);

	/* An established flow keeps its backend while that backend is configured
	 * for this VIP (active or draining). */
	c = bpf_map_lookup_elem(&NFP_NAME(conns), &flow);
	if (c && c->vip == vip) {
		id = c->backend;
		be = bpf_map_lookup_elem(&NFP_NAME(backends), &id);
		if (be && (!(be->flags & LB_BE_F_VALID) || be->vip != vip))
			be = 0;
	}
	if (!be) {
		/* A new flow (or one whose backend was removed): the lookup table. */
		gen = bpf_map_lookup_elem(&NFP_NAME(active), &vip);
		if (!gen)
			return NFP_ABORTED;
		key = vip * 2 + (*gen & 1);
		size = bpf_map_lookup_elem(&NFP_NAME(table_size), &key);
		id = 0;
		if (size && *size && *size <= LB_MAX_TABLE) {
			key = key * LB_MAX_TABLE + NFP_NAME(flow_hash)(&flow) % *size;
			slot_id = bpf_map_lookup_elem(&NFP_NAME(tables), &key);
			if (slot_id)
				id = *slot_id;
		}
		be = id ? bpf_map_lookup_elem(&NFP_NAME(backends), &id) : 0;
		if (!be || !(be->flags & LB_BE_F_VALID) || be->vip != vip) {
			if (vs)
				vs->no_backend++;
			return NFP_DROP;
		}
		is_new = 1;
	}
	target = *be;
	meta->backend = id;

	if (is_new) {
		struct lb_conn conn = {};
		struct lb_flow rflow = {};
		struct lb_rconn r = {};

		conn.backend = id;
		conn.vip = vip;
		bpf_map_update_elem(&NFP_NAME(conns), &flow, &conn, BPF_ANY);
		__builtin_memcpy(rflow.saddr, target.addr, 16);
		__builtin_memcpy(rflow.daddr, flow.saddr, 16);
		rflow.sport = target.port;
		rflow.dport = flow.sport;
		rflow.proto = flow.proto;
		rflow.family = flow.family;
		__builtin_memcpy(r.vaddr, flow.daddr, 16);
		r.vport = flow.dport;
		r.backend = id;
		r.vip = vip;
		bpf_map_update_elem(&NFP_NAME(rconns), &rflow, &r, BPF_ANY);
	}

	if (NFP_NAME(rewrite_pkt)(ctx, p, 0, flow.daddr, target.addr, flow.dport, target.port)) {
		nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_REWRITE_FAILED);
		return NFP_ABORTED;
	}
	/* The parse stays valid (no header moved) but now describes the new packet. */
	__builtin_memcpy(p->daddr, target.addr, 16);
	p->dport = target.port;

	if (vs) {
		vs->packets++;
		vs->bytes += len;
		vs->new_flows += is_new;
	}
	bs = bpf_map_lookup_elem(&NFP_NAME(backend_stats), &id);
	if (bs) {
		bs->packets++;
		bs->bytes += len;
		bs->new_flows += is_new;
	}
	return NFP_PORT(0);
}

/* ---- backend -> client ------------------------------------------------------------------- */

static __always_inline int NFP_NAME(reply)(struct nfp_ctx *ctx, struct nfp_meta *meta, __u32 len)
{
	struct nfp_pkt *p = &meta->pkt;
	struct lb_flow flow = {};
	struct lb_rconn *rp, r;
	struct lb_vip_stats *vs;
	struct lb_backend_stats *bs;

	__builtin_memcpy(flow.saddr, p->saddr, 16);
	__builtin_memcpy(flow.daddr, p->daddr, 16);
	flow.sport = p->sport;
	flow.dport = p->dport;
	flow.proto = p->l4_proto;
	flow.family = p->l3_proto == ETH_P_IP ? LB_FAMILY_V4 : LB_FAMILY_V6;

	rp = bpf_map_lookup_elem(&NFP_NAME(rconns), &flow);
	if (!rp) {
		nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_PASSED);
		return NFP_PORT(0);
	}
	r = *rp;
	if (NFP_NAME(rewrite_pkt)(ctx, p, 1, flow.saddr, r.vaddr, flow.sport, r.vport)) {
		nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_REWRITE_FAILED);
		return NFP_ABORTED;
	}
	__builtin_memcpy(p->saddr, r.vaddr, 16);
	p->sport = r.vport;
	meta->backend = r.backend;

	vs = bpf_map_lookup_elem(&NFP_NAME(vip_stats), &r.vip);
	if (vs) {
		vs->reply_packets++;
		vs->reply_bytes += len;
	}
	bs = bpf_map_lookup_elem(&NFP_NAME(backend_stats), &r.backend);
	if (bs) {
		bs->reply_packets++;
		bs->reply_bytes += len;
	}
	return NFP_PORT(0);
}

/* ---- the NF --------------------------------------------------------------------------------- */

/* The VIP (or ADDR_ONLY marker) of key *k in the active generation, or 0. */
static __always_inline const struct lb_vip *NFP_NAME(find_vip)(const struct lb_vip_key *k)
{
	const struct lb_vip_slot *e;
	__u32 zero = 0, *g, word, base, slot, key;
	int i;

	g = bpf_map_lookup_elem(&NFP_NAME(vip_gen), &zero);
	word = g ? *g : 0;
	base = (word & 1) * LB_VIP_SLOTS;
	slot = lb_vip_slot(word >> 1, k);
#pragma unroll
	for (i = 0; i < LB_VIP_PROBES; i++) {
		key = base + ((slot + i) & (LB_VIP_SLOTS - 1));
		e = bpf_map_lookup_elem(&NFP_NAME(vips), &key);
		if (!e || !e->key.family)
			return 0;
		if (lb_vip_key_eq(&e->key, k))
			return &e->vip;
	}
	return 0;
}

/* The VIP (port 0: the ADDR_ONLY marker) of the packet's destination, or 0.  The key
 * lives only in here, so that its stack is free for the forward path's. */
static __always_inline const struct lb_vip *NFP_NAME(vip_of)(const struct nfp_pkt *p, __be16 port)
{
	struct lb_vip_key vk = {};

	__builtin_memcpy(vk.addr, p->daddr, 16);
	vk.port = port;
	vk.proto = p->l4_proto;
	vk.family = p->l3_proto == ETH_P_IP ? LB_FAMILY_V4 : LB_FAMILY_V6;
	return NFP_NAME(find_vip)(&vk);
}

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	struct nfp_pkt *p = &meta->pkt;
	const struct lb_vip *v;
	struct lb_hint *h;
	__u32 len = nfp_pkt_len(ctx), zero = 0;

	if (nfp_parse(ctx, meta) < 0) {
		/* Cannot tell whether it is for a VIP, cannot translate it: drop. */
		nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_MALFORMED);
		return NFP_DROP;
	}
	if ((p->l3_proto != ETH_P_IP && p->l3_proto != ETH_P_IPV6) ||
	    (p->l4_proto != IPPROTO_TCP && p->l4_proto != IPPROTO_UDP)) {
		nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_PASSED);
		return NFP_PORT(0);
	}
	if (p->flags & NFP_F_FRAG) {
		/* Later fragments carry no ports: no backend can be chosen for them, and
		 * forwarding only the first would be worse than nothing. */
		if (NFP_NAME(vip_of)(p, 0)) {
			nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_FRAGMENT);
			return NFP_DROP;
		}
		nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_PASSED);
		return NFP_PORT(0);
	}
	v = NFP_NAME(vip_of)(p, p->dport);
	if (v && !(v->flags & LB_VIP_F_ADDR_ONLY))
		return NFP_NAME(forward)(ctx, meta, v->index, len);
	h = bpf_map_lookup_elem(&NFP_NAME(hint), &zero);
	if (h && h->ready && !lb_hint_has(h->backend, p->saddr)) {
		nfp_percpu_inc(&NFP_NAME(stats), LB_STAT_PASSED);
		return NFP_PORT(0);
	}
	return NFP_NAME(reply)(ctx, meta, len);
}
