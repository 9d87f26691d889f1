// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * filter: an ordered, first-match packet filter whose per-packet cost does not
 * depend on the number of rules (Recursive Flow Classification style).
 *
 * The control plane (nfpipe/catalog/filter.py, filter_rfc.py) compiles the rules into tables:
 *
 *   phase 0   one lookup per field gives an equivalence-class id
 *             src/dst address: IPv4 by a 256-ary table in `dense` (a byte
 *             a level, at most 4 reads; an LPM trie where the table does
 *             not fit), IPv6 by an LPM trie; protocol: array
 *             (256 = not IP, 257 + p = protocol p behind an AH header),
 *             src/dst port: array (65536 = "no ports"), TCP flags: array
 *             (256 = "not TCP"), outer VLAN id: array (4096 = untagged)
 *   cross     the fields with few classes between them crossed in one table
 *             of `dense` (the index: each field's class times its stride,
 *             summed): the class of all of them in one read
 *   phase 1+  up to six pairwise combinations of what is left, each a table
 *             of `dense` where it fits, else through one hash map
 *             (gen, step, class_a, class_b) -> class; the plan (which classes
 *             step i combines, which fields are crossed) is chosen by the
 *             control plane; the last step (or the cross table, when it holds
 *             every field) yields the index of the first matching rule.  A
 *             missing entry means "no rule matches": the default action.
 *
 * Small rule sets (at most NFP_FILTER_LIN_MAX entries once each rule's port and
 * VLAN ranges are expanded) take a second classifier, chosen per generation by
 * the control plane: a first-match scan over `lin`, an array of entries holding
 * only what each rule checks (`need`), compared field by field.  The fields are
 * computed once per packet; a field no entry checks costs nothing but its
 * computation, and no lookup at all is made for an address.  Built with
 * NFP_FILTER_COMPILED (classifier auto or compiled, when the rules fit), the same
 * entries are also straight-line checks against constants in the program itself
 * (NFP_NAME(compiled)), taken while the generation holds exactly those entries:
 * its compiled_id equals the build's NFP_FILTER_COMPILED_ID.  A runtime change to
 * other rules writes `lin` and another id, and the scan takes over; `lin` is
 * always written (the offload build has the scan only).
 *
 * The offload build (NFP_OFFLOAD) has the linear classifier only, its geometry
 * (NFP_FILTER_LIN_MAX, NFP_FILTER_MAX_RULES) sized to the device.
 *
 * Every table exists twice (generation 0 and 1: the generation is part of
 * every key or index).  `active` names the generation a packet uses; it is
 * read once, at the start, so a packet sees one whole rule set even while the
 * control plane rewrites the other generation and flips `active`.
 */
#include <nfpipe/nf.h>

#ifndef NFP_FILTER_TYPES
#define NFP_FILTER_TYPES

/* The geometry may be set before this file: the offload build sizes it to the
 * device (nfpipe/catalog/filter.py reads it back from the maps' sizes). */
#ifndef NFP_FILTER_MAX_RULES
#define NFP_FILTER_MAX_RULES 16384 /* per generation; a power of two */
#endif
#define NFP_FILTER_FIELDS 7 /* sa, da, proto, sport, dport, flags, vlan */
#define NFP_FILTER_STEPS (NFP_FILTER_FIELDS - 1)
#define NFP_FILTER_SLOTS 16   /* fields + combination results, rounded up */
#define NFP_FILTER_CROSS 15   /* the slot of the cross table's class */
#define NFP_FILTER_NPROTO 513 /* 0..255, 256 = not IP, 257 + p: p after AH */
#define NFP_FILTER_VIA_AH 257
#define NFP_FILTER_NPORT 65537           /* 0..65535, 65536 = no ports */
#define NFP_FILTER_NFLAGS 257            /* 0..255, 256 = not TCP */
#define NFP_FILTER_NVLAN 4097            /* 0..4095, 4096 = untagged */
#define NFP_FILTER_COMBINE_MAX (1 << 21) /* both generations together */
#define NFP_FILTER_DENSE_MAX (1 << 21)   /* cells, both generations: 8 MB */
#define NFP_FILTER_DENSE_CHUNK 64        /* cells per element of `dense` */
#define NFP_FILTER_NO_MATCH 0xffffffff   /* a dense step's cell: no rule (the default) */
/* An IPv4 address table (nfp_filter_gen.dir_src/dir_dst): none, the LPM trie
 * instead; and in a cell of the table, "the next byte's 256 cells are here". */
