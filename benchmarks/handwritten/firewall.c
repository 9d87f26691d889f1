// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The seeds' firewall written by hand, as one XDP program: what nfpipe's fused
 * firewall is measured against (`nfpipe bench handwritten`).
 *
 *   drop all UDP, drop TCP to 80 and 443, pass the rest;
 *   malformed (truncated or inconsistent headers) and what cannot be judged (a
 *   third VLAN tag, an IPv6 chain longer than 8 headers, a first fragment that
 *   ends inside its L4 header) are dropped; later fragments are judged on their
 *   protocol (no ports: never a TCP port match).
 *
 * The parse is the one nfpipe's filter does: Ethernet, two 802.1Q/802.1ad tags,
 * IPv4 with options and AH, IPv6 with hop-by-hop, routing, destination options,
 * fragment and AH headers; headers are read inside the datagram only.  Nothing
 * is kept for later: no metadata, no counters.  tests/nf/test_handwritten.py checks
 * that it agrees with nfpipe on the seeds' packets.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define MAX_VLANS 2
#define MAX_IPV6_EXT 8

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct opt_hdr { /* the first bytes of every IPv6 extension header and of AH */
	__u8 nexthdr;
	__u8 hdrlen;
	__u16 rest;
	__u32 more;
};

/* Bounds: the packet's end and the datagram's end (IP total length). */
static __always_inline void *hdr(void *data, void *data_end, __u32 off, __u32 len, __u32 end)
{
	void *p = data + (off & 0xffff);

	if (off + len > end || p + len > data_end)
		return NULL;
	return p;
}

/* The verdict of L4 protocol `proto` at `off`; `later`: a non-first fragment. */
static __always_inline int judge(void *data, void *data_end, __u8 proto, __u32 off, __u32 end,
                                 int later)
{
	__be16 *ports;

	if (proto == IPPROTO_UDP)
		return XDP_DROP; /* whole, truncated or fragment: all UDP goes */
	if (proto != IPPROTO_TCP || later)
		return XDP_PASS;
	ports = hdr(data, data_end, off, 20, end);
	if (!ports)
		return XDP_DROP;
	if (((__u8 *)ports)[12] >> 4 < 5 || off + (((__u8 *)ports)[12] >> 4) * 4 > end)
		return XDP_DROP;
	if (ports[1] == bpf_htons(80) || ports[1] == bpf_htons(443))
		return XDP_DROP;
	return XDP_PASS;
}

static __always_inline int ipv4(void *data, void *data_end, __u32 off)
{
	struct iphdr *ip = hdr(data, data_end, off, sizeof(*ip), 0xffff);
	__u32 hlen, end, l4;
	__u16 frag;
	__u8 proto;

	if (!ip || ip->version != 4 || ip->ihl < 5)
		return XDP_DROP;
	hlen = ip->ihl * 4;
	end = off + bpf_ntohs(ip->tot_len);
	if (end > (__u32)(data_end - data) || bpf_ntohs(ip->tot_len) < hlen)
		return XDP_DROP;
	l4 = off + hlen;
	proto = ip->protocol;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & 0x1fff)
		return judge(data, data_end, proto, l4, end, 1);
	if (proto == IPPROTO_AH) {
		struct opt_hdr *ah = hdr(data, data_end, l4, 8, end);

		if (!ah || ah->nexthdr == IPPROTO_AH)
			return XDP_DROP;
		proto = ah->nexthdr;
		l4 += (ah->hdrlen + 2) * 4;
	}
	return judge(data, data_end, proto, l4, end, 0);
}

static __always_inline int ext(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	       next == IPPROTO_AH || next == IPPROTO_FRAGMENT;
}

static __always_inline int ipv6(void *data, void *data_end, __u32 off)
{
	struct ipv6hdr *ip6 = hdr(data, data_end, off, sizeof(*ip6), 0xffff);
	__u32 end, len = data_end - data;
	int i, later = 0;
	__u8 next;

	if (!ip6 || ip6->version != 6)
		return XDP_DROP;
	next = ip6->nexthdr;
	off += sizeof(*ip6);
	end = (ip6->payload_len == 0 && next == IPPROTO_HOPOPTS) ?
	              len :
	              off + bpf_ntohs(ip6->payload_len);
	if (end > len)
		return XDP_DROP;
#pragma unroll
	for (i = 0; i < MAX_IPV6_EXT; i++) {
		struct opt_hdr *o;

		if (!ext(next))
			break;
		o = hdr(data, data_end, off, 8, end);
		if (!o)
			return XDP_DROP;
		if (next == IPPROTO_FRAGMENT) {
			next = o->nexthdr;
			off += 8;
			if (bpf_ntohs(o->rest) & 0xfff8) {
				later = 1;
				break;
			}
		} else if (next == IPPROTO_AH) {
			next = o->nexthdr;
			off += (o->hdrlen + 2) * 4;
		} else {
			next = o->nexthdr;
			off += (o->hdrlen + 1) * 8;
		}
	}
	if ((!later && ext(next)) || off > end)
		return XDP_DROP;
	return judge(data, data_end, next, off, end, later);
}

SEC("xdp")
int firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;
	int i;

	if (data + sizeof(*eth) > data_end)
		return XDP_DROP;
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < MAX_VLANS; i++) {
		struct vlan_hdr *vh;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return XDP_DROP;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return XDP_DROP;
	if (proto == bpf_htons(ETH_P_IP))
		return ipv4(data, data_end, off);
	if (proto == bpf_htons(ETH_P_IPV6))
		return ipv6(data, data_end, off);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
