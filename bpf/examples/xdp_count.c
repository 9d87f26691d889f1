// SPDX-License-Identifier: GPL-2.0
/* The foundation demo: count packets by IP protocol and drop UDP to one port.
 *
 * - `blocked_udp_port` is a load-time constant (.rodata): set it before load
 *   (`nfpipe prog run ... --set blocked_udp_port=53`) and the verifier sees it.
 * - `counters` is a per-CPU array indexed by verdict, `protocols` a hash of
 *   packets per IP protocol number; `seen` (.bss) counts every packet.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 5); /* one slot per XDP verdict */
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u8); /* IP protocol number */
	__type(value, __u64);
} protocols SEC(".maps");

volatile const __u16 blocked_udp_port = 9; /* UDP discard */
__u64 seen;

static __always_inline int count(__u32 verdict)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &verdict);

	if (c)
		*c += 1;
	return verdict;
}

static __noinline int classify(struct iphdr *ip, void *data_end)
{
	__u8 proto = ip->protocol;
	__u64 one = 1, *n;

	n = bpf_map_lookup_elem(&protocols, &proto);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&protocols, &proto, &one, BPF_NOEXIST);

	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = (void *)ip + ip->ihl * 4;

		if ((void *)(udp + 1) > data_end)
			return XDP_DROP; /* truncated: never let it slip past */
		if (udp->dest == bpf_htons(blocked_udp_port))
			return XDP_DROP;
	}
	return XDP_PASS;
}

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	__sync_fetch_and_add(&seen, 1);
	if ((void *)(eth + 1) > data_end)
		return count(XDP_DROP);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return count(XDP_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return count(XDP_DROP);
	return count(classify(ip, data_end));
}

char LICENSE[] SEC("license") = "GPL";
