// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * nat: NAT44 — source NAT (masquerade onto one external address, ports taken
 * from a configured range) and destination NAT (port forwards to internal
 * hosts).  One port, "out" (0).
 *
 * Direction comes from addresses only, so the NF works on any hook, on any
 * interface, and under BPF_PROG_TEST_RUN:
 *
 *   outbound  src internal, dst not internal and not external_ip:
 *             an existing mapping rewrites the source (SNAT flows, and the
 *             replies of DNAT flows); otherwise a new SNAT mapping is made.
 *   inbound   dst == external_ip, src not internal:
 *             an existing mapping rewrites the destination (replies of SNAT
 *             flows, DNAT flows); otherwise a forward for (proto, dport)
 *             makes a new DNAT mapping (TCP, UDP).
 *   anything else (IPv6, non-IP, internal<->internal) leaves on "out" untouched.
 *
 * What is translated, as Linux's conntrack NAT does it:
 *   TCP, UDP          address and port (checksums: pseudo-header and port);
 *   ICMP echo         address and echo id;
 *   ICMP errors       the outer address and the embedded header of the flow the
 *                     error is about (its address, port or id, and the embedded,
 *                     ICMP and IP checksums), in both directions;
 *   other protocols   (GRE, ESP, SCTP, anything under AH, other ICMP) the address
 *                     only: one mapping per (inside host, remote, protocol), as
 *                     masquerade does; a second inside host to the same remote
 *                     with the same protocol is dropped (other_clash), or all of
 *                     them by policy (other_protocols: drop).  Never leaked.
 *   fragments         the first fragment is translated and its translation kept
 *                     by (addresses, protocol, IP id) in `frags`; later ones get
 *                     the same address rewrite (going out, a later fragment with
 *                     no translated first is dropped: fragment).
 * At ingress (XDP, tc-ingress) a packet with TTL <= 1 is not forwarded by the
 * stack: outbound it is left untouched (the stack answers time-exceeded to its
 * sender), inbound it is dropped before any state is made.
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
#define NFP_NAT_FRAGS 8192 /* datagrams whose first fragment was translated */
#define NFP_NAT_MAX_L3 64  /* header offsets bounded for the verifier: Ethernet and */
#define NFP_NAT_MAX_L4 128 /* two VLAN tags put l3 at 22, options l4 at l3 + 60 */

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
	NFP_NAT_C_FRAGMENT,       /* a later fragment whose first was not translated: dropped */
	NFP_NAT_C_MALFORMED,      /* nfp_parse refused the packet: dropped */
	NFP_NAT_C_ERROR,          /* a packet write failed: aborted */
	NFP_NAT_C_ICMP_ERROR,     /* ICMP errors translated (outer and embedded header) */
	NFP_NAT_C_ICMP_UNKNOWN,   /* ICMP errors about no flow: outbound dropped, inbound left */
	NFP_NAT_C_OTHER_CLASH,    /* another inside host holds (remote, protocol): dropped */
	NFP_NAT_C_OTHER_DROPPED,  /* other protocols under other_protocols: drop */
	NFP_NAT_C_TTL,            /* TTL <= 1 at ingress: outbound left, inbound dropped */
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

/* A datagram whose first fragment was translated, as its fragments appear on the
 * wire before translation; the value is the first fragment's nfp_nat_val. */
struct nfp_nat_frag_key {
	__be32 saddr;
	__be32 daddr;
	__be16 id;
	__u8 proto; /* the IP header's protocol */
	__u8 pad;
};

#endif /* NFP_NAT_TYPES */

NFP_CONST(__u32, external_ip) = 0; /* host order */
NFP_CONST(__u32, port_lo) = 20000;
NFP_CONST(__u32, port_count) = 10000; /* >= 1 */
NFP_CONST(__u32, n_internal) = 0;
NFP_CONST(__u32, internal_net)[NFP_NAT_MAX_INTERNAL]; /* host order, already masked */
NFP_CONST(__u32, internal_mask)[NFP_NAT_MAX_INTERNAL];
NFP_CONST(__u32, table_full_pass) = 0; /* 1: pass untouched, 0: drop */
NFP_CONST(__u32, other_drop) = 0;      /* 1: drop protocols without ports, 0: translate */

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
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NFP_NAT_FRAGS);
	__type(key, struct nfp_nat_frag_key);
	__type(value, struct nfp_nat_val);
} NFP_NAME(frags) SEC(".maps");

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
 * IPv4 header checksum and the L4 checksum right, and update meta->pkt.  With
 * `addr_only` (protocols without ports, later fragments) only the address and
 * the IPv4 header checksum change. */
