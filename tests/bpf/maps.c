// SPDX-License-Identifier: GPL-2.0
/* Loader test: every common map type, global data, subprograms (static and
 * global), all touched by one XDP program.  The test drives it with scapy
 * packets and checks the maps from Python. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct flow_key {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct flow_stats {
	__u64 packets;
	__u64 bytes;
};

struct lpm_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);                  /* source address, network order */
	__type(value, __u64);
} by_source SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} config SEC(".maps");                   /* [0]: verdict override when non-zero */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu_packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, struct flow_key);
	__type(value, struct flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, __u32);                /* verdict for matching sources */
} blocklist SEC(".maps");

volatile const __u32 default_verdict = XDP_PASS;
__u32 last_len = 7;                      /* .data: starts at 7, then the last packet length */
__u64 total_packets;                     /* .bss */

/* A global function: verified on its own by the kernel (needs func_info). */
__noinline int scaled(int x)
{
	return x * 3 + 1;
}

static __noinline int parse_flow(void *data, void *data_end, struct flow_key *key)
{
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return -1;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -1;
	key->saddr = ip->saddr;
	key->daddr = ip->daddr;
	key->proto = ip->protocol;
	if (ip->protocol == IPPROTO_UDP || ip->protocol == IPPROTO_TCP) {
		udp = (void *)ip + ip->ihl * 4;
		if ((void *)(udp + 1) > data_end)
			return -1;
		key->sport = bpf_ntohs(udp->source);
		key->dport = bpf_ntohs(udp->dest);
	}
	return 0;
}

SEC("xdp")
int xdp_maps(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct flow_key key = {};
	struct flow_stats *st, init = {};
	struct lpm_v4 lpm = { .prefixlen = 32 };
	__u32 zero = 0, *override, *blocked;
	__u64 *n, one = 1, len = data_end - data;

	total_packets++;
	last_len = len + scaled(0) - 1;
	n = bpf_map_lookup_elem(&percpu_packets, &zero);
	if (n)
		*n += 1;
	if (parse_flow(data, data_end, &key) < 0)
		return XDP_ABORTED;

	n = bpf_map_lookup_elem(&by_source, &key.saddr);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&by_source, &key.saddr, &one, BPF_NOEXIST);

	st = bpf_map_lookup_elem(&flows, &key);
	if (!st) {
		bpf_map_update_elem(&flows, &key, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&flows, &key);
	}
	if (st) {
		__sync_fetch_and_add(&st->packets, 1);
		__sync_fetch_and_add(&st->bytes, len);
	}

	__builtin_memcpy(lpm.addr, &key.saddr, 4);
	blocked = bpf_map_lookup_elem(&blocklist, &lpm);
	if (blocked)
		return *blocked;
	override = bpf_map_lookup_elem(&config, &zero);
	if (override && *override)
		return *override;
	return default_verdict;
}

char LICENSE[] SEC("license") = "GPL";
