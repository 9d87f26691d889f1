/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * nfpipe's programming model for network functions (NFs).
 *
 * An NF is one C file that defines
 *
 *     static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
 *
 * returning an output port (NFP_PORT(n), n < NFP_MAX_PORTS) that the pipeline
 * wires to the next NF, or a final verdict (NFP_PASS, NFP_DROP, NFP_TX,
 * NFP_REDIRECT, NFP_ABORTED) that ends the pipeline.  The same file builds for
 * XDP (-DNFP_HOOK_XDP) and TC (-DNFP_HOOK_TC): it sees packets only through
 * struct nfp_ctx and the helpers below, never through xdp_md or __sk_buff.
 *
 * Everything an NF declares at file scope (maps, constants, helper functions)
 * is named through NFP_NAME(x), which expands to <instance>__x.  nfpipe
 * compiles the file once per pipeline node with -DNFP_INSTANCE=<node id>, so
 * two nodes of the same NF get their own maps and constants, and several NFs
 * (even two instances of one) can be inlined into one program (fused mode).
 *
 * Per-packet metadata (struct nfp_meta) is the one home for what an NF hands
 * to the next: the parsed headers, a classification mark, the redirect target,
 * the chosen backend.  In tail-call mode it lives in the per-CPU array
 * nfp_meta_map, shared by every program of the pipeline (a tail-call chain runs
 * to its end on one CPU with bottom halves disabled, in XDP native, XDP generic
 * and TC alike); in fused mode it is a variable on the program's stack.  NFs
 * only ever see a pointer to it.
 *
 * See bpf/README.md for the full model and a minimal user NF.
 */
#ifndef NFPIPE_NF_H
#define NFPIPE_NF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* ---- hook ------------------------------------------------------------------ */

#if defined(NFP_HOOK_XDP) && !defined(NFP_HOOK_TC)
typedef struct xdp_md nfp_hook_ctx_t;
#define NFP_HOOK_NAME "xdp"
#elif defined(NFP_HOOK_TC) && !defined(NFP_HOOK_XDP)
typedef struct __sk_buff nfp_hook_ctx_t;
#define NFP_HOOK_NAME "tc"
#else
#error "define exactly one of NFP_HOOK_XDP or NFP_HOOK_TC (nfpipe's build does this)"
#endif

/* ---- naming per node instance ------------------------------------------------- */

#ifndef NFP_INSTANCE
#error "NFP_INSTANCE (the node id) must be defined; nfpipe's build does this"
#endif
#define NFP__CAT3(a, b, c) a##b##c
#define NFP__XCAT3(a, b, c) NFP__CAT3(a, b, c)
/* NFP_NAME(rules) -> <instance>__rules: maps, constants and functions of one node. */
#define NFP_NAME(x) NFP__XCAT3(NFP_INSTANCE, __, x)
#define NFP__STR(x) #x
#define NFP__XSTR(x) NFP__STR(x)
#define NFP_INSTANCE_STR NFP__XSTR(NFP_INSTANCE)

/* A load-time constant of this node: `NFP_CONST(__u32, limit) = 100;`, read as
 * NFP_CFG(limit).  nfpipe sets it from the pipeline's node config before the
 * program is loaded; the verifier sees its value (dead branches vanish). */
#ifndef NFP_OFFLOAD
#define NFP_CONST(type, name) volatile const type NFP_NAME(name)
#else
/* The offload build: a device-bound program may not read .rodata (the kernel has no
 * direct value access for offloaded maps), so nfpipe compiles each constant in: it
 * defines <instance>__<name> as the configured value before including the NF, and
 * this declaration only keeps the default's syntax (and type) compiling. */
#define NFP_CONST(type, name) \
	static const type __attribute__((unused)) NFP__XCAT3(NFP_INSTANCE, __nfp_default_, name)
/* Offloaded maps are hash and array only: per-CPU counters become shared ones, and
 * every write to them is an atomic add (what an offload device can do to a value). */
