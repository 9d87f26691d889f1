// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * examples/edge.yaml written by hand, as one XDP program: what nfpipe's 4-NF edge
 * pipeline is measured against (`nfpipe bench edge`).
 *
 *   filter     TCP to port 23 is dropped; ICMP takes the side branch; the rest goes on
 *   ttl guard  (ICMP branch) dropped when ttl <= 1, counted
 *   lb         TCP to the VIP 203.0.113.80:80: an established flow keeps its backend
 *              (connection map, the backend still configured: active or draining); a
 *              new one takes the backend of slot flow_hash % 65537 of the Maglev table
 *              (filled by the harness from nfpipe's LB control plane: weights, a
 *              draining backend has no slots) and its connection and reply entries
 *              are made; destination address and port rewritten (IPv4 and TCP
 *              checksums).  A packet from a backend that has a reply entry gets the
 *              VIP back as its source.
 *   nat        masquerade: from 10.0.0.0/8 to outside: source -> 203.0.113.1 and a
 *              port (ICMP echo: the id) of 20000-29999, probed from a hash of the
 *              flow (not nat.c's hash: the port may differ from nfpipe's), with an
 *              entry for each direction made together; the port forward tcp 2222 ->
 *              10.0.2.5:22 for packets to 203.0.113.1; replies and later packets by
 *              their entry (whose other half is looked up, so the LRU keeps both); a
 *              packet arriving with ttl <= 1 makes no state (going out it is left
 *              untouched, coming in it is dropped where it would be translated)
 *   telemetry  per packet: the packet counter, the protocol-class and log2-size
 *              histograms, the flow entry (LRU, packets and bytes by atomic adds,
 *              last seen), SYN-without-ACK per source (LRU), and 1 packet in 1000 per
 *              CPU: its first 96 bytes into a ring buffer
 *
 * The parse is firewall.c's (Ethernet, two VLAN tags, IPv4 with options, IPv6 with
 * extension headers; headers read inside the datagram only); malformed and what
 * cannot be judged is dropped and counted, as the filter does.  The counters and
 * state nfpipe's NFs write per packet are written here too, one map update each (the
 * filter's rule hits, the LB's per-VIP and per-backend packets/bytes/new flows, the
 * NAT's translated/created/untouched counters, the TTL guard's drops); what nfpipe
 * adds as a framework is not: no per-node statistics, no metadata, no tail calls.
 *
 * Left out, because a hand-written program for this one config would leave it out:
 * the config is compiled in (rules, VIP, NAT prefix, external address, forward) where
 * nfpipe reads its rule set, VIP map and forwards map at run time; IPv6 is never
 * balanced or translated, UDP never balanced (edge.yaml has no such VIP; UDP is
 * masqueraded), so the LB keeps IPv4-sized flow keys.  Left out of scope (not fast
 * paths): fragments and AH (dropped), ICMP errors and the ICMP types and protocols
 * NAT translates address-only (dropped going out, never leaked untranslated; left
 * untouched coming in), and the check that an entry's other half is still its own
 * (nat.c remakes a connection whose reply tuple another flow took).
 * tests/nf/test_handwritten_edge.py checks that it agrees with nfpipe byte for byte.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* examples/edge.yaml's config (host order). */
#define TELNET_PORT 23
#define MIN_TTL 1
#define VIP_ADDR 0xcb007150 /* 203.0.113.80 */
#define VIP_PORT 80
#define LB_TABLE_SIZE 65537
#define LB_HASH_SEED 0x6c62 /* lb.c's default: the harness's table is indexed by its hash */
#define NAT_NET 0x0a000000  /* 10.0.0.0/8 */
#define NAT_MASK 0xff000000
#define NAT_EXT 0xcb007101 /* 203.0.113.1 */
#define NAT_PORT_LO 20000
#define NAT_PORT_COUNT 10000
#define NAT_PROBES 16
#define FWD_PORT 2222
#define FWD_ADDR 0x0a000205 /* 10.0.2.5 */
#define FWD_TO_PORT 22
#define SAMPLE_RATE 1000
#define SNAPLEN 96