static __always_inline int NFP_NAME(rewrite)(struct nfp_ctx *ctx, struct nfp_meta *meta,
                                             const struct nfp_nat_val *v, int addr_only)
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
	if (addr_only)
		pseudo_flags = 0;

	if (old_addr != new_addr) {
		if (pseudo_flags &&
		    nfp_l4_csum_replace(ctx, csum_off, old_addr, new_addr, pseudo_flags))
			return -1;
		if (nfp_l3_csum_replace(ctx, l3 + 10, old_addr, new_addr, 4))
			return -1;
		if (nfp_store(ctx, addr_off, &new_addr, 4))
			return -1;
	}
	if (!addr_only && old_port != new_port) {
		if (nfp_l4_csum_replace(ctx, csum_off, old_port, new_port, port_flags))
			return -1;
		if (nfp_store(ctx, port_off, &new_port, 2))
			return -1;
	}

	if (v->dir == NFP_NAT_REWRITE_SRC) {
		p->saddr[0] = new_addr;
		if (!addr_only)
			p->sport = new_port;
	} else {
		p->daddr[0] = new_addr;
		if (!addr_only && p->l4_proto == IPPROTO_ICMP)
			p->sport = new_port; /* nfp_pkt keeps the echo id in sport */
		else if (!addr_only)
			p->dport = new_port;
	}
	return 0;
}

static __always_inline int NFP_NAME(untouched)(void)
{
	nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_UNTOUCHED);
	return NFP_PORT(0);
}

static __always_inline int NFP_NAME(drop)(__u32 counter)
{
	nfp_percpu_inc(&NFP_NAME(stats), counter);
	return NFP_DROP;
}

static __always_inline int NFP_NAME(table_full)(void)
{
	nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_TABLE_FULL);
	if (NFP_CFG(table_full_pass))
		return NFP_NAME(untouched)();
	return NFP_DROP;
}

#ifndef NFP_NAT_HELPERS
#define NFP_NAT_HELPERS
/* ICMP types whose payload is the header of the packet they are about (RFC 792):
 * destination unreachable, source quench, redirect, time exceeded, parameter problem. */
static __always_inline int nfp_nat_icmp_is_error(int type)
{
	return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
}

static __always_inline __u16 nfp_nat_get16(const __u8 *b)
{
	__u16 v;

	__builtin_memcpy(&v, b, 2);
	return v;
}

static __always_inline __u32 nfp_nat_get32(const __u8 *b)
{
	__u32 v;

	__builtin_memcpy(&v, b, 4);
	return v;
}
#endif

/*
 * An ICMP error about a translated flow.  The embedded header is a packet of that
 * flow as it went the other way, so the flow's entry is the one of the embedded
 * tuple reversed.  It says which side to rewrite (to address and port): the outer
 * header's side (the error's destination when it comes in, its source when it
 * goes out) gets the address; the embedded header's other side gets address and
 * port (or echo id), as conntrack's nf_nat_icmp_reply_translation does.  The
 * embedded IPv4 checksum, the embedded L4 checksum where it is in the packet
 * (TCP's only with 18 bytes of TCP header quoted; UDP's unless 0; ICMP's), the
 * ICMP checksum over all of it and the outer IPv4 checksum are updated.
 *
 * Two global functions, each verified once on its own: icmp_error_plan reads the
 * packet and the table and computes every new value into `f`; icmp_error_apply
 * writes them.  Split, neither keeps enough values live to need a large stack
 * (the three frames of a fused pipeline's call chain share 512 bytes).
 */
#ifndef NFP_NAT_ERRFIX
#define NFP_NAT_ERRFIX
struct nfp_nat_errfix {
	__u8 want_dir; /* in: the rewrite the direction calls for (NFP_NAT_REWRITE_DST */
	__u8 ttl_drop; /* inbound, _SRC outbound); the packet will not be forwarded */
	__be32 addr;   /* the new address: the embedded header's side and the outer one */
	__be16 port;   /* the new port or echo id */
	__u16 ipc;     /* new checksums: outer IPv4, embedded IPv4, embedded L4, ICMP */
	__u16 eipc;
	__u16 l4c;
	__u16 icmpc;
	__u16 outer_off; /* where each goes; ep_off and l4c_off 0: not written */
	__u16 ea_off;
	__u16 ep_off;
	__u16 eipc_off;
	__u16 l4c_off;
	__u16 icmpc_off;
	__u16 ipc_off;
};
#endif

