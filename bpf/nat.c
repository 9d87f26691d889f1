// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * nat: NAT44 — source NAT (masquerade onto one external address, ports taken
 * from a configured range) and destination NAT (port forwards to internal
 * hosts), for TCP, UDP and ICMP echo.  One port, "out" (0).
 *
 * Direction comes from addresses only, so the NF works on any hook, on any
 * interface, and under BPF_PROG_TEST_RUN:
 *
 *   outbound  src internal, dst not internal and not external_ip:
 *             an existing mapping rewrites the source (SNAT flows, and the
 *             replies of DNAT flows); otherwise a new SNAT mapping is made
 *             (TCP, UDP, ICMP echo request).
 *   inbound   dst == external_ip, src not internal:
 *             an existing mapping rewrites the destination (replies of SNAT
 *             flows, DNAT flows); otherwise a forward for (proto, dport)
 *             makes a new DNAT mapping (TCP, UDP).
 *   anything else (IPv6, non-IP, internal<->internal, other protocols, ICMP
 *   other than echo) leaves on "out" untouched.
 *
 * The connection table `conns` is one LRU hash holding both directions of
 * every connection: the key is the 5-tuple as it is seen on the wire, the
 * value says which side (source or destination) to rewrite and to what.  The
 * two entries are created together, the reply-side one first with
 * BPF_NOEXIST: that insert is what claims an external port.  See docs/nf/nat.md.
 */
#include <nfpipe/nf.h>

#ifndef NFP_NAT_TYPES
#define NFP_NAT_TYPES

#define NFP_NAT_MAX_INTERNAL 16 /* internal prefixes (load-time constants) */
#define NFP_NAT_PROBES 16       /* external ports tried per new SNAT flow */
#define NFP_NAT_CONNS 131072    /* entries of the LRU table (2 per connection) */
#define NFP_NAT_FORWARDS 1024

#define NFP_NAT_REWRITE_SRC 0
#define NFP_NAT_REWRITE_DST 1
#define NFP_NAT_KIND_SNAT 0
#define NFP_NAT_KIND_DNAT 1

/* Counter slots of `stats` (nfpipe/catalog/nat.py names them). */
enum {
	NFP_NAT_C_XLATE_SRC = 0,  /* source rewritten (SNAT outbound, DNAT reply) */
	NFP_NAT_C_XLATE_DST,      /* destination rewritten (SNAT reply, DNAT inbound) */
	NFP_NAT_C_NEW_SNAT,       /* SNAT mappings created */
	NFP_NAT_C_NEW_DNAT,       /* DNAT mappings created */
	NFP_NAT_C_PORT_EXHAUSTED, /* no free external port among the probes: dropped */
	NFP_NAT_C_TABLE_FULL,     /* an insert into the table failed: table_full action */
	NFP_NAT_C_DNAT_CLASH,     /* a DNAT reply tuple is already another flow's: dropped */
	NFP_NAT_C_REPAIRED,       /* an evicted half of a mapping was re-created */
	NFP_NAT_C_STALE,          /* a mapping whose other half is now another flow's: remade */
	NFP_NAT_C_UNTOUCHED,      /* left on "out" unchanged */
	NFP_NAT_C_FRAGMENT,       /* an IPv4 fragment NAT would have to translate: dropped */
	NFP_NAT_C_MALFORMED,      /* nfp_parse refused the packet: dropped */
	NFP_NAT_C_ERROR,          /* a packet write failed: aborted */
	NFP_NAT_NCOUNTERS,
};

struct nfp_nat_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport; /* ICMP echo: the id, in both port fields */
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct nfp_nat_val {
	__be32 addr; /* the address to write */
	__be16 port; /* the port (ICMP: echo id) to write */
	__u8 dir;    /* NFP_NAT_REWRITE_SRC / _DST */
	__u8 kind;   /* NFP_NAT_KIND_SNAT / _DNAT: informational */
};

struct nfp_nat_fwd_key {
	__be16 port; /* the external port (on external_ip) */
	__u8 proto;
	__u8 pad;
};

struct nfp_nat_fwd {
	__be32 addr; /* the internal host */
	__be16 port;
	__u16 pad;
};

#endif /* NFP_NAT_TYPES */

