"""nfpipe deploy on a real topology: attach, pinned state a second process can read,
real traffic, stats, destroy; refusal of a foreign program; rollback leaves the
interface as it was."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from nfpipe import deploy as D
from nfpipe.attach import attach_tc, attach_xdp, query
from nfpipe.deploy import steps
from nfpipe.deploy.state import link_key
from nfpipe.errors import AttachError
from nfpipe.topo.traffic import serve_tcp_echo, serve_udp_echo, tcp_exchange, udp_exchange

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).parent.parent.parent
BLOCKED_UDP = 9999


@pytest.fixture
def pipeline_file(tmp_path):
    name = f"t{uuid.uuid4().hex[:8]}"

    def write(hook: str) -> tuple[str, Path]:
        f = tmp_path / f"{name}.yaml"
        f.write_text(f"""
pipeline: {name}
hook: {hook}
nodes:
  - id: fw
    nf: filter
    config:
      rules: [{{action: drop, proto: udp, dport: {BLOCKED_UDP}}}]
  - id: stats
    nf: telemetry
edges:
  - fw -> stats
  - stats -> pass
""")
        return name, f
    yield write
    if D.state_dir(name).exists():
        D.destroy(name)


def target(topo) -> D.Target:
    return D.Target(topo.ifname("dut", "eth0"), topo.netns("dut"))


def attached_ids(topo, hook: str) -> list:
    q = query(topo.ifname("dut", "eth0"), topo.netns("dut"))
    return [e["prog_id"] for e in D.occupants(q, hook)]


@pytest.mark.parametrize("hook,mode", [("xdp", "generic"), ("xdp", "native"),
                                       ("tc-ingress", "tcx")])
def test_deploy_traffic_stats_destroy(topo, pipeline_file, hook, mode):
    name, f = pipeline_file(hook)
    m = D.deploy(f, targets=[target(topo)], mode=mode)
    assert attached_ids(topo, hook) == [m.entry_prog_id]
    assert m.interfaces[0].mode == mode
    assert m.interfaces[0].placement[-1].startswith(f"{mode}: yes")

    # A second process rebuilds the picture from bpffs and the kernel alone.
    out = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "status", name, "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st[0]["state"] == "running" and st[0]["interfaces"][0]["attached"]

    # Real traffic from the client through the DUT: TCP flows, UDP to the blocked port
    # never arrives, UDP to another port does.
    server = topo.address("server", "eth0")
    srv = topo.start("server", serve_tcp_echo, server, 8080)
    assert topo.call("client", tcp_exchange, server, 8080, b"hello") == b"hello"
    srv.result(timeout=20)
    echo = topo.start("server", serve_udp_echo, server, 5000, 1)
    assert topo.call("client", udp_exchange, server, 5000, b"ok")[0] == b"ok"
    echo.result(timeout=20)
    with pytest.raises(TimeoutError):
        topo.call("client", udp_exchange, server, BLOCKED_UDP, b"x", timeout=1.0, interval=0.1)

    counters = D.stats(name)
    dropped = counters["fw"]["drop"]["packets"]
    assert dropped >= 5                  # udp_exchange resent every 0.1 s for 1 s
    assert counters["fw"]["out"]["packets"] == counters["stats"]["out"]["packets"] > 0

    D.destroy(name)
    assert attached_ids(topo, hook) == []
    assert not D.state_dir(name).exists()
    assert not os.path.exists(os.path.join(D.LOCK_DIR, f"{name}.lock"))   # no litter
    with pytest.raises(D.DeployError, match="no pipeline"):
        D.status(name)
    # traffic flows again untouched
    echo = topo.start("server", serve_udp_echo, server, BLOCKED_UDP, 1)
    assert topo.call("client", udp_exchange, server, BLOCKED_UDP, b"back")[0] == b"back"
    echo.result(timeout=20)


def test_foreign_program_is_refused_and_left_alone(topo, pipeline_file):
    import nfpipe
    name, f = pipeline_file("xdp")
    obj = nfpipe.Object.load(nfpipe.compile(ROOT / "bpf" / "examples" / "xdp_pass.c"))
    foreign = attach_xdp(obj.programs["xdp_pass"], topo.ifname("dut", "eth0"), mode="generic",
                         netns=topo.netns("dut"))
    try:
        before = attached_ids(topo, "xdp")
        with pytest.raises(AttachError, match="which nfpipe did not deploy"):
            D.deploy(f, targets=[target(topo)], mode="generic")
        assert attached_ids(topo, "xdp") == before
        assert not D.state_dir(name).exists()
    finally:
        foreign.detach()
        foreign.close()
        obj.close()


def _foreign_netlink_xdp(topo, iface: str = "eth0"):
    """A pass program attached the way iproute2's `ip link set dev X xdpdrv obj p.o`
    does it: rtnetlink IFLA_XDP in native mode, no bpf_link, no fd left open.
    Returns its program id."""
    import nfpipe
    with nfpipe.Object.load(nfpipe.compile(ROOT / "bpf" / "examples" / "xdp_pass.c")) as obj:
        att = attach_xdp(obj.programs["xdp_pass"], topo.ifname("dut", iface), mode="native",
                         netns=topo.netns("dut"), use_link=False)
        att.close()
        return obj.programs["xdp_pass"].id


def _blocked(topo) -> bool:
    """Does UDP to the filter's blocked port fail to reach a server that echoes it?"""
    server = topo.address("server", "eth0")
    echo = topo.start("server", serve_udp_echo, server, BLOCKED_UDP, 1, 3.0)
    try:
        topo.call("client", udp_exchange, server, BLOCKED_UDP, b"x", timeout=1.0,
                  interval=0.1)
    except TimeoutError:
        return True
    else:
        echo.result(timeout=10)
        return False
    finally:
        echo.kill()