#define BPF_MAP_TYPE_PERCPU_ARRAY BPF_MAP_TYPE_ARRAY
#define BPF_MAP_TYPE_PERCPU_HASH BPF_MAP_TYPE_HASH
#endif
#define NFP_CFG(name) NFP_NAME(name)

/* An 802.1Q / 802.1ad tag after the MAC addresses (struct vlan_hdr is not UAPI). */
struct nfp_vlanhdr {
	__be16 tci;
	__be16 proto;
};

/* ICMP and ICMPv6 share this layout for what nfpipe reads (linux/icmp.h pulls in
 * libc headers, so nfpipe declares its own). */
struct nfp_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 sequence;
};
#define NFP_ICMP_ECHOREPLY 0
#define NFP_ICMP_ECHO 8
#define NFP_ICMPV6_ECHO_REQUEST 128
#define NFP_ICMPV6_ECHO_REPLY 129
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

/* ---- ports and verdicts ------------------------------------------------------- */

#define NFP_MAX_PORTS 8
#define NFP_PORT(n) (n)

enum nfp_verdict {
	NFP_PASS = -1,     /* to the kernel's stack (XDP_PASS / TC_ACT_OK) */
	NFP_DROP = -2,     /* XDP_DROP / TC_ACT_SHOT */
	NFP_TX = -3,       /* back out of the interface it came in on */
	NFP_REDIRECT = -4, /* out of meta->redirect_ifindex */
	NFP_ABORTED = -5,  /* a bug or an impossible state: dropped and traced */
};
#define NFP_VERDICT_MIN NFP_ABORTED
#define NFP_IS_VERDICT(r) ((r) < 0)

/* ---- packet and metadata -------------------------------------------------------- */

struct nfp_ctx {
	nfp_hook_ctx_t *hook;
	void *data;
	void *data_end;
};

/* nfp_pkt.flags */
#define NFP_F_PARSED (1 << 0)     /* nfp_parse ran on this packet */
#define NFP_F_MALFORMED (1 << 1)  /* truncated or inconsistent headers */
#define NFP_F_L4 (1 << 2)         /* a complete TCP/UDP/ICMP header is at l4_off */
#define NFP_F_FRAG (1 << 3)       /* part of a fragmented datagram */
#define NFP_F_FRAG_LATER (1 << 4) /* a non-first fragment: carries no L4 header */
#define NFP_F_IP_OPTIONS (1 << 5) /* IPv4 header longer than 20 bytes */
#define NFP_F_IPV6_EXT (1 << 6)   /* IPv6 extension headers were skipped */
#define NFP_F_TOO_DEEP (1 << 7)   /* more VLAN tags or extension headers than parsed */
#define NFP_F_INCOMPLETE (1 << 8) /* valid as far as seen, but not parsed to its L4 header */
#define NFP_F_AH (1 << 9)         /* an IPsec AH header was skipped to reach l4_proto */

#define NFP_MAX_VLANS 2
#define NFP_MAX_IPV6_EXT 8

/* Parsed headers.  Offsets count from the start of the packet; addresses and
 * ports are in network byte order, as on the wire; everything else is host
 * order.  IPv4 addresses are in addr[0], the other words zero. */
struct nfp_pkt {
	__u16 flags;
	__u16 l3_proto; /* ETH_P_IP, ETH_P_IPV6, or the unparsed ethertype */
	__u16 l3_off;
	__u16 l4_off;
	__u16 vlan[NFP_MAX_VLANS]; /* VLAN ids, outermost first */
	__u8 vlan_depth;
	__u8 l4_proto;  /* IPPROTO_* after extension headers */
	__u8 tcp_flags; /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE CWR */
	__u8 ttl;       /* IPv4 TTL or IPv6 hop limit */
	__be16 sport;   /* TCP/UDP ports; ICMP: sport = echo id, dport = type<<8|code */
	__be16 dport;
	__u16 pad;
	__be32 saddr[4];
	__be32 daddr[4];
};

struct nfp_meta {
	struct nfp_pkt pkt;
	__u32 mark;             /* classification: any NF may set it, later NFs may read it */
	__u32 redirect_ifindex; /* target of NFP_REDIRECT */
	__u32 backend;          /* the load balancer's chosen backend id (0: none) */
	__u32 hops;             /* NFs this packet has been through */
	__u32 user[4];          /* free for user NFs */
};

