"""nfpipe agent with etcd as the desired-state store (a real etcd-server on loopback,
started by the test), on the two-hosts topology with real traffic.

A desired document put into etcd is deployed on the DUT and the agent reports the
revision it applied back into etcd; a new revision is a hitless update; then etcd
is killed: the data plane runs on (traffic keeps its filter), the agent stays
alive and says the store is down; etcd comes back (same data, same port): the
agent resumes watching, reports again, and converges to a revision put after the
outage.  Convergence time (put -> the status key says applied) is measured.
"""
from __future__ import annotations

import json
import re
import time
import uuid

from netns.conftest import scenario_fixture
from nfpipe import deploy as D
from nfpipe.agent import Etcd
from tests.agent.agentproc import BLOCK, BLOCK2, PASS, AgentProc, cleanup_root, document, passes
from tests.agent.etcdserver import running_etcd

scenario = scenario_fixture("two-hosts")


def reported(e: Etcd, prefix: str, host: str) -> dict:
    raw = e.get(f"{prefix}/hosts/{host}/status")
    return json.loads(raw) if raw else {}


def wait_reported(e: Etcd, prefix: str, host: str, pred, timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        last = reported(e, prefix, host)
        try:
            if pred(last):
                return last
        except (KeyError, TypeError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {json.dumps(last)[:2000]}")


def applied(name: str, revision: int):
    return lambda s: s["pipelines"][name]["applied_revision"] == revision and \
        s["pipelines"][name]["state"] == "running"


def test_agent_follows_etcd_and_survives_its_outage(scenario, tmp_path):
    topo = scenario.topo
    tag = uuid.uuid4().hex[:6]
    name, prefix = f"ae{tag}", f"/nfpipe-test-{tag}"
    root = f"/sys/fs/bpf/nfpipe-agent-{tag}"
    dut0 = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"
    key = f"{prefix}/pipelines/{name}"
    with running_etcd() as etcd:
        e = Etcd(etcd.url, timeout=2)
        agent = AgentProc("dut", tmp_path / "state", root,
                          ["--etcd", etcd.url, "--prefix", prefix],
                          labels={"role": "edge"}, resync=30)
        try:
            agent.start()
            # --- converge, measured from the put to the report in the store ---
            t0 = time.monotonic()
            e.put(key, document(name, 1, {"dut": [dut0]}, [BLOCK]))
            wait_reported(e, prefix, "dut", applied(name, 1), 90, "revision 1 reported")
            first = time.monotonic() - t0
            assert passes(topo, PASS) and not passes(topo, BLOCK)
            t0 = time.monotonic()
            e.put(key, document(name, 2, {"dut": [dut0]}, [BLOCK, BLOCK2]))
            st = wait_reported(e, prefix, "dut", applied(name, 2), 60, "revision 2 reported")
            update = time.monotonic() - t0
            assert st["pipelines"][name]["health"] == "healthy"
            assert st["labels"] == {"role": "edge"} and st["host"] == "dut"
            entry = D.read_manifest(D.state_dir(name, root)).entry_prog_id
            code, text = agent.get("/metrics")            # what it cost the store
            sent = re.search(r'nfpipe_agent_store_requests_total\{host="dut"\} (\d+)', text)
            assert code == 200 and sent and int(sent.group(1)) > 0, text[-2000:]
            assert re.search(r'nfpipe_agent_store_bytes_total\{host="dut",direction="in"\} '
                             r'[1-9]\d*', text)

            # --- the store goes away: the data plane does not notice ---
            etcd.stop()
            agent.wait(lambda s: s["agent"]["store_up"] is False, 30, "the store seen down")
            assert passes(topo, PASS) and not passes(topo, BLOCK2)
            code, _ = agent.get("/healthz")
            assert code == 200                       # the agent is alive and says so
            assert D.status(name, root=root)[0]["state"] == "running"
            time.sleep(2)
            assert agent.proc.poll() is None

            # --- it comes back: watching resumes, a new revision converges ---
            etcd.start()
            agent.wait(lambda s: s["agent"]["store_up"] is True, 60, "the store seen again")
            t0 = time.monotonic()
            e.put(key, document(name, 3, {"dut": [dut0]}, []))
            wait_reported(e, prefix, "dut", applied(name, 3), 60, "revision 3 reported")
            after_outage = time.monotonic() - t0
            assert passes(topo, BLOCK)
            # hitless: fw's program, its new rules built in, swapped in for the old one
            m = D.read_manifest(D.state_dir(name, root))
            assert m.history[-1]["how"] == "swap" and m.entry_prog_id != entry

            # --- deleted from the store: destroyed here ---
            e.delete(key)
            wait_reported(e, prefix, "dut", lambda s: name not in s["pipelines"], 60,
                          "the pipeline gone from the report")
            assert not D.state_dir(name, root).exists()
            assert agent.stop() == 0
            print(f"agent+etcd: put -> reported applied: first {first:.2f}s, update "
                  f"{update:.2f}s, after the store's outage {after_outage:.2f}s")
        finally:
            agent.kill9()
            cleanup_root(root)