NFP_CONST(__u32, external_ip) = 0; /* host order */
NFP_CONST(__u32, port_lo) = 20000;
NFP_CONST(__u32, port_count) = 10000; /* >= 1 */
NFP_CONST(__u32, n_internal) = 0;
NFP_CONST(__u32, internal_net)[NFP_NAT_MAX_INTERNAL]; /* host order, already masked */
NFP_CONST(__u32, internal_mask)[NFP_NAT_MAX_INTERNAL];
NFP_CONST(__u32, table_full_pass) = 0; /* 1: pass untouched, 0: drop */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NFP_NAT_CONNS);
	__type(key, struct nfp_nat_key);
	__type(value, struct nfp_nat_val);
} NFP_NAME(conns) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NFP_NAT_FORWARDS);
	__type(key, struct nfp_nat_fwd_key);
	__type(value, struct nfp_nat_fwd);
} NFP_NAME(forwards) SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NFP_NAT_NCOUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(stats) SEC(".maps");

static __always_inline int NFP_NAME(is_internal)(__be32 addr)
{
	__u32 a = bpf_ntohl(addr);
	__u32 i;

	for (i = 0; i < NFP_NAT_MAX_INTERNAL; i++) {
		if (i >= NFP_CFG(n_internal))
			break;
		if ((a & NFP_CFG(internal_mask)[i]) == NFP_CFG(internal_net)[i])
			return 1;
	}
	return 0;
}

/* The start of the port probe: a small integer hash of the flow (host-order
 * inputs), replicated by the Python model. */
static __always_inline __u32 NFP_NAME(flow_hash)(const struct nfp_nat_key *k)
{
	__u32 h;

	h = bpf_ntohl(k->saddr) * 0x9E3779B1u;
	h ^= bpf_ntohl(k->daddr);
	h *= 0x85EBCA6Bu;
	h ^= ((__u32)bpf_ntohs(k->sport) << 16) | bpf_ntohs(k->dport);
	h *= 0xC2B2AE35u;
	h ^= k->proto;
	h ^= h >> 15;
	return h;
}

/* The key of the packets coming back after `k` was translated by `v`. */
static __always_inline void NFP_NAME(partner)(const struct nfp_nat_key *k,
                                              const struct nfp_nat_val *v, struct nfp_nat_key *pk,
                                              struct nfp_nat_val *pv)
{
	struct nfp_nat_key t = *k;
	__be32 saddr = k->saddr, daddr = k->daddr;

	/*
	 * The addresses go through registers the optimizer cannot see into.  Left
	 * to itself, clang 14 merges the two branches' loads of k->saddr and
	 * k->daddr into one load from k + (dir ? 4 : 0), and as k is an 8-byte
	 * aligned stack slot it computes that address with `|`, which the verifier
	 * refuses on a pointer ("R2 bitwise operator |= on pointer prohibited").
	 * With the barrier the branches choose between two scalars.
	 */
	barrier_var(saddr);
	barrier_var(daddr);
	if (v->dir == NFP_NAT_REWRITE_SRC) {
		t.saddr = v->addr;
		t.sport = v->port;
		pv->addr = saddr;
		pv->port = k->sport;
		pv->dir = NFP_NAT_REWRITE_DST;
	} else {
		t.daddr = v->addr;
		t.dport = v->port;
		pv->addr = daddr;
		pv->port = k->dport;
		pv->dir = NFP_NAT_REWRITE_SRC;
	}
	if (k->proto == IPPROTO_ICMP)
		t.sport = t.dport = v->port; /* one id field */
	pv->kind = v->kind;
	__builtin_memset(pk, 0, sizeof(*pk));
	pk->saddr = t.daddr;
	pk->daddr = t.saddr;
	pk->sport = t.dport;
	pk->dport = t.sport;
	pk->proto = t.proto;
}

static __always_inline int NFP_NAME(same_val)(const struct nfp_nat_val *a,
                                              const struct nfp_nat_val *b)
{
	return a->dir == b->dir && a->addr == b->addr && a->port == b->port;
}

/* Insert both halves: the partner (reply side) first with BPF_NOEXIST, which
 * claims its tuple.  0: done; 2: the partner already held exactly this mapping
 * (its own half was evicted, or another CPU made the flow a moment ago), so
 * only the own half was written; 1: the partner tuple is another flow's;
 * -1: an insert failed (table full). */
static __always_inline int NFP_NAME(create)(const struct nfp_nat_key *k,
                                            const struct nfp_nat_val *v)
{
	struct nfp_nat_key pk;
	struct nfp_nat_val pv, *cur;
	long err;
	int r = 0;

	NFP_NAME(partner)(k, v, &pk, &pv);
	err = bpf_map_update_elem(&NFP_NAME(conns), &pk, &pv, BPF_NOEXIST);
	if (err == -17 /* EEXIST */) {
		cur = bpf_map_lookup_elem(&NFP_NAME(conns), &pk);
		if (!cur || !NFP_NAME(same_val)(cur, &pv))
			return 1;
		r = 2;
	} else if (err) {
		return -1;
	}
	if (bpf_map_update_elem(&NFP_NAME(conns), k, v, BPF_ANY)) {
		if (r == 0)
			bpf_map_delete_elem(&NFP_NAME(conns), &pk);
		return -1;
	}
	return r;
}