/* ---- context ------------------------------------------------------------------------- */

static __always_inline void nfp_ctx_reload(struct nfp_ctx *ctx)
{
	void *data = (void *)(long)ctx->hook->data;
	void *data_end = (void *)(long)ctx->hook->data_end;

	/* The loads are 32 bits wide: hide that from the optimizer, or it may spill a
	 * packet pointer as its low 32 bits, which the verifier refuses. */
	asm volatile("" : "+r"(data), "+r"(data_end));
	ctx->data = data;
	ctx->data_end = data_end;
}

#ifndef NFP_TC_PULL_LEN
#define NFP_TC_PULL_LEN 256 /* linear bytes a TC NF may need: headers, not payload */
#endif

static __always_inline void nfp_ctx_init(struct nfp_ctx *ctx, nfp_hook_ctx_t *hook)
{
	ctx->hook = hook;
#ifdef NFP_HOOK_TC
	/* A non-linear skb may hold headers outside the linear area: pull them in. */
	if (hook->data_end - hook->data < hook->len &&
	    hook->data_end - hook->data < NFP_TC_PULL_LEN)
		bpf_skb_pull_data(hook, hook->len < NFP_TC_PULL_LEN ? hook->len : NFP_TC_PULL_LEN);
#endif
	nfp_ctx_reload(ctx);
}

static __always_inline __u32 nfp_pkt_len(struct nfp_ctx *ctx)
{
#ifdef NFP_HOOK_TC
	return ctx->hook->len;
#else
	return ctx->data_end - ctx->data;
#endif
}

/* Set to 1 by nfpipe when the pipeline runs at tc-egress (a load-time constant of
 * every object; 0 for XDP, tc-ingress and NFs loaded on their own). */
#ifndef NFP_OFFLOAD
volatile const __u8 nfp_hook_egress = 0;
#else
#define nfp_hook_egress 0 /* offload is XDP only */
#endif

/* Is the packet arriving (XDP, tc-ingress) rather than leaving (tc-egress)?  An
 * arriving packet has not been routed yet: its TTL is still to be decremented. */
static __always_inline int nfp_at_ingress(void)
{
#ifdef NFP_HOOK_XDP
	return 1;
#else
	return !nfp_hook_egress;
#endif
}

static __always_inline __u32 nfp_ingress_ifindex(struct nfp_ctx *ctx)
{
#ifdef NFP_HOOK_TC
	return ctx->hook->ifindex;
#else
	return ctx->hook->ingress_ifindex;
#endif
}

/* A pointer to `len` bytes at packet offset `off`, or NULL if the packet is shorter
 * or `off` is past NFP_OFF_MASK (16 KiB: nfpipe reads headers, never further).  The
 * mask after the check lets the verifier prove `off + len` stays within the
 * packet's 64 KiB range. */
#define NFP_OFF_MASK 0x3fff
#define nfp_ptr(ctx, off, len)                                                           \
	({                                                                               \
		__u32 __o = (off);                                                       \
		void *__p = (ctx)->data + (__o & NFP_OFF_MASK);                          \
		(__o > NFP_OFF_MASK || __p + (len) > (ctx)->data_end) ? (void *)0 : __p; \
	})

/* `v` unchanged, but unknown to the optimizer from here on: give each packet access
 * its own offset, so the compiler cannot fold one bounds check into another (the
 * verifier tracks every packet pointer on its own, and refuses an access whose
 * check was folded away). */
static __always_inline __u32 nfp_opaque(__u32 v)
{
	asm volatile("" : "+r"(v));
	return v;
}

/* ---- parsing --------------------------------------------------------------------------- */