@pytest.mark.parametrize("mode", [None, "generic"])
def test_force_takes_over_a_netlink_xdp_program(topo, pipeline_file, mode):
    """Without --force: refused, naming the program and how it is attached.  With it:
    nfpipe's pipeline replaces it, atomically in its own (native) mode, or, for
    --mode generic, after detaching it (the kernel runs one XDP mode at a time: this
    used to fail with "Native and generic XDP can't be active at the same time")."""
    name, f = pipeline_file("xdp")
    foreign = _foreign_netlink_xdp(topo)
    try:
        with pytest.raises(AttachError, match=rf"program {foreign} 'xdp_pass' in native mode "
                                              r"via netlink.*use --force"):
            D.deploy(f, targets=[target(topo)], mode=mode)
        assert attached_ids(topo, "xdp") == [foreign]
        m = D.deploy(f, targets=[target(topo)], mode=mode, force=True)
        assert m.interfaces[0].mode == (mode or "native")
        assert attached_ids(topo, "xdp") == [m.entry_prog_id]
        assert _blocked(topo)
        D.destroy(name)
        assert attached_ids(topo, "xdp") == []
    finally:
        q = query(topo.ifname("dut", "eth0"), topo.netns("dut"))
        if q["xdp"]:
            with topo.iproute("dut") as ipr:
                ipr.link("set", index=q["ifindex"], xdp_fd=-1)


@pytest.mark.parametrize("fault", ["attached:interrupt", "attached"])
def test_a_forced_deploy_that_fails_puts_the_replaced_program_back(topo, pipeline_file,
                                                                   fault):
    """--force replaced a netlink program (atomically, same mode), then the deploy dies
    before it is done: interrupted (Ctrl-C: its own rollback) or SIGKILLed (the next
    status repairs).  Either way the foreign program is back where it was, from the
    copy the deploy held and pinned, and nothing of the deploy is left."""
    name, f = pipeline_file("xdp")
    foreign = _foreign_netlink_xdp(topo)
    eth0, ns = topo.ifname("dut", "eth0"), topo.netns("dut")
    before = query(eth0, ns)
    try:
        proc = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(f),
                               "--iface", f"{ns}:{eth0}", "--force"],
                              env={**os.environ, "NFPIPE_FAULT": fault}, capture_output=True,
                              text=True, timeout=120)
        if fault.endswith(":interrupt"):
            assert proc.returncode == 130, proc.stderr
            assert not D.state_dir(name).exists()
        else:
            assert proc.returncode == -9, proc.stderr
            assert attached_ids(topo, "xdp") != [foreign]        # ours, left running
            (row,) = D.status(name)
            assert row["state"] == "removed"
            assert any(f"put back program {foreign} 'xdp_pass' (native mode)" in line
                       for line in row["repaired"]), row["repaired"]
        assert query(eth0, ns) == before and attached_ids(topo, "xdp") == [foreign]
        assert not D.state_dir(name).exists()
    finally:
        with topo.iproute("dut") as ipr:
            ipr.link("set", index=before["ifindex"], xdp_fd=-1)


@pytest.mark.parametrize("hook", ["xdp", "tc-ingress"])
def test_a_second_pipeline_on_the_same_hook_is_refused_by_name(topo, pipeline_file, hook):
    """XDP runs one program; at TC the first verdict ends the chain: either way the second
    pipeline would never see a packet.  The error names the one to destroy, --force or
    not, and says how it is attached (a bpf_link is not a netlink attachment)."""
    name, f = pipeline_file(hook)
    m = D.deploy(f, targets=[target(topo)])
    other = f.with_name("other.yaml")
    other.write_text(f.read_text().replace(f"pipeline: {name}", f"pipeline: {name}x"))
    try:
        for force in (False, True):
            with pytest.raises(AttachError) as exc:
                D.deploy(other, targets=[target(topo)], force=force)
            msg = str(exc.value)
            assert f"runs nfpipe pipeline '{name}'" in msg and f"nfpipe destroy {name}" in msg
            assert f"program {m.entry_prog_id}" in msg and "netlink" not in msg
            assert "replace=True" not in msg
        assert attached_ids(topo, hook) == [m.entry_prog_id]
        assert not D.state_dir(f"{name}x").exists()
    finally:
        D.destroy(name)