/* A hit on `k`: touch its other half (so the LRU keeps both) and re-create it
 * if it was evicted.  0: usable, -1: stale (the other tuple is another flow's). */
static __always_inline int NFP_NAME(check_partner)(const struct nfp_nat_key *k,
                                                   const struct nfp_nat_val *v)
{
	struct nfp_nat_key pk;
	struct nfp_nat_val pv, *cur;

	NFP_NAME(partner)(k, v, &pk, &pv);
	cur = bpf_map_lookup_elem(&NFP_NAME(conns), &pk);
	if (cur)
		return NFP_NAME(same_val)(cur, &pv) ? 0 : -1;
	if (bpf_map_update_elem(&NFP_NAME(conns), &pk, &pv, BPF_NOEXIST))
		return -1;
	nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_REPAIRED);
	return 0;
}

/* Rewrite the source or destination address and port as `v` says, keeping the
 * IPv4 header checksum and the L4 checksum right, and update meta->pkt. */
static __always_inline int NFP_NAME(rewrite)(struct nfp_ctx *ctx, struct nfp_meta *meta,
                                             const struct nfp_nat_val *v)
{
	struct nfp_pkt *p = &meta->pkt;
	/* Headers end well below 512 bytes (VLANs + a 60-byte IPv4 header); the mask
	 * gives the verifier a bound so that off + len stays a valid packet range. */
	__u32 l3 = p->l3_off & 0x1ff, l4 = p->l4_off & 0x1ff;
	__u32 addr_off, port_off, csum_off;
	__be32 old_addr, new_addr = v->addr;
	__be16 old_port, new_port = v->port;
	int pseudo_flags = 0, port_flags = 2;

	if (v->dir == NFP_NAT_REWRITE_SRC) {
		addr_off = l3 + 12;
		old_addr = p->saddr[0];
		old_port = p->sport;
		port_off = l4;
	} else {
		addr_off = l3 + 16;
		old_addr = p->daddr[0];
		old_port = p->dport;
		port_off = l4 + 2;
	}
	switch (p->l4_proto) {
	case IPPROTO_TCP:
		csum_off = l4 + 16;
		pseudo_flags = 4 | NFP_CSUM_PSEUDO;
		break;
	case IPPROTO_UDP:
		csum_off = l4 + 6;
		pseudo_flags = 4 | NFP_CSUM_PSEUDO | NFP_CSUM_UDP;
		port_flags = 2 | NFP_CSUM_UDP;
		break;
	default: /* ICMP echo: no pseudo-header */
		csum_off = l4 + 2;
		port_off = l4 + 4;
		old_port = p->sport;
		break;
	}

	if (old_addr != new_addr) {
		if (pseudo_flags &&
		    nfp_l4_csum_replace(ctx, csum_off, old_addr, new_addr, pseudo_flags))
			return -1;
		if (nfp_l3_csum_replace(ctx, l3 + 10, old_addr, new_addr, 4))
			return -1;
		if (nfp_store(ctx, addr_off, &new_addr, 4))
			return -1;
	}
	if (old_port != new_port) {
		if (nfp_l4_csum_replace(ctx, csum_off, old_port, new_port, port_flags))
			return -1;
		if (nfp_store(ctx, port_off, &new_port, 2))
			return -1;
	}

	if (v->dir == NFP_NAT_REWRITE_SRC) {
		p->saddr[0] = new_addr;
		p->sport = new_port;
	} else {
		p->daddr[0] = new_addr;
		if (p->l4_proto == IPPROTO_ICMP)
			p->sport = new_port; /* nfp_pkt keeps the echo id in sport */
		else
			p->dport = new_port;
	}
	return 0;
}

static __always_inline int NFP_NAME(untouched)(void)
{
	nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_UNTOUCHED);
	return NFP_PORT(0);
}