#define MAX_VLANS 2
#define MAX_IPV6_EXT 8
#define OFF_MASK 0x3fff /* headers are read up to 16 KiB into the packet */

#define LB_BACKENDS 16
#define BE_VALID 1
#define BE_DRAINING 2 /* no slots in the table: keeps its flows, takes no new ones */

#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMPV6 58
#define TCP_SYN 0x02
#define TCP_ACK 0x10

#define NAT_SRC 0 /* which side of the packet an entry rewrites */
#define NAT_DST 1
#define CONT (-1) /* a stage's "go on": any XDP verdict ends the packet */

/* Slots of `counters` (per CPU): one per counter an NF of edge.yaml keeps. */
enum {
	C_FW_TELNET = 0, /* filter: rule hits, default, malformed */
	C_FW_ICMP,
	C_FW_DEFAULT,
	C_FW_MALFORMED,
	C_TTL_DROPPED,
	C_LB_PASSED,
	C_NAT_XLATE_SRC,
	C_NAT_XLATE_DST,
	C_NAT_NEW_SNAT,
	C_NAT_NEW_DNAT,
	C_NAT_UNTOUCHED,
	C_NAT_TTL,
	C_NAT_EXHAUSTED,
	C_NAT_CLASH,
	C_NAT_LEFT_OUT, /* what this program does not translate: dropped or untouched */
	C_TLM_PACKETS,
	C_TLM_SAMPLED,
	C_TLM_RINGBUF_FULL,
	C_TLM_TICK, /* the sampling tick */
	C_COUNT,
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct opt_hdr { /* the first bytes of every IPv6 extension header */
	__u8 nexthdr;
	__u8 hdrlen;
	__u16 rest;
	__u32 more;
};

/* What the parse found.  Offsets are __u16 and read back from memory (reread()), so
 * the verifier goes on from one state whatever the headers before them were. */
struct pkt {
	__u16 l3;
	__u16 l4;
	__u32 len; /* bytes in the frame */
	__u8 ip;   /* 4, 6, or 0: not IP */
	__u8 proto;
	__u8 ttl;
	__u8 tcp_flags;
	__be16 sport; /* TCP/UDP ports; ICMP: sport = echo id, dport = type << 8 | code */
	__be16 dport;
	__be32 saddr[4]; /* IPv4 in word 0 */
	__be32 daddr[4];
};

#define reread(field) (*(volatile typeof(field) *)&(field))

/* ---- maps ---------------------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct lb_backend {
	__be32 addr;
	__be16 port;
	__u8 flags; /* BE_* */
	__u8 pad;
};

struct flow4 { /* an IPv4 5-tuple as on the wire */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct lb_conn {
	__u32 backend;
};

struct lb_rconn {
	__be32 vaddr;
	__be16 vport;
	__u16 pad;
	__u32 backend;
};

struct lb_stats {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows;
	__u64 no_backend;
	__u64 reply_packets;
	__u64 reply_bytes;
};

/* Maglev slot -> backend id (0: none); the harness writes it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_TABLE_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} lb_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_backend);
} lb_backends SEC(".maps");

struct { /* client -> VIP */
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow4);
	__type(value, struct lb_conn);
} lb_conns SEC(".maps");

struct { /* backend -> client */
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow4);
	__type(value, struct lb_rconn);
} lb_rconns SEC(".maps");

struct { /* the VIP's */
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_stats);
} lb_vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_BACKENDS);
	__type(key, __u32);
	__type(value, struct lb_stats);
} lb_backend_stats SEC(".maps");

struct nat_val {
	__be32 addr; /* what to write */
	__be16 port; /* ICMP: the echo id */
	__u8 dir;    /* NAT_SRC / NAT_DST */
	__u8 pad;
};