def test_force_at_tc_runs_in_front_of_a_foreign_program(topo, pipeline_file, tmp_path):
    """A foreign tcx program that passes everything ends the chain: appended behind it,
    the pipeline would be attached and never see a packet.  --force puts it in front."""
    import nfpipe
    src = tmp_path / "tc_pass.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'SEC("tc") int tc_pass(struct __sk_buff *skb) { return 0; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    name, f = pipeline_file("tc-ingress")
    with nfpipe.Object.load(nfpipe.compile(src)) as obj, \
            attach_tc(obj.programs["tc_pass"], topo.ifname("dut", "eth0"), "ingress",
                      netns=topo.netns("dut"), use="tcx") as foreign:
        assert not _blocked(topo)
        with pytest.raises(AttachError, match="which nfpipe did not deploy"):
            D.deploy(f, targets=[target(topo)])
        m = D.deploy(f, targets=[target(topo)], force=True)
        try:
            assert attached_ids(topo, "tc-ingress") == [m.entry_prog_id, foreign.prog_id]
            assert _blocked(topo)
        finally:
            D.destroy(name)
        assert attached_ids(topo, "tc-ingress") == [foreign.prog_id]


def test_failed_deploy_leaves_every_interface_as_it_was(topo, pipeline_file):
    name, f = pipeline_file("xdp")
    bad = D.Target("nosuchif0", topo.netns("dut"))
    with pytest.raises(AttachError):
        D.deploy(f, targets=[target(topo), bad], mode="generic")
    assert attached_ids(topo, "xdp") == []
    assert not D.state_dir(name).exists()
    assert not any(p.name == name for p in Path(D.STATE_ROOT).glob("*")) \
        if os.path.isdir(D.STATE_ROOT) else True


def test_a_deploy_failing_on_its_second_interface_detaches_the_first(topo, pipeline_file):
    """The first interface is attached when the second fails (a plain 'ingress' qdisc
    has no egress hook): the rollback must take the first one off again, qdisc
    included.  A clsact filter outlives its fd, so only the rollback can remove it."""
    name, f = pipeline_file("tc-egress")
    ns = topo.netns("dut")
    eth0, eth1 = topo.ifname("dut", "eth0"), topo.ifname("dut", "eth1")
    with topo.iproute("dut") as ipr:
        idx1 = ipr.link_lookup(ifname=eth1)[0]
        ipr.tc("add", "ingress", idx1)
    try:
        before = query(eth0, ns), query(eth1, ns)
        assert before[0]["qdisc"] is None
        with pytest.raises(AttachError) as exc:
            D.deploy(f, targets=[D.Target(eth0, ns), D.Target(eth1, ns)], mode="clsact")
        assert eth1 in str(exc.value) and "'ingress' qdisc" in str(exc.value)
        assert (query(eth0, ns), query(eth1, ns)) == before
        assert not D.state_dir(name).exists()
    finally:
        with topo.iproute("dut") as ipr:
            ipr.tc("del", "ingress", idx1)


@pytest.mark.parametrize("hook,mode", [("xdp", "native"), ("xdp", "generic"),
                                       ("tc-ingress", "tcx"), ("tc-egress", "clsact")])
