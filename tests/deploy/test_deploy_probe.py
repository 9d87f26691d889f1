"""A first XDP deploy probes its interfaces in a thread beside the build: once per
interface, what placement decides from, and a deploy that fails meanwhile waits for
the probe, so no trial program is left on the interface."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from nfpipe import deploy as D
from nfpipe.attach import query
from nfpipe.deploy import apply, placement
from nfpipe.errors import SpecError

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent


@pytest.fixture
def pipeline(tmp_path):
    name = f"p{uuid.uuid4().hex[:8]}"
    f = tmp_path / f"{name}.yaml"
    f.write_text(f"""
pipeline: {name}
hook: xdp
nodes:
  - id: fw
    nf: filter
    config: {{rules: [{{action: drop, proto: udp, dport: 9999}}]}}
edges: [fw -> pass]
""")
    yield name, f
    if D.state_dir(name).exists():
        D.destroy(name)


def _probes(monkeypatch) -> list:
    calls = []
    real = placement.probe_interface

    def counting(ifname, netns=None, **kw):
        calls.append(ifname)
        return real(ifname, netns=netns, **kw)
    monkeypatch.setattr(placement, "probe_interface", counting)
    return calls


def test_each_interface_is_probed_once_and_placed_by_it(topo, pipeline, monkeypatch):
    name, f = pipeline
    calls = _probes(monkeypatch)
    ns = topo.netns("dut")
    eth0, eth1 = topo.ifname("dut", "eth0"), topo.ifname("dut", "eth1")
    m = D.deploy(f, targets=[D.Target(eth0, ns), D.Target(eth1, ns)])
    assert sorted(calls) == sorted([eth0, eth1])
    for rec in m.interfaces:
        assert rec.mode == "native"                  # veth runs XDP in its driver
        assert any(line.startswith("native: yes") and "trial attach worked" in line
                   for line in rec.placement), rec.placement
    D.destroy(name)
    assert query(eth0, ns)["xdp"] == [] and query(eth1, ns)["xdp"] == []


def test_a_build_failing_while_probing_leaves_no_trial_behind(topo, pipeline, monkeypatch):
    name, f = pipeline
    calls = _probes(monkeypatch)
    ns, eth0 = topo.netns("dut"), topo.ifname("dut", "eth0")

    def failing_build(_plan):
        raise SpecError("the build failed")
    monkeypatch.setattr(apply, "build", failing_build)
    for _ in range(3):
        with pytest.raises(SpecError, match="the build failed"):
            D.deploy(f, targets=[D.Target(eth0, ns)])
        # the probe ran (its trial attach and detach) and was waited for
        assert query(eth0, ns)["xdp"] == []
    assert calls == [eth0] * 3
    assert not D.state_dir(name).exists()