/* Both directions of every translated connection, keyed as on the wire. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct flow4);
	__type(value, struct nat_val);
} nat_conns SEC(".maps");

struct tlm_key {
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u16 pad;
};

struct tlm_flow {
	__u64 packets;
	__u64 bytes;
	__u64 first_ns;
	__u64 last_ns;
};

struct tlm_src {
	__be32 addr[4];
	__u8 family;
	__u8 pad[3];
};

struct tlm_bucket {
	__u64 packets;
	__u64 bytes;
};

struct tlm_sample {
	__u64 ts_ns;
	__u32 pkt_len;
	__u32 cap_len;
	__u8 data[SNAPLEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tlm_key);
	__type(value, struct tlm_flow);
} tlm_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tlm_src);
	__type(value, __u64);
} tlm_syn SEC(".maps");

struct { /* other L3, IPv4 TCP/UDP/ICMP/other, IPv6 TCP/UDP/ICMPv6/other */
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 9);
	__type(key, __u32);
	__type(value, struct tlm_bucket);
} tlm_proto SEC(".maps");

struct { /* floor(log2(len)) */
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 17);
	__type(key, __u32);
	__type(value, struct tlm_bucket);
} tlm_size SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 262144);
} tlm_samples SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);

	if (c)
		*c += 1;
}

/* ---- parse (firewall.c's) ---------------------------------------------------------------- */

/* Bounds: the packet's end and the datagram's end (IP total length). */
static __always_inline void *hdr(void *data, void *data_end, __u32 off, __u32 len, __u32 end)
{
	void *p = data + (off & OFF_MASK);

	/* Hide p's origin from the optimizer: it must compare the pointer with data_end as
	 * written, not an offset with the packet's length, which the verifier cannot follow. */
	asm volatile("" : "+r"(p));
	if (off > OFF_MASK || off + len > end || p + len > data_end)
		return NULL;
	return p;
}

/* The L4 header of `p->proto` at `off`, inside the datagram ending at `end`. */
static __always_inline int parse_l4(void *data, void *data_end, struct pkt *p, __u32 off, __u32 end)
{
	__u8 *h;

	p->l4 = off;
	if (p->proto == IPPROTO_TCP) {
		h = hdr(data, data_end, off, 20, end);
		if (!h || h[12] >> 4 < 5 || off + (h[12] >> 4) * 4 > end)
			return -1;
		p->tcp_flags = h[13];
	} else if (p->proto == IPPROTO_UDP) {
		h = hdr(data, data_end, off, 8, end);
		if (!h)
			return -1;
	} else if (p->proto == IPPROTO_ICMP || p->proto == ICMPV6) {
		h = hdr(data, data_end, off, 8, end);
		if (!h)
			return -1;
		p->dport = bpf_htons(h[0] << 8 | h[1]);
		if (h[0] == ICMP_ECHO || h[0] == ICMP_ECHOREPLY || h[0] == 128 || h[0] == 129)
			p->sport = *(__be16 *)(h + 4);
		return 0;
	} else {
		return 0; /* no ports */
	}
	p->sport = *(__be16 *)h;
	p->dport = *(__be16 *)(h + 2);
	return 0;
}

static __always_inline int parse_ipv4(void *data, void *data_end, struct pkt *p, __u32 off)
{
	struct iphdr *ip = hdr(data, data_end, off, sizeof(*ip), 0xffff);
	__u32 hlen, end;

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return -1;
	hlen = ip->ihl * 4;
	end = off + bpf_ntohs(ip->tot_len);
	if (end > p->len || bpf_ntohs(ip->tot_len) < hlen)
		return -1;
	if (ip->frag_off & bpf_htons(0x3fff)) /* MF or an offset: fragments left out */
		return -1;
	if (ip->protocol == IPPROTO_AH) /* AH: left out */
		return -1;
	p->ip = 4;
	p->proto = ip->protocol;
	p->ttl = ip->ttl;
	p->saddr[0] = ip->saddr;
	p->daddr[0] = ip->daddr;
	return parse_l4(data, data_end, p, off + hlen, end);
}