#define NFP_FILTER_DIR_NONE 0xffffffff
#define NFP_FILTER_DIR_NEXT 0x80000000
/* Address fields of one class in a generation (nfp_filter_gen.fixed): no lookup. */
#define NFP_FILTER_FIXED_SRC 0x1
#define NFP_FILTER_FIXED_DST 0x2
#ifndef NFP_FILTER_LIN_MAX
#define NFP_FILTER_LIN_MAX 64 /* linear entries per generation */
#endif

/* What a linear entry checks (nfp_filter_lin.need). */
#define NFP_FILTER_N_PROTO 0x01
#define NFP_FILTER_N_SPORT 0x02
#define NFP_FILTER_N_DPORT 0x04
#define NFP_FILTER_N_FLAGS 0x08
#define NFP_FILTER_N_VLAN 0x10
#define NFP_FILTER_N_SRC4 0x20
#define NFP_FILTER_N_DST4 0x40
#define NFP_FILTER_N_SRC6 0x80
#define NFP_FILTER_N_DST6 0x100

/* Counters in `stats` (per CPU). */
#define NFP_FILTER_ST_DEFAULT 0    /* no rule matched: default action */
#define NFP_FILTER_ST_MALFORMED 1  /* the malformed policy decided */
#define NFP_FILTER_ST_FRAGMENT 2   /* the fragment policy decided (non-first fragment) */
#define NFP_FILTER_ST_NOGEN 3      /* tables missing (not populated): aborted */
#define NFP_FILTER_ST_INCOMPLETE 4 /* not parsed as far as L4 (NFP_F_INCOMPLETE): dropped */
#define NFP_FILTER_NSTATS 5

#define NFP_FILTER_ROW_DEFAULT 0xffffffff /* combine key b: the row default of class a */
#define NFP_FILTER_FRAG_L3 0x7fffffff     /* fragment policy: evaluate the rules */

struct nfp_filter_lpm4 {
	__u32 prefixlen; /* 8 (the generation byte) + the prefix length */
	__u8 gen;
	__u8 addr[4];
	__u8 pad[3];
};

struct nfp_filter_lpm6 {
	__u32 prefixlen;
	__u8 gen;
	__u8 addr[16];
	__u8 pad[3];
};

/* NFP_FILTER_DENSE_CHUNK cells of `dense`: an array's element takes 8-byte-rounded
 * room, and the control plane writes a million cells in a few syscalls' worth of
 * elements instead of one element per cell. */
struct nfp_filter_cells {
	__u32 c[NFP_FILTER_DENSE_CHUNK];
};

struct nfp_filter_ckey {
	__u32 gen_step; /* gen << 8 | step */
	__u32 a;
	__u32 b;
};

