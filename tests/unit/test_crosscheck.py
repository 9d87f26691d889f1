"""graph.crosscheck: what two nodes' configs do to each other is a warning at the value
that causes it (the pipeline is still valid)."""
from __future__ import annotations

import json

from nfpipe import resources
from nfpipe.cli.main import main
from nfpipe.graph import warnings_of
from nfpipe.spec import PipelineSpec

LB = """  - id: lb
    nf: lb
    config:
      vips:
        - vip: "{vip}"
          backends: [{{addr: "10.0.1.1:8080"}}]
        - vip: "[2001:db8::1]:80"
          backends: [{{addr: "[2001:db8::2]:8080"}}]
"""
NAT = """  - id: nat
    nf: nat
    config: {internal: [10.0.0.0/8, 192.168.0.0/16], external_ip: 203.0.113.1}
"""


def pipeline(vip: str, edges: str, lb_first: bool = True) -> str:
    nodes = LB.format(vip=vip) + NAT if lb_first else NAT + LB.format(vip=vip)
    return f"pipeline: x\nhook: xdp\nnodes:\n{nodes}edges:\n{edges}"


def test_a_vip_the_nat_after_it_masquerades_is_a_warning_at_the_vip():
    spec = PipelineSpec.from_text(pipeline("192.168.7.1:80", "  - lb -> nat\n  - nat -> pass\n"),
                                  "p.yaml")
    assert spec.warnings == []                  # the nodes alone are fine
    [w] = warnings_of(spec)
    assert (w.pos.file, w.pos.line, w.pos.column, w.node) == ("p.yaml", 8, 16, "lb")
    assert "VIP 192.168.7.1:80 lies inside 192.168.0.0/16, which node 'nat' after it " \
           "masquerades" in w.message
    assert "203.0.113.1" in w.message


def test_a_nat_further_down_the_path_counts_too():
    text = pipeline("10.100.0.1:80", "  - lb -> fw\n  - fw -> nat\n  - nat -> pass\n")
    text = text.replace("edges:", "  - {id: fw, nf: filter, config: {rules: []}}\nedges:")
    assert [w.node for w in warnings_of(PipelineSpec.from_text(text))] == ["lb"]


def test_no_warning_where_the_replies_keep_the_vip():
    cases = {
        "outside": pipeline("203.0.113.80:80", "  - lb -> nat\n  - nat -> pass\n"),
        "nat before the lb": pipeline("10.100.0.1:80", "  - nat -> lb\n  - lb -> pass\n",
                                      lb_first=False),
        "not on the lb's path": pipeline("10.100.0.1:80", "  - lb -> pass\n  - nat -> pass\n"),
    }
    for name, text in cases.items():
        assert warnings_of(PipelineSpec.from_text(text)) == [], name
    assert warnings_of(PipelineSpec.from_file(resources.examples_dir() / "edge.yaml")) == []


def test_validate_shows_the_warning_and_the_file_stays_valid(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(pipeline("10.100.0.1:80", "  - lb -> nat\n  - nat -> pass\n"))
    assert main(["validate", str(f), "--no-build", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] and out["problems"] == []
    [w] = out["warnings"]
    assert (w["line"], w["column"], w["node"]) == (8, 16, "lb")
    assert "10.0.0.0/8" in w["message"]
