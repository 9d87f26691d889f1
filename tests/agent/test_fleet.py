"""Rolling updates across a fleet, at scale by simulation: 100 simulated hosts (real
``Agent`` + ``Reconciler`` objects in dry-run: they deploy nothing and report as if,
with counters the test scripts) and 5 hosts of another role, against a real etcd.

Converge on revision 1; a rollout of revision 2 in batches of 25% passes every gate;
``rollback`` returns the fleet to revision 1; a revision whose hosts abort packets
stops at the batch that has the failing host, which is rolled back with the batches
before it, and the later batches never see it; a revision that drops half the packets
fails the drop-ratio gate on its first batch."""
from __future__ import annotations

import threading
import time

import pytest

from nfpipe.agent import Agent, EtcdSource, Fleet, Gate, Reconciler, batch_size
from nfpipe.errors import AgentError
from tests.agent.etcdserver import etcd_fixture

etcd = etcd_fixture()

N = 100
PREFIX = "/fleet-sim"
NAME = "edge"


def doc(revision: int) -> str:
    return f"""revision: {revision}
hosts:
  selector: {{role: edge}}
  interfaces: {{"*": [eth0]}}
pipeline:
  pipeline: {NAME}
  hook: xdp
  nodes: [{{id: fw, nf: filter, config: {{rules: [{{action: drop, proto: udp, dport: {revision}}}]}}}}]
  edges: [fw -> pass]
"""


class SimFleet:
    """N simulated edge hosts and 5 core hosts, each an Agent thread."""

    def __init__(self, url: str, tmp_path):
        self.t0 = time.monotonic()
        self.seen: dict[str, set[int]] = {}
        self.bad: dict[int, tuple[str, str]] = {}      # revision -> (host or "*", outcome)
        self.agents: list[Agent] = []
        self.threads: list[threading.Thread] = []
        hosts = [(f"h{i:03d}", "edge") for i in range(N)] + \
            [(f"core{i}", "core") for i in range(5)]
        for host, role in hosts:
            rec = Reconciler(host, {"role": role}, tmp_path / host, dry_run=True,
                             simulate=self._counters(host))
            agent = Agent(EtcdSource(url, prefix=PREFIX, host=host), rec, resync=1.0)
            self.agents.append(agent)
            t = threading.Thread(target=agent.run, name=f"sim-{host}", daemon=True)
            self.threads.append(t)

    def _counters(self, host: str):
        def counters(_name: str, revision: int) -> dict[str, int]:
            self.seen.setdefault(host, set()).add(revision)
            pkts = int((time.monotonic() - self.t0) * 1000)
            out = {"pass": pkts, "drop": 0, "aborted": 0}
            who, outcome = self.bad.get(revision, ("", ""))
            if who in (host, "*"):
                if outcome == "aborted":
                    out["aborted"] = pkts // 10
                else:
                    out["drop"] = pkts
            return out
        return counters

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def store_traffic(self) -> tuple[int, int]:
        """Requests and bytes (both ways) all the simulated hosts made to etcd so far."""
        stores = [a.source.etcd for a in self.agents]
        return (sum(e.requests for e in stores),
                sum(e.bytes_out + e.bytes_in for e in stores))

    def stop(self):
        for a in self.agents:
            a.stop()
        for t in self.threads:
            t.join(timeout=20)