/* Per generation: policies and the combination plan. */
struct nfp_filter_gen {
	__s32 default_action;  /* port >= 0 or an NFP_* verdict */
	__s32 fragment_action; /* NFP_FILTER_FRAG_L3, a port or a verdict */
	__s32 malformed_action;
	__u32 noaddr_src; /* address classes of a packet that is not IP */
	__u32 noaddr_dst;
	__u8 left[8];       /* step i combines slots left[i], right[i] ... */
	__u8 right[8];      /* ... into slot NFP_FILTER_FIELDS + i */
	__u32 default_rule; /* a rule that matches everything (its hits count
					     * the default), or NFP_FILTER_MAX_RULES: none */
	__u32 ready;        /* 1 once the generation is written */
	__u32 linear;       /* 1: classify by the `lin` scan, 0: by the tables */
	__u32 nlin;         /* entries of `lin` in this generation */
	__u32 fixed;        /* NFP_FILTER_FIXED_*: that address field is class 0 */
	/* Step i as a dense table: the class of (a, b) at dense_base[i] + a * stride[i] + b
	 * of `dense` (a < rows[i], b < stride[i]; the base is in the generation's half);
	 * stride 0: the step is in `combine`. */
	__u32 dense_base[NFP_FILTER_STEPS];
	__u32 dense_rows[NFP_FILTER_STEPS];
	__u32 dense_stride[NFP_FILTER_STEPS];
	/* The IPv4 source and destination address tables in `dense` (the cell of their
	 * root), or NFP_FILTER_DIR_NONE: that field's IPv4 addresses are in the trie.
	 * Cell base + the first byte holds the class, or NFP_FILTER_DIR_NEXT | o: the
	 * next byte indexes the 256 cells at base + o, and so on, four bytes at most. */
	__u32 dir_src;
	__u32 dir_dst;
	/* The cross table: the fields with a nonzero stride, crossed in one table of
	 * `dense` of cross_cells cells from cell cross_base; the class of the packet's
	 * fields is at cross_base + the sum of each field's class times its stride (0
	 * cells: no cross table).  Then nsteps combination steps; the first matching
	 * rule is in slot `result` (the last step's, or the cross table's). */
	__u32 cross_base;
	__u32 cross_cells;
	__u32 cross_stride[NFP_FILTER_FIELDS];
	__u32 nsteps;
	__u32 result;
	/* The fingerprint of this generation's linear entries (nonzero), or 0: the tables.
	 * Equal to NFP_FILTER_COMPILED_ID, the entries are the ones built into the program. */
	__u64 compiled_id;
};

/* One entry of the linear classifier: a rule, or one combination of its port and
 * VLAN ranges.  Values are compared as the tables index them: proto 0..512 (256
 * not IP, 257 + p behind AH), ports 0..65535 or 65536 (none), flags 0..255 or 256
 * (not TCP), VLAN 0..4095 or 4096 (untagged). */
struct nfp_filter_lin {
	__u32 need; /* NFP_FILTER_N_* */
	__u32 rule; /* the rule's index: its action and its hit counter */
	__s32 action;
	__u16 proto[4]; /* two inclusive ranges; every range has lo <= hi */
	__u32 sport[2]; /* inclusive range */
	__u32 dport[2];
	__u16 vlan[2];
	__u8 flags_mask;
	__u8 flags_want;
	__u8 pad[2];
	__be32 src[4]; /* network (masked) and mask; IPv4 in word 0 */
	__be32 src_mask[4];
	__be32 dst[4];
	__be32 dst_mask[4];
};

/* A packet's value of each field but the addresses, as both classifiers index and
 * compare them (see nfp_filter_lin). */
struct nfp_filter_keys {
	__u32 proto;
	__u32 sport;
	__u32 dport;
	__u32 flags;
	__u32 vlan;
};

#endif /* NFP_FILTER_TYPES */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(active) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct nfp_filter_gen);
} NFP_NAME(gens) SEC(".maps");

