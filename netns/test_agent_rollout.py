"""A rolling update gated on real traffic: two agents, each a "host" with its own state
directory and deploy state root (host A runs the pipeline on the DUT's eth0, host B on
its eth1), a real etcd, UDP streaming from the client to the server throughout.

Revision 2 drops the stream: the rollout (one host per batch) updates host A, whose
drop ratio over the settle time breaks the gate, so host A is rolled back to
revision 1 (the stream passes again) and host B never runs revision 2.  Revision 3
is good: both hosts, one batch after the other, and the fleet's document is 3."""
from __future__ import annotations

import uuid

from netns.conftest import scenario_fixture
from nfpipe import deploy as D
from nfpipe.agent import EtcdSource, Fleet, Gate
from nfpipe.topo.traffic import udp_stream
from tests.agent.agentproc import (
    BLOCK,
    BLOCK2,
    PASS,
    SERVER,
    AgentProc,
    cleanup_root,
    document,
    passes,
)
from tests.agent.etcdserver import running_etcd

scenario = scenario_fixture("two-hosts")
STREAM = 7100          # the stream's port (not PASS: passes() echoes on PASS)


def test_rollout_gated_on_real_drops_rolls_back_the_updated_host(scenario, tmp_path):
    topo = scenario.topo
    tag = uuid.uuid4().hex[:6]
    name, prefix = f"ar{tag}", f"/nfpipe-rollout-{tag}"
    roots = {h: f"/sys/fs/bpf/nfpipe-agent-{tag}{h}" for h in ("A", "B")}
    where = {"hostA": [f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"],
             "hostB": [f"{topo.netns('dut')}:{topo.ifname('dut', 'eth1')}"]}
    stop = str(tmp_path / "stop")
    stream = None
    with running_etcd() as etcd:
        src = EtcdSource(etcd.url, prefix=prefix)
        agents = {h: AgentProc(f"host{h}", tmp_path / f"state{h}", roots[h],
                               ["--etcd", etcd.url, "--prefix", prefix],
                               labels={"role": "edge"}, resync=1.0) for h in ("A", "B")}
        try:
            for a in agents.values():
                a.start()
            src.etcd.put(f"{prefix}/pipelines/{name}", document(name, 1, where, [BLOCK]))
            for a in agents.values():
                a.wait(lambda s: s["pipelines"][name]["applied_revision"] == 1 and
                       s["pipelines"][name]["state"] == "running", 90, "revision 1")
            assert passes(topo, PASS) and not passes(topo, BLOCK)
            stream = topo.start("client", udp_stream, SERVER, [STREAM], stop, 500)
            fleet = Fleet(src, poll=0.2)
            gate = Gate(settle=3.0, max_drop_ratio=0.5, timeout=90)

            res = fleet.rollout(document(name, 2, where, [STREAM]), max_unavailable=1,
                                gate=gate)
            assert (res.state, res.failed_host, res.updated) == \
                ("rolled_back", "hostA", ["hostA"]), res
            assert "drop ratio" in res.reason
            agents["A"].wait(lambda s: s["pipelines"][name]["applied_revision"] == 1, 60,
                             "host A back on revision 1")
            assert passes(topo, PASS)
            b = D.read_manifest(D.state_dir(name, roots["B"]))
            assert b.revision == 1                      # host B was never updated
            a_rev = D.read_manifest(D.state_dir(name, roots["A"])).revision
            assert a_rev == 3                           # 1, the bad 2, back to 1's rules

            res = fleet.rollout(document(name, 3, where, [BLOCK, BLOCK2]), max_unavailable=1,
                                gate=gate)
            assert res.state == "done" and res.updated == ["hostA", "hostB"], res
            for h, a in agents.items():
                st = a.wait(lambda s: s["pipelines"][name]["applied_revision"] == 3, 30, "r3")
                assert st["pipelines"][name]["health"] == "healthy", h
            assert b"revision: 3" in src.etcd.get(f"{prefix}/pipelines/{name}")
            assert passes(topo, PASS) and not passes(topo, BLOCK2)
        finally:
            open(stop, "w").close()
            if stream is not None:
                try:
                    stream.result(timeout=30)
                except Exception:
                    pass
            for a in agents.values():
                a.kill9()
            for r in roots.values():
                cleanup_root(r)