/*
 * What nfp_parse says about a packet it cannot take apart:
 *
 *   NFP_F_MALFORMED alone       the headers are truncated or inconsistent: the
 *                               kernel's stack would drop the packet too (an IP
 *                               total length past the frame, an IHL under 5, a
 *                               TCP data offset under 5, a header cut short);
 *   NFP_F_MALFORMED | INCOMPLETE the packet may be valid, but its headers go on
 *                               further than nfpipe reads them: a third VLAN tag,
 *                               an IPv6 extension-header chain longer than
 *                               NFP_MAX_IPV6_EXT, a first fragment that ends
 *                               before its L4 header does (RFC 1858, RFC 7112),
 *                               a header past NFP_OFF_MASK or past what a TC
 *                               program can read linearly.  The stack may accept
 *                               it, so an NF that enforces policy must not let it
 *                               through on a path that skips the policy (the
 *                               filter always drops it).
 *
 * Headers are read only inside the IP datagram (its total or payload length),
 * never from the frame's padding after it.
 */

/* `n` bytes of header at `off`, inside the datagram that ends at `end`; NULL
 * (with NFP_F_INCOMPLETE where that is the reason) if they are not there. */
static __always_inline void *nfp__hdr(struct nfp_ctx *ctx, struct nfp_pkt *p, __u32 off, __u32 n,
                                      __u32 end)
{
	void *h;

	if (off + n > end) {
		/* The datagram ends first: truncated, unless this is a first fragment
		 * and the rest of the header is in the next one. */
		if (p->flags & NFP_F_FRAG)
			p->flags |= NFP_F_INCOMPLETE;
		return (void *)0;
	}
	h = nfp_ptr(ctx, off, n);
	if (!h)
		p->flags |= NFP_F_INCOMPLETE; /* in the packet, but past what we can read */
	return h;
}

/* A field of *p read back from memory, not from the register that was stored there:
 * the verifier then knows only its type's range, so the paths that reach a parse
 * step with different offsets (0, 1 or 2 VLAN tags; each length of an IPv6
 * extension-header chain) become one state there instead of one each. */
#define nfp__reread(field) (*(volatile typeof(field) *)&(field))

static __always_inline int nfp__parse_l4(struct nfp_ctx *ctx, struct nfp_pkt *p, __u32 end)
{
	__u32 off = nfp__reread(p->l4_off);

	if (p->flags & NFP_F_FRAG_LATER)
		return 0; /* no L4 header in this fragment */
	switch (p->l4_proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = nfp__hdr(ctx, p, off, sizeof(struct tcphdr), end);

		if (!th || th->doff < 5 || !nfp__hdr(ctx, p, off, th->doff * 4, end))
			return -1;
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = nfp__hdr(ctx, p, off, sizeof(struct udphdr), end);

		if (!uh)
			return -1;
		p->sport = uh->source;
		p->dport = uh->dest;
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6: {
		struct nfp_icmphdr *ih = nfp__hdr(ctx, p, off, sizeof(struct nfp_icmphdr), end);

		if (!ih)
			return -1;
		p->dport = bpf_htons((__u16)ih->type << 8 | ih->code);
		if (ih->type == NFP_ICMP_ECHO || ih->type == NFP_ICMP_ECHOREPLY ||
		    ih->type == NFP_ICMPV6_ECHO_REQUEST || ih->type == NFP_ICMPV6_ECHO_REPLY)
			p->sport = ih->id;
		break;
	}
	default:
		return 0; /* no ports for this protocol */
	}
	p->flags |= NFP_F_L4;
	return 0;
}

/* An IPv6 extension header's first two bytes, and AH's (RFC 4302). */
struct nfp__ipv6_opt {
	__u8 nexthdr;
	__u8 hdrlen;
};
struct nfp__ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 id;
};