def wait_all(fleet: Fleet, revision: int | None, hosts: list[str], timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        st = fleet.status(NAME)["hosts"]
        got = {h: st.get(h, {}).get("pipelines", {}).get(NAME, {}).get("applied_revision")
               for h in hosts}
        if all(v == revision for v in got.values()):
            return
        if time.monotonic() > deadline:
            wrong = {h: v for h, v in got.items() if v != revision}
            raise AssertionError(f"{len(wrong)} host(s) not on revision {revision}: "
                                 f"{dict(list(wrong.items())[:5])}")
        time.sleep(0.2)


def test_batch_size():
    assert batch_size(100, "25%") == 25 and batch_size(3, "10%") == 1
    assert batch_size(100, 7) == 7
    for bad in ("0", "0%", "150%", "x"):
        with pytest.raises(AgentError, match="max-unavailable"):
            batch_size(10, bad)


def test_rollouts_across_100_simulated_hosts(etcd, tmp_path):
    src = EtcdSource(etcd.url, prefix=PREFIX)
    fleet = Fleet(src, poll=0.2)
    edge = [f"h{i:03d}" for i in range(N)]
    sim = SimFleet(etcd.url, tmp_path)
    try:
        sim.start()
        t0 = time.monotonic()
        src.etcd.put(f"{PREFIX}/pipelines/{NAME}", doc(1))
        wait_all(fleet, 1, edge)
        converge = time.monotonic() - t0
        wait_all(fleet, None, [f"core{i}" for i in range(5)])   # not targeted
        gate = Gate(settle=2.5, max_drop_ratio=0.1, timeout=60)

        plan = fleet.rollout(doc(2), max_unavailable="25%", gate=gate, dry_run=True)
        assert plan.state == "planned" and [len(b) for b in plan.batches] == [25] * 4
        assert src.etcd.get(f"{PREFIX}/pipelines/{NAME}/hosts/h000") is None   # nothing put

        before = sim.store_traffic()
        t0 = time.monotonic()
        res = fleet.rollout(doc(2), max_unavailable="25%", gate=gate)
        rollout_s = time.monotonic() - t0
        requests, nbytes = (a - b for a, b in zip(sim.store_traffic(), before))
        assert res.state == "done" and len(res.updated) == N, res
        wait_all(fleet, 2, edge)
        assert b"revision: 2" in src.etcd.get(f"{PREFIX}/pipelines/{NAME}")
        kvs, _ = src.etcd.get_prefix(f"{PREFIX}/pipelines/{NAME}/hosts/")
        assert kvs == []                                       # no override left

        fleet.rollback(NAME)                                   # back to revision 1
        wait_all(fleet, 1, edge)

        # revision 3 makes h057 (batch 3 of 4) abort packets
        sim.bad[3] = ("h057", "aborted")
        res = fleet.rollout(doc(3), max_unavailable="25%", gate=gate)
        assert (res.state, res.failed_host) == ("rolled_back", "h057"), res
        assert "aborted" in res.reason and res.updated == edge[:75]
        wait_all(fleet, 1, edge)
        assert not any(3 in sim.seen.get(h, ()) for h in edge[75:])   # batch 4 never ran it
        assert all(3 in sim.seen[h] for h in edge[:75])
        assert b"revision: 1" in src.etcd.get(f"{PREFIX}/pipelines/{NAME}")
        rec = fleet.status(NAME)["rollouts"][NAME]
        assert rec["state"] == "rolled_back" and rec["failed_host"] == "h057"

        # revision 4 drops everything: the drop-ratio gate stops it on batch 1
        sim.bad[4] = ("*", "drop")
        res = fleet.rollout(doc(4), max_unavailable=10, gate=gate)
        assert res.state == "rolled_back" and "drop ratio" in res.reason
        assert len(res.updated) == 10
        wait_all(fleet, 1, edge)
        # what a fleet-wide update cost the store per host: a watch and a report per
        # resync, not a poll of the whole fleet's state
        per_s = requests / (N + 5) / rollout_s
        print(f"fleet sim: {N} hosts converged in {converge:.1f}s; a 4-batch rollout "
              f"(settle {gate.settle}s) took {rollout_s:.1f}s; store traffic per host "
              f"{per_s:.1f} requests/s, {nbytes / (N + 5) / rollout_s / 1024:.1f} KiB/s")
        assert 0 < per_s < 6 and nbytes / (N + 5) / rollout_s < 64 * 1024
    finally:
        sim.stop()


def test_fleet_and_agent_cli(etcd, tmp_path, capsys):
    import json

    from nfpipe.cli.main import main
    prefix = "/fleet-cli"
    src = EtcdSource(etcd.url, prefix=prefix)
    agents, threads = [], []
    for host in ("a1", "a2", "a3"):
        rec = Reconciler(host, {"role": "edge"}, tmp_path / host, dry_run=True)
        agents.append(Agent(EtcdSource(etcd.url, prefix=prefix, host=host), rec, resync=0.5))
        threads.append(threading.Thread(target=agents[-1].run, daemon=True))
        threads[-1].start()
    common = ["--etcd", etcd.url, "--prefix", prefix]
    try:
        # one pass of a dry-run agent from the command line reports into the store
        assert main(["agent", "--once", "--dry-run", "--host", "a4", "--label", "role=core",
                     "--state-dir", str(tmp_path / "a4"), "--json", *common]) == 0
        assert json.loads(capsys.readouterr().out)["host"] == "a4"
        f = tmp_path / "edge.yaml"
        f.write_text(doc(1))
        deadline = time.monotonic() + 20
        while len(src.statuses()) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert main(["fleet", "rollout", str(f), "--dry-run", "--max-unavailable", "2",
                     "--json", *common]) == 0
        assert json.loads(capsys.readouterr().out)["batches"] == [["a1", "a2"], ["a3"]]
        assert main(["fleet", "rollout", str(f), "--max-unavailable", "2", "--settle", "0.5",
                     *common]) == 0
        assert "revision 1: done" in capsys.readouterr().out
        assert main(["fleet", "status", NAME, "--json", *common]) == 0
        st = json.loads(capsys.readouterr().out)
        assert {h: p["pipelines"][NAME]["applied_revision"] for h, p in st["hosts"].items()
                if p["pipelines"]} == {"a1": 1, "a2": 1, "a3": 1}
        assert main(["fleet", "status", *common]) == 0
        assert "a3" in capsys.readouterr().out
        assert main(["fleet", "rollback", NAME, *common]) == 0     # no revision before it
        assert "removed from the fleet" in capsys.readouterr().out
        assert src.etcd.get(f"{prefix}/pipelines/{NAME}") is None
    finally:
        for a in agents:
            a.stop()
        for t in threads:
            t.join(timeout=10)
