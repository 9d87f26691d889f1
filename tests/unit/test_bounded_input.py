"""Hostile and careless pipeline files: bounded input, every bad rule reported, no
consequential errors, and the command line's --linking honoured by the checks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nfpipe import yamldoc
from nfpipe.cli.main import main
from nfpipe.errors import SpecError
from nfpipe.graph import TAIL_CALL_LIMIT, problems_of
from nfpipe.nfabi import MAX_NODES
from nfpipe.spec import PipelineSpec

ROOT = Path(__file__).resolve().parents[2]
TTL = ROOT / "bpf" / "examples" / "ttl_guard.c"


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    """Nine levels of ten aliases: 10^9 values from 12 lines.  Refused at the limit,
    never expanded."""
    lines = ["pipeline: bomb", "hook: xdp", 'l0: &l0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]")
    f = tmp_path / "bomb.yaml"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(SpecError, match=f"more than {yamldoc.MAX_VALUES:,} values"):
        PipelineSpec.from_file(f)


def test_values_at_the_limit_are_read_and_one_more_is_not():
    items = yamldoc.MAX_VALUES - 2                 # the mapping, the list, its items
    text = "k: [" + ",".join(["1"] * items) + "]\n"
    assert len(yamldoc.load(text, "<t>").data["k"]) == items
    with pytest.raises(SpecError, match="values"):
        yamldoc.load(text.replace("[", "[1,", 1), "<t>")


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(tmp_path):
    f = tmp_path / "big.yaml"
    f.write_text("pipeline: big\nhook: xdp\n#" + "x" * yamldoc.MAX_BYTES + "\n")
    with pytest.raises(SpecError, match=f"over {yamldoc.MAX_BYTES:,} bytes"):
        PipelineSpec.from_file(f)
    ok = tmp_path / "ok.yaml"
    ok.write_text("pipeline: ok\nhook: xdp\nnodes:\n  - {id: a, nf: filter}\nedges:\n"
                  "  - a -> pass\n" + "#" * (yamldoc.MAX_BYTES - 200) + "\n")
    assert ok.stat().st_size <= yamldoc.MAX_BYTES
    assert PipelineSpec.from_file(ok).name == "ok"


@pytest.mark.parametrize("n, ok", [(MAX_NODES, True), (MAX_NODES + 1, False)])
def test_node_count_limit(n, ok):
    nodes = "\n".join(f"  - {{id: n{i}, nf: {TTL}}}" for i in range(n))
    edges = "\n".join(f"  - n{i} -> pass" for i in range(n))
    text = f"pipeline: many\nhook: xdp\nlinking: fused\nnodes:\n{nodes}\nedges:\n{edges}\n"
    if ok:
        assert len(PipelineSpec.from_text(text).nodes) == n
    else:
        with pytest.raises(SpecError, match=f"{n} nodes; a pipeline has at most {MAX_NODES}"):
            PipelineSpec.from_text(text)


def test_every_bad_rule_is_reported_and_nothing_that_follows_from_them(tmp_path, capsys):
    f = tmp_path / "fw.yaml"
    f.write_text("pipeline: fw\nhook: xdp\nnodes:\n  - id: fw\n    nf: filter\n    config:\n"
                 "      rules:\n"
                 "        - {action: drop, src: 10.0.0.1/24}\n"      # host bits set
                 "        - {action: drop, src: 10.0.0.0/33}\n"      # no such prefix
                 "        - {action: drop, proto: udp}\n"            # fine
                 "        - {action: drop, dst: nonsense}\n"
                 "edges:\n  - fw -> pass\n")
    assert main(["validate", str(f), "--no-build", "--json"]) == 2
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert [(p["line"], p["column"]) for p in problems] == [(8, 11), (9, 11), (11, 11)]
    assert "host bits set" in problems[0]["message"]
    assert "10.0.0.0/33" in problems[1]["message"] and "rules[1]" in problems[1]["message"]
    assert not any("not wired" in p["message"] for p in problems)


def chain(calls: int, linking: str = "auto") -> PipelineSpec:
    nodes = "\n".join(f"  - {{id: n{i}, nf: {TTL}}}" for i in range(calls + 1))
    edges = "\n".join(f"  - n{i}.out -> n{i + 1}" for i in range(calls))
    return PipelineSpec.from_text(f"pipeline: deep\nhook: xdp\nlinking: {linking}\nnodes:\n"
                                  f"{nodes}\nedges:\n{edges}\n  - n{calls}.out -> pass\n")


@pytest.mark.parametrize("calls, ok", [(TAIL_CALL_LIMIT, True), (TAIL_CALL_LIMIT + 1, False)])
def test_tail_call_depth_at_the_limit_and_one_over(calls, ok):
    problems = problems_of(chain(calls))
    assert (problems == []) is ok, problems
    if not ok:
        assert f"needs {calls} tail calls; the kernel allows {TAIL_CALL_LIMIT}" in \
            problems[0].message
    assert problems_of(chain(calls), linking="fused") == []


def test_linking_fused_on_the_command_line_lifts_the_depth_check(tmp_path, capsys):
    f = tmp_path / "deep.yaml"
    nodes = "\n".join(f"  - {{id: n{i}, nf: {TTL}}}" for i in range(36))
    edges = "\n".join(f"  - n{i}.out -> n{i + 1}" for i in range(35))
    f.write_text(f"pipeline: deep\nhook: xdp\nnodes:\n{nodes}\nedges:\n{edges}\n"
                 f"  - n35.out -> pass\n")
    assert main(["validate", str(f), "--no-build"]) == 2
    assert "use linking: fused" in capsys.readouterr().err
    assert main(["validate", str(f), "--no-build", "--linking", "fused"]) == 0
    capsys.readouterr()
    assert main(["plan", str(f), "--linking", "fused", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["linking"] == "fused" and len(plan["nodes"]) == 36


def lb_pipeline(backends: int, table: int) -> str:
    b = "\n".join(f'            - {{addr: "10.0.{i // 250}.{i % 250 + 1}:80"}}'
                  for i in range(backends))
    return (f"pipeline: lbx\nhook: xdp\nnodes:\n  - id: lb\n    nf: lb\n    config:\n"
            f"      vips:\n        - vip: \"10.100.0.1:80\"\n          table_size: {table}\n"
            f"          backends:\n{b}\nedges:\n  - lb -> pass\n")


@pytest.mark.parametrize("backends, table, warned", [
    (100, 101, True), (100, 9973, True), (100, 10007, False), (3, 307, False)])
def test_an_lb_table_too_small_to_balance_is_warned_about(backends, table, warned, tmp_path,
                                                          capsys):
    f = tmp_path / "lb.yaml"
    f.write_text(lb_pipeline(backends, table))
    spec = PipelineSpec.from_file(f)
    assert bool(spec.warnings) is warned
    assert main(["validate", str(f), "--no-build", "--json"]) == 0      # still valid
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] and len(out["warnings"]) == int(warned)
    if warned:
        w = out["warnings"][0]
        assert (w["line"], w["node"]) == (9, "lb")
        assert f"under 100 slots for each of its {backends} backends" in w["message"]
        assert "use table_size 10007 or more" in w["message"]