/* Linear entry i of generation g at g * NFP_FILTER_LIN_MAX + i. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_LIN_MAX);
	__type(key, __u32);
	__type(value, struct nfp_filter_lin);
} NFP_NAME(lin) SEC(".maps");

#ifndef NFP_OFFLOAD
/* The RFC tables.  The offload build has only the linear classifier: an offload
 * device holds neither LPM tries nor tables of this size, and the control plane
 * refuses a rule set that the linear entries cannot hold.  The arrays are
 * BPF_F_MMAPABLE: the control plane writes a generation's tables (megabytes of
 * `dense`) as one copy into their memory, not as thousands of batched updates. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * (NFP_FILTER_MAX_RULES + 1));
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nfp_filter_lpm4);
	__type(value, __u32);
} NFP_NAME(src4) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * (NFP_FILTER_MAX_RULES + 1));
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nfp_filter_lpm4);
	__type(value, __u32);
} NFP_NAME(dst4) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * (NFP_FILTER_MAX_RULES + 1));
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nfp_filter_lpm6);
	__type(value, __u32);
} NFP_NAME(src6) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 2 * (NFP_FILTER_MAX_RULES + 1));
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nfp_filter_lpm6);
	__type(value, __u32);
} NFP_NAME(dst6) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_NPROTO);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(proto) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_NPORT);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(sport) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_NPORT);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(dport) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_NFLAGS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(flags) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_NVLAN);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} NFP_NAME(vlan) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NFP_FILTER_COMBINE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct nfp_filter_ckey);
	__type(value, __u32);
} NFP_NAME(combine) SEC(".maps");

/* Combination steps small enough to be tables, generation g in the g-th half (the
 * control plane lays them out and sizes the halves from max_entries).  One array
 * cell per pair instead of a hash lookup (and a second one for the row default
 * after a miss). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, NFP_FILTER_DENSE_MAX / NFP_FILTER_DENSE_CHUNK);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct nfp_filter_cells);
} NFP_NAME(dense) SEC(".maps");

/* Action of rule i of generation g at g * NFP_FILTER_MAX_RULES + i. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_MAX_RULES);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __s32);
} NFP_NAME(actions) SEC(".maps");

#endif /* !NFP_OFFLOAD */

/* Packets that matched rule i of generation g (same index as actions). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2 * NFP_FILTER_MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(hits) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NFP_FILTER_NSTATS);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(stats) SEC(".maps");

#ifndef NFP_OFFLOAD
/* One phase-0 array lookup: the class of value `v` (already bounded) in generation `gen`. */
static __always_inline int NFP_NAME(field)(void *map, __u32 gen, __u32 n, __u32 v, __u32 *out)
{
	__u32 idx = gen * n + v;
	__u32 *c = bpf_map_lookup_elem(map, &idx);

	if (!c)
		return -1;
	*out = *c;
	return 0;
}

/* An IPv4 address's class from the address table at cell `base` of `dense`. */
static __always_inline int NFP_NAME(dir4)(__u32 base, const __be32 *addr, __u32 *out)
{
	__u32 a = bpf_ntohl(*addr), idx = base + (a >> 24), key, c;
	struct nfp_filter_cells *cells;
	int level;

#pragma unroll
	for (level = 0; level < 4; level++) {
		key = idx / NFP_FILTER_DENSE_CHUNK;
		cells = bpf_map_lookup_elem(&NFP_NAME(dense), &key);
		if (!cells)
			return -1;
		c = cells->c[idx & (NFP_FILTER_DENSE_CHUNK - 1)];
		if (!(c & NFP_FILTER_DIR_NEXT)) {
			*out = c;
			return 0;
		}
		if (level == 3)
			break; /* a pointer past the last byte: not the control plane's */
		idx = base + (c & ~NFP_FILTER_DIR_NEXT) + ((a >> (16 - 8 * level)) & 0xff);
	}
	return -1;
}

static __always_inline int NFP_NAME(addr)(void *trie4, void *trie6, struct nfp_pkt *p,
                                          const __be32 *addr, __u32 gen, __u32 dir, __u32 noaddr,
                                          __u32 *out)
{
	__u32 *c;

	if (p->l3_proto == ETH_P_IP) {
		struct nfp_filter_lpm4 k = {};

		if (dir != NFP_FILTER_DIR_NONE)
			return NFP_NAME(dir4)(dir, addr, out);
		k.prefixlen = 8 + 32;
		k.gen = gen;
		__builtin_memcpy(k.addr, addr, 4);
		c = bpf_map_lookup_elem(trie4, &k);
	} else if (p->l3_proto == ETH_P_IPV6) {
		struct nfp_filter_lpm6 k = {};

		k.prefixlen = 8 + 128;
		k.gen = gen;
		__builtin_memcpy(k.addr, addr, 16);
		c = bpf_map_lookup_elem(trie6, &k);
	} else {
		*out = noaddr;
		return 0;
	}
	if (!c)
		return -1;
	*out = *c;
	return 0;
}
#endif

