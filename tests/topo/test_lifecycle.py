"""up is all-or-nothing and idempotent; down cleans up after crashes; runs do not collide."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from topo_common import REPO, TOPOLOGIES, new_run_id

from nfpipe.errors import KernelError
from nfpipe.topo import Topology, TopologyError, namespaces as nsu
from nfpipe.topo.traffic import serve_udp_echo, udp_exchange

pytestmark = pytest.mark.kernel

PY = sys.executable
TWO = TOPOLOGIES / "two-hosts.yaml"


def run_nfpipe(*args, check=True):
    proc = subprocess.run([PY, "-m", "nfpipe.cli.main", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def ours(topo) -> list[str]:
    return nsu.list_namespaces(nsu.run_prefix(topo.name, topo.run_id))


def assert_gone(topo) -> None:
    assert ours(topo) == []
    assert nsu.read_state(topo.name, topo.run_id) is None


FAILING_ROUTE = textwrap.dedent("""\
    topology: rollback
    hosts:
      a:
        sysctls: {net.ipv4.ip_forward: 1}
        interfaces:
          eth0: {addresses: [10.0.0.1/24]}
      b:
        interfaces:
          eth0: {addresses: [10.0.0.2/24]}
        routes:
          - {to: 10.9.0.0/16, via: 10.99.0.1}     # gateway on no subnet: the kernel refuses
    links:
      - [a:eth0, b:eth0]
    """)


def test_rollback_when_a_route_is_refused(run_id):
    topo = Topology.from_text(FAILING_ROUTE, run_id, file="rollback.yaml")
    with pytest.raises(TopologyError) as info:
        topo.up()
    msg = str(info.value)
    assert msg.startswith("rollback.yaml:11:9: ") and "ENETUNREACH" in msg
    assert_gone(topo)


def test_rollback_when_a_sysctl_does_not_exist(run_id):
    text = FAILING_ROUTE.replace("net.ipv4.ip_forward: 1", "net.ipv4.no_such_knob: 1")
    topo = Topology.from_text(text, run_id, file="rollback.yaml")
    with pytest.raises(TopologyError, match=r"rollback.yaml:4:15: cannot set sysctl "
                                            r"net.ipv4.no_such_knob"):
        topo.up()
    assert_gone(topo)


def test_rollback_when_an_address_conflicts(run_id):
    # the same IPv6 address twice on one interface with two prefix lengths: the spec
    # cannot know, the kernel refuses the second one (EEXIST) after the namespaces,
    # veths, sysctls and the first addresses are in place -- a failure halfway
    text = FAILING_ROUTE.replace("      - {to: 10.9.0.0/16, via: 10.99.0.1}     # gateway on "
                                 "no subnet: the kernel refuses\n", "")
    text = text.replace("eth0: {addresses: [10.0.0.2/24]}",
                        'eth0: {addresses: [10.0.0.2/24, "fd00::2/64", "fd00::2/80"]}')
    topo = Topology.from_text(text, run_id, file="conflict.yaml")
    with pytest.raises(KernelError) as info:
        topo.up()
    assert "EEXIST" in str(info.value) and "fd00::2/80 to b:eth0" in str(info.value)
    assert_gone(topo)


def test_up_twice_and_reup_after_partial_loss(topo_factory):
    topo = topo_factory(TWO).up()
    state = nsu.read_state(topo.name, topo.run_id)
    assert state["complete"] and state["namespaces"] == topo.namespaces
    idx = topo.ifindex("dut", "eth1")
    topo.up()
    assert topo.ifindex("dut", "eth1") == idx
    # lose one namespace (and with it the veth ends of its links): up repairs the run
    nsu.remove_ns(topo.netns("server"))
    topo.up()
    assert topo.is_up() and topo.ifindex("server", "eth0") > 0
    server = topo.start("server", serve_udp_echo, "198.51.100.2", 7600)
    assert topo.call("client", udp_exchange, "198.51.100.2", 7600, b"again")[0] == b"again"
    assert server.result(timeout=5) == [("192.0.2.2", 63)]


def test_down_after_sigkill_removes_everything():
    run_id = new_run_id()
    code = textwrap.dedent(f"""\
        import os, signal, sys
        from nfpipe.topo import Topology
        topo = Topology.from_file({str(TWO)!r}, {run_id!r}).up()
        p = topo.popen("server", ["sleep", "300"], stdout=-3, stderr=-3)
        print(p.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sleeper = int(proc.stdout.split()[0])
    topo = Topology.from_file(TWO, run_id)
    assert len(ours(topo)) == 3 and nsu.read_state(topo.name, run_id)["complete"]
    assert os.path.exists(f"/proc/{sleeper}")
    listed = json.loads(run_nfpipe("topo", "status", "--json").stdout)
    mine = [r for r in listed if r["run_id"] == run_id]
    assert mine and not mine[0]["pid_alive"] and len(mine[0]["namespaces"]) == 3
    removed = run_nfpipe("topo", "down", TWO, "--run-id", run_id).stdout
    assert removed.count("removed netns") == 3
    assert_gone(topo)
    assert not os.path.exists(f"/proc/{sleeper}") or _zombie(sleeper)


def _zombie(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_down_finds_leftovers_by_name_without_state():
    topo = Topology.from_file(TWO, new_run_id()).up()
    os.unlink(nsu.state_path(topo.name, topo.run_id))       # as if the state file were lost
    runs = [r for r in json.loads(run_nfpipe("topo", "status", "--json").stdout)
            if r["run_id"] == topo.run_id]
    assert runs and runs[0]["orphan"]
    # by topology name (not the file) and run id
    out = run_nfpipe("topo", "down", "two-hosts", "--run-id", topo.run_id).stdout
    assert out.count("removed netns") == 3
    assert_gone(topo)


def test_parallel_runs_do_not_collide():
    ids = [new_run_id(), new_run_id()]
    procs = [subprocess.Popen([PY, "-m", "nfpipe.cli.main", "topo", "up", str(TWO),
                               "--run-id", rid, "--json"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for rid in ids]
    outs = [p.communicate(timeout=60) for p in procs]
    topos = [Topology.from_file(TWO, rid) for rid in ids]
    try:
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
        statuses = [json.loads(out) for out, _ in outs]
        assert statuses[0]["hosts"]["dut"]["netns"] != statuses[1]["hosts"]["dut"]["netns"]
        # same addresses in both runs, yet each run's traffic stays in its own namespaces
        servers = [t.start("server", serve_udp_echo, "198.51.100.2", 7400) for t in topos]
        for i, t in enumerate(topos):
            assert t.call("client", udp_exchange, "198.51.100.2", 7400, b"run%d" % i)[0] == \
                b"run%d" % i
        assert [s.result(timeout=5) for s in servers] == [[("192.0.2.2", 63)]] * 2
        # exec in one run sees only its own interfaces
        out = run_nfpipe("topo", "exec", TWO, "dut", "--run-id", ids[0], "--", PY, "-c",
                         "import socket; print(sorted(n for _, n in socket.if_nameindex()))")
        assert out.stdout.strip() == "['eth0', 'eth1', 'lo']"
    finally:
        downs = [subprocess.Popen([PY, "-m", "nfpipe.cli.main", "topo", "down", str(TWO),
                                   "--run-id", rid], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for rid in ids]
        for d in downs:
            d.communicate(timeout=60)
    for t in topos:
        assert_gone(t)


MTU_TOPO = textwrap.dedent("""\
    topology: mtu
    hosts:
      a:
        interfaces:
          eth0: {addresses: [10.0.0.1/24, "fd00::1/64"], mtu: 1280}
          eth1: {addresses: [10.0.1.1/24]}
      b:
        interfaces:
          eth0: {addresses: [10.0.0.2/24, "fd00::2/64"]}
          eth1: {addresses: [10.0.1.2/24]}
    links:
      - {endpoints: [a:eth0, b:eth0], mtu: 1400}
      - {endpoints: [a:eth1, b:eth1], offload: true}
    dut: [a:eth0]
    """)


def tx_csum(ifname):
    from pyroute2.ethtool import Ethtool
    with Ethtool() as e:
        f = e.get_features(ifname).features
        return f["tx-checksum-ip-generic"].enable, f["tx-tcp-segmentation"].enable


def test_mtu_override_and_offload_option(topo_factory):
    topo = topo_factory(MTU_TOPO, text=True).up()
    st = topo.status()["hosts"]
    assert st["a"]["interfaces"]["eth0"]["mtu"] == 1280        # interface overrides link
    assert st["b"]["interfaces"]["eth0"]["mtu"] == 1400
    assert st["a"]["interfaces"]["eth1"]["mtu"] == 1500        # kernel default
    assert topo.call("a", tx_csum, "eth0") == (False, False)   # default: offloads off
    assert topo.call("a", tx_csum, "eth1") == (True, True)     # offload: true leaves them
    server = topo.start("b", serve_udp_echo, "fd00::2", 7500)
    assert topo.call("a", udp_exchange, "fd00::2", 7500, b"x" * 1200)[0] == b"x" * 1200
    assert server.result(timeout=5) == [("fd00::1", 64)]
    assert topo.dut == [("a", "eth0")] and topo.ifindex("a", "eth0") > 1


def test_cli_up_status_exec_down(run_id):
    out = run_nfpipe("topo", "up", TOPOLOGIES / "nat.yaml", "--run-id", run_id).stdout
    assert f"nfpt.nat.{run_id}.dut" in out and "dut: dut:eth0, dut:eth1" in out
    again = run_nfpipe("topo", "up", TOPOLOGIES / "nat.yaml", "--run-id", run_id, "--json")
    assert json.loads(again.stdout)["up"] is True
    status = run_nfpipe("topo", "status").stdout
    assert f"nat run {run_id}: 3 namespaces" in status
    fwd = run_nfpipe("topo", "exec", TOPOLOGIES / "nat.yaml", "dut", "--run-id", run_id, "--",
                     "cat", "/proc/sys/net/ipv4/ip_forward").stdout
    assert fwd.strip() == "1"
    rc = run_nfpipe("topo", "exec", TOPOLOGIES / "nat.yaml", "dut", "--run-id", run_id, "--",
                    PY, "-c", "raise SystemExit(7)", check=False).returncode
    assert rc == 7
    bad = run_nfpipe("topo", "exec", TOPOLOGIES / "nat.yaml", "nohost", "--run-id", run_id,
                     "--", "true", check=False)
    assert bad.returncode == 2 and "no host 'nohost'" in bad.stderr    # bad input
    out = run_nfpipe("topo", "down", TOPOLOGIES / "nat.yaml", "--run-id", run_id).stdout
    assert out.count("removed netns") == 3
    assert nsu.list_namespaces(f"nfpt.nat.{run_id}.") == []


def test_down_after_crash_halfway_through_up():
    """SIGKILL inside up(), after the first link: incomplete state + some namespaces."""
    run_id = new_run_id()
    code = textwrap.dedent(f"""\
        from nfpipe.topo import Topology
        Topology.from_file({str(TOPOLOGIES / "lb.yaml")!r}, {run_id!r}).up()
        """)
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NFPIPE_FAULT": "topo-link"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    topo = Topology.from_file(TOPOLOGIES / "lb.yaml", run_id)
    state = nsu.read_state(topo.name, run_id)
    assert state is not None and not state["complete"] and len(ours(topo)) == 8
    assert not topo.is_up()
    assert len(topo.down()) == 8
    assert_gone(topo)


def test_down_with_only_the_state_file_left(topo_factory):
    topo = topo_factory(TWO).up()
    for n in topo.namespaces.values():          # namespaces vanished behind our back
        nsu.remove_ns(n)
    runs = [r for r in json.loads(run_nfpipe("topo", "status", "--json").stdout)
            if r["run_id"] == topo.run_id]
    assert runs and len(runs[0]["missing"]) == 3 and runs[0]["namespaces"] == []
    assert run_nfpipe("topo", "down", TWO, "--run-id", topo.run_id).returncode == 0
    assert_gone(topo)
