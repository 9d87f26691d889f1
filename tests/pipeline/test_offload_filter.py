"""The catalog filter offloaded: its offload flavour (filter.c with NFP_OFFLOAD) has the
linear classifier only, sized to the device's maps, and its control plane finds that
geometry in the maps it is given.  Loaded unbound on the host it must give the plain
build's verdicts and hit counters; on netdevsim's geometry (2 entries a map: one
linear entry per generation) a rule update flips generations like the host's, and a
rule set that does not fit is refused with nothing written.  The device itself is in
the offload VM (offload/guest.py ``rules_offloaded``)."""
from __future__ import annotations

import json

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

from nfpipe import resources
from nfpipe.catalog.filter import Filter, FilterModel
from nfpipe.compose import build, make_plan
from nfpipe.compose.offload import offload_build
from nfpipe.compose.tiers import tiered_build
from nfpipe.errors import SpecError
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec

DROP, PASS = 1, 2                       # XDP_DROP, XDP_PASS
SEEDS = [{"action": "drop", "proto": "udp", "name": "no UDP"},
         {"action": "drop", "proto": "tcp", "dport": [80, 443], "name": "no web"}]
E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
PACKETS = [E / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=53),
           E / IP() / TCP(dport=80), E / IP() / TCP(dport=443), E / IP() / TCP(dport=22),
           E / IPv6() / TCP(dport=443), E / IPv6() / TCP(dport=22), E / IPv6() / UDP(),
           E / Dot1Q(vlan=7) / IP() / TCP(dport=80),
           E / IP(flags="MF", frag=0) / TCP(dport=22),
           E / IP(frag=100) / Raw(b"x" * 16),
           E / IP(ihl=4) / Raw(b"y" * 20),                       # malformed
           Ether(bytes(E / IP() / TCP(dport=80))[:30])]         # truncated in IPv4


def spec(rules: list, *, extra: str = "", node: str = "fw") -> PipelineSpec:
    cfg = {"default": "allow", "fragments": "l3", "malformed": "drop", "rules": rules}
    return PipelineSpec.from_text(f"""
pipeline: offl-fw
hook: xdp
linking: fused
nodes:
{extra}  - id: {node}
    nf: filter
    config: {json.dumps(cfg)}
edges:
{"  - g -> " + node if extra else ""}
  - {node} -> pass
""")


def test_the_offload_flavour_has_the_linear_classifier_only():
    b = build(make_plan(spec(SEEDS)))
    ob = offload_build(b, "nfp")
    assert "fw" not in ob.bad_nodes, ob.problems
    assert sorted(k for k in ob.spec.maps if k.startswith("fw__")) == [
        "fw__active", "fw__gens", "fw__hits", "fw__lin", "fw__stats"]
    assert ob.spec.maps["fw__lin"].max_entries == 2 * 64            # the host's geometry
    small = offload_build(b, "netdevsim")                           # 2 entries a map
    assert "fw" in small.bad_nodes
    assert ("node 'fw': 2 rules need 3 linear entries" in "\n".join(small.problems) and
            "holds 1 linear entry and 1 rule per generation" in small.problems[0])
    forced = offload_build(build(make_plan(spec([{"action": "drop", "proto": "udp"}]))), "nfp")
    assert forced.ok
    b.plan.spec.nodes["fw"].impl.classifier = "tables"
    assert "classifier: tables cannot be offloaded" in offload_build(b, "nfp").problems[0]


@pytest.mark.kernel
def test_the_offload_flavour_gives_the_plain_builds_verdicts_and_hits():
    b = build(make_plan(spec(SEEDS)))
    ob = offload_build(b, "nfp")
    impl = b.plan.spec.nodes["fw"].impl
    model = FilterModel(impl)
    with Pipeline.load(b) as plain, Pipeline.load(b, offload=ob) as off:
        want = [plain.test_run(p).retval for p in PACKETS]
        got = [off.test_run(p).retval for p in PACKETS]
        assert got == want
        assert got == [PASS if model.run(bytes(p))[0] == 0 else DROP for p in PACKETS]  # port 0: pass
        assert DROP in got and PASS in got
        assert impl.hits(off.node_maps("fw")) == impl.hits(plain.node_maps("fw")) == [2, 4]
        assert Filter.stats(off.node_maps("fw")) == Filter.stats(plain.node_maps("fw"))


@pytest.mark.kernel
def test_on_a_device_of_two_entries_a_rule_update_flips_and_a_bigger_set_is_refused():
    udp, tcp22 = E / IP() / UDP(), E / IP() / TCP(dport=22)
    b = build(make_plan(spec([{"action": "drop", "proto": "udp"}])))
    ob = offload_build(b, "netdevsim")
    assert ob.ok, ob.problems
    impl = b.plan.spec.nodes["fw"].impl
    with Pipeline.load(b, offload=ob) as off:
        maps = off.node_maps("fw")
        assert {maps[k].max_entries for k in ("gens", "lin", "hits", "stats")} == {2}
        assert [off.test_run(p).retval for p in (udp, tcp22)] == [DROP, PASS]
        assert impl.hits(maps) == [1]
        gen = Filter.active_generation(maps)
        impl.update(maps, {"rules": [{"action": "drop", "proto": "tcp", "dport": 22}]})
        assert Filter.active_generation(maps) == gen ^ 1
        assert maps["lin"][gen ^ 1]["dport"] == [22, 22]
        assert [off.test_run(p).retval for p in (udp, tcp22)] == [PASS, DROP]
        assert impl.hits(maps) == [1]                   # the new rule's own count
        before = [maps["lin"][i] for i in range(2)], [maps["gens"][i] for i in range(2)]
        with pytest.raises(SpecError, match=r"2 rules need 2 linear entries.*holds 1 linear "
                                            r"entry and 1 rule per generation"):
            impl.update(maps, {"rules": [{"action": "drop", "proto": "tcp", "dport": 22},
                                         {"action": "drop", "proto": "udp"}]})
        assert Filter.active_generation(maps) == gen ^ 1
        assert ([maps["lin"][i] for i in range(2)], [maps["gens"][i] for i in range(2)]) == \
            before
        assert [off.test_run(p).retval for p in (udp, tcp22)] == [PASS, DROP]


def test_a_filter_that_does_not_fit_stays_on_the_host_behind_a_nic_tier():
    guard = f"  - {{id: g, nf: {resources.bpf_dir() / 'examples' / 'ttl_guard.c'}}}\n"
    b = build(make_plan(spec(SEEDS, extra=guard)))
    tiers, why = tiered_build(b, "netdevsim")
    assert tiers is not None, why
    assert tiers.nic_nodes == ["g"] and tiers.resume == ["fw"]