static __always_inline int NFP_NAME(default)(__u32 gen, const struct nfp_filter_gen *g)
{
	if (g->default_rule < NFP_FILTER_MAX_RULES)
		nfp_percpu_inc(&NFP_NAME(hits),
		               gen * NFP_FILTER_MAX_RULES +
		                       (g->default_rule & (NFP_FILTER_MAX_RULES - 1)));
	else
		nfp_percpu_inc(&NFP_NAME(stats), NFP_FILTER_ST_DEFAULT);
	return g->default_action;
}

/* The tables are missing or not what the control plane writes: count it, abort. */
static __always_inline int NFP_NAME(nogen)(void)
{
	nfp_percpu_inc(&NFP_NAME(stats), NFP_FILTER_ST_NOGEN);
	return NFP_ABORTED;
}

#ifndef NFP_FILTER_HELPERS
#define NFP_FILTER_HELPERS
/* 1 if x != 0, else 0 (x < 2^63), without a branch: the verifier keeps one state
 * for both outcomes where a comparison would fork it in two, and a fork made
 * before the linear scan is walked again through each of its iterations. */
static __always_inline __u64 nfp_filter_nonzero(__u64 x)
{
	asm volatile("" : "+r"(x)); /* or the compiler turns it back into a compare */
	return (0 - x) >> 63;
}

/* A packet's values for the rules' fields, with the out-of-range value of each that
 * the packet does not have (proto 256: not IP; port 65536: not TCP/UDP; flags
 * 256: not TCP; VLAN 4096: untagged). */
static __always_inline void nfp_filter_keys(const struct nfp_pkt *p, struct nfp_filter_keys *k)
{
	int ip = p->l3_proto == ETH_P_IP || p->l3_proto == ETH_P_IPV6;
	int has_ports = (p->flags & NFP_F_L4) &&
	                (p->l4_proto == IPPROTO_TCP || p->l4_proto == IPPROTO_UDP);

	if (ip)
		k->proto = (p->flags & NFP_F_AH) ? NFP_FILTER_VIA_AH + p->l4_proto : p->l4_proto;
	else
		k->proto = 256;
	k->sport = has_ports ? bpf_ntohs(p->sport) : 65536;
	k->dport = has_ports ? bpf_ntohs(p->dport) : 65536;
	k->flags = ((p->flags & NFP_F_L4) && p->l4_proto == IPPROTO_TCP) ? p->tcp_flags : 256;
	k->vlan = p->vlan_depth ? (p->vlan[0] & 0x0fff) : 4096;
}

/* The checks of a linear entry this packet cannot pass, as NFP_FILTER_N_* bits: an
 * address of a family it does not have, TCP flags when it is not TCP (flags 256). */
static __always_inline __u32 nfp_filter_cannot(const struct nfp_pkt *p, __u32 flags)
{
	return nfp_filter_nonzero(p->l3_proto ^ ETH_P_IP) *
	               (NFP_FILTER_N_SRC4 | NFP_FILTER_N_DST4) |
	       nfp_filter_nonzero(p->l3_proto ^ ETH_P_IPV6) *
	               (NFP_FILTER_N_SRC6 | NFP_FILTER_N_DST6) |
	       nfp_filter_nonzero(flags >> 8) * NFP_FILTER_N_FLAGS; /* 256: not TCP */
}

/* lo <= v <= hi, for lo <= hi (as every range of an entry is), as one compare of two
 * differences, which leaves v's bounds as they were. */
#define nfp_filter_in(v, lo, hi) ((__u32)((v) - (lo)) <= (__u32)((hi) - (lo)))

static __always_inline int nfp_filter_in6(const __be32 *a, const __be32 *net, const __be32 *mask)
{
	return ((a[0] & mask[0]) ^ net[0]) == 0 && ((a[1] & mask[1]) ^ net[1]) == 0 &&
	       ((a[2] & mask[2]) ^ net[2]) == 0 && ((a[3] & mask[3]) ^ net[3]) == 0;
}
#endif

