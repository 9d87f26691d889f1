"""Files in JSON: read by the json module, the same data and the same positions in errors
as the YAML reader gives them; whatever the two would read differently goes the YAML
way.  No kernel."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nfpipe import yamldoc
from nfpipe.catalog.filter import benchmark_rules
from nfpipe.errors import SpecError
from nfpipe.spec import PipelineErrors, PipelineSpec

TTL = str(Path(__file__).resolve().parents[2] / "bpf" / "examples" / "ttl_guard.c")


def both(text: str) -> tuple[yamldoc.Doc, yamldoc.Doc]:
    """*text* through load (the JSON reader) and through the YAML reader alone."""
    return yamldoc.load(text, "f.json"), yamldoc._load_yaml(text, "f.json")


def test_a_json_document_is_read_as_json_and_placed_only_when_asked():
    rules = benchmark_rules(300)
    text = json.dumps({"rules": rules, "default": "allow"}, indent=1)
    fast, marked = both(text)
    assert fast.unplaced == text and fast.positions == {}      # not placed yet
    assert fast.data == marked.data == {"rules": rules, "default": "allow"}
    for path in [("rules", 0), ("rules", 299, "action"), ("default",), ("rules", 7, "nope")]:
        assert fast.at(path) == marked.at(path)
        assert fast.at(path, key=True) == marked.at(path, key=True)
    assert fast.unplaced is None and fast.positions == marked.positions


@pytest.mark.parametrize("text", [
    '{"a": 1, "b": [true, false, null], "c": "x\\u00e9\\n", "d": -0, "e": 12345678901234567890}',
    '[{"x": 0.5}, {"y": [[], {}]}, "tab\\tbed"]',
    '{"e": 1e3, "f": 2.5E-1}',          # YAML 1.1 reads these as strings
    '{"n": NaN, "i": -Infinity}',        # not JSON's own: strings to YAML
    '  \n{"indented": 1}',
])
def test_the_same_data_as_the_yaml_reader(text):
    fast, marked = both(text)
    assert fast.data == marked.data
    assert type(fast.data) is type(marked.data)


def test_json_the_yaml_reader_reads_otherwise_takes_the_yaml_reader():
    assert yamldoc.load('{"e": 1e3}', "f").data == {"e": "1e3"}
    assert yamldoc.load('{"e": 1e3}', "f").unplaced is None
    assert yamldoc.load('{"f": 0.25}', "f").unplaced is not None


def test_a_duplicate_key_in_json_is_an_error_at_its_line():
    with pytest.raises(SpecError) as info:
        yamldoc.load('{"rules": [],\n "default": "allow",\n "rules": []}', "r.json")
    assert str(info.value) == "r.json:3:2: duplicate key 'rules' (first given at line 1)"


def test_broken_json_is_reported_by_the_yaml_reader_with_its_position():
    with pytest.raises(SpecError, match=r"^r\.json:2:\d+: invalid YAML"):
        yamldoc.load('{"rules": [\n  {"action": "drop",, }]}', "r.json")


def test_a_json_document_past_the_value_bound_is_refused():
    items = yamldoc.MAX_VALUES - 2                  # the mapping, the list, its items
    ok = json.dumps({"k": [1] * items})
    assert len(yamldoc.load(ok, "f").data["k"]) == items
    with pytest.raises(SpecError, match=f"more than {yamldoc.MAX_VALUES:,} values"):
        yamldoc.load(json.dumps({"k": [1] * (items + 1)}), "f")


def test_a_json_pipeline_names_every_problem_where_the_yaml_one_does():
    yaml_text = textwrap.dedent(f"""\
        pipeline: x
        hook: xpd
        nodes:
          - {{id: a, nf: {TTL}}}
          - {{id: a, nf: {TTL}}}
        """)
    json_text = json.dumps({"pipeline": "x", "hook": "xpd",
                            "nodes": [{"id": "a", "nf": TTL}, {"id": "a", "nf": TTL}]},
                           indent=2)

    def problems(text: str) -> list[tuple[int, int, str]]:
        with pytest.raises(PipelineErrors) as info:
            PipelineSpec.from_text(text, "p")
        return [(p.pos.line, p.pos.column, p.message) for p in info.value.problems]

    got = problems(json_text)

    def unlined(m: str) -> str:
        return re.sub(r"line \d+", "line N", m)

    assert [unlined(m) for _, _, m in got] == [unlined(m) for _, _, m in problems(yaml_text)]
    lines = json_text.splitlines()
    for line, column, message in got:      # each points at the value it is about
        value = "xpd" if "hook" in message else "a"
        assert lines[line - 1][column - 1:].startswith(f'"{value}"'), (message, line, column)
    first = next(i for i, t in enumerate(lines, 1) if t.strip() == "{" and i > 1)
    assert f"first defined at line {first})" in got[1][2]     # where its mapping opens


def test_the_rules_command_imports_neither_netlink_nor_graph_libraries():
    """`nfpipe rules`, `stats`, `map`: pyroute2 (~110 ms) and networkx (~90 ms) are
    imported by what uses them, not by every command."""
    code = ("import sys, nfpipe.cli.deployed, nfpipe.deploy.configure; "
            "print(sorted(m for m in ('pyroute2', 'networkx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