static __always_inline int nfp__parse_ipv4(struct nfp_ctx *ctx, struct nfp_pkt *p)
{
	__u32 l3 = nfp__reread(p->l3_off);
	struct iphdr *ip = nfp_ptr(ctx, l3, sizeof(struct iphdr));
	__u32 hlen, end;
	__u16 frag;

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return -1;
	hlen = ip->ihl * 4;
	end = l3 + bpf_ntohs(ip->tot_len);
	if (!nfp_ptr(ctx, l3, hlen) || bpf_ntohs(ip->tot_len) < hlen || end > nfp_pkt_len(ctx))
		return -1;
	if (hlen > sizeof(struct iphdr))
		p->flags |= NFP_F_IP_OPTIONS;
	p->saddr[0] = ip->saddr;
	p->daddr[0] = ip->daddr;
	p->l4_proto = ip->protocol;
	p->ttl = ip->ttl;
	p->l4_off = l3 + hlen;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & (0x2000 | 0x1fff)) /* IP_MF or a fragment offset */
		p->flags |= NFP_F_FRAG;
	if (frag & 0x1fff)
		p->flags |= NFP_F_FRAG_LATER;
	if (p->l4_proto == IPPROTO_AH && !(p->flags & NFP_F_FRAG_LATER)) {
		/* Transport-mode AH: the protocol it protects follows in clear. */
		struct nfp__ipv6_opt *ah = nfp__hdr(ctx, p, p->l4_off, 8, end);

		if (!ah)
			return -1;
		p->flags |= NFP_F_AH;
		p->l4_proto = ah->nexthdr;
		p->l4_off += (ah->hdrlen + 2) * 4;
		if (p->l4_proto == IPPROTO_AH) {
			p->flags |= NFP_F_TOO_DEEP | NFP_F_INCOMPLETE; /* AH in AH */
			return -1;
		}
	}
	return nfp__parse_l4(ctx, p, end);
}

static __always_inline int nfp__ipv6_ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	       next == IPPROTO_AH || next == IPPROTO_FRAGMENT;
}

static __always_inline int nfp__parse_ipv6(struct nfp_ctx *ctx, struct nfp_pkt *p)
{
	__u32 l3 = nfp__reread(p->l3_off);
	struct ipv6hdr *ip6 = nfp_ptr(ctx, l3, sizeof(struct ipv6hdr));
	__u32 off, end;
	__u8 next;
	int i;

	if (!ip6 || ip6->version != 6)
		return -1;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);
	p->ttl = ip6->hop_limit;
	next = ip6->nexthdr;
	off = l3 + sizeof(struct ipv6hdr);
	/* Payload length 0 with a hop-by-hop header: a jumbogram (RFC 2675), to the end
	 * of the packet; otherwise the stack trims the packet to the payload length. */
	if (ip6->payload_len == 0 && next == IPPROTO_HOPOPTS)
		end = nfp_pkt_len(ctx);
	else
		end = off + bpf_ntohs(ip6->payload_len);
	if (end > nfp_pkt_len(ctx))
		return -1;

	/* The chain's state is kept in *p and read back at each header: every iteration then
	 * starts from one verifier state, whatever the headers before it were. */
	p->l4_proto = next;
	p->l4_off = off;
#pragma unroll
	for (i = 0; i < NFP_MAX_IPV6_EXT; i++) {
		struct nfp__ipv6_opt *o;

		next = nfp__reread(p->l4_proto);
		off = nfp__reread(p->l4_off);
		if (!nfp__ipv6_ext(next))
			break;
		o = nfp__hdr(ctx, p, off, 8, end);
		if (!o)
			goto fail;
		p->flags |= NFP_F_IPV6_EXT;
		if (next == IPPROTO_FRAGMENT) {
			struct nfp__ipv6_frag *f = (void *)o;

			p->flags |= NFP_F_FRAG;
			p->l4_proto = f->nexthdr;
			p->l4_off = off + sizeof(*f);
			if (bpf_ntohs(f->frag_off) & 0xfff8) {
				/* A later fragment: what follows is payload, not headers. */
				p->flags |= NFP_F_FRAG_LATER;
				break;
			}
			continue;
		}
		p->l4_proto = o->nexthdr;
		if (next == IPPROTO_AH) {
			p->flags |= NFP_F_AH;
			p->l4_off = off + (o->hdrlen + 2) * 4;
		} else {
			p->l4_off = off + (o->hdrlen + 1) * 8;
		}
	}
	next = nfp__reread(p->l4_proto);
	off = nfp__reread(p->l4_off);
	if (!(p->flags & NFP_F_FRAG_LATER) && nfp__ipv6_ext(next)) {
		/* A chain longer than we follow: the stack follows it, we cannot judge it. */
		p->flags |= NFP_F_TOO_DEEP | NFP_F_INCOMPLETE;
		goto fail;
	}
	if (off > end) { /* the last extension header runs past the datagram */
		if (p->flags & NFP_F_FRAG)
			p->flags |= NFP_F_INCOMPLETE;
		goto fail;
	}
	return nfp__parse_l4(ctx, p, end);
