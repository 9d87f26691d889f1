"""The programming model as a user meets it: bpf/examples/ttl_guard.c, built for both
hooks, and two instances of it inlined into one program with different constants."""
from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

import nfpipe
from nfpipe.catalog.base import SourceNF
from nfpipe.nfabi import Verdict
from nfpipe.testing import load_nf
from tests.nf.fused import two_instances

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
TTL_GUARD = ROOT / "bpf" / "examples" / "ttl_guard.c"


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_ttl_guard_standalone(hook):
    with load_nf(SourceNF(TTL_GUARD, {"min_ttl": 3}), hook) as nf:
        cases = [
            (Ether() / IP(ttl=64) / UDP(), 0),
            (Ether() / IP(ttl=4) / UDP(), 0),
            (Ether() / IP(ttl=3) / UDP(), Verdict.DROP),
            (Ether() / IPv6(hlim=1) / UDP(), Verdict.DROP),
            (Ether() / ARP(), 0),
        ]
        for pkt, want in cases:
            run = nf.run(pkt)
            assert run.result == want, pkt.summary()
            assert run.retval == nf.expected_retval(want)
            assert run.data == bytes(pkt)
        assert sum(nf.maps["dropped"][0]) == 2
        assert set(nf.maps) == {"dropped"}           # only this node's maps, by short name


def test_two_instances_fused_into_one_program(compile_c):
    spec = nfpipe.ObjectSpec.from_file(compile_c(two_instances(TTL_GUARD), "fused_ttl"))
    assert {"a__dropped", "b__dropped"} <= set(spec.maps)
    assert {"a__min_ttl", "b__min_ttl"} <= set(spec.variables)
    with nfpipe.Object.load(spec, constants={"a__min_ttl": 5, "b__min_ttl": 10}) as o:
        prog = o.programs["fused"]
        assert prog.test_run(Ether() / IP(ttl=4) / UDP()).retval == 1      # a drops
        assert prog.test_run(Ether() / IP(ttl=8) / UDP()).retval == 1      # a passes, b drops
        assert prog.test_run(Ether() / IP(ttl=11) / UDP()).retval == 2     # both pass
        assert sum(o.maps["a__dropped"][0]) == 1
        assert sum(o.maps["b__dropped"][0]) == 1


TABLE_NF = """#include <nfpipe/nf.h>
static const __u32 NFP_NAME(tab)[8] = {0x9e37, 0x79b9, 0x7f4a, 0x7c15,
                                       0xf39c, 0xc060, 0x5ced, 0xc834};
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} NFP_NAME(sum) SEC(".maps");
static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)
{
	__u32 zero = 0;
	__u64 *s;

	if (nfp_parse(ctx, meta) < 0)
		return NFP_DROP;
	s = bpf_map_lookup_elem(&NFP_NAME(sum), &zero);
	if (s)
		__sync_fetch_and_add(s, NFP_NAME(tab)[meta->pkt.ttl & 7]);
	return NFP_PORT(0);
}
"""


@pytest.mark.parametrize("linking", ["tailcall", "fused"])
def test_a_static_const_table_is_read_with_every_compiler(tmp_path, linking):
    """A user's `static const` lookup table: clang 14 puts it in a mergeable
    .rodata.cst32 section while naming it in .rodata's BTF; it loads and reads the
    table the same from every compiler."""
    src = tmp_path / "table.c"
    src.write_text(TABLE_NF)
    f = tmp_path / "tab.yaml"
    f.write_text(f"pipeline: tab\nhook: xdp\nnodes:\n  - {{id: t, nf: {src}}}\n"
                 f"edges:\n  - t -> pass\n")
    tab = [0x9e37, 0x79b9, 0x7f4a, 0x7c15, 0xf39c, 0xc060, 0x5ced, 0xc834]
    with nfpipe.Pipeline.from_file(f, linking=linking) as p:
        for ttl in (64, 3, 7):
            assert p.test_run(bytes(Ether() / IP(ttl=ttl) / UDP())).retval == 2   # XDP_PASS
        assert p.node_maps("t")["sum"][0] == sum(tab[t & 7] for t in (64, 3, 7))