/* The linear classifier: the first entry whose every check holds. */
static __always_inline int NFP_NAME(linear)(const struct nfp_pkt *p,
                                            const struct nfp_filter_keys *k, __u32 gen,
                                            const struct nfp_filter_gen *g)
{
	__u32 i, idx, n = g->nlin, need;
	__u32 pv = k->proto, sp = k->sport, dp = k->dport, fl = k->flags, vl = k->vlan;
	__u32 cannot = nfp_filter_cannot(p, fl);
	const struct nfp_filter_lin *e;

	for (i = 0; i < NFP_FILTER_LIN_MAX; i++) {
		if (i >= n)
			break;
		idx = gen * NFP_FILTER_LIN_MAX + i;
		e = bpf_map_lookup_elem(&NFP_NAME(lin), &idx);
		if (!e)
			break;
		need = e->need;
		if (need & cannot)
			continue;
		if ((need & NFP_FILTER_N_PROTO) && !nfp_filter_in(pv, e->proto[0], e->proto[1]) &&
		    !nfp_filter_in(pv, e->proto[2], e->proto[3]))
			continue;
		if ((need & NFP_FILTER_N_DPORT) && !nfp_filter_in(dp, e->dport[0], e->dport[1]))
			continue;
		if ((need & NFP_FILTER_N_SPORT) && !nfp_filter_in(sp, e->sport[0], e->sport[1]))
			continue;
		if ((need & NFP_FILTER_N_FLAGS) && (fl & e->flags_mask) != e->flags_want)
			continue;
		if ((need & NFP_FILTER_N_VLAN) && !nfp_filter_in(vl, e->vlan[0], e->vlan[1]))
			continue;
		if ((need & NFP_FILTER_N_SRC4) && ((p->saddr[0] & e->src_mask[0]) ^ e->src[0]))
			continue;
		if ((need & NFP_FILTER_N_DST4) && ((p->daddr[0] & e->dst_mask[0]) ^ e->dst[0]))
			continue;
		if ((need & NFP_FILTER_N_SRC6) && !nfp_filter_in6(p->saddr, e->src, e->src_mask))
			continue;
		if ((need & NFP_FILTER_N_DST6) && !nfp_filter_in6(p->daddr, e->dst, e->dst_mask))
			continue;
		nfp_percpu_inc(&NFP_NAME(hits),
		               gen * NFP_FILTER_MAX_RULES + (e->rule & (NFP_FILTER_MAX_RULES - 1)));
		return e->action;
	}
	return NFP_NAME(default)(gen, g);
}

#if defined(NFP_FILTER_COMPILED) && !defined(NFP_OFFLOAD)
/* The compiled classifier (nfpipe/catalog/filter_compiled.py): the linear entries
 * the program was built with as straight-line checks against constants, generated
 * into the define NFP_FILTER_COMPILED, which uses the locals below.  No `lin`
 * lookup, no `need` test per field: each check names only what its rule has.  The
 * offload build keeps the `lin` scan (the control plane writes `lin` for every
 * linear generation), so an offloaded node classifies the same. */
static __always_inline int NFP_NAME(compiled)(const struct nfp_pkt *p,
                                              const struct nfp_filter_keys *k, __u32 gen,
                                              const struct nfp_filter_gen *g)
{
	__u32 pv = k->proto, sp = k->sport, dp = k->dport, fl = k->flags, vl = k->vlan;
	__u32 cannot = nfp_filter_cannot(p, fl);
	__u32 base = gen * NFP_FILTER_MAX_RULES;

	/* a rule set need not name every field */
	(void)pv, (void)sp, (void)dp, (void)vl, (void)cannot, (void)base;
	NFP_FILTER_COMPILED
	return NFP_NAME(default)(gen, g);
}
#endif

#ifndef NFP_OFFLOAD
/* The RFC tables: phase 0, then the combination steps (in a function of its own, so
 * that a packet the linear or compiled classifier decides sets up none of this). */
