"""Every YAML snippet in README.md and docs/ is a whole file nfpipe reads, and reads
without a problem: a pipeline (parsed and checked as a graph), an agent's desired
pipeline (its pipeline checked so), a topology, a driver profile, or a test-case
file.  What the docs show is what the validator accepts."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nfpipe import profiles
from nfpipe.agent import parse_document
from nfpipe.graph import problems_of
from nfpipe.spec import PipelineSpec
from nfpipe.testing import load_cases
from nfpipe.topo import TopologySpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "bpf" / "README.md", ROOT / "offload" / "README.md",
        ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```ya?ml\n(.*?)^```", re.M | re.S)


def snippets():
    for doc in DOCS:
        text = doc.read_text()
        for m in FENCE.finditer(text):
            line = text[:m.start()].count("\n") + 2           # the snippet's first line
            yield pytest.param(doc, line, m.group(1), id=f"{doc.relative_to(ROOT)}:{line}")


ALL = list(snippets())


def test_the_docs_have_snippets():
    assert len(ALL) >= 8


@pytest.mark.parametrize("doc, line, text", ALL)
def test_snippet_is_a_valid_file(doc, line, text, tmp_path):
    # relative paths in a snippet are written as from the document's directory, or from
    # the file a first comment names ("# examples/split-guard.yaml")
    named = re.match(r"# (\S+\.yaml)\b", text)
    home = (ROOT / named.group(1)).parent if named else doc.parent
    f = home / f".snippet-{line}.yaml"
    where = f"{doc.relative_to(ROOT)}:{line}"
    keys = {m.group(1) for m in re.finditer(r"^([a-z_]+):", text, re.M)}
    try:
        f.write_text(text)
        if {"hosts", "revision", "pipeline"} <= keys:      # an agent's desired pipeline
            f.write_text(parse_document(text, where).pipeline_text())
            spec = PipelineSpec.from_file(f)
            assert [str(p) for p in problems_of(spec)] == [], where
        elif "pipeline" in keys:
            spec = PipelineSpec.from_file(f)
            assert [str(p) for p in problems_of(spec)] == [], where
        elif "topology" in keys:
            TopologySpec.from_file(f)
        elif "driver" in keys:
            assert profiles.parse_profile(f).name, where
        elif "cases" in keys:
            assert load_cases(f).cases, where
        else:
            pytest.fail(f"{where}: a YAML snippet must be a whole pipeline, topology, "
                        f"driver profile or test-case file (keys: {sorted(keys)})")
    finally:
        f.unlink(missing_ok=True)
