"""Desired-pipeline documents, targeting, snapshots and the directory source (no kernel)."""
from __future__ import annotations

import os
import time

import pytest

from nfpipe.agent import (
    DirectorySource,
    build_snapshot,
    document_text,
    parse_document,
    parse_labels,
)
from nfpipe.attach import Target
from nfpipe.errors import AgentError

DOC = """revision: 2
hosts:
  selector: {role: edge, zone: a}
  interfaces:
    "*": [eth0]
    h2: ["ns1:eth1", eth2]
  mode: generic
pipeline:
  pipeline: fw
  hook: xdp
  nodes: [{id: fw, nf: filter}]
  edges: [fw -> pass]
"""


def test_document_targets_hosts_by_labels_and_names():
    d = parse_document(DOC, "fw.yaml")
    assert (d.name, d.revision, d.mode) == ("fw", 2, "generic")
    edge = {"role": "edge", "zone": "a", "extra": "x"}
    assert d.targets("h1", edge) == [Target("eth0")]
    assert d.targets("h2", edge) == [Target("eth1", "ns1"), Target("eth2")]
    assert d.targets("h1", {"role": "edge", "zone": "b"}) is None
    assert d.targets("h1", {}) is None
    assert d.digest("h1", edge) != d.digest("h2", edge)     # other interfaces
    assert d.digest("h1", edge) == d.digest("h3", edge)
    again = parse_document(document_text(d), "again")
    assert (again.pipeline, again.interfaces, again.selector, again.mode) == \
        (d.pipeline, d.interfaces, d.selector, d.mode)
    assert again.digest("h1", edge) == d.digest("h1", edge)
    only_named = parse_document(DOC.replace('"*": [eth0]\n', ""), "x")
    assert only_named.targets("h1", edge) is None and only_named.targets("h2", edge)


@pytest.mark.parametrize("text, match", [
    ("[1, 2]", "expected a mapping"),
    ("revision: 1\nhosts: {interfaces: {'*': [eth0]}}\n", "pipeline: expected the pipeline file"),
    (DOC.replace("revision: 2", "revision: two"), "revision: expected a non-negative integer"),
    (DOC.replace("revision: 2", "revision: 2\nrevison: 3"), r"unknown key\(s\) revison"),
    (DOC.replace("  mode: generic\n", "  mdoe: generic\n"), r"hosts: unknown key\(s\) mdoe"),
    (DOC.replace('    "*": [eth0]\n    h2: ["ns1:eth1", eth2]\n', "    h2: 7\n"),
     "hosts.interfaces.h2: expected a list"),
    (DOC.replace("revision: 2", "revision: 2\nname: other"), "differs from the pipeline's own"),
    ("revision: [", "not YAML"),
])
def test_bad_documents_name_the_source_and_the_key(text, match):
    with pytest.raises(AgentError, match=match) as info:
        parse_document(text, "/etc/nfpipe/bad.yaml")
    assert str(info.value).startswith("/etc/nfpipe/bad.yaml: ")
    assert info.value.source == "/etc/nfpipe/bad.yaml"


def test_labels():
    assert parse_labels(["role=edge", "zone=a=b"]) == {"role": "edge", "zone": "a=b"}
    with pytest.raises(AgentError, match="KEY=VALUE"):
        parse_labels(["role"])


def test_snapshot_refuses_a_pipeline_desired_twice():
    snap = build_snapshot([(DOC, "a.yaml"), (DOC, "b.yaml"), ("x: [", "c.yaml"),
                           (DOC.replace("pipeline: fw", "pipeline: fw2"), "d.yaml")])
    assert list(snap.pipelines) == ["fw2"]
    assert sorted(snap.problems) == ["a.yaml", "b.yaml", "c.yaml"]
    assert "desired by 2 documents" in snap.problems["a.yaml"]


def test_directory_source_reads_documents_and_notices_changes(tmp_path):
    (tmp_path / "fw.yaml").write_text(DOC)
    (tmp_path / ".hidden.yaml").write_text("junk: [")
    (tmp_path / "README").write_text("not a document")
    os.symlink("fw.yaml", tmp_path / "..data")                   # what a ConfigMap mount has
    src = DirectorySource(tmp_path, report_dir=tmp_path / "reports", poll=0.05)
    snap = src.snapshot()
    assert list(snap.pipelines) == ["fw"] and not snap.problems
    t0 = time.monotonic()
    src.wait(0.3)                                                 # nothing changed: times out
    assert time.monotonic() - t0 >= 0.25
    (tmp_path / "fw.yaml").write_text(DOC.replace("revision: 2", "revision: 3"))
    t0 = time.monotonic()
    src.wait(10)
    assert time.monotonic() - t0 < 2 and src.snapshot().pipelines["fw"].revision == 3
    src.report("h1", {"ok": True})
    assert (tmp_path / "reports" / "h1.json").read_text().strip().startswith("{")
    missing = DirectorySource(tmp_path / "nope")
    with pytest.raises(AgentError, match="does not exist"):
        missing.snapshot()