/* Returns 0 (`f` filled), 1 not about a flow we know, 2 about one but its TTL
 * expired (f->ttl_drop). */
__noinline int NFP_NAME(icmp_error_plan)(nfp_hook_ctx_t *hook, __u32 l3, __u32 l4,
                                         struct nfp_nat_errfix *f)
{
	struct nfp_ctx c, *ctx = &c;
	struct nfp_nat_key k = {};
	struct nfp_nat_val *v;
	__u8 *ip, *icmp, *e, *el4;
	__u32 end, e3, e4, eproto;
	__be32 oaddr;
	__u16 oport = 0, l4c, icmpc;
	int portful = 1, pseudo = 0, udp = 0;

	if (!hook || !f)
		return 1;
	c.hook = hook;
	nfp_ctx_reload(ctx);
	if (l3 > NFP_NAT_MAX_L3 || l4 > NFP_NAT_MAX_L4)
		return 1;
	ip = nfp_ptr(ctx, l3, 20);
	icmp = nfp_ptr(ctx, l4, 8);
	if (!ip || !icmp)
		return 1;
	end = l3 + ((__u32)ip[2] << 8 | ip[3]); /* the datagram's end (nfp_parse checked it) */
	e3 = l4 + 8;
	e = nfp_ptr(ctx, e3, 20);
	if (!e || e3 + 20 > end || (e[0] >> 4) != 4 || (e[0] & 0xf) < 5)
		return 1;
	e4 = e3 + (e[0] & 0xf) * 4;
	el4 = nfp_ptr(ctx, e4 & 0x3ff, 8);
	if (!el4 || e4 + 8 > end)
		return 1;
	eproto = e[9];
	k.saddr = nfp_nat_get32(e + 16);
	k.daddr = nfp_nat_get32(e + 12);
	k.proto = eproto;
	if (eproto == IPPROTO_TCP || eproto == IPPROTO_UDP) {
		k.sport = nfp_nat_get16(el4 + 2);
		k.dport = nfp_nat_get16(el4);
	} else if (eproto == IPPROTO_ICMP &&
	           (el4[0] == NFP_ICMP_ECHO || el4[0] == NFP_ICMP_ECHOREPLY)) {
		k.sport = k.dport = nfp_nat_get16(el4 + 4);
	} else if (eproto == IPPROTO_ICMP && nfp_nat_icmp_is_error(el4[0])) {
		return 1; /* an error about an error: never answered, never ours */
	} else {
		portful = 0; /* a protocol without ports: the address-only mapping */
	}
	v = bpf_map_lookup_elem(&NFP_NAME(conns), &k);
	if (!v || v->dir != f->want_dir)
		return 1;
	if (f->ttl_drop)
		return 2;
	f->addr = v->addr;
	f->port = v->port;
	if (v->dir == NFP_NAT_REWRITE_DST) { /* coming in: the embedded source, the outer dst */
		f->ea_off = e3 + 12;
		oaddr = k.daddr;
		f->ep_off = e4;
		f->outer_off = l3 + 16;
		f->ipc =
		        nfp_csum_update(nfp_nat_get16(ip + 10), nfp_nat_get32(ip + 16), v->addr, 4);
		oport = k.dport;
	} else { /* going out: the embedded destination, the outer source */
		f->ea_off = e3 + 16;
		oaddr = k.saddr;
		f->ep_off = e4 + 2;
		f->outer_off = l3 + 12;
		f->ipc =
		        nfp_csum_update(nfp_nat_get16(ip + 10), nfp_nat_get32(ip + 12), v->addr, 4);
		oport = k.sport;
	}
	if (eproto == IPPROTO_ICMP)
		f->ep_off = e4 + 4;
	if (!portful) {
		f->ep_off = 0;
		oport = 0;
	}
	f->ipc_off = l3 + 10;
	f->eipc_off = e3 + 10;
	f->icmpc_off = l4 + 2;

