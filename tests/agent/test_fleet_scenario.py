"""The fleet, end to end, as issue 15 states it: a real etcd, three agents — each a host
with its own state directory and deploy state root, each filtering a different
interface of the two-hosts topology — and numbered UDP streams through every one of
them, both ways, for the whole scenario:

1. revision 1 everywhere (a first deploy, before the streams start);
2. revision 2 rolled out one host per batch, every batch gated on health;
3. revision 3, which cannot run on host C (an interface it does not have): hosts A and
   B take it, C's deploy fails its gate, the rollout stops and A and B are rolled back
   to revision 2;
4. revision 4 rolled out while host B's agent is killed with SIGKILL in the middle of
   its batch and started again: it adopts what runs and converges;
5. etcd killed for a while and started again: the pipelines run on, the agents resume.

Every datagram of both streams arrives exactly once (a hitless update, a rollback, a
killed agent and a store outage lose nothing and duplicate nothing), and the store
ends with every host reporting revision 4, running and healthy."""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from netns.conftest import scenario_fixture
from nfpipe import deploy as D
from nfpipe.agent import EtcdSource, Fleet, Gate
from nfpipe.topo.traffic import udp_sink, udp_stream
from tests.agent.agentproc import BLOCK, BLOCK2, AgentProc, cleanup_root, document
from tests.agent.etcdserver import running_etcd

pytestmark = pytest.mark.kernel
scenario = scenario_fixture("two-hosts")
CLIENT, SERVER = "192.0.2.2", "198.51.100.2"
UP, DOWN = 7100, 7200            # client -> server (hosts A, C), server -> client (host B)
RATE = 400


def test_three_hosts_roll_forward_back_and_through_a_kill_and_an_outage(scenario,
                                                                          tmp_path):
    topo = scenario.topo
    tag = uuid.uuid4().hex[:6]
    name, prefix = f"fl{tag}", f"/nfpipe-fleet-{tag}"
    hosts = ("A", "B", "C")
    roots = {h: f"/sys/fs/bpf/nfpipe-agent-{tag}{h}" for h in hosts}
    where = {"hostA": [f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"],
             "hostB": [f"{topo.netns('dut')}:{topo.ifname('dut', 'eth1')}"],
             "hostC": [f"{topo.netns('server')}:{topo.ifname('server', 'eth0')}"]}
    broken = {**where, "hostC": [f"{topo.netns('server')}:nosuch{tag[:4]}"]}
    stop, ready = tmp_path / "stop", {d: tmp_path / f"ready-{d}" for d in ("up", "down")}
    gate = Gate(settle=2.0, max_drop_ratio=0.5, timeout=90)
    streams, sinks = {}, {}
    with running_etcd() as etcd:
        src = EtcdSource(etcd.url, prefix=prefix)
        fleet = Fleet(src, poll=0.2)
        agents = {h: AgentProc(f"host{h}", tmp_path / f"state{h}", roots[h],
                               ["--etcd", etcd.url, "--prefix", prefix],
                               labels={"role": "edge"}, resync=1.0) for h in hosts}

        def on(revision: int, *which: str) -> None:
            for h in which or hosts:
                agents[h].wait(lambda s: s["pipelines"][name]["applied_revision"] == revision
                               and s["pipelines"][name]["state"] == "running", 90,
                               f"host{h} on revision {revision}")

        try:
            for a in agents.values():
                a.start()
            src.etcd.put(f"{prefix}/pipelines/{name}", document(name, 1, where, [BLOCK]))
            on(1)
            # numbered datagrams both ways, through every host's interface
            sinks["up"] = topo.start("server", udp_sink, SERVER, [UP], str(ready["up"]),
                                     str(stop), 2.0)
            sinks["down"] = topo.start("client", udp_sink, CLIENT, [DOWN],
                                       str(ready["down"]), str(stop), 2.0)
            deadline = time.monotonic() + 20
            while not all(r.exists() for r in ready.values()):
                assert time.monotonic() < deadline, "the sinks did not start"
                time.sleep(0.05)
            streams["up"] = topo.start("client", udp_stream, SERVER, [UP], str(stop), RATE)
            streams["down"] = topo.start("server", udp_stream, CLIENT, [DOWN], str(stop),
                                         RATE)
            time.sleep(1.0)

            # 2. a good revision, one host per batch
            res = fleet.rollout(document(name, 2, where, [BLOCK, BLOCK2]),
                                max_unavailable=1, gate=gate)
            assert res.state == "done" and res.updated == ["hostA", "hostB", "hostC"], res
            on(2)

            # 3. a revision host C cannot run: stopped at C, A and B rolled back
            res = fleet.rollout(document(name, 3, broken, [BLOCK]), max_unavailable=1,
                                gate=gate)
            assert (res.state, res.failed_host) == ("rolled_back", "hostC"), res
            assert res.updated[:2] == ["hostA", "hostB"], res
            on(2)
            c = agents["C"].status()["pipelines"][name]
            assert c["applied_revision"] == 2 and c["state"] == "running", c

            # 4. a good revision; host B's agent killed in the middle of its batch
            result: dict = {}
            roll = threading.Thread(target=lambda: result.update(res=fleet.rollout(
                document(name, 4, where, [BLOCK]), max_unavailable=1, gate=gate)))
            roll.start()
            override = f"{prefix}/pipelines/{name}/hosts/hostB"
            deadline = time.monotonic() + 90
            while src.etcd.get(override) is None:
                assert time.monotonic() < deadline and roll.is_alive(), \
                    "host B's batch did not start"
                time.sleep(0.02)
            agents["B"].kill9()
            time.sleep(0.5)
            agents["B"].start()
            roll.join(180)
            assert not roll.is_alive() and result["res"].state == "done", result
            on(4)

            # 5. the store goes away for a while and comes back
            etcd.stop()
            time.sleep(3.0)
            for a in agents.values():
                st = a.status()
                assert st["agent"]["store_up"] is False, st["agent"]
                assert st["pipelines"][name]["state"] == "running"
            etcd.start()
            for a in agents.values():
                a.wait(lambda s: s["agent"]["store_up"] is True, 60, "the store back")
            time.sleep(1.0)
        finally:
            stop.touch()
            sent = {d: s.result(timeout=60) for d, s in streams.items()}
            seen = {d: s.result(timeout=60) for d, s in sinks.items()}
            for a in agents.values():
                a.kill9()
            final = {h: json.loads(src.etcd.get(f"{prefix}/hosts/host{h}/status") or b"{}")
                     for h in hosts} if etcd.proc is not None else {}
            for r in roots.values():
                cleanup_root(r)

    for d, port in (("up", UP), ("down", DOWN)):
        got = seen[d][port]
        assert sent[d][port] > 5 * RATE, sent                  # it ran all along
        assert len(got) == len(set(got)), f"{d}: duplicated datagrams"
        missing = set(range(sent[d][port])) - set(got)
        assert not missing, f"{d}: {len(missing)} of {sent[d][port]} datagrams lost"
    for h in hosts:
        p = final[h]["pipelines"][name]
        assert (p["applied_revision"], p["state"], p["health"]) == (4, "running", "healthy"), \
            (h, p)
    assert not any(D.state_dir(name, r).exists() for r in roots.values())
