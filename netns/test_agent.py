"""nfpipe agent with a directory source (what a ConfigMap volume gives), on the two-hosts
topology: the DUT's pipelines deployed, updated and destroyed by the agent from desired
documents, with real traffic between the client and the server.

One agent process, its own state directory and its own deploy state root (a "host"),
through: converge (revision 1), update (revision 2, a runtime change), ``kill -9``
and restart while numbered datagrams stream through the DUT (adopted: nothing is
deployed again, the same programs and links stay, not one datagram is lost), its
ownership record lost (adopted from the manifest naming its file), a
pipeline the verifier rejects (reported with its error, retried with a doubling
backoff, not in a hot loop), a pipeline of the same name deployed by someone else
(reported, left alone), /metrics and /healthz, and the desired document removed
(destroyed, the interface as it was).
"""
from __future__ import annotations

import os
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netns.conftest import scenario_fixture
from netns.harness import ROOT
from nfpipe import deploy as D
from nfpipe.topo.traffic import udp_sink, udp_stream
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

scenario = scenario_fixture("two-hosts")

def wait_applied(agent: AgentProc, name: str, revision: int, timeout: float = 90) -> dict:
    return agent.wait(lambda s: s["pipelines"][name]["applied_revision"] == revision and
                      s["pipelines"][name]["state"] == "running", timeout,
                      f"{name} revision {revision} applied")


def test_agent_converges_adopts_after_kill9_backs_off_and_leaves_others_alone(
        scenario, tmp_path):
    topo = scenario.topo
    tag = uuid.uuid4().hex[:6]
    name, bad, foreign = f"ag{tag}", f"agbad{tag}", f"agfor{tag}"
    root = f"/sys/fs/bpf/nfpipe-agent-{tag}"
    desired = tmp_path / "desired"
    desired.mkdir()
    dut0 = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"
    dut1 = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth1')}"
    client0 = f"{topo.netns('client')}:{topo.ifname('client', 'eth0')}"
    doc = desired / f"{name}.yaml"
    agent = AgentProc("dut", tmp_path / "state", root, ["--dir", str(desired)],
                      labels={"role": "edge", "zone": "a"})
    stop = str(tmp_path / "stop")
    sink = stream = None
    try:
        # --- converge: revision 1 ---
        t0 = time.monotonic()
        doc.write_text(document(name, 1, {"dut": [dut0]}, [BLOCK]))
        agent.start()
        wait_applied(agent, name, 1)
        converge_s = time.monotonic() - t0
        assert passes(topo, PASS) and not passes(topo, BLOCK)
        # another host's document (a label this host lacks) is not deployed here
        (desired / "elsewhere.yaml").write_text(
            document(f"agx{tag}", 1, {"*": [dut1]}, []).replace("role: edge", "role: core"))

        # --- update: revision 2, a runtime change of the filter's rules ---
        doc.write_text(document(name, 2, {"dut": [dut0]}, [BLOCK, BLOCK2]))
        st = wait_applied(agent, name, 2)
        assert st["pipelines"][name]["manifest_revision"] == 2
        assert f"agx{tag}" not in st["pipelines"]
        assert not passes(topo, BLOCK2) and passes(topo, PASS)
        before = D.read_manifest(D.state_dir(name, root))

        # --- kill -9 under traffic, restart: adopted, nothing re-attached, nothing lost ---
        ready = str(tmp_path / "ready")
        sink = topo.start("server", udp_sink, SERVER, [PASS], ready, stop)
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            assert time.monotonic() < deadline, "the sink did not start"
            time.sleep(0.02)
        stream = topo.start("client", udp_stream, SERVER, [PASS], stop, 1000)
        time.sleep(0.5)
        agent.kill9()
        time.sleep(0.5)
        agent.start()
        st = wait_applied(agent, name, 2)
        assert st["deploys"] == {"ok": 0, "error": 0, "destroyed": 0}   # adopted, not redone
        time.sleep(0.5)
        open(stop, "w").close()
        sent = stream.result(timeout=60)[PASS]
        seen = sorted(sink.result(timeout=60)[PASS])
        stream = sink = None
        assert sent > 1000 and seen == list(range(sent)), \
            f"{sent - len(set(seen))} of {sent} datagrams lost across the agent's kill -9"
        after = D.read_manifest(D.state_dir(name, root))
        assert after.revision == before.revision and after.entry_prog_id == before.entry_prog_id
        assert [(i.iface, i.link, i.prog_id) for i in after.interfaces] == \
            [(i.iface, i.link, i.prog_id) for i in before.interfaces]
        # killed between a deploy and recording it (owned.json lost): the manifest names
        # the agent's own file, so it is adopted, not reported foreign; nothing changes
        agent.kill9()
        (tmp_path / "state" / "owned.json").unlink()
        agent.start()
        st = wait_applied(agent, name, 2)
        assert st["pipelines"][name]["error"] is None
        again = D.read_manifest(D.state_dir(name, root))
        assert (again.revision, again.entry_prog_id) == (before.revision, before.entry_prog_id)
        assert passes(topo, PASS) and not passes(topo, BLOCK2)

        # --- a pipeline the verifier rejects: reported, retried with backoff ---
        (desired / f"{bad}.yaml").write_text(
            document(bad, 1, {"dut": [dut1]}, [], nf_extra=f"{ROOT}/tests/bpf/nf_bad.c"))
        st = agent.wait(lambda s: s["pipelines"][bad]["error_kind"] == "VerifierError", 90,
                        "the verifier rejection reported")
        t_fail = time.monotonic()
        p = st["pipelines"][bad]
        assert p["state"] == "failed" and p["health"] == "unhealthy" and p["retry_at"]
        assert "nf_bad.c" in p["error"]
        time.sleep(4.0)
        st = agent.status()
        attempts = st["pipelines"][bad]["attempts"]
        # backoff 1 s, doubling: tries at 0, 1, 3 (and 7) s; a hot loop would be hundreds
        assert 2 <= attempts <= 4, (attempts, time.monotonic() - t_fail)
        assert st["deploys"]["error"] == attempts
        assert not D.state_dir(bad, root).exists()
        assert st["pipelines"][name]["health"] == "healthy"      # the other one runs on

        # --- someone else's pipeline of a desired name: reported, left alone ---
        other = tmp_path / "other.yaml"
        other.write_text(f"pipeline: {foreign}\nhook: xdp\nnodes:\n  - {{id: fw, nf: filter}}\n"
                         "edges:\n  - fw -> pass\n")
        D.deploy(other, targets=[D.Target.parse(client0)], root=root)
        (desired / f"{foreign}.yaml").write_text(document(foreign, 1, {"dut": [client0]},
                                                          [PASS]))
        st = agent.wait(lambda s: s["pipelines"][foreign]["state"] == "foreign", 60,
                        "the foreign pipeline reported")
        assert "not by this agent" in st["pipelines"][foreign]["error"]
        assert D.read_manifest(D.state_dir(foreign, root)).file == str(other)
        (desired / f"{foreign}.yaml").unlink()
        (desired / f"{bad}.yaml").unlink()

        # --- /metrics and /healthz ---
        code, body = agent.get("/healthz")
        assert code == 200 and '"alive": true' in body
        code, text = agent.get("/metrics")
        assert code == 200
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for fam in text_string_to_metric_families(text) for s in fam.samples}
        assert samples[("nfpipe_agent_pipeline_revision",
                        (("host", "dut"), ("pipeline", name)))] == 2
        assert samples[("nfpipe_agent_pipeline_healthy",
                        (("host", "dut"), ("pipeline", name)))] == 1
        assert any(k[0].startswith("nfpipe_packets") and ("pipeline", name) in k[1]
                   for k in samples)

        # --- removed from the desired state: destroyed, traffic as before the agent ---
        doc.unlink()
        agent.wait(lambda s: name not in s["pipelines"], 60, f"{name} destroyed")
        assert not D.state_dir(name, root).exists()
        assert passes(topo, BLOCK)
        assert D.state_dir(foreign, root).exists()               # still not the agent's
        assert agent.stop() == 0
        print(f"agent: document to running pipeline (agent start included): {converge_s:.1f}s")
    finally:
        open(stop, "w").close()
        for h in (stream, sink):
            if h is not None:
                try:
                    h.result(timeout=30)
                except Exception:
                    pass
        agent.kill9()
        cleanup_root(root)