fail:
	p->l4_proto = 0; /* no L4 header was reached */
	p->l4_off = 0;
	return -1;
}

/*
 * The parser proper, into *p: Ethernet, up to NFP_MAX_VLANS 802.1Q/802.1ad
 * tags, IPv4 (with options) or IPv6 (with extension headers), and the
 * TCP/UDP/ICMP header.
 *
 * Written for the verifier as much as for the CPU.  It is inlined (a BPF-to-BPF
 * call costs a call and a return, and on CPUs with return-thunk mitigations such
 * as AMD's SRSO "safe RET" the return alone costs several ns), so every state the
 * verifier keeps at its end is walked again through the NF that called it.  It
 * therefore ends in few states: offsets are written to *p and read back
 * (nfp__reread) instead of being carried in registers, and nfp_parse() makes
 * the NF read its results from memory with fresh packet pointers.  That took a
 * trivial NF from 80k verified instructions to 20k, and the catalog's from 87k-201k
 * to 20k-58k (examples/edge.yaml, tail calls).
 */
static __always_inline int nfp__parse_pkt(nfp_hook_ctx_t *hook, struct nfp_pkt *p)
{
	struct nfp_ctx c = { .hook = hook }, *ctx = &c;
	struct ethhdr *eth;
	__u16 proto;
	__u32 off = sizeof(struct ethhdr);
	int i, ret = 0;

	if (!p)
		return -1;
	nfp_ctx_reload(ctx);
	__builtin_memset(p, 0, sizeof(*p));
	p->flags = NFP_F_PARSED;

	eth = nfp_ptr(ctx, 0, sizeof(struct ethhdr));
	if (!eth)
		goto malformed;
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < NFP_MAX_VLANS; i++) {
		struct nfp_vlanhdr *vh;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		vh = nfp_ptr(ctx, off, sizeof(struct nfp_vlanhdr));
		if (!vh)
			goto malformed;
		p->vlan[i] = bpf_ntohs(vh->tci) & 0x0fff;
		p->vlan_depth++;
		proto = vh->proto;
		off += sizeof(struct nfp_vlanhdr);
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		p->flags |= NFP_F_TOO_DEEP | NFP_F_INCOMPLETE; /* a third tag: refuse to guess */
		goto malformed;
	}
#ifdef NFP_HOOK_TC
	/* On TC ingress the outer tag may already be in skb->vlan_tci. */
	if (hook->vlan_present && p->vlan_depth < NFP_MAX_VLANS) {
		if (p->vlan_depth)
			p->vlan[1] = p->vlan[0];
		p->vlan[0] = hook->vlan_tci & 0x0fff;
		p->vlan_depth++;
	}
#endif
	p->l3_proto = bpf_ntohs(proto);
	p->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		ret = nfp__parse_ipv4(ctx, p);
	else if (proto == bpf_htons(ETH_P_IPV6))
		ret = nfp__parse_ipv6(ctx, p);
	if (ret < 0)
		goto malformed;
	return 0;
malformed:
	p->flags |= NFP_F_MALFORMED;
	return -1;
}

/*
 * Parse the packet into meta->pkt (nfp__parse_pkt).  Parses once per packet:
 * later calls (by later NFs) return the cached result until nfp_invalidate().
 * Returns 0, or -1 for a malformed packet (NFP_F_MALFORMED set, and
 * NFP_F_INCOMPLETE if it may be valid: see "parsing" above) — an NF must decide
 * what that means for it, never treat it as "no match".
 */