static __always_inline int ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	       next == IPPROTO_AH || next == IPPROTO_FRAGMENT;
}

static __always_inline int parse_ipv6(void *data, void *data_end, struct pkt *p, __u32 off)
{
	struct ipv6hdr *ip6 = hdr(data, data_end, off, sizeof(*ip6), 0xffff);
	__u32 end;
	__u8 next;
	int i;

	if (!ip6 || ip6->version != 6)
		return -1;
	next = ip6->nexthdr;
	off += sizeof(*ip6);
	end = (ip6->payload_len == 0 && next == IPPROTO_HOPOPTS) ?
	              p->len :
	              off + bpf_ntohs(ip6->payload_len);
	if (end > p->len)
		return -1;
	p->ip = 6;
	p->ttl = ip6->hop_limit;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);
#pragma unroll
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		struct opt_hdr *o;

		if (!ext(next))
			break;
		if (next == IPPROTO_FRAGMENT || next == IPPROTO_AH)
			return -1; /* left out */
		o = hdr(data, data_end, off, 8, end);
		if (!o)
			return -1;
		next = o->nexthdr;
		off += (o->hdrlen + 1) * 8;
	}
	if (ext(next) || off > end)
		return -1;
	p->proto = next;
	return parse_l4(data, data_end, p, off, end);
}

static __always_inline int parse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;
	int i;

	p->len = data_end - data;
	if (data + sizeof(*eth) > data_end)
		return -1;
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < MAX_VLANS; i++) {
		struct vlan_hdr *vh;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return -1;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return -1;
	p->l3 = off;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(data, data_end, p, off);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(data, data_end, p, off);
	return 0;
}

/* ---- rewriting ------------------------------------------------------------------------- */

static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	return sum + (sum >> 16);
}

/* RFC 1624 (HC' = ~(~HC + ~m + m')) over a 32-bit and a 16-bit field at once. */
static __always_inline __u16 csum_update(__u16 check, __u32 from, __u32 to, __u16 from16,
                                         __u16 to16)
{
	__u32 sum = (__u16)~check;

	sum += (__u16) ~(from >> 16) + (__u16)~from + (to >> 16) + (to & 0xffff);
	sum += (__u16)~from16 + to16;
	return ~fold(sum);
}

/*
 * Rewrite the IPv4 source (dir NAT_SRC) or destination address and port (ICMP: echo
 * id) to `addr` / `port`, with the header checksum and the TCP/UDP (pseudo-header
 * and port) or ICMP (id) checksum; *p follows.  0, or -1 if a header is not there.
 */
static __always_inline int rewrite(struct xdp_md *ctx, struct pkt *p, int dir, __be32 addr,
                                   __be16 port)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 l3 = reread(p->l3) & 0x3f, l4 = reread(p->l4) & 0x7f; /* <= 22, <= 22 + 60 */
	struct iphdr *ip = data + l3;
	__u8 *h = data + l4;
	__be32 *ap, old;
	__be16 *pp, oldp;
	__u16 *check;

	if ((void *)(ip + 1) > data_end || (void *)(h + 8) > data_end)
		return -1;
	ap = dir == NAT_SRC ? &ip->saddr : &ip->daddr;
	old = *ap;
	if (p->proto == IPPROTO_ICMP) {
		pp = (__be16 *)(h + 4);
		check = (__u16 *)(h + 2);
		oldp = *pp;
		*check = csum_update(*check, 0, 0, oldp, port); /* no pseudo-header */
	} else {
		pp = (__be16 *)(dir == NAT_SRC ? h : h + 2);
		check = (__u16 *)(h + 6);
		if (p->proto == IPPROTO_TCP) {
			if ((void *)(h + 20) > data_end)
				return -1;
			check = (__u16 *)(h + 16);
		}
		oldp = *pp;
		if (p->proto == IPPROTO_TCP || *check) { /* a UDP checksum 0 means none */
			__u16 c = csum_update(*check, old, addr, oldp, port);

			*check = (c || p->proto == IPPROTO_TCP) ? c : 0xffff;
		}
	}
	ip->check = csum_update(ip->check, old, addr, 0, 0);
	*ap = addr;
	*pp = port;
	if (dir == NAT_SRC) {
		p->saddr[0] = addr;
		p->sport = port;
	} else {
		p->daddr[0] = addr;
		if (p->proto == IPPROTO_ICMP)
			p->sport = port;
		else
			p->dport = port;
	}
	return 0;
}