static __always_inline int NFP_NAME(tables)(struct nfp_pkt *p, const struct nfp_filter_keys *keys,
                                            __u32 gen, const struct nfp_filter_gen *g)
{
	__u32 cls[NFP_FILTER_SLOTS] = {};
	__u32 rule;
	__s32 *act;
	int i;

	/* Phase 0.  An address field no rule tells apart is not looked up (its one class
	 * is 0): an LPM lookup is the dearest of the field lookups. */
	if (!(g->fixed & NFP_FILTER_FIXED_SRC) &&
	    NFP_NAME(addr)(&NFP_NAME(src4), &NFP_NAME(src6), p, p->saddr, gen, g->dir_src,
	                   g->noaddr_src, &cls[0]))
		goto nogen;
	if (!(g->fixed & NFP_FILTER_FIXED_DST) &&
	    NFP_NAME(addr)(&NFP_NAME(dst4), &NFP_NAME(dst6), p, p->daddr, gen, g->dir_dst,
	                   g->noaddr_dst, &cls[1]))
		goto nogen;
	if (NFP_NAME(field)(&NFP_NAME(proto), gen, NFP_FILTER_NPROTO, keys->proto, &cls[2]) ||
	    NFP_NAME(field)(&NFP_NAME(sport), gen, NFP_FILTER_NPORT, keys->sport, &cls[3]) ||
	    NFP_NAME(field)(&NFP_NAME(dport), gen, NFP_FILTER_NPORT, keys->dport, &cls[4]) ||
	    NFP_NAME(field)(&NFP_NAME(flags), gen, NFP_FILTER_NFLAGS, keys->flags, &cls[5]) ||
	    NFP_NAME(field)(&NFP_NAME(vlan), gen, NFP_FILTER_NVLAN, keys->vlan, &cls[6]))
		goto nogen;

	/* The fields the control plane crossed: one read of their cross table. */
	if (g->cross_cells) {
		__u32 idx = 0, key;
		struct nfp_filter_cells *cells;

#pragma unroll
		for (i = 0; i < NFP_FILTER_FIELDS; i++)
			idx += cls[i] * g->cross_stride[i];
		if (idx >= g->cross_cells)
			goto nogen; /* a class past its count: not the control plane's */
		idx += g->cross_base;
		key = idx / NFP_FILTER_DENSE_CHUNK;
		cells = bpf_map_lookup_elem(&NFP_NAME(dense), &key);
		if (!cells)
			goto nogen;
		idx = cells->c[idx & (NFP_FILTER_DENSE_CHUNK - 1)];
		if (idx == NFP_FILTER_NO_MATCH)
			return NFP_NAME(default)(gen, g);
		cls[NFP_FILTER_CROSS] = idx;
	}

	/* Then combine two classes at a time, in the generation's plan order. */
#pragma unroll
	for (i = 0; i < NFP_FILTER_STEPS; i++) {
		struct nfp_filter_ckey k;
		__u32 *c, stride = g->dense_stride[i], idx;
		struct nfp_filter_cells *cells;

		if (i >= g->nsteps)
			break;
		k.gen_step = gen << 8 | i;
		k.a = cls[g->left[i] & (NFP_FILTER_SLOTS - 1)];
		k.b = cls[g->right[i] & (NFP_FILTER_SLOTS - 1)];
		if (stride) {
			/* Classes are below their counts by construction; a pair that is not
			 * would read another step's cells: never trust it. */
			if (k.a >= g->dense_rows[i] || k.b >= stride)
				goto nogen;
			idx = g->dense_base[i] + k.a * stride + k.b;
			k.b = idx / NFP_FILTER_DENSE_CHUNK; /* (the key as scratch) */
			cells = bpf_map_lookup_elem(&NFP_NAME(dense), &k.b);
			if (!cells)
				goto nogen;
			idx = cells->c[idx & (NFP_FILTER_DENSE_CHUNK - 1)];
			if (idx == NFP_FILTER_NO_MATCH)
				return NFP_NAME(default)(gen, g);
			cls[NFP_FILTER_FIELDS + i] = idx;
			continue;
		}
		c = bpf_map_lookup_elem(&NFP_NAME(combine), &k);
		if (!c) {
			/* Not stored: the pair gives class a's row default, if it has one. */
			k.b = NFP_FILTER_ROW_DEFAULT;
			c = bpf_map_lookup_elem(&NFP_NAME(combine), &k);
		}
		if (!c)
			return NFP_NAME(default)(gen, g);
		cls[NFP_FILTER_FIELDS + i] = *c;
	}

	rule = gen * NFP_FILTER_MAX_RULES +
	       (cls[g->result & (NFP_FILTER_SLOTS - 1)] & (NFP_FILTER_MAX_RULES - 1));
	act = bpf_map_lookup_elem(&NFP_NAME(actions), &rule);
	if (!act)
		goto nogen;
	nfp_percpu_inc(&NFP_NAME(hits), rule);
	return *act;

nogen:
	return NFP_NAME(nogen)();
}
#endif