static __always_inline int nfp_parse(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	if (!(meta->pkt.flags & NFP_F_PARSED))
		nfp__parse_pkt(ctx->hook, &meta->pkt);
	/* The NF reads what the parser wrote from memory, not from the parser's registers,
	 * and takes fresh packet pointers, which carry none of the bounds the parser's
	 * checks proved on its path: then the NF's code is verified once for all packets,
	 * not once per path through the parser (0, 1 or 2 VLAN tags, ...). */
	asm volatile("" ::: "memory");
	nfp_ctx_reload(ctx);
	return (meta->pkt.flags & NFP_F_MALFORMED) ? -1 : 0;
}

/* Forget the parse (after an NF changed header sizes: encapsulation, VLAN push). */
static __always_inline void nfp_invalidate(struct nfp_meta *meta)
{
	meta->pkt.flags = 0;
}

static __always_inline int nfp_is_ipv4(const struct nfp_meta *meta)
{
	return meta->pkt.l3_proto == ETH_P_IP;
}

static __always_inline int nfp_is_ipv6(const struct nfp_meta *meta)
{
	return meta->pkt.l3_proto == ETH_P_IPV6;
}

/* ---- rewriting and checksums ------------------------------------------------------------ */

/* Flags of nfp_l4_csum_replace (low 4 bits: the size of the changed field, 2 or 4). */
#define NFP_CSUM_PSEUDO 0x10 /* the field is part of the pseudo-header (an address) */
#define NFP_CSUM_UDP 0x20    /* UDP: a zero checksum means "none" and stays zero */

static __always_inline __u16 nfp_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* RFC 1624 incremental update: HC' = ~(~HC + ~m + m'), for a 16- or 32-bit field. */
static __always_inline __u16 nfp_csum_update(__u16 check, __u32 from, __u32 to, int size)
{
	__u32 sum = (__u16)~check;

	if (size == 4) {
		sum += (__u16) ~(from >> 16) + (__u16) ~(from & 0xffff);
		sum += (to >> 16) + (to & 0xffff);
	} else {
		sum += (__u16)~from + (to & 0xffff);
	}
	return ~nfp_csum_fold(sum);
}

/* Write `len` bytes (a compile-time constant) at packet offset `off`.  Returns
 * 0 or -1.  Packet pointers taken before the call are invalid after it. */
static __always_inline int nfp_store(struct nfp_ctx *ctx, __u32 off, const void *src, __u32 len)
{
#ifdef NFP_HOOK_TC
	if (bpf_skb_store_bytes(ctx->hook, off, src, len, 0))
		return -1;
	nfp_ctx_reload(ctx);
	return 0;
#else
	void *dst = nfp_ptr(ctx, off, len);

	if (!dst)
		return -1;
	__builtin_memcpy(dst, src, len);
	return 0;
#endif
}

/* The IPv4 header checksum at `csum_off` after a field changed from `from` to `to`
 * (both in network order; size 2 or 4). */
static __always_inline int nfp_l3_csum_replace(struct nfp_ctx *ctx, __u32 csum_off, __u32 from,
                                               __u32 to, int size)
{
#ifdef NFP_HOOK_TC
	if (bpf_l3_csum_replace(ctx->hook, csum_off, from, to, size))
		return -1;
	nfp_ctx_reload(ctx);
	return 0;
#else
	__u16 *sum = nfp_ptr(ctx, csum_off, 2);

	if (!sum)
		return -1;
	*sum = nfp_csum_update(*sum, from, to, size);
	return 0;
#endif
}

/* A TCP/UDP/ICMP checksum `sum` after a field changed from `from` to `to` (flags as
 * nfp_l4_csum_replace's; the pseudo-header flag makes no difference to the sum). */
static __always_inline __u16 nfp_l4_csum(__u16 sum, __u32 from, __u32 to, int flags)
{
	__u16 v;

	if ((flags & NFP_CSUM_UDP) && sum == 0)
		return 0; /* UDP without checksum stays without */
	v = nfp_csum_update(sum, from, to, flags & 0xf);
	if ((flags & NFP_CSUM_UDP) && v == 0)
		v = 0xffff; /* 0 would mean "no checksum" */
	return v;
}