/* ---- lb -------------------------------------------------------------------------------------- */

static __always_inline __u32 rotl(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 mm3_mix(__u32 h, __u32 w)
{
	w *= 0xcc9e2d51;
	w = rotl(w, 15);
	w *= 0x1b873593;
	h ^= w;
	h = rotl(h, 13);
	return h * 5 + 0xe6546b64;
}

/* MurmurHash3 (x86_32) of the 40-byte flow key lb.c hashes (IPv4 addresses zero-padded
 * to 16 bytes, ports as wire bytes, protocol and family 4): the harness fills the table
 * from nfpipe's LB, whose slots are indexed by this hash. */
static __always_inline __u32 lb_hash(const struct flow4 *f)
{
	__u32 h = LB_HASH_SEED;

	h = mm3_mix(h, f->saddr);
	h = mm3_mix(mm3_mix(mm3_mix(h, 0), 0), 0);
	h = mm3_mix(h, f->daddr);
	h = mm3_mix(mm3_mix(mm3_mix(h, 0), 0), 0);
	h = mm3_mix(h, (__u32)f->sport | (__u32)f->dport << 16);
	h = mm3_mix(h, f->proto | 4 << 8);
	h ^= 40;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline void lb_count(struct lb_stats *s, __u32 len, int is_new)
{
	if (s) {
		s->packets++;
		s->bytes += len;
		s->new_flows += is_new;
	}
}

static __always_inline int lb_forward(struct xdp_md *ctx, struct pkt *p, struct flow4 *f)
{
	struct lb_stats *vs = 0;
	struct lb_backend *be = 0, target;
	struct lb_conn *c;
	__u32 zero = 0, id = 0, slot, *idp;
	int is_new = 0;

	vs = bpf_map_lookup_elem(&lb_vip_stats, &zero);
	c = bpf_map_lookup_elem(&lb_conns, f);
	if (c) {
		id = c->backend;
		be = bpf_map_lookup_elem(&lb_backends, &id);
		if (be && !(be->flags & BE_VALID))
			be = 0;
	}
	if (!be) {
		slot = lb_hash(f) % LB_TABLE_SIZE;
		idp = bpf_map_lookup_elem(&lb_table, &slot);
		id = idp ? *idp : 0;
		be = id ? bpf_map_lookup_elem(&lb_backends, &id) : 0;
		if (!be || !(be->flags & BE_VALID)) {
			if (vs)
				vs->no_backend++;
			return XDP_DROP;
		}
		is_new = 1;
	}
	target = *be;
	if (is_new) {
		struct lb_conn conn = { .backend = id };
		struct flow4 rf = { .saddr = target.addr,
		                    .daddr = f->saddr,
		                    .sport = target.port,
		                    .dport = f->sport,
		                    .proto = f->proto };
		struct lb_rconn r = { .vaddr = f->daddr, .vport = f->dport, .backend = id };

		bpf_map_update_elem(&lb_conns, f, &conn, BPF_ANY);
		bpf_map_update_elem(&lb_rconns, &rf, &r, BPF_ANY);
	}
	if (rewrite(ctx, p, NAT_DST, target.addr, target.port))
		return XDP_ABORTED;
	lb_count(vs, p->len, is_new);
	lb_count(bpf_map_lookup_elem(&lb_backend_stats, &id), p->len, is_new);
	return CONT;
}

static __always_inline int lb(struct xdp_md *ctx, struct pkt *p)
{
	struct flow4 f = {};
	struct lb_rconn *r;
	struct lb_stats *s;
	__u32 id;

	if (p->ip != 4 || (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)) {
		count(C_LB_PASSED); /* no IPv6 VIP: no IPv6 flow is ours either way */
		return CONT;
	}
	f.saddr = p->saddr[0];
	f.daddr = p->daddr[0];
	f.sport = p->sport;
	f.dport = p->dport;
	f.proto = p->proto;
	if (f.daddr == bpf_htonl(VIP_ADDR) && f.dport == bpf_htons(VIP_PORT) &&
	    f.proto == IPPROTO_TCP)
		return lb_forward(ctx, p, &f);
	r = bpf_map_lookup_elem(&lb_rconns, &f); /* from a backend: the VIP back as source */
	if (!r) {
		count(C_LB_PASSED);
		return CONT;
	}
	id = r->backend;
	if (rewrite(ctx, p, NAT_SRC, r->vaddr, r->vport))
		return XDP_ABORTED;
	s = bpf_map_lookup_elem(&lb_vip_stats, &(__u32){ 0 });
	if (s) {
		s->reply_packets++;
		s->reply_bytes += p->len;
	}
	s = bpf_map_lookup_elem(&lb_backend_stats, &id);
	if (s) {
		s->reply_packets++;
		s->reply_bytes += p->len;
	}
	return CONT;
}

/* ---- nat ------------------------------------------------------------------------------------ */

static __always_inline int internal(__be32 a)
{
	return (bpf_ntohl(a) & NAT_MASK) == NAT_NET;
}

/* The start of the port probe. */
static __always_inline __u32 nat_hash(const struct flow4 *k)
{
	__u32 h = k->saddr ^ rotl(k->daddr, 16);

	h ^= ((__u32)k->sport << 16 | k->dport) + k->proto;
	h *= 0x7feb352d;
	h ^= h >> 15;
	h *= 0x846ca68b;
	return h ^ (h >> 16);
}

/* The key of the packets coming back after `k` was translated by `v`, and their entry. */
static __always_inline void nat_reverse(const struct flow4 *k, const struct nat_val *v,
                                        struct flow4 *rk, struct nat_val *rv)
{
	__builtin_memset(rk, 0, sizeof(*rk));
	rk->proto = k->proto;
	if (v->dir == NAT_SRC) {
		rk->saddr = k->daddr;
		rk->daddr = v->addr;
		rk->sport = k->dport;
		rk->dport = v->port;
		rv->addr = k->saddr;
		rv->port = k->sport;
		rv->dir = NAT_DST;
	} else {
		rk->saddr = v->addr;
		rk->daddr = k->saddr;
		rk->sport = v->port;
		rk->dport = k->sport;
		rv->addr = k->daddr;
		rv->port = k->dport;
		rv->dir = NAT_SRC;
	}
	if (k->proto == IPPROTO_ICMP)
		rk->sport = rk->dport = v->port; /* one id field */
	rv->pad = 0;
}

/* Both entries, the reply side first (BPF_NOEXIST claims its tuple).  0, or -1. */
static __always_inline int nat_create(const struct flow4 *k, const struct nat_val *v)
{
	struct flow4 rk;
	struct nat_val rv;

	nat_reverse(k, v, &rk, &rv);
	if (bpf_map_update_elem(&nat_conns, &rk, &rv, BPF_NOEXIST))
		return -1;
	if (bpf_map_update_elem(&nat_conns, k, v, BPF_ANY)) {
		bpf_map_delete_elem(&nat_conns, &rk);
		return -1;
	}
	return 0;
}

static __always_inline int nat_left_out(int outbound)
{
	count(C_NAT_LEFT_OUT);
	return outbound ? XDP_DROP : CONT;
}

static __always_inline int nat(struct xdp_md *ctx, struct pkt *p)
{
	struct flow4 k = {}, rk;
	struct nat_val v, rv, *hit;
	int outbound, ttl_low, icmp = p->proto == IPPROTO_ICMP, type = bpf_ntohs(p->dport) >> 8;
	__u32 i, idx;

	if (p->ip != 4)
		goto untouched;
	if (p->daddr[0] == bpf_htonl(NAT_EXT) && !internal(p->saddr[0]))
		outbound = 0;
	else if (p->daddr[0] != bpf_htonl(NAT_EXT) && internal(p->saddr[0]) &&
	         !internal(p->daddr[0]))
		outbound = 1;
	else
		goto untouched;
	ttl_low = p->ttl <= 1; /* XDP: arriving, not yet forwarded */
	if (outbound && ttl_low) {
		count(C_NAT_TTL);
		goto untouched;
	}
	if (icmp && !outbound && type == ICMP_ECHO)
		goto untouched; /* a ping of the external address: this host answers */
	if (icmp ? type != (outbound ? ICMP_ECHO : ICMP_ECHOREPLY) :
	           p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return nat_left_out(outbound);

	k.saddr = p->saddr[0];
	k.daddr = p->daddr[0];
	k.sport = p->sport;
	k.dport = icmp ? p->sport : p->dport;
	k.proto = p->proto;
	hit = bpf_map_lookup_elem(&nat_conns, &k);
	if (hit) {
		v = *hit;
		/* Touch the other half, so the LRU keeps both; re-made if it was evicted. */
		nat_reverse(&k, &v, &rk, &rv);
		if (!bpf_map_lookup_elem(&nat_conns, &rk) &&
		    bpf_map_update_elem(&nat_conns, &rk, &rv, BPF_NOEXIST))
			return nat_left_out(outbound);
		if (ttl_low) {
			count(C_NAT_TTL);
			return XDP_DROP;
		}
		goto translate;
	}
	if (outbound) {
		v.addr = bpf_htonl(NAT_EXT);
		v.dir = NAT_SRC;
		v.pad = 0;
		idx = nat_hash(&k) % NAT_PORT_COUNT;
		for (i = 0; i < NAT_PROBES; i++) {
			v.port = bpf_htons(NAT_PORT_LO + idx);
			if (!nat_create(&k, &v))
				break;
			if (++idx >= NAT_PORT_COUNT)
				idx = 0;
		}
		if (i == NAT_PROBES) {
			count(C_NAT_EXHAUSTED);
			return XDP_DROP;
		}
		count(C_NAT_NEW_SNAT);
	} else {
		if (p->proto != IPPROTO_TCP || k.dport != bpf_htons(FWD_PORT))
			goto untouched;
		if (ttl_low) {
			count(C_NAT_TTL);
			return XDP_DROP;
		}
		v.addr = bpf_htonl(FWD_ADDR);
		v.port = bpf_htons(FWD_TO_PORT);
		v.dir = NAT_DST;
		v.pad = 0;
		if (nat_create(&k, &v)) {
			count(C_NAT_CLASH);
			return XDP_DROP;
		}
		count(C_NAT_NEW_DNAT);
	}
translate:
	if (rewrite(ctx, p, v.dir, v.addr, v.port))
		return XDP_ABORTED;
	count(v.dir == NAT_SRC ? C_NAT_XLATE_SRC : C_NAT_XLATE_DST);
	return CONT;
untouched:
	count(C_NAT_UNTOUCHED);
	return CONT;
}

/* ---- telemetry ---------------------------------------------------------------------------- */

static __always_inline void bucket(void *map, __u32 idx, __u32 len)
{
	struct tlm_bucket *b = bpf_map_lookup_elem(map, &idx);

	if (b) {
		b->packets++;
		b->bytes += len;
	}
}

static __always_inline __u32 proto_class(const struct pkt *p)
{
	__u32 base = p->ip == 4 ? 1 : 5;

	if (!p->ip)
		return 0;
	if (p->proto == IPPROTO_TCP)
		return base;
	if (p->proto == IPPROTO_UDP)
		return base + 1;
	if (p->proto == (p->ip == 4 ? IPPROTO_ICMP : ICMPV6))
		return base + 2;
	return base + 3;
}

static __always_inline __u32 log2_len(__u32 len)
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
	return b + (len >> 1);
}

static __always_inline void telemetry(struct xdp_md *ctx, struct pkt *p)
{
	__u64 now = bpf_ktime_get_coarse_ns(), *tick, one = 1, *n; /* flow times: tick-fine */
	__u32 len = p->len, slot = C_TLM_TICK;
	__u64 cap;
	struct tlm_flow *f, init;
	struct tlm_sample *s;

	count(C_TLM_PACKETS);
	bucket(&tlm_proto, proto_class(p), len);
	bucket(&tlm_size, log2_len(len), len);
	if (p->ip) {
		struct tlm_key key = {};

		__builtin_memcpy(key.saddr, p->saddr, 16);
		__builtin_memcpy(key.daddr, p->daddr, 16);
		key.sport = p->sport;
		key.dport = p->dport;
		key.proto = p->proto;
		key.family = p->ip;
		f = bpf_map_lookup_elem(&tlm_flows, &key);
		if (!f) {
			init = (struct tlm_flow){ 1, len, now, now };
			if (!bpf_map_update_elem(&tlm_flows, &key, &init, BPF_NOEXIST))
				goto syn;
			f = bpf_map_lookup_elem(&tlm_flows, &key);
		}
		if (f) {
			__sync_fetch_and_add(&f->packets, 1);
			__sync_fetch_and_add(&f->bytes, len);
			if (f->last_ns < now)
				f->last_ns = now;
		}
syn:
		if (p->proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
			struct tlm_src src = {};

			__builtin_memcpy(src.addr, p->saddr, 16);
			src.family = p->ip;
			n = bpf_map_lookup_elem(&tlm_syn, &src);
			if (n)
				__sync_fetch_and_add(n, 1);
			else if (bpf_map_update_elem(&tlm_syn, &src, &one, BPF_NOEXIST)) {
				n = bpf_map_lookup_elem(&tlm_syn, &src);
				if (n)
					__sync_fetch_and_add(n, 1);
			}
		}
	}
	tick = bpf_map_lookup_elem(&counters, &slot);
	if (!tick || ++*tick % SAMPLE_RATE)
		return;
	s = bpf_ringbuf_reserve(&tlm_samples, sizeof(*s), 0);
	if (!s) {
		count(C_TLM_RINGBUF_FULL);
		return;
	}
	cap = len < SNAPLEN ? len : SNAPLEN;
	asm volatile("%[c] &= 0x7f" : [c] "+r"(cap)); /* a 64-bit bound the verifier sees */
	s->ts_ns = bpf_ktime_get_ns();                /* a sample's own time is precise */
	s->pkt_len = len;
	s->cap_len = cap;
	if (cap < 1 || cap > SNAPLEN || bpf_xdp_load_bytes(ctx, 0, s->data, cap)) {
		bpf_ringbuf_discard(s, 0);
		return;
	}
	bpf_ringbuf_submit(s, 0);
	count(C_TLM_SAMPLED);
}

/* ---- the pipeline ---------------------------------------------------------------------------- */

SEC("xdp")
int edge(struct xdp_md *ctx)
{
	struct pkt p = {};
	int r;

	if (parse(ctx, &p) < 0) {
		count(C_FW_MALFORMED);
		return XDP_DROP;
	}
	if (p.proto == IPPROTO_TCP && p.dport == bpf_htons(TELNET_PORT)) {
		count(C_FW_TELNET);
		return XDP_DROP;
	}
	if (p.ip && p.proto == IPPROTO_ICMP) { /* the side branch: the TTL guard */
		count(C_FW_ICMP);
		if (p.ttl <= MIN_TTL) {
			count(C_TTL_DROPPED);
			return XDP_DROP;
		}
	} else {
		count(C_FW_DEFAULT);
		r = lb(ctx, &p);
		if (r != CONT)
			return r;
	}
	r = nat(ctx, &p);
	if (r != CONT)
		return r;
	telemetry(ctx, &p);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
