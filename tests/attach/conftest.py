"""Fixtures of the attach tests: a private network namespace holding a veth pair, the
counting programs, and a way to send frames over the pair.

Every test gets its own namespace ("nfa" + 6 random hex digits) with ``va`` <-> ``vb``
inside, both up; the namespace is removed in a ``finally`` (which also deletes the
veths and every attachment on them), whatever the test did.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

COUNT_C = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TEST_PROTO 0x88B5   /* IEEE local experimental ethertype: only our frames count */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static __always_inline int ours(void *data, void *data_end)
{
	struct ethhdr *eth = data;

	return (void *)(eth + 1) <= data_end && eth->h_proto == bpf_htons(TEST_PROTO);
}

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&hits, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_a(struct xdp_md *ctx)
{
	if (ours((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		bump(0);
	return XDP_PASS;
}

SEC("xdp")
int xdp_b(struct xdp_md *ctx)
{
	if (ours((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		bump(1);
	return XDP_PASS;
}

SEC("tc")
int tc_a(struct __sk_buff *skb)
{
	if (ours((void *)(long)skb->data, (void *)(long)skb->data_end))
		bump(2);
	return TC_ACT_OK;
}

SEC("tc")
int tc_b(struct __sk_buff *skb)
{
	if (ours((void *)(long)skb->data, (void *)(long)skb->data_end))
		bump(3);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
"""

TEST_PROTO = 0x88B5
SLOT = {"xdp_a": 0, "xdp_b": 1, "tc_a": 2, "tc_b": 3}


@pytest.fixture(scope="session")
def count_spec(tmp_path_factory):
    import nfpipe
    from nfpipe.toolchain.compiler import compile as nf_compile
    src = tmp_path_factory.mktemp("attach") / "attach_count.c"
    src.write_text(COUNT_C)
    return nfpipe.ObjectSpec.from_file(nf_compile(src))


@pytest.fixture
def progs(count_spec):
    """The counting object loaded: ``.programs[...]`` and ``.maps['hits']``."""
    import nfpipe
    with nfpipe.Object.load(count_spec) as obj:
        yield obj


class Pair:
    """A veth pair va <-> vb inside a namespace of its own."""

    def __init__(self, ns: str):
        self.ns = ns
        self.a, self.b = "va", "vb"

    def ipr(self):
        """An IPRoute socket opened inside the namespace (use as a context manager)."""
        from pyroute2 import IPRoute

        from nfpipe.kernel.netns import in_netns
        with in_netns(self.ns):
            return IPRoute()

    def send(self, count: int = 10, *, via: str | None = None) -> None:
        """Send *count* frames of ethertype 0x88B5 out of *via* (default va) to its peer."""
        from nfpipe.kernel.netns import in_netns
        dev = via or self.a
        with in_netns(self.ns):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            s.bind((dev, 0))
            frame = (b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" +
                     TEST_PROTO.to_bytes(2, "big") + b"nfpipe attach test".ljust(46, b"\0"))
            for _ in range(count):
                s.send(frame)
        finally:
            s.close()


def wait_for(fn, timeout: float = 10.0):
    """Poll *fn* until it returns something truthy (veth native XDP runs in NAPI,
    after send() returned); returns the last value."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(0.02)


@pytest.fixture
def pair():
    from pyroute2 import IPRoute, netns

    from nfpipe.kernel.netns import in_netns
    ns = "nfa" + os.urandom(3).hex()
    netns.create(ns)
    try:
        with in_netns(ns), IPRoute() as ipr:
            ipr.link("add", ifname="va", kind="veth", peer={"ifname": "vb"})
            for name in ("va", "vb"):
                idx = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=idx, state="up")
            # until linkwatch has run (operstate UP), the qdisc is still noop and drops
            # what AF_PACKET sends: wait for it so no test loses its first frames
            def oper_up():
                return all(link.get_attr("IFLA_OPERSTATE") == "UP"
                           for link in ipr.get_links() if link.get_attr("IFLA_IFNAME")
                           in ("va", "vb"))
            assert wait_for(oper_up, timeout=10.0), "veth pair did not come up"
        yield Pair(ns)
    finally:
        netns.remove(ns)