/* The TCP/UDP/ICMP checksum at `csum_off` after a field changed from `from` to
 * `to`.  In TC this uses the kernel helper, which also keeps skb->csum right for
 * CHECKSUM_COMPLETE and CHECKSUM_PARTIAL packets. */
static __always_inline int nfp_l4_csum_replace(struct nfp_ctx *ctx, __u32 csum_off, __u32 from,
                                               __u32 to, int flags)
{
#ifdef NFP_HOOK_TC
	__u64 f = flags & 0xf;

	if (flags & NFP_CSUM_PSEUDO)
		f |= BPF_F_PSEUDO_HDR;
	if (flags & NFP_CSUM_UDP)
		f |= BPF_F_MARK_MANGLED_0;
	if (bpf_l4_csum_replace(ctx->hook, csum_off, from, to, f))
		return -1;
	nfp_ctx_reload(ctx);
	return 0;
#else
	__u16 *sum = nfp_ptr(ctx, csum_off, 2);

	if (!sum)
		return -1;
	*sum = nfp_l4_csum(*sum, from, to, flags);
	return 0;
#endif
}

static __always_inline int nfp_redirect(struct nfp_meta *meta, __u32 ifindex)
{
	meta->redirect_ifindex = ifindex;
	return NFP_REDIRECT;
}

/* ---- counters ----------------------------------------------------------------------------- */

/* *p += v as one atomic add that returns nothing (BPF_ATOMIC | BPF_ADD, no BPF_FETCH:
 * "lock *(u64 *)(rX + 0) += rY"), the one atomic an offload device such as nfp takes
 * on a map value.  __sync_fetch_and_add() with its result unused compiles to it with
 * clang 14-19, but to the fetching form with newer clangs (the ziglang wheel's), which
 * nfp refuses: this spells the instruction out for every compiler. */
static __always_inline void nfp_atomic_add64(__u64 *p, __u64 v)
{
	asm volatile("lock *(u64 *)(%0 + 0) += %1" : : "r"(p), "r"(v) : "memory");
}

/* One more in slot `idx` of a per-CPU array of __u64 counters: each CPU has its own
 * copy, so no atomic is needed; a slot out of range counts nothing.  The control
 * plane sums the CPUs when it reads them. */
static __always_inline void nfp_percpu_inc(void *map, __u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(map, &idx);

	if (c)
#ifdef NFP_OFFLOAD
		nfp_atomic_add64(c, 1);
#else
		*c += 1;
#endif
}

/* ---- shared maps of a pipeline ---------------------------------------------------------- */

#if !defined(NFP_FUSED) || defined(NFP_META_PERCPU)
/* Per-packet metadata in tail-call mode, and in a fused program whose frame cannot
 * hold it (compose/fused.py; else it is on the stack).  One value per CPU: a program
 * runs to its end on the CPU it started on, and does not nest with itself. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nfp_meta);
} nfp_meta_map SEC(".maps");
#endif

/* ---- verdict to hook return code --------------------------------------------------------- */

static __always_inline int nfp_hook_verdict(struct nfp_ctx *ctx, struct nfp_meta *meta, int v)
{
#ifdef NFP_HOOK_XDP
	switch (v) {
	case NFP_PASS:
		return XDP_PASS;
	case NFP_DROP:
		return XDP_DROP;
	case NFP_TX:
		return XDP_TX;
#ifndef NFP_OFFLOAD /* offloaded, a redirect aborts: the offload build keeps it on the host */
	case NFP_REDIRECT:
		return bpf_redirect(meta->redirect_ifindex, 0);
#endif
	default:
		return XDP_ABORTED;
	}
#else
	switch (v) {
	case NFP_PASS:
		return TC_ACT_OK;
	case NFP_DROP:
		return TC_ACT_SHOT;
	case NFP_TX:
		return bpf_redirect(ctx->hook->ifindex, 0);
	case NFP_REDIRECT:
		return bpf_redirect(meta->redirect_ifindex, 0);
	default:
		return TC_ACT_SHOT;
	}
#endif
}

#endif /* NFPIPE_NF_H */