	f->l4c_off = 0;
	if (eproto == IPPROTO_TCP && e4 + 18 <= end) {
		f->l4c_off = e4 + 16;
		pseudo = 1;
	} else if (eproto == IPPROTO_UDP) {
		f->l4c_off = e4 + 6;
		pseudo = udp = 1;
	} else if (eproto == IPPROTO_ICMP && portful) {
		f->l4c_off = e4 + 2;
	}
	f->eipc = nfp_csum_update(nfp_nat_get16(e + 10), oaddr, f->addr, 4);
	icmpc = nfp_csum_update(nfp_nat_get16(icmp + 2), oaddr, f->addr, 4);
	icmpc = nfp_csum_update(icmpc, nfp_nat_get16(e + 10), f->eipc, 2);
	if (portful)
		icmpc = nfp_csum_update(icmpc, oport, f->port, 2);
	if (f->l4c_off) {
		__u8 *cp = nfp_ptr(ctx, f->l4c_off & 0x3ff, 2);

		if (!cp)
			return 1;
		l4c = nfp_nat_get16(cp);
		f->l4c = l4c;
		if (!(udp && l4c == 0)) { /* a UDP checksum of 0 means none: it stays 0 */
			if (pseudo)
				f->l4c = nfp_csum_update(f->l4c, oaddr, f->addr, 4);
			f->l4c = nfp_csum_update(f->l4c, oport, f->port, 2);
			if (udp && f->l4c == 0)
				f->l4c = 0xffff;
		}
		icmpc = nfp_csum_update(icmpc, l4c, f->l4c, 2);
	}
	f->icmpc = icmpc;
	return 0;
}

/* Write what icmp_error_plan computed; 0, or -1 if a write failed.  Packet pointers
 * of the caller are stale after it. */
__noinline int NFP_NAME(icmp_error_apply)(nfp_hook_ctx_t *hook, const struct nfp_nat_errfix *f)
{
	struct nfp_ctx c, *ctx = &c;

	if (!hook || !f)
		return -1;
	c.hook = hook;
	nfp_ctx_reload(ctx);
	if (nfp_store(ctx, nfp_opaque(f->ea_off & 0x3ff), &f->addr, 4) ||
	    nfp_store(ctx, nfp_opaque(f->eipc_off & 0x3ff), &f->eipc, 2))
		return -1;
	if (f->ep_off && nfp_store(ctx, nfp_opaque(f->ep_off & 0x3ff), &f->port, 2))
		return -1;
	if (f->l4c_off && nfp_store(ctx, nfp_opaque(f->l4c_off & 0x3ff), &f->l4c, 2))
		return -1;
	if (nfp_store(ctx, nfp_opaque(f->icmpc_off & 0x3ff), &f->icmpc, 2) ||
	    nfp_store(ctx, nfp_opaque(f->outer_off & 0x3ff), &f->addr, 4) ||
	    nfp_store(ctx, nfp_opaque(f->ipc_off & 0x3ff), &f->ipc, 2))
		return -1;
	return 0;
}

/*
 * A new SNAT mapping for `k`: probe external ports from a hash of the flow and claim
 * the first whose reply tuple is free.  A global function, verified once: inlined,
 * the verifier walked the rest of the packet's path once per probe.  Returns the
 * counter of what happened (NFP_NAT_C_NEW_SNAT, or _REPAIRED: an existing mapping
 * adopted) with `v` filled, NFP_NAT_C_TABLE_FULL, or NFP_NAT_C_PORT_EXHAUSTED.
 */
__noinline int NFP_NAME(snat_new)(const struct nfp_nat_key *key, struct nfp_nat_val *out)
{
	struct nfp_nat_key k;
	struct nfp_nat_val v;
	__u32 i, idx, n = NFP_CFG(port_count);
	int r;

	if (!key || !out || n == 0)
		return NFP_NAT_C_PORT_EXHAUSTED;
	k = *key;
	idx = NFP_NAME(flow_hash)(&k) % n;
	v.addr = bpf_htonl(NFP_CFG(external_ip));
	v.dir = NFP_NAT_REWRITE_SRC;
	v.kind = NFP_NAT_KIND_SNAT;
	for (i = 0; i < NFP_NAT_PROBES; i++) {
		if (i >= n)
			break;
		v.port = bpf_htons((__u16)(NFP_CFG(port_lo) + idx));
		r = NFP_NAME(create)(&k, &v);
		if (r == 0 || r == 2) {
			*out = v;
			return r == 0 ? NFP_NAT_C_NEW_SNAT : NFP_NAT_C_REPAIRED;
		}
		if (r < 0)
			return NFP_NAT_C_TABLE_FULL;
		if (++idx >= n)
			idx = 0;
	}
	return NFP_NAT_C_PORT_EXHAUSTED;
}

/* Rewrite the packet as `v` says and count it: port 0, or NFP_ABORTED if a write
 * failed. */
