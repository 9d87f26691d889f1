"""The etcd JSON-gateway client and EtcdSource against a real etcd-server on loopback."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nfpipe.agent import Etcd, EtcdSource
from nfpipe.agent.etcd import prefix_end
from nfpipe.errors import StoreError
from tests.agent.etcdserver import etcd_fixture, free_port, required_etcd_binary

REPO = Path(__file__).resolve().parents[2]

etcd = etcd_fixture()

DOC = """revision: {rev}
hosts:
  selector: {{role: edge}}
  interfaces: {{"*": [eth0]}}
pipeline:
  pipeline: {name}
  hook: xdp
  nodes: [{{id: fw, nf: filter}}]
  edges: [fw -> pass]
"""


def test_prefix_end():
    assert prefix_end("/a/") == b"/a0"
    assert prefix_end("a\xff") != b""


def test_put_get_range_delete(etcd):
    e = Etcd(etcd.url)
    r1 = e.put("/t/a", "1")
    e.put("/t/b", b"\x00\xff binary")
    e.put("/u/c", "other prefix")
    kvs, rev = e.get_prefix("/t/")
    assert [(k, v) for k, v, _ in kvs] == [("/t/a", b"1"), ("/t/b", b"\x00\xff binary")]
    assert rev >= r1 + 2 and e.get("/t/a") == b"1" and e.get("/t/none") is None
    assert e.delete("/t/a") == 1 and e.get("/t/a") is None


def test_watch_sees_a_change_and_times_out_without_one(etcd):
    e = Etcd(etcd.url)
    _, rev = e.get_prefix("/w/")
    t0 = time.monotonic()
    assert e.watch_once("/w/", rev + 1, 0.6) is None
    assert 0.5 < time.monotonic() - t0 < 3
    timer = threading.Timer(0.3, lambda: e.put("/w/x", "1"))
    timer.start()
    t0 = time.monotonic()
    got = e.watch_once("/w/", rev + 1, 10)
    assert got is not None and got > rev and time.monotonic() - t0 < 5
    # a change made before the watch starts is not missed (start_revision)
    e.put("/w/y", "2")
    assert e.watch_once("/w/", got + 1, 5) is not None


def test_unreachable_store_is_a_store_error_naming_it():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError, match="unreachable") as info:
        Etcd(url, timeout=1).get_prefix("/x/")
    assert info.value.endpoint == url and info.value.op == "kv/range"
    with pytest.raises(StoreError):
        Etcd(url, timeout=1).watch_once("/x/", 1, 1)


def test_source_snapshot_problems_and_reports(etcd):
    src = EtcdSource(etcd.url, prefix="/fleet1")
    e = src.etcd
    e.put("/fleet1/pipelines/fw1", DOC.format(rev=3, name="fw1"))
    e.put("/fleet1/pipelines/broken", "revision: [")
    e.put("/fleet1/pipelines/fw2", DOC.format(rev=1, name="fw2"))
    snap = src.snapshot()
    assert sorted(snap.pipelines) == ["fw1", "fw2"] and snap.pipelines["fw1"].revision == 3
    assert list(snap.problems) == ["/fleet1/pipelines/broken"]
    assert "not YAML" in snap.problems["/fleet1/pipelines/broken"]
    # wait returns on a change after the snapshot, not before the timeout otherwise
    t0 = time.monotonic()
    src.wait(0.5)
    assert time.monotonic() - t0 >= 0.45
    threading.Timer(0.2, lambda: e.put("/fleet1/pipelines/fw1",
                                       DOC.format(rev=4, name="fw1"))).start()
    t0 = time.monotonic()
    src.wait(10)
    assert time.monotonic() - t0 < 5 and src.snapshot().pipelines["fw1"].revision == 4
    src.report("h1", {"pipelines": {"fw1": {"applied_revision": 4}}})
    assert json.loads(e.get("/fleet1/hosts/h1/status"))["pipelines"]["fw1"] == \
        {"applied_revision": 4}
    assert src.statuses()["h1"]["pipelines"]["fw1"]["applied_revision"] == 4


def test_the_server_dies_with_a_test_process_killed_without_its_cleanup():
    """A pytest killed by SIGTERM runs no fixture's cleanup: its etcd server (and its
    agents) then get SIGKILL from the kernel (die_with_parent), not left running."""
    binary = required_etcd_binary()
    code = ("import sys, time; from tests.agent.etcdserver import EtcdServer; "
            "s = EtcdServer(sys.argv[1]).start(); print(s.proc.pid, s.dir, flush=True); "
            "time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code, binary], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    data = None
    try:
        pid, data = parent.stdout.readline().split()
        assert os.path.exists(f"/proc/{pid}")
        parent.send_signal(signal.SIGTERM)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{pid}"), "etcd outlived the test process"
    finally:
        parent.kill()
        parent.wait()
        if data:
            shutil.rmtree(data, ignore_errors=True)