static __always_inline int NFP_NAME(table_full)(void)
{
	nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_TABLE_FULL);
	if (NFP_CFG(table_full_pass))
		return NFP_NAME(untouched)();
	return NFP_DROP;
}

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	struct nfp_pkt *p = &meta->pkt;
	struct nfp_nat_key k = {};
	struct nfp_nat_val v, *hit;
	__be32 ext = bpf_htonl(NFP_CFG(external_ip));
	int outbound, icmp_type = -1, r;
	__u32 i, h, idx;

	if (nfp_parse(ctx, meta) < 0) {
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_MALFORMED);
		return NFP_DROP;
	}
	if (!nfp_is_ipv4(meta))
		return NFP_NAME(untouched)();

	if (p->daddr[0] == ext && !NFP_NAME(is_internal)(p->saddr[0]))
		outbound = 0;
	else if (p->daddr[0] != ext && NFP_NAME(is_internal)(p->saddr[0]) &&
	         !NFP_NAME(is_internal)(p->daddr[0]))
		outbound = 1;
	else
		return NFP_NAME(untouched)();

	/* Inside AH the ports are covered by its ICV: translating them breaks it. */
	if ((p->l4_proto != IPPROTO_TCP && p->l4_proto != IPPROTO_UDP &&
	     p->l4_proto != IPPROTO_ICMP) ||
	    (p->flags & NFP_F_AH))
		return NFP_NAME(untouched)();
	if (p->flags & NFP_F_FRAG) {
		/* Later fragments carry no ports: NAT cannot translate the datagram
		 * consistently, so none of it leaves half-translated. */
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_FRAGMENT);
		return NFP_DROP;
	}
	if (!(p->flags & NFP_F_L4))
		return NFP_NAME(untouched)();
	if (p->l4_proto == IPPROTO_ICMP) {
		icmp_type = bpf_ntohs(p->dport) >> 8;
		/* Echo requests go out, echo replies come back; nothing else is NATed. */
		if (icmp_type != (outbound ? NFP_ICMP_ECHO : NFP_ICMP_ECHOREPLY))
			return NFP_NAME(untouched)();
	}

	k.saddr = p->saddr[0];
	k.daddr = p->daddr[0];
	k.sport = p->sport;
	k.dport = icmp_type >= 0 ? p->sport : p->dport;
	k.proto = p->l4_proto;

	hit = bpf_map_lookup_elem(&NFP_NAME(conns), &k);
	if (hit) {
		v = *hit;
		if (NFP_NAME(check_partner)(&k, &v) == 0)
			goto translate;
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_STALE);
		bpf_map_delete_elem(&NFP_NAME(conns), &k);
	}

	if (outbound) {
		/* New SNAT mapping: probe external ports from a hash of the flow. */
		__u32 n = NFP_CFG(port_count);

		if (n == 0)
			return NFP_ABORTED;
		h = NFP_NAME(flow_hash)(&k);
		idx = h % n;
		v.addr = ext;
		v.dir = NFP_NAT_REWRITE_SRC;
		v.kind = NFP_NAT_KIND_SNAT;
		for (i = 0; i < NFP_NAT_PROBES; i++) {
			if (i >= n)
				break;
			v.port = bpf_htons((__u16)(NFP_CFG(port_lo) + idx));
			r = NFP_NAME(create)(&k, &v);
			if (r == 0 || r == 2) {
				nfp_percpu_inc(&NFP_NAME(stats),
				               r == 0 ? NFP_NAT_C_NEW_SNAT : NFP_NAT_C_REPAIRED);
				goto translate;
			}
			if (r < 0)
				return NFP_NAME(table_full)();
			if (++idx >= n)
				idx = 0;
		}
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_PORT_EXHAUSTED);
		return NFP_DROP;
	} else {
		struct nfp_nat_fwd_key fk = {};
		struct nfp_nat_fwd *fwd;

		if (k.proto == IPPROTO_ICMP)
			return NFP_NAME(untouched)();
		fk.port = k.dport;
		fk.proto = k.proto;
		fwd = bpf_map_lookup_elem(&NFP_NAME(forwards), &fk);
		if (!fwd)
			return NFP_NAME(untouched)();
		v.addr = fwd->addr;
		v.port = fwd->port;
		v.dir = NFP_NAT_REWRITE_DST;
		v.kind = NFP_NAT_KIND_DNAT;
		r = NFP_NAME(create)(&k, &v);
		if (r < 0)
			return NFP_NAME(table_full)();
		if (r == 1) {
			nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_DNAT_CLASH);
			return NFP_DROP;
		}
		nfp_percpu_inc(&NFP_NAME(stats), r == 0 ? NFP_NAT_C_NEW_DNAT : NFP_NAT_C_REPAIRED);
	}

translate:
	if (NFP_NAME(rewrite)(ctx, meta, &v)) {
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_ERROR);
		return NFP_ABORTED;
	}
	nfp_percpu_inc(&NFP_NAME(stats),
	               v.dir == NFP_NAT_REWRITE_SRC ? NFP_NAT_C_XLATE_SRC : NFP_NAT_C_XLATE_DST);
	return NFP_PORT(0);
}
