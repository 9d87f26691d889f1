"""nfpipe.loader.ringbuf against the kernel: an XDP program writes records of chosen sizes
into a BPF ring buffer (some discarded), and the pure-Python consumer must read back
exactly the committed ones, in order, across many wrap-arounds of the data area."""
from __future__ import annotations

import mmap
import random

import pytest

import nfpipe
from nfpipe.loader.ringbuf import RingBuffer, record_size

pytestmark = pytest.mark.kernel

XDP_DROP, XDP_PASS = 1, 2
SIZES = [1, 8, 13, 100, 1000]       # payload sizes the program can reserve
RING = 4096                          # one page: wraps quickly

PROG = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, %(ring)d);
} rb SEC(".maps");

#define EMIT(n) {                                                           \
	void *r = bpf_ringbuf_reserve(&rb, n, 0);                           \
	if (!r)                                                             \
		return XDP_DROP;                                            \
	if (bpf_xdp_load_bytes(ctx, 14, r, n)) {                            \
		bpf_ringbuf_discard(r, 0);                                  \
		return XDP_ABORTED;                                         \
	}                                                                   \
	if (discard)                                                        \
		bpf_ringbuf_discard(r, 0);                                  \
	else                                                                \
		bpf_ringbuf_submit(r, 0);                                   \
	return XDP_PASS;                                                    \
}

/* Packet bytes 14: which size, 15: discard it; the record is bytes 14.. of the packet. */
SEC("xdp")
int rb_out(struct xdp_md *ctx)
{
	unsigned char *d = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	int discard;

	if (d + 16 > end)
		return XDP_ABORTED;
	discard = d[15];
	switch (d[14]) {
	case 0: EMIT(%(s0)d)
	case 1: EMIT(%(s1)d)
	case 2: EMIT(%(s2)d)
	case 3: EMIT(%(s3)d)
	case 4: EMIT(%(s4)d)
	}
	return XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
""" % dict(ring=RING, **{f"s{i}": n for i, n in enumerate(SIZES)})


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    src = tmp_path_factory.mktemp("rb") / "rb_out.c"
    src.write_text(PROG)
    return nfpipe.ObjectSpec.from_file(nfpipe.compile(src))


@pytest.fixture
def obj(spec):
    with nfpipe.Object.load(spec) as o:
        yield o


def packet(rng: random.Random, which: int, discard: bool) -> bytes:
    body = bytes([which, int(discard)]) + rng.randbytes(max(SIZES))
    return bytes(14) + body


def emit(obj, data: bytes) -> int:
    return obj.programs["rb_out"].test_run(data).retval


def test_layout_assumptions():
    assert RING % mmap.PAGESIZE == 0
    assert record_size(1) == 16 and record_size(8) == 16 and record_size(13) == 24
    assert record_size(1000) == 1008


def test_records_read_back_exactly_across_wraparound(obj):
    rng = random.Random(1234)
    rb = RingBuffer(obj.maps["rb"])
    try:
        assert rb.size == RING and rb.drain() == [] and not rb.poll(0)
        pos, straddled, discarded, expected = 0, 0, 0, []
        for _step in range(600):
            which = rng.randrange(len(SIZES))
            discard = rng.random() < 0.25
            data = packet(rng, which, discard)
            n = SIZES[which]
            if pos - rb.consumer_pos + record_size(n) >= RING:
                # Would not fit: the consumer must catch up first.
                assert rb.poll(0)
                got = rb.drain()
                assert got == expected
                expected = []
                assert rb.consumer_pos == rb.producer_pos == pos
            assert emit(obj, data) == XDP_PASS
            if (pos & (RING - 1)) + 8 + n > RING:
                straddled += 1
            pos += record_size(n)
            if discard:
                discarded += 1
            else:
                expected.append(data[14:14 + n])
            if rng.random() < 0.1:
                assert rb.drain() == expected
                expected = []
        assert rb.drain() == expected
        assert rb.producer_pos == rb.consumer_pos == pos
        assert pos > 20 * RING and straddled >= 10 and discarded >= 50
    finally:
        rb.close()


def test_full_ring_refuses_then_frees(obj):
    rng = random.Random(7)
    with RingBuffer(obj.maps["rb"]) as rb:
        # 1000-byte records take 1008 bytes; the kernel keeps the in-flight span < size.
        fits = (RING - 1) // record_size(1000)
        sent = [packet(rng, 4, False) for _ in range(fits + 2)]
        codes = [emit(obj, p) for p in sent]
        assert codes == [XDP_PASS] * fits + [XDP_DROP] * 2
        assert rb.drain() == [p[14:14 + 1000] for p in sent[:fits]]
        assert emit(obj, sent[-1]) == XDP_PASS          # space again after consuming
        assert list(rb) == [sent[-1][14:1014]]
        assert not rb.poll(0.01)


def test_discarded_only_ring_drains_to_nothing(obj):
    rng = random.Random(9)
    with RingBuffer(obj.maps["rb"]) as rb:
        for _ in range(5):
            assert emit(obj, packet(rng, 2, True)) == XDP_PASS
        assert rb.available() == 5 * record_size(13)
        assert rb.drain() == []
        assert rb.available() == 0


def test_drain_limit_and_iterator_resume(obj):
    rng = random.Random(11)
    with RingBuffer(obj.maps["rb"]) as rb:
        sent = [packet(rng, i % 4, False) for i in range(6)]
        for p in sent:
            emit(obj, p)
        want = [p[14:14 + SIZES[p[14]]] for p in sent]
        assert rb.drain(limit=2) == want[:2]
        assert rb.drain() == want[2:]


def test_rejects_other_map_types():
    from nfpipe.kernel import abi
    from nfpipe.loader.maps import Map
    from nfpipe.loader.objspec import MapSpec
    with Map.create(MapSpec("arr", abi.MapType.ARRAY, 4, 8, 1)) as m:
        with pytest.raises(TypeError, match="RINGBUF"):
            RingBuffer(m)


def test_poll_wakes_up_on_a_new_record(obj):
    import threading
    import time
    rng = random.Random(13)
    data = packet(rng, 1, False)
    with RingBuffer(obj.maps["rb"]) as rb:
        assert not rb.poll(0.05)
        t = threading.Timer(0.2, emit, (obj, data))
        start = time.monotonic()
        t.start()
        try:
            assert rb.poll(10)
        finally:
            t.join()
        assert time.monotonic() - start < 5
        assert rb.drain() == [data[14:22]]
