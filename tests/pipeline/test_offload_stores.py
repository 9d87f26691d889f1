"""nfp's rule for stores, checked ahead of the device: map values change only by
atomic adds (no plain store, no fetching or other atomic), and the context is not
written.  netdevsim does not check it, so the offload build does
(``nfpipe.compose.offload_stores``)."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from nfpipe.compose import build, make_plan
from nfpipe.compose.offload import offload_build
from nfpipe.compose.offload_stores import refused_stores
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec

ROOT = Path(__file__).parent.parent.parent


def asm(*insns: tuple[int, int, int, int, int]) -> bytes:
    """(opcode, dst, src, off, imm) tuples as program bytes."""
    return b"".join(struct.pack("<BBhi", op, dst | src << 4, off, imm)
                    for op, dst, src, off, imm in insns)


LOOKUP = [(0xBF, 6, 1, 0, 0),          # r6 = r1: the context, kept across the call
          (0xB7, 1, 0, 0, 0),          # r1 = 0 (a map pointer in a real program)
          (0x85, 0, 0, 0, 1)]          # call bpf_map_lookup_elem: r0 = a map value
EXIT = [(0xB7, 0, 0, 0, 2), (0x95, 0, 0, 0, 0)]


@pytest.mark.parametrize("body, refused", [
    # a plain store through the value, after pointer arithmetic on a copy
    ([(0xBF, 7, 0, 0, 0), (0x07, 7, 0, 0, 8), (0x7B, 7, 2, 0, 0)], {2: "plain store"}),
    # spilled to the stack and read back into another register
    ([(0x7B, 10, 0, -8, 0), (0xB7, 0, 0, 0, 0), (0x79, 3, 10, -8, 0), (0x62, 3, 0, 0, 7)],
     {3: "plain store"}),
    # an atomic add is what nfp takes; a fetching one, or an or, is not
    ([(0xDB, 0, 2, 0, 0x00)], {}),
    ([(0xDB, 0, 2, 0, 0x01)], {0: "add with fetch"}),
    ([(0xC3, 0, 2, 0, 0x40)], {0: "(or)"}),
    # the stack and scalars are fine; a slot overwritten by a scalar is no pointer
    ([(0x7B, 10, 0, -8, 0), (0x7A, 10, 0, -8, 5), (0x79, 3, 10, -8, 0), (0x7B, 3, 2, 0, 0),
      (0x7B, 10, 2, -16, 0)], {}),
    # one path makes r7 the value, the other the stack: the store may be to the value
    ([(0xBF, 7, 10, 0, 0), (0x15, 2, 0, 1, 0), (0xBF, 7, 0, 0, 0), (0x7A, 7, 0, 0, 1)],
     {3: "plain store"}),
    # the context (r1 at entry, r6 after the call), written through a copy
    ([(0xBF, 7, 6, 0, 0), (0x63, 7, 2, 0, 0)], {1: "context"}),
])
def test_the_stores_nfp_refuses(body, refused):
    got = {r.insn - len(LOOKUP): r.why for r in refused_stores(asm(*LOOKUP, *body, *EXIT))}
    assert set(got) == set(refused), got
    for i, what in refused.items():
        assert what in got[i], got


def test_a_subprogram_sees_the_callers_pointer():
    """A BPF-to-BPF call passes the value in r1; the callee's plain store is refused."""
    prog = asm(*LOOKUP, (0xBF, 1, 0, 0, 0), (0x85, 0, 1, 0, 2), *EXIT,   # call +2
               (0x7A, 1, 0, 0, 1), (0x95, 0, 0, 0, 0))
    assert [r.insn for r in refused_stores(prog)] == [7]


PLAIN_STORE_NF = r"""
#include <nfpipe/nf.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(seen) SEC(".maps");

static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&NFP_NAME(seen), &zero);

	if (n)
		*n += 1;
	return NFP_PORT(0);
}
"""


def _pipeline(nf: Path) -> PipelineSpec:
    return PipelineSpec.from_text(f"""
pipeline: offl-stores
hook: xdp
mode: offload
nodes:
  - id: count
    nf: {nf}
  - id: guard
    nf: {ROOT}/bpf/examples/ttl_guard.c
edges: [count -> guard, guard -> pass]
""")


def test_a_plain_store_keeps_its_node_off_nfp_but_not_off_netdevsim(tmp_path):
    nf = tmp_path / "count_plain.c"
    nf.write_text(PLAIN_STORE_NF)
    b = build(make_plan(_pipeline(nf)))
    nfp = offload_build(b, "nfp")
    assert not nfp.ok
    assert nfp.bad_nodes == {"count"}, nfp.problems
    (text,) = nfp.problems
    assert text.startswith("node 'count' makes a plain store to a map value"), text
    assert "count_plain.c:17" in text and "nfp refuses" in text, text
    assert "stores: no - node 'count'" in nfp.explain()
    # netdevsim checks no such rule: its build takes it, and says nothing of stores
    assert offload_build(b, "netdevsim").ok


@pytest.mark.kernel
def test_the_shipped_offloadable_pipeline_only_adds_atomically():
    """split-guard, built by the compiler in use (CI runs this with the wheel's clang and
    Debian's 14 and 19: __sync_fetch_and_add compiles to a fetching atomic with the
    newer ones, so nfpipe spells out the add), has no store nfp refuses; and the atomic
    add it uses runs: the guard's drop counter counts in the offload flavour too."""
    spec = PipelineSpec.from_file(ROOT / "examples" / "split-guard.yaml")
    b = build(make_plan(spec, mode="offload"))
    ob = offload_build(b, "nfp")
    assert ob.ok, ob.problems
    assert [r for p in ob.spec.programs.values() for r in refused_stores(p.insns)] == []
    assert "stores: yes" in ob.explain()
    with Pipeline.load(b, offload=ob) as p:
        pkt = Ether() / IP(ttl=3) / UDP()      # the udp guard's min_ttl is 8: dropped
        assert [p.test_run(pkt).retval for _ in range(3)] == [1, 1, 1]      # XDP_DROP
        dropped = p.objects["<fused>"].maps["guard_udp__dropped"]
        assert dropped[0] == 3