@pytest.mark.parametrize("stage", ["attached", "update-next"])
def test_agent_killed_inside_its_deploy_converges_on_restart(scenario, tmp_path, stage):
    """The agent's own deploy SIGKILLs it (NFPIPE_FAULT) halfway through a first deploy
    (interfaces attached, nothing recorded) or an update (the next manifest written):
    restarted, it repairs (undo, or roll forward) and converges to the desired revision."""
    topo = scenario.topo
    tag = uuid.uuid4().hex[:6]
    name = f"ak{tag}"
    root = f"/sys/fs/bpf/nfpipe-agent-{tag}"
    desired = tmp_path / "desired"
    desired.mkdir()
    dut0 = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"
    doc = desired / f"{name}.yaml"
    agent = AgentProc("dut", tmp_path / "state", root, ["--dir", str(desired)],
                      labels={"role": "edge"})
    try:
        doc.write_text(document(name, 1, {"dut": [dut0]}, [BLOCK]))
        if stage.startswith("update"):
            agent.start()
            wait_applied(agent, name, 1)
            agent.stop()
            doc.write_text(document(name, 2, {"dut": [dut0]}, [BLOCK, BLOCK2]))
        agent.start(fault=stage)
        assert agent.proc.wait(90) == -9                    # killed by its own deploy
        agent.start()
        want = 2 if stage.startswith("update") else 1
        st = wait_applied(agent, name, want)
        assert st["pipelines"][name]["error"] is None
        m = D.read_manifest(D.state_dir(name, root))
        assert len(m.interfaces) == 1 and not (D.state_dir(name, root) / "manifest_next").exists()
        assert passes(topo, PASS) and not passes(topo, BLOCK)
        if want == 2:
            assert not passes(topo, BLOCK2)
        assert agent.stop() == 0
    finally:
        agent.kill9()
        cleanup_root(root)


@pytest.fixture(autouse=True)
def _no_leftover_roots():
    yield
    for d in os.listdir("/sys/fs/bpf"):
        assert not (d.startswith("nfpipe-agent-") and os.listdir(f"/sys/fs/bpf/{d}")), d