static __always_inline int NFP_NAME(translate)(struct nfp_ctx *ctx, struct nfp_meta *meta,
                                               const struct nfp_nat_val *v, int addr_only)
{
	if (NFP_NAME(rewrite)(ctx, meta, v, addr_only)) {
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_ERROR);
		return NFP_ABORTED;
	}
	nfp_percpu_inc(&NFP_NAME(stats),
	               v->dir == NFP_NAT_REWRITE_SRC ? NFP_NAT_C_XLATE_SRC : NFP_NAT_C_XLATE_DST);
	return NFP_PORT(0);
}

/* A fragment after the first: the first's translation, found by the datagram's
 * addresses, protocol and IP id, applied to the address (it carries no ports). */
static __always_inline int NFP_NAME(later_fragment)(struct nfp_ctx *ctx, struct nfp_meta *meta,
                                                    struct nfp_nat_frag_key *fk, int outbound,
                                                    int ttl_drop)
{
	struct nfp_nat_val v, *f;

	f = bpf_map_lookup_elem(&NFP_NAME(frags), fk);
	if (!f) {
		/* Its first fragment was not translated, or has not come yet.  Going out it
		 * would leak the inside address: dropped.  Coming in it is for this host
		 * (or lost either way): left to the stack. */
		if (!outbound)
			return NFP_NAME(untouched)();
		return NFP_NAME(drop)(NFP_NAT_C_FRAGMENT);
	}
	v = *f;
	if (ttl_drop && v.dir == NFP_NAT_REWRITE_DST)
		return NFP_NAME(drop)(NFP_NAT_C_TTL);
	return NFP_NAME(translate)(ctx, meta, &v, 1);
}

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	struct nfp_pkt *p = &meta->pkt;
	struct nfp_nat_key k = {};
	struct nfp_nat_frag_key fk = {};
	struct nfp_nat_val v, *hit;
	__be32 ext = bpf_htonl(NFP_CFG(external_ip));
	int outbound, icmp_type = -1, portless = 0, ttl_low, r;
	__u32 ipproto;
	__be16 *idp;

	if (nfp_parse(ctx, meta) < 0)
		return NFP_NAME(drop)(NFP_NAT_C_MALFORMED);
	if (!nfp_is_ipv4(meta))
		return NFP_NAME(untouched)();

	if (p->daddr[0] == ext && !NFP_NAME(is_internal)(p->saddr[0]))
		outbound = 0;
	else if (p->daddr[0] != ext && NFP_NAME(is_internal)(p->saddr[0]) &&
	         !NFP_NAME(is_internal)(p->daddr[0]))
		outbound = 1;
	else
		return NFP_NAME(untouched)();

	/* Arriving with TTL <= 1, a packet the stack would forward is dropped there: no
	 * state for it.  Outbound, the stack then tells its sender (time exceeded). */
	ttl_low = nfp_at_ingress() && p->ttl <= 1;
	if (outbound && ttl_low) {
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_TTL);
		return NFP_NAME(untouched)();
	}
	/* The IP header's protocol: AH's when it protects TCP/UDP (its ICV covers the
	 * ports, so only the address is translated, as for any protocol without ports). */
	ipproto = (p->flags & NFP_F_AH) ? IPPROTO_AH : p->l4_proto;

	if (p->flags & NFP_F_FRAG) {
		idp = nfp_ptr(ctx, p->l3_off + 4, 2);
		if (!idp)
			return NFP_NAME(drop)(NFP_NAT_C_MALFORMED);
		fk.saddr = p->saddr[0];
		fk.daddr = p->daddr[0];
		fk.id = *idp;
		fk.proto = ipproto;
		if (p->flags & NFP_F_FRAG_LATER)
			return NFP_NAME(later_fragment)(ctx, meta, &fk, outbound, ttl_low);
	}

	if (ipproto == IPPROTO_ICMP)
		icmp_type = bpf_ntohs(p->dport) >> 8;
	if (!outbound && icmp_type == NFP_ICMP_ECHO)
		return NFP_NAME(untouched)(); /* a ping of external_ip: this host answers */
	if (icmp_type >= 0 && nfp_nat_icmp_is_error(icmp_type)) {
		struct nfp_nat_errfix fix = {};

		if (p->flags & NFP_F_FRAG)
			return NFP_NAME(drop)(NFP_NAT_C_FRAGMENT);
		fix.want_dir = outbound ? NFP_NAT_REWRITE_SRC : NFP_NAT_REWRITE_DST;
		fix.ttl_drop = ttl_low;
		r = NFP_NAME(icmp_error_plan)(ctx->hook, p->l3_off, p->l4_off, &fix);
		if (r == 0)
			r = NFP_NAME(icmp_error_apply)(ctx->hook, &fix);
		nfp_ctx_reload(ctx);
		if (r == 0) {
			nfp_invalidate(meta); /* the outer address changed: parse again if asked */
			nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_ICMP_ERROR);
			return NFP_PORT(0);
		}
		if (r == 2)
			return NFP_NAME(drop)(NFP_NAT_C_TTL);
		if (r < 0) {
			nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_ERROR);
			return NFP_ABORTED;
		}
		/* About no flow we know: from inside it would leak the inside address. */
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_ICMP_UNKNOWN);
		return outbound ? NFP_DROP : NFP_NAME(untouched)();
	}

	k.saddr = p->saddr[0];
	k.daddr = p->daddr[0];
	k.proto = ipproto;
	if (ipproto == IPPROTO_TCP || ipproto == IPPROTO_UDP) {
		if (!(p->flags & NFP_F_L4))
			return NFP_NAME(untouched)();
		k.sport = p->sport;
		k.dport = p->dport;
	} else if (icmp_type == (outbound ? NFP_ICMP_ECHO : NFP_ICMP_ECHOREPLY)) {
		/* Echo requests go out, echo replies come back: by echo id. */
		k.sport = k.dport = p->sport;
	} else {
		portless = 1; /* other protocols and ICMP types: the address only */
		if (outbound && NFP_CFG(other_drop))
			return NFP_NAME(drop)(NFP_NAT_C_OTHER_DROPPED);
	}

	hit = bpf_map_lookup_elem(&NFP_NAME(conns), &k);
	if (hit) {
		v = *hit;
		if (NFP_NAME(check_partner)(&k, &v) == 0) {
			if (ttl_low)
				return NFP_NAME(drop)(NFP_NAT_C_TTL);
			goto translate;
		}
		nfp_percpu_inc(&NFP_NAME(stats), NFP_NAT_C_STALE);
		bpf_map_delete_elem(&NFP_NAME(conns), &k);
	}

	if (outbound && portless) {
		/* One mapping per (inside host, remote, protocol): no port to vary. */
		v.addr = ext;
		v.port = 0;
		v.dir = NFP_NAT_REWRITE_SRC;
		v.kind = NFP_NAT_KIND_SNAT;
		r = NFP_NAME(create)(&k, &v);
		if (r < 0)
			return NFP_NAME(table_full)();
		if (r == 1)
			return NFP_NAME(drop)(NFP_NAT_C_OTHER_CLASH);
		nfp_percpu_inc(&NFP_NAME(stats), r == 0 ? NFP_NAT_C_NEW_SNAT : NFP_NAT_C_REPAIRED);
	} else if (outbound) {
		r = NFP_NAME(snat_new)(&k, &v);
		if (r == NFP_NAT_C_TABLE_FULL)
			return NFP_NAME(table_full)();
		if (r == NFP_NAT_C_PORT_EXHAUSTED)
			return NFP_NAME(drop)(NFP_NAT_C_PORT_EXHAUSTED);
		nfp_percpu_inc(&NFP_NAME(stats), r);
	} else {
		struct nfp_nat_fwd_key fwk = {};
		struct nfp_nat_fwd *fwd;

		if (portless || k.proto == IPPROTO_ICMP)
			return NFP_NAME(untouched)();
		fwk.port = k.dport;
		fwk.proto = k.proto;
		fwd = bpf_map_lookup_elem(&NFP_NAME(forwards), &fwk);
		if (!fwd)
			return NFP_NAME(untouched)();
		if (ttl_low)
			return NFP_NAME(drop)(NFP_NAT_C_TTL);
		v.addr = fwd->addr;
		v.port = fwd->port;
		v.dir = NFP_NAT_REWRITE_DST;
		v.kind = NFP_NAT_KIND_DNAT;
		r = NFP_NAME(create)(&k, &v);
		if (r < 0)
			return NFP_NAME(table_full)();
		if (r == 1)
			return NFP_NAME(drop)(NFP_NAT_C_DNAT_CLASH);
		nfp_percpu_inc(&NFP_NAME(stats), r == 0 ? NFP_NAT_C_NEW_DNAT : NFP_NAT_C_REPAIRED);
	}

translate:
	r = NFP_NAME(translate)(ctx, meta, &v, portless);
	if (r >= 0 && (p->flags & NFP_F_FRAG)) /* a first fragment: the later ones follow it */
		bpf_map_update_elem(&NFP_NAME(frags), &fk, &v, BPF_ANY);
	return r;
}
