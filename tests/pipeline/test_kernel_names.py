"""What bpftool shows: kernel names that say which pipeline and node a program or map
belongs to, and that never collide (the kernel keeps 15 bytes of a name)."""
from __future__ import annotations

from pathlib import Path

import pytest

from nfpipe.kernel import syscall as sc
from nfpipe.loader.elf import short_kernel_name
from nfpipe.runtime import Pipeline
from nfpipe.spec import PipelineSpec

ROOT = Path(__file__).resolve().parents[2]


def pipeline(name: str) -> PipelineSpec:
    return PipelineSpec.from_text(
        f"pipeline: {name}\nhook: xdp\nnodes:\n  - {{id: fw, nf: filter}}\n"
        f"  - {{id: stats, nf: telemetry}}\nedges:\n  - fw -> stats\n  - stats -> pass\n")


def kernel_names(p: Pipeline) -> tuple[dict[str, str], dict[str, str]]:
    progs = {nid: sc.prog_info(p.program(nid).fd).name_str for nid in p.plan.nodes}
    maps = {}
    for obj in p.objects.values():
        for name, m in obj.maps.items():
            maps[name] = sc.map_info(m.fd).name_str
    return progs, maps


@pytest.mark.kernel
def test_two_pipelines_are_told_apart_in_bpftool():
    with Pipeline.from_spec(pipeline("edge")) as a, Pipeline.from_spec(pipeline("core")) as b:
        pa, ma = kernel_names(a)
        pb, mb = kernel_names(b)
    assert pa == {"fw": "edge.fw", "stats": "edge.stats"}
    assert pb == {"fw": "core.fw", "stats": "core.stats"}
    assert ma["nfp_stats"] == "edge.stats" and mb["nfp_jmp"] == "core.jmp"
    assert ma["fw__hits"] == "fw.hits" and ma["stats__flows"] == "stats.flows"
    # every map of a pipeline has its own kernel name, long ones included
    assert len(set(ma.values())) == len(ma)
    assert ma["stats__syn_sources"].startswith("stats.syn_s") and \
        ma["stats__syn_sources"] != ma.get("stats__samples")


@pytest.mark.kernel
def test_fused_program_is_named_for_its_pipeline():
    with Pipeline.from_spec(pipeline("edge"), linking="fused") as p:
        assert sc.prog_info(p.entry.fd).name_str == "edge"


def test_short_names_fit_and_stay_distinct():
    assert short_kernel_name("edge.fw") == "edge.fw"
    a, b = short_kernel_name("stats.syn_sources"), short_kernel_name("stats.syn_samples")
    assert len(a) == len(b) == 15 and a != b and a[:11] == b[:11] == "stats.syn_s"
    assert all(c.isalnum() or c in "._" for c in short_kernel_name("we-ird name/x" * 3))