def test_a_deploy_interrupted_after_attaching_leaves_both_interfaces_as_they_were(
        topo, pipeline_file, hook, mode):
    """Ctrl-C once every interface is attached (NFPIPE_FAULT=attached:interrupt): the
    deploy's own rollback detaches both, whatever carries the attachment."""
    name, f = pipeline_file(hook)
    ns = topo.netns("dut")
    eth0, eth1 = topo.ifname("dut", "eth0"), topo.ifname("dut", "eth1")
    before = query(eth0, ns), query(eth1, ns)
    proc = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(f),
                           "--iface", f"{ns}:{eth0}", "--iface", f"{ns}:{eth1}",
                           "--mode", mode],
                          env={**os.environ, "NFPIPE_FAULT": "attached:interrupt"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert (query(eth0, ns), query(eth1, ns)) == before
    assert not D.state_dir(name).exists()


def test_plan_iface_explains_placement_and_refuses_impossible_modes(topo, capsys):
    from nfpipe.cli.main import main
    where = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"
    assert main(["plan", str(ROOT / "examples" / "firewall.yaml"), "--iface", where,
                 "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["mode"] == "native"
    assert row["decisions"][0].startswith("offload: no — driver veth:")
    assert row["decisions"][1].startswith("native: yes — driver veth runs XDP")
    assert main(["plan", str(ROOT / "examples" / "firewall.yaml"), "--iface", where,
                 "--mode", "offload"]) == 1
    assert "--mode offload is not possible on eth0: driver veth" in capsys.readouterr().err
    assert main(["plan", str(ROOT / "examples" / "tc-nat.yaml"), "--iface", where,
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["mode"] == "tcx"


@pytest.mark.parametrize("stage", D.FAULT_STAGES)
def test_deploy_killed_at_any_stage_is_repaired_by_the_next(topo, pipeline_file, stage):
    """A deploy SIGKILLed at each stage leaves nothing attached that is not pinned; status
    reports what is left; the next deploy repairs it and succeeds; destroy cleans all."""
    name, f = pipeline_file("xdp")
    where = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"
    proc = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(f),
                           "--iface", where, "--mode", "generic"],
                          env={**os.environ, "NFPIPE_FAULT": stage}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr              # killed, as by SIGKILL
    if stage in ("loaded", "attached"):
        # nothing was pinned: the kernel dropped the unpinned link with the process
        assert attached_ids(topo, "xdp") == []
    left = D.status()
    mine = [r for r in left if r["pipeline"] == name]
    if D.state_dir(name).exists():
        assert mine and mine[0]["state"] == "incomplete"
    m = D.deploy(f, targets=[target(topo)], mode="generic")
    assert attached_ids(topo, "xdp") == [m.entry_prog_id]
    assert D.status(name)[0]["state"] == "running"
    D.destroy(name)
    assert attached_ids(topo, "xdp") == [] and not D.state_dir(name).exists()


def test_one_deploy_at_a_time(topo, pipeline_file):
    name, f = pipeline_file("xdp")
    with D.locked(name):
        with pytest.raises(D.DeployError, match=f"another nfpipe deploy or destroy of '{name}'"):
            D.deploy(f, targets=[target(topo)], mode="generic")
    assert attached_ids(topo, "xdp") == []


def test_map_cli_and_prometheus_on_a_deployed_pipeline(topo, pipeline_file, capsys):
    from nfpipe.cli.main import main
    name, f = pipeline_file("xdp")
    D.deploy(f, targets=[target(topo)], mode="generic")
    server = topo.address("server", "eth0")
    with pytest.raises(TimeoutError):
        topo.call("client", udp_exchange, server, BLOCKED_UDP, b"x", timeout=0.5, interval=0.1)
    echo = topo.start("server", serve_udp_echo, server, 5000, 1)
    assert topo.call("client", udp_exchange, server, 5000, b"ok")[0] == b"ok"
    echo.result(timeout=20)
    dropped = D.stats(name)["fw"]["drop"]["packets"]
    # per-rule hit counters (two generations of rules: the active one counts)
    assert main(["map", "dump", name, "fw__hits", "--json"]) == 0
    counted = {e["key"]: sum(e["value"]) for e in json.loads(capsys.readouterr().out)
               if sum(e["value"])}
    assert list(counted.values()) == [dropped]
    (key,) = counted
    assert main(["map", "set", name, "fw__hits", str(key), "0"]) == 0   # 0 on every CPU
    assert main(["map", "get", name, "fw__hits", str(key), "--json"]) == 0
    assert sum(json.loads(capsys.readouterr().out)) == 0
    assert main(["map", "dump", name, "stats__flows", "--json"]) == 0
    flows = json.loads(capsys.readouterr().out)         # the telemetry saw the allowed flow
    assert flows and all(e["value"]["packets"] for e in flows)
    # network-order fields are shown as what they hold: addresses and ports
    client = topo.address("client", "eth0")
    assert any(e["key"]["saddr"] == client and e["key"]["family"] == 4 for e in flows), flows
    assert all(isinstance(e["key"]["dport"], int) for e in flows)
    assert main(["map", "dump", name, "stats__flows"]) == 0    # the kernel's own count
    assert re.search(r"lru_hash, max 65536; [0-9.]+ MiB of kernel memory\)\n$",
                     capsys.readouterr().out)
    assert main(["map", "get", name, "nope", "0"]) == 2        # bad input
    assert "has no map 'nope'" in capsys.readouterr().err
    assert main(["stats", name, "--prometheus"]) == 0
    text = capsys.readouterr().out
    assert f'nfpipe_packets_total{{pipeline="{name}",node="fw",outcome="drop"}} {dropped}' in text
    assert "# TYPE nfpipe_packets_total counter" in text


def test_deploy_of_a_node_the_verifier_rejects_leaves_the_interface_untouched(topo, tmp_path):
    from nfpipe.errors import VerifierError
    name = f"t{uuid.uuid4().hex[:8]}"
    f = tmp_path / "bad.yaml"
    f.write_text(f"pipeline: {name}\nhook: xdp\nnodes:\n  - {{id: fw, nf: filter}}\n"
                 f"  - {{id: bad, nf: {ROOT}/tests/bpf/nf_bad.c}}\n"
                 "edges:\n  - fw -> bad\n  - bad -> pass\n")
    before = query(topo.ifname("dut", "eth0"), topo.netns("dut"))
    with pytest.raises(VerifierError) as info:
        D.deploy(f, targets=[target(topo)], mode="generic")
    assert info.value.source_line and "nf_bad.c:9" in info.value.source_line
    assert query(topo.ifname("dut", "eth0"), topo.netns("dut")) == before
    assert not D.state_dir(name).exists()


def test_filter_rules_replaced_on_a_running_pipeline(topo, pipeline_file, tmp_path, capsys):
    from nfpipe.cli.main import main
    name, f = pipeline_file("xdp")
    D.deploy(f, targets=[target(topo)], mode="native")
    server = topo.address("server", "eth0")
    new_rules = tmp_path / "rules.yaml"
    new_rules.write_text("rules:\n  - {action: drop, proto: udp, dport: 5000}\n")
    assert main(["rules", name, "fw", str(new_rules)]) == 0
    assert "1 rules active" in capsys.readouterr().out
    # the old rule is gone, the new one holds, without reloading anything
    echo = topo.start("server", serve_udp_echo, server, BLOCKED_UDP, 1)
    assert topo.call("client", udp_exchange, server, BLOCKED_UDP, b"now open")[0] == b"now open"
    echo.result(timeout=20)
    with pytest.raises(TimeoutError):
        topo.call("client", udp_exchange, server, 5000, b"x", timeout=0.5, interval=0.1)
    fw = D.read_manifest(D.state_dir(name)).node("fw")
    assert fw.config["rules"][0]["dport"] \
        == 5000
    # refused: a port the pipeline does not wire; and a bad rule: nothing changes
    unwired = tmp_path / "unwired.yaml"
    unwired.write_text("rules:\n  - {action: 'port:3', proto: icmp}\n")
    assert main(["rules", name, "fw", str(unwired)]) == 1
    assert "port(s) port3 of 'fw', which the pipeline does not wire" in \
        capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {action: drop, dport: 99999}\n")
    assert main(["rules", name, "fw", str(bad)]) == 2
    # valid rules whose tables would not fit: refused before anything is written
    cross = tmp_path / "cross.yaml"
    cross.write_text("classifier: tables\nmax_table_entries: 1000\nrules:\n" + "".join(
        f"  - {{action: allow, dst: 10.1.{i}.0/24, proto: tcp}}\n"
        f"  - {{action: drop, src: 10.0.{i}.0/24, proto: tcp}}\n" for i in range(50)))
    capsys.readouterr()
    assert main(["rules", name, "fw", str(cross)]) == 2
    assert "rule set too complex" in capsys.readouterr().err
    sdir = D.state_dir(name)
    assert not (sdir / "manifest_next").exists()
    assert D.read_manifest(sdir).node("fw").config["rules"][0]["dport"] == 5000
    with pytest.raises(TimeoutError):
        topo.call("client", udp_exchange, server, 5000, b"x", timeout=0.5, interval=0.1)


COMPILED = """pipeline: {name}
hook: xdp
linking: {linking}
nodes:
  - id: fw
    nf: filter
    config:
      classifier: compiled
      rules: [{{action: drop, proto: udp, dport: {port}}}]
  - id: stats
    nf: telemetry
edges:
  - fw -> stats
  - stats -> pass
"""


@pytest.mark.parametrize("linking", ["tailcall", "fused"])
def test_compiled_filter_rules_change_by_a_new_program(topo, tmp_path, capsys, linking):
    """A compiled filter's rules are in its program: 'nfpipe rules' refuses to change them
    (nothing changes), a deploy of the edited file builds the node again and switches to
    it without a gap (tail calls: that node's program swapped in; fused: a new
    generation), and the new rules hold."""
    from nfpipe.cli.main import main
    name = f"t{uuid.uuid4().hex[:8]}"
    f = tmp_path / f"{name}.yaml"
    f.write_text(COMPILED.format(name=name, linking=linking, port=BLOCKED_UDP))
    server = topo.address("server", "eth0")
    try:
        m1 = D.deploy(f, targets=[target(topo)], mode="native")
        rules = tmp_path / "rules.yaml"
        rules.write_text("rules:\n  - {action: drop, proto: udp, dport: 5000}\n")
        assert main(["rules", name, "fw", str(rules)]) == 1
        err = capsys.readouterr().err
        assert "rules cannot change at runtime" in err and "nfpipe deploy" in err
        assert D.read_manifest(D.state_dir(name)).revision == m1.revision
        with pytest.raises(TimeoutError):
            topo.call("client", udp_exchange, server, BLOCKED_UDP, b"x", timeout=0.5,
                      interval=0.1)
        f.write_text(COMPILED.format(name=name, linking=linking, port=5000))
        m2 = D.deploy(f, targets=[target(topo)])
        assert m2.update["how"] == ("swap" if linking == "tailcall" else "generation")
        assert any("fw: fresh" in line for line in m2.update["lines"])
        assert attached_ids(topo, "xdp") == [m2.entry_prog_id] != [m1.entry_prog_id]
        echo = topo.start("server", serve_udp_echo, server, BLOCKED_UDP, 1)
        assert topo.call("client", udp_exchange, server, BLOCKED_UDP, b"open")[0] == b"open"
        echo.result(timeout=20)
        with pytest.raises(TimeoutError):
            topo.call("client", udp_exchange, server, 5000, b"x", timeout=0.5, interval=0.1)
        # the new node counts the hits of its compiled rule (the packets to port 5000)
        assert main(["rules", name, "fw", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["rules"][0]["rule"]["dport"] == 5000 and shown["rules"][0]["hits"] > 0
    finally:
        if D.state_dir(name).exists():
            D.destroy(name)


V2_EXTRA = """  - id: guard
    nf: {ttl_guard}
    config: {{min_ttl: 1}}
edges:
  - fw -> guard
  - guard -> stats
  - stats -> pass
"""


def _pins_outside_links(name: str) -> set[str]:
    sdir = D.state_dir(name)
    return {str(p) for p in sdir.rglob("*") if not p.is_dir()
            and len(p.relative_to(sdir).parts) > 1 and p.relative_to(sdir).parts[0] != "links"}


def test_an_update_leaves_exactly_the_new_revisions_pins(topo, pipeline_file):
    """Checked the moment deploy returns, before anything (a status() repair) could tidy
    up: after a new generation and after a one-node swap, every program and map pinned
    is one the new manifest uses; the old revision's programs are unpinned."""
    name, f = pipeline_file("xdp")
    m1 = D.deploy(f, targets=[target(topo)], mode="generic")
    assert _pins_outside_links(name) == {p for p in m1.referenced() if "/links/" not in p}
    text = f.read_text()
    v2 = text[:text.index("edges:")] + V2_EXTRA.format(
        ttl_guard=ROOT / "bpf" / "examples" / "ttl_guard.c")
    f.write_text(v2)
    m2 = D.deploy(f, targets=[target(topo)])
    assert m2.update["how"] == "generation"
    pins = _pins_outside_links(name)
    assert pins == {p for p in m2.referenced() if "/links/" not in p}
    assert not {n.program for n in m1.nodes} & pins
    f.write_text(v2.replace("min_ttl: 1", "min_ttl: 3"))          # guard's code only
    m3 = D.deploy(f, targets=[target(topo)])
    assert m3.update["how"] == "swap"
    pins = _pins_outside_links(name)
    assert pins == {p for p in m3.referenced() if "/links/" not in p}
    assert m2.node("guard").program not in pins
    assert attached_ids(topo, "xdp") == [m3.entry_prog_id]


@pytest.mark.parametrize("stage", D.UPDATE_FAULT_STAGES)
def test_update_killed_at_any_stage_is_finished_or_undone_by_status(topo, pipeline_file,
                                                                    stage):
    """An update (a new generation: one node added, the filter's rules changed) SIGKILLed
    at each stage: before the switch was decided (``update-loaded``) the old revision
    runs on and the loaded pins are removed; once ``manifest_next`` exists the next
    status finishes the update.  Either way exactly one revision runs, traffic obeys
    its rules, and nothing of the other is left."""
    name, f = pipeline_file("xdp")
    m1 = D.deploy(f, targets=[target(topo)], mode="generic")
    text = f.read_text()
    v2 = text[:text.index("edges:")].replace(f"dport: {BLOCKED_UDP}", "dport: 5001") + \
        V2_EXTRA.format(ttl_guard=ROOT / "bpf" / "examples" / "ttl_guard.c")
    f.write_text(v2)
    where = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"
    proc = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(f),
                           "--iface", where], env={**os.environ, "NFPIPE_FAULT": stage},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    st = D.status(name)[0]                         # as root: repairs first
    assert st["state"] == "running"
    m = D.read_manifest(D.state_dir(name))
    finished = stage != "update-loaded"
    assert m.revision == (2 if finished else 1)
    assert [n["id"] for n in st["nodes"]] == (["fw", "guard", "stats"] if finished
                                              else ["fw", "stats"])
    assert attached_ids(topo, "xdp") == [m.entry_prog_id]
    if not finished:
        assert m.entry_prog_id == m1.entry_prog_id
    assert not (D.state_dir(name) / "manifest_next").exists()
    pins = {p.relative_to(D.state_dir(name)).parts[0]
            for p in D.state_dir(name).rglob("*") if not p.is_dir()}
    assert pins == {"manifest", "links", "r1"} | ({"r2"} if finished else set())
    blocked, open_port = (5001, BLOCKED_UDP) if finished else (BLOCKED_UDP, 5001)
    server = topo.address("server", "eth0")
    echo = topo.start("server", serve_udp_echo, server, open_port, 1)
    assert topo.call("client", udp_exchange, server, open_port, b"ok")[0] == b"ok"
    echo.result(timeout=20)
    with pytest.raises(TimeoutError):
        topo.call("client", udp_exchange, server, blocked, b"x", timeout=0.5, interval=0.1)
    assert "tail_call_miss" not in str(D.stats(name))


LB_PIPELINE = """pipeline: {name}
hook: xdp
nodes:
  - id: fw
    nf: filter
    config:
      rules: [{{action: drop, proto: udp, dport: 9999}}]
  - id: lb
    nf: lb
    config:
      vips:
        - vip: "10.100.0.1:80"
          proto: tcp
          table_size: 1021
          backends:
            - {{addr: "10.0.1.1:8080"}}
            - {{addr: "10.0.1.2:8080", weight: 2}}
edges:
  - fw -> lb
  - lb -> pass
"""


def test_rules_and_backends_verbs_show_and_change_a_running_pipeline(topo, tmp_path, capsys):
    """`nfpipe rules` / `nfpipe backends` without a file show the node (rules with hits,
    backends with their state); with one they change its maps, no program reloaded; a
    removed backend retires until --purge; a redeploy of the original file is a runtime
    update back to it, from the state the CLI left in the manifest."""
    from nfpipe.cli.main import main
    name = f"t{uuid.uuid4().hex[:8]}"
    f = tmp_path / "lb.yaml"
    f.write_text(LB_PIPELINE.format(name=name))
    try:
        m1 = D.deploy(f, targets=[target(topo)], mode="generic")
        progs = [n.prog_id for n in m1.nodes]
        server = topo.address("server", "eth0")
        with pytest.raises(TimeoutError):
            topo.call("client", udp_exchange, server, 9999, b"x", timeout=0.5, interval=0.1)
        assert main(["rules", name, "fw", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert [(r["action"], r["hits"] > 0) for r in shown["rules"]] == [("drop", True)]

        assert main(["backends", name, "lb", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["backends"]
        assert [(r["backend"], r["weight"], r["state"]) for r in rows] == \
            [("10.0.1.1:8080", 1, "active"), ("10.0.1.2:8080", 2, "active")]
        one = tmp_path / "one.yaml"
        one.write_text('vips:\n  - {vip: "10.100.0.1:80", proto: tcp, table_size: 1021, '
                       'backends: [{addr: "10.0.1.2:8080", weight: 2}]}\n')
        assert main(["backends", name, "lb", str(one)]) == 0
        assert "no program reloaded" in capsys.readouterr().out
        assert main(["backends", name, "lb", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["backends"]
        assert [(r["backend"], r["state"]) for r in rows] == \
            [("10.0.1.2:8080", "active"), ("10.0.1.1:8080", "retired")]
        assert main(["backends", name, "lb", "--purge", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"purged": ["10.0.1.1:8080"]}
        # refused: a key the LB cannot change live; nothing changes
        seed = tmp_path / "seed.yaml"
        seed.write_text("vips: []\nhash_seed: 7\n")
        assert main(["backends", name, "lb", str(seed)]) == 2
        # the file again: a runtime update back to two backends, same programs
        m = D.deploy(f, targets=[target(topo)], mode="generic")
        assert m.update["how"] == "runtime"
        assert [n.prog_id for n in m.nodes] == progs
        assert main(["backends", name, "lb", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["backends"]
        assert [(r["backend"], r["state"]) for r in rows] == \
            [("10.0.1.1:8080", "active"), ("10.0.1.2:8080", "active")]
        assert main(["status", name, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)[0]["revision"] == m.revision == 4
    finally:
        if D.state_dir(name).exists():
            D.destroy(name)


def test_clsact_attachment_without_a_link_is_updated_repaired_and_destroyed(topo,
                                                                           pipeline_file):
    """--mode clsact: a cls_bpf filter, no bpf_link to pin.  The manifest records it; an
    update replaces its program in place; destroy removes the filter and the clsact
    qdisc it created; and a deploy SIGKILLed right after attaching (nothing pinned
    says it exists) is found from the deploy's intent and undone by status."""
    name, f = pipeline_file("tc-ingress")
    iface, ns = topo.ifname("dut", "eth0"), topo.netns("dut")
    assert query(iface, ns)["qdisc"] is None
    m1 = D.deploy(f, targets=[target(topo)], mode="clsact")
    (i,) = m1.interfaces
    assert (i.kind, i.link, i.attachment["via"]) == ("ClsactFilter", None, "clsact")
    assert attached_ids(topo, "tc-ingress") == [m1.entry_prog_id]
    f.write_text(f.read_text().replace(f"dport: {BLOCKED_UDP}", "dport: 5001")
                 .replace("  - id: stats\n", "  - id: extra\n    nf: telemetry\n"
                          "  - id: stats\n").replace("  - fw -> stats\n",
                                                     "  - fw -> extra\n  - extra -> stats\n"))
    m2 = D.deploy(f, targets=[target(topo)], mode="clsact")
    assert m2.update["how"] == "generation"
    assert attached_ids(topo, "tc-ingress") == [m2.entry_prog_id] != [m1.entry_prog_id]
    server = topo.address("server", "eth0")
    with pytest.raises(TimeoutError):
        topo.call("client", udp_exchange, server, 5001, b"x", timeout=0.5, interval=0.1)
    assert D.stats(name)["fw"]["drop"]["packets"] >= 3
    D.destroy(name)
    q = query(iface, ns)
    assert q["tc"]["ingress"] == [] and q["qdisc"] is None

    where = f"{ns}:{iface}"
    proc = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(f),
                           "--iface", where, "--mode", "clsact"],
                          env={**os.environ, "NFPIPE_FAULT": "attached"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert len(attached_ids(topo, "tc-ingress")) == 1       # outlived the killed process
    (row,) = D.status(name)
    assert row["state"] == "removed" and "interrupted deploy undone" in row["repaired"][0]
    q = query(iface, ns)
    assert q["tc"]["ingress"] == [] and q["qdisc"] is None


def test_a_deploy_killed_between_the_clsact_qdisc_and_its_filter_leaves_no_qdisc(
        topo, pipeline_file):
    """The qdisc a deploy creates is undone by the repair even when the kill came before
    the filter existed (nothing of ours under it to find): the intent said there was no
    qdisc before."""
    name, f = pipeline_file("tc-ingress")
    iface, ns = topo.ifname("dut", "eth0"), topo.netns("dut")
    assert query(iface, ns)["qdisc"] is None
    proc = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(f),
                           "--iface", f"{ns}:{iface}", "--mode", "clsact"],
                          env={**os.environ, "NFPIPE_FAULT": "clsact-qdisc"},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    q = query(iface, ns)
    assert q["qdisc"] == "clsact" and q["tc"]["ingress"] == []       # the window
    (row,) = D.status(name)
    assert row["state"] == "removed" and "clsact qdisc" in row["repaired"][0]
    assert query(iface, ns)["qdisc"] is None                          # as it was
    # a qdisc that was there before the deploy is not the deploy's to remove
    with topo.iproute("dut") as ipr:
        ipr.tc("add", "clsact", ipr.link_lookup(ifname=iface)[0])
    try:
        proc = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(f),
                               "--iface", f"{ns}:{iface}", "--mode", "clsact"],
                              env={**os.environ, "NFPIPE_FAULT": "attached"},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == -9
        (row,) = D.status(name)
        assert row["state"] == "removed"
        q = query(iface, ns)
        assert q["qdisc"] == "clsact" and q["tc"]["ingress"] == []   # ours gone, it stays
    finally:
        with topo.iproute("dut") as ipr:
            ipr.tc("del", "clsact", ipr.link_lookup(ifname=iface)[0])


def test_update_adds_and_drops_interfaces(topo, pipeline_file):
    """An update may change the interfaces: one added gets the new entry program (its link
    pinned), one dropped is detached; those kept are switched in place."""
    name, f = pipeline_file("xdp")
    eth0 = target(topo)
    eth1 = D.Target(topo.ifname("dut", "eth1"), topo.netns("dut"))

    def ids(t):
        return [e["prog_id"] for e in D.occupants(query(t.ifname, t.netns), "xdp")]

    m1 = D.deploy(f, targets=[eth0], mode="generic")
    m2 = D.deploy(f, targets=[eth0, eth1], mode="generic")
    assert m2.update["how"] == "interfaces" and m2.revision == 2
    assert m2.update["lines"][-1] == f"  interfaces: +{eth1}"
    assert ids(eth0) == ids(eth1) == [m1.entry_prog_id]
    assert {i["iface"] for i in D.status(name)[0]["interfaces"]} == {eth0.ifname, eth1.ifname}
    f.write_text(f.read_text().replace(f"dport: {BLOCKED_UDP}", "dport: 5001"))
    m3 = D.deploy(f, targets=[eth1], mode="generic")
    assert m3.update["how"] == "swap"             # the new rule built into fw's program
    assert m3.update["lines"][-1] == f"  interfaces: -{eth0}"
    assert ids(eth0) == [] and ids(eth1) == [m3.entry_prog_id]
    assert sorted(p.name for p in (D.state_dir(name) / "links").iterdir()) == [link_key(eth1)]
    D.destroy(name)
    assert ids(eth0) == ids(eth1) == []


def test_pcap_of_a_deployed_telemetry_node(topo, pipeline_file, tmp_path, capfdbinary):
    """`nfpipe pcap P NODE -w FILE` and `-w -` (what `tcpdump -r -` reads) give the packets
    the telemetry node sampled, each once."""
    from scapy.layers.inet import UDP
    from scapy.utils import rdpcap

    from nfpipe.cli.main import main
    name, f = pipeline_file("xdp")
    f.write_text(f.read_text().replace("    nf: telemetry\n",
                                       "    nf: telemetry\n    config: {sample_rate: 1}\n"))
    D.deploy(f, targets=[target(topo)], mode="generic")
    server = topo.address("server", "eth0")
    echo = topo.start("server", serve_udp_echo, server, 5001, 3)
    for i in range(3):
        assert topo.call("client", udp_exchange, server, 5001, b"pcap%d" % i)[0] == b"pcap%d" % i
    echo.result(timeout=20)
    out = tmp_path / "s.pcap"
    assert main(["pcap", name, "stats", "-w", str(out)]) == 0
    capfdbinary.readouterr()
    packets = rdpcap(str(out))
    udp = [bytes(p[UDP].payload) for p in packets if UDP in p and p[UDP].dport == 5001]
    assert sorted(set(udp)) == [b"pcap0", b"pcap1", b"pcap2"]      # a resend may repeat one
    impl, maps = D.node_view(name, "stats")
    try:
        assert len(packets) == impl.counters(maps)["sampled"]     # every sample, once
    finally:
        D.close_node_maps(maps)
    # drained: a second read has nothing; new traffic goes to stdout with -w -
    echo = topo.start("server", serve_udp_echo, server, 5002, 1)
    assert topo.call("client", udp_exchange, server, 5002, b"again")[0] == b"again"
    echo.result(timeout=20)
    assert main(["pcap", name, "stats", "-w", "-"]) == 0
    raw = capfdbinary.readouterr().out
    (tmp_path / "stdout.pcap").write_bytes(raw)
    again = [p for p in rdpcap(str(tmp_path / "stdout.pcap")) if UDP in p]
    assert {bytes(p[UDP].payload) for p in again if p[UDP].dport == 5002} == {b"again"}
    assert main(["pcap", name, "fw", "-w", str(out)]) == 2           # not a telemetry node


def test_a_build_smoke_tested_once_is_not_tested_again(topo, pipeline_file, tmp_path,
                                                        monkeypatch):
    """A redeploy of the same build (objects, constants, map sizes, configs, on this
    kernel since its boot) skips the throwaway copy's verification; a changed config is
    a new build and is smoke-tested again."""
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(tmp_path / "cache"))   # a memo of its own
    tested = []
    real = steps.smoke_test
    monkeypatch.setattr(steps, "smoke_test", lambda built, *a: (tested.append(built),
                                                                real(built, *a))[1])
    name, f = pipeline_file("xdp")
    for _ in range(2):
        D.deploy(f, targets=[target(topo)])
        assert _blocked(topo)                   # it runs, smoke-tested or not
        D.destroy(name)
    assert len(tested) == 1
    assert list((tmp_path / "cache" / "verifier").glob("smoke-ok-*"))
    f.write_text(f.read_text().replace(f"dport: {BLOCKED_UDP}", f"dport: {BLOCKED_UDP + 1}"))
    D.deploy(f, targets=[target(topo)])
    assert len(tested) == 2