/* The classifiers that read the rules from the maps.  A program built with compiled
 * checks calls them as a function of their own (a BPF-to-BPF call) for the packets
 * the checks do not decide: inlined, their registers and stack would be the compiled
 * path's too, and it measured 6 ns a packet dearer (the parser spilled more). */
#undef NFP_FILTER_BY_MAPS
#if defined(NFP_FILTER_COMPILED) && !defined(NFP_OFFLOAD)
#define NFP_FILTER_BY_MAPS __attribute__((noinline))
#else
#define NFP_FILTER_BY_MAPS __always_inline
#endif
static NFP_FILTER_BY_MAPS int NFP_NAME(by_maps)(struct nfp_pkt *p,
                                                const struct nfp_filter_keys *keys, __u32 gen,
                                                const struct nfp_filter_gen *g)
{
	if (g->linear)
		return NFP_NAME(linear)(p, keys, gen, g);
#ifdef NFP_OFFLOAD
	/* never written: the control plane keeps offloaded rules linear */
	return NFP_NAME(nogen)();
#else
	return NFP_NAME(tables)(p, keys, gen, g);
#endif
}

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	struct nfp_pkt *p = &meta->pkt;
	struct nfp_filter_gen *g;
	struct nfp_filter_keys keys;
	__u32 zero = 0, gen;
	__u32 *activep;

	activep = bpf_map_lookup_elem(&NFP_NAME(active), &zero);
	if (!activep)
		return NFP_ABORTED;
	gen = *activep & 1; /* read once: this packet's rule set */
	g = bpf_map_lookup_elem(&NFP_NAME(gens), &gen);
	if (!g || !g->ready)
		goto nogen;

	if (nfp_parse(ctx, meta) < 0) {
		/* Headers that go on past what we parse may hide what a rule stops, and the
		 * stack may accept them: never let them take the malformed policy's way. */
		if (p->flags & NFP_F_INCOMPLETE) {
			nfp_percpu_inc(&NFP_NAME(stats), NFP_FILTER_ST_INCOMPLETE);
			return NFP_DROP;
		}
		nfp_percpu_inc(&NFP_NAME(stats), NFP_FILTER_ST_MALFORMED);
		return g->malformed_action;
	}
	if ((p->flags & NFP_F_FRAG_LATER) && g->fragment_action != NFP_FILTER_FRAG_L3) {
		nfp_percpu_inc(&NFP_NAME(stats), NFP_FILTER_ST_FRAGMENT);
		return g->fragment_action;
	}

	nfp_filter_keys(p, &keys);
#if defined(NFP_FILTER_COMPILED) && !defined(NFP_OFFLOAD)
	if (g->compiled_id == NFP_FILTER_COMPILED_ID) /* the rules this program holds */
		return NFP_NAME(compiled)(p, &keys, gen, g);
#endif
	return NFP_NAME(by_maps)(p, &keys, gen, g);

nogen:
	return NFP_NAME(nogen)();
}
