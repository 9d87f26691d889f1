"""Pipeline YAML and graph validation, no kernel: each error names file:line:column."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nfpipe.errors import GraphError, SpecError
from nfpipe.graph import check, linking_for, problems_of
from nfpipe.spec import PipelineErrors, PipelineSpec

ROOT = Path(__file__).parent.parent.parent
TTL = str(ROOT / "bpf" / "examples" / "ttl_guard.c")


def spec(text: str, name: str = "p.yaml") -> PipelineSpec:
    return PipelineSpec.from_text(textwrap.dedent(text).replace("TTL", TTL), name)


def errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec(text)
    err = info.value
    return [str(p) for p in err.problems] if isinstance(err, PipelineErrors) else [str(err)]


GOOD = """\
pipeline: guard
hook: xdp
interfaces: [veth0]
nodes:
  - id: a
    nf: TTL
    config: {min_ttl: 2}
  - id: b
    nf: TTL
    ports: [out, slow]
edges:
  - a.out -> b
  - {from: b.out, to: pass}
  - b.slow -> drop
"""


def test_good_pipeline_parses():
    s = spec(GOOD)
    assert (s.name, s.hook, s.interfaces, s.mode, s.linking, s.entry) == \
        ("guard", "xdp", ["veth0"], "auto", "auto", "a")
    assert list(s.nodes) == ["a", "b"]
    assert s.nodes["b"].ports == ("out", "slow")
    assert [str(e) for e in s.edges] == ["a.out -> b", "b.out -> pass", "b.slow -> drop"]
    assert (s.nodes["a"].pos.line, s.nodes["a"].pos.column) == (5, 5)
    assert s.edges[1].pos.line == 13
    g = check(s)
    assert set(g.successors("a")) == {"b"}
    assert linking_for(s) == "tailcall"


@pytest.mark.parametrize("text,expected", [
    ("pipeline: x\nhook: xdp\nnodes: []\nbogus: 1\n",
     ["p.yaml:4:1: unknown key 'bogus' (expected one of: pipeline, description, hook, "
      "interfaces, mode, linking, entry, nodes, edges)",
      "p.yaml:3:8: a pipeline needs at least one node"]),
    ("pipeline: x\nhook: xpd\nnodes:\n  - {id: a, nf: TTL}\n",
     ["p.yaml:2:7: bad hook 'xpd': expected one of xdp, tc-ingress, tc-egress"]),
    ("pipeline: x\nhook: tc-ingress\nmode: native\nnodes:\n  - {id: a, nf: TTL}\n",
     ["p.yaml:3:7: bad mode 'native': expected one of auto, tcx, clsact"]),
    ("pipeline: x\nhook: xdp\nnodes:\n  - {id: a, nf: TTL}\n  - {id: a, nf: TTL}\n",
     ["p.yaml:5:10: duplicate node id 'a' (first defined at line 4)"]),
    ("pipeline: x\nhook: xdp\nnodes:\n  - {id: 9lives, nf: TTL}\n",
     ["p.yaml:4:10: '9lives' cannot name a node: node ids must be C identifiers (letters, "
      "digits, '_', not starting with a digit, not a C keyword)"]),
    ("pipeline: x\nhook: xdp\nnodes:\n  - {id: a, nf: frobnicator}\n",
     ["p.yaml:4:17: unknown network function 'frobnicator' (the catalog has: filter, nat, "
      "lb, telemetry; or give the path of your own C file)"]),
    ("pipeline: x\nhook: xdp\nnodes:\n  - {id: a, nf: ./missing.c}\n",
     [f"p.yaml:4:17: C source './missing.c' not found (looked at {Path.cwd() / 'missing.c'})"]),
    ("pipeline: x\nhook: xdp\nnodes:\n  - id: a\n    nf: TTL\n    config: [1]\n",
     ["p.yaml:6:13: expected a mapping of config keys, found a list"]),
    ("pipeline: x\nhook: xdp\ninterfaces: [eth0, eth0]\nnodes:\n  - {id: a, nf: TTL}\n",
     ["p.yaml:3:20: interface 'eth0' is listed twice"]),
    ("pipeline: x\nhook: xdp\nnodes:\n  - {id: a, nf: TTL}\nedges:\n  - a.out => pass\n",
     ["p.yaml:6:5: bad edge 'a.out => pass': write 'node.port -> target' (the target a node "
      "id or pass/drop/tx/aborted/redirect:IFACE)"]),
    ("pipeline: off\nhook: xdp\nnodes:\n  - {id: a, nf: TTL}\n",
     ["p.yaml:1:11: YAML reads this name as the boolean false (yes/no/on/off are booleans): "
      "quote it"]),
    ("pipeline: x\nhook: xdp\nhook: tc-ingress\nnodes:\n  - {id: a, nf: TTL}\n",
     ["p.yaml:3:1: duplicate key 'hook' (first given at line 2)"]),
    ("pipeline: x\nhook: xdp\nnodes: [\n",
     ["p.yaml:4:1: invalid YAML: while parsing a flow node: expected the node content, but "
      "found '<stream end>'"]),
])
def test_yaml_errors_name_the_position(text, expected):
    assert errors(text) == expected


def test_graph_problems_are_all_reported_with_positions():
    s = spec("""\
        pipeline: x
        hook: xdp
        entry: a
        nodes:
          - {id: a, nf: TTL}
          - {id: b, nf: TTL}
          - {id: c, nf: TTL}
          - {id: orphan, nf: TTL}
        edges:
          - a.out -> b
          - b.out -> c
          - c.out -> b
          - a.out -> drop
          - a.fast -> drop
          - ghost.out -> pass
          - orphan -> nowhere
        """)
    got = [str(p) for p in problems_of(s)]
    assert got == [
        "p.yaml:13:5: port 'a.out' is wired twice (first at line 10): a port leads to exactly "
        "one place",
        "p.yaml:14:5: edge 'a.fast -> drop': node 'a' (" + TTL + ") has no port 'fast' "
        "(its ports: out)",
        "p.yaml:15:5: edge 'ghost.out -> pass' starts at unknown node 'ghost' (nodes: a, b, c, "
        "orphan)",
        "p.yaml:16:5: edge 'orphan.out -> nowhere' leads to unknown node 'nowhere' (nodes: a, "
        "b, c, orphan; verdicts: pass, drop, tx, aborted, redirect:IFACE)",
        "p.yaml:8:5: node 'orphan' is not reachable from the entry node 'a'",
        "p.yaml:6:5: cycle: b -> c -> b (a packet could loop forever; pipelines must be "
        "acyclic)",
    ]
    with pytest.raises(GraphError) as info:
        check(s)
    assert len(info.value.problems) == 6 and "6 problems in p.yaml" in str(info.value)


def test_unwired_port_and_tail_call_depth():
    nodes = "\n".join(f"  - {{id: n{i}, nf: TTL}}" for i in range(36))
    edges = "\n".join(f"  - n{i}.out -> n{i + 1}" for i in range(35))
    s = spec(f"pipeline: deep\nhook: xdp\nnodes:\n{nodes}\nedges:\n{edges}\n")
    got = [str(p) for p in problems_of(s)]
    assert got == [
        "p.yaml:39:5: port 'n35.out' is not wired: connect it to a node or a verdict "
        "(e.g. 'n35.out -> pass')",
        "p.yaml:4:5: the path n0 -> n1 -> n2 -> n3 -> n4 -> n5 -> n6 -> n7 -> n8 -> n9 -> n10 "
        "-> n11 -> n12 -> n13 -> n14 -> n15 -> n16 -> n17 -> n18 -> n19 -> n20 -> n21 -> n22 "
        "-> n23 -> n24 -> n25 -> n26 -> n27 -> n28 -> n29 -> n30 -> n31 -> n32 -> n33 -> n34 "
        "-> n35 needs 35 tail calls; the kernel allows 33: shorten it or use linking: fused",
    ]
    fused = spec(f"pipeline: deep\nhook: xdp\nlinking: fused\nnodes:\n{nodes}\nedges:\n{edges}\n"
                 "  - n35.out -> pass\n")
    assert problems_of(fused) == []


def test_offload_needs_fused_linking():
    s = spec("pipeline: x\nhook: xdp\nmode: offload\nlinking: tailcall\nnodes:\n"
             "  - {id: a, nf: TTL}\nedges:\n  - a -> pass\n")
    assert [str(p) for p in problems_of(s)] == [
        "p.yaml:4:10: hardware offload cannot run tail calls: use linking: fused (or auto)"]
    auto = spec("pipeline: x\nhook: xdp\nmode: offload\nnodes:\n  - {id: a, nf: TTL}\n"
                "edges:\n  - a -> pass\n")
    assert linking_for(auto) == "fused" and problems_of(auto) == []


def test_cli_validate_reports_every_problem(tmp_path, capsys):
    from nfpipe.cli.main import main
    f = tmp_path / "bad.yaml"
    f.write_text(f"pipeline: x\nhook: xdp\nnodes:\n  - {{id: a, nf: {TTL}}}\n"
                 "  - {id: b, nf: nope}\nedges:\n  - a -> c\n")
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"{f}:5:17: unknown network function 'nope' (the catalog has: filter, "
                      "nat, lb, telemetry; or give the path of your own C file)")
    assert err[1].startswith(f"{f}:7:5: edge 'a.out -> c' leads to unknown node 'c'")
    # b's NF is unknown, so whether its ports are wired is no question of its own
    assert err[2] == f"{f}:5:5: node 'b' is not reachable from the entry node 'a'"
    assert err[-1] == f"{f}: 3 problems"


def test_cli_validate_and_plan_on_the_example(capsys):
    from nfpipe.cli.main import main
    example = str(ROOT / "examples" / "split-guard.yaml")
    assert main(["validate", example, "--no-build"]) == 0      # no compiler, no kernel
    assert "valid (split-guard: 3 nodes, 4 edges, hook xdp; not compiled (--no-build))" \
        in capsys.readouterr().out
    assert main(["plan", example, "--json"]) == 0
    import json
    plan = json.loads(capsys.readouterr().out)
    assert [(n["id"], n["slot"]) for n in plan["nodes"]] == \
        [("split", 0), ("guard_tcp", 1), ("guard_udp", 2)]
    assert plan["nodes"][2]["constants"] == {"min_ttl": 8}
    assert main(["plan", example, "--dot"]) == 0
    assert '"split" -> "guard_udp" [label="udp"];' in capsys.readouterr().out


def test_filter_ports_no_rule_names_may_stay_unwired():
    s = spec("""\
        pipeline: x
        hook: xdp
        nodes:
          - id: fw
            nf: filter
            config:
              rules: [{action: "port:2", proto: icmp}]
        edges:
          - fw -> pass
        """)
    assert [str(p) for p in problems_of(s)] == [
        "p.yaml:4:5: port 'fw.port2' is not wired: connect it to a node or a verdict "
        "(e.g. 'fw.port2 -> pass')"]


def test_offload_checks_map_types_and_helpers(tmp_path, capsys):
    """Offload validation compiles the fused pipeline (no kernel) and names every map
    and helper the NIC cannot run; a pipeline within the profile passes."""
    from nfpipe.cli.main import main
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"pipeline: offl\nhook: xdp\nmode: offload\nnodes:\n"
                   f"  - {{id: g, nf: {TTL}}}\n  - {{id: t, nf: telemetry}}\n"
                   "edges:\n  - g -> t\n  - t -> pass\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    # the offload build makes per-CPU counters shared arrays: 'dropped' fits
    assert "map 'dropped'" not in err
    assert f"{bad}:3:7: mode offload: node 't': map 'flows' is a lru_hash map; nfp " \
           f"offload supports array, hash, perf_event_array" in err
    assert "node 't': map 'samples' is a ringbuf map" in err
    assert "node 't' calls bpf_ktime_get_coarse_ns, which nfp offload does not support" in err
    good = tmp_path / "good.yaml"
    good.write_text(f"pipeline: offl\nhook: xdp\nmode: offload\nnodes:\n"
                    f"  - {{id: s, nf: {ROOT}/bpf/examples/split_l4.c, ports: [out, udp]}}\n"
                    "edges:\n  - s.out -> pass\n  - s.udp -> drop\n")
    assert main(["validate", str(good)]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("*.yaml")
                                         if not p.name.endswith(".test.yaml")))
def test_shipped_examples_are_valid(name, capsys):
    from nfpipe.cli.main import main
    assert main(["validate", str(ROOT / "examples" / name)]) == 0, capsys.readouterr().err
