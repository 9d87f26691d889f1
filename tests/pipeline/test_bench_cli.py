"""`nfpipe bench` runs its cases in the kernel and reports ratios (no time is asserted)."""
from __future__ import annotations

import json
import os
import shutil
import statistics

import pytest

from nfpipe.cli.main import main
from nfpipe.testing.plugin import IN_CI

pytestmark = pytest.mark.kernel


def test_bench_json_reports_every_selected_case(capsys):
    """Each case loaded --loads times, --rounds samples a load, its median over all."""
    assert main(["bench", "chain1", "--repeat", "200", "--rounds", "2", "--loads", "3",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["case"] for r in rows] == ["baseline", "chain1-tailcall", "chain1-fused",
                                         "chain1-handwritten"]
    assert rows[0]["ratio_to_baseline"] == 1.0
    assert all(r["ns_per_packet"] > 0 and len(r["samples"]) == 6 for r in rows)
    assert all(r["ns_per_packet"] == statistics.median(r["samples"]) for r in rows)


def test_bench_gives_a_tail_call_hop_beside_the_kernels_own(capsys):
    """Per chain length: nfpipe's hop (tail calls over fused, per hop) and the kernel's
    (chain.c's bare tail calls over its one program, per hop), from the same run."""
    assert main(["bench", "chain1", "chain4", "--repeat", "200", "--rounds", "2",
                 "--loads", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ns = {c["case"]: c["ns_per_packet"] for c in out["cases"]}
    assert set(ns) == {"baseline"} | {f"chain{n}-{i}" for n in (1, 4)
                                      for i in ("tailcall", "fused", "handwritten")}
    [row] = out["tailcall_hops"]
    assert row["nodes"] == 4
    assert row["hop_over_fused_ns"] == pytest.approx(
        (ns["chain4-tailcall"] - ns["chain4-fused"]) / 3)
    assert row["kernel_hop_ns"] == pytest.approx(
        (ns["chain4-handwritten"] - ns["chain1-handwritten"]) / 3)


def test_bench_puts_the_firewall_beside_the_hand_written_program(capsys):
    assert main(["bench", "fw-tcp22", "fw-udp", "--repeat", "200", "--rounds", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [c["case"] for c in out["cases"]]
    assert names == ["baseline"] + [f"fw-{k}-{i}" for k in ("udp", "tcp22")
                                    for i in ("handwritten", "fused", "tailcall", "linear")]
    ns = {c["case"]: c["ns_per_packet"] for c in out["cases"]}
    rows = {r["packet"]: r for r in out["firewall_vs_handwritten"]}
    assert set(rows) == {"udp", "tcp22"}
    for kind, row in rows.items():
        for linking in ("fused", "tailcall", "linear"):
            assert row[f"{linking}_over_handwritten_ns"] == pytest.approx(
                ns[f"fw-{kind}-{linking}"] - ns[f"fw-{kind}-handwritten"])


def test_bench_puts_edge_yaml_beside_the_hand_written_program(capsys):
    """The issue's ratio, floor subtracted: a kind timed by in-kernel repeats against
    `baseline`, one the pipeline rewrites (timed as single runs) against `baseline-single`."""
    assert main(["bench", "edge-telnet", "edge-masq", "--repeat", "200", "--rounds", "1",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    names = [c["case"] for c in out["cases"]]
    assert names == ["baseline", "baseline-single"] + [
        f"edge-{k}-{i}" for k in ("masq", "telnet") for i in ("handwritten", "fused", "tailcall")]
    ns = {c["case"]: c["ns_per_packet"] for c in out["cases"]}
    rows = {r["packet"]: r for r in out["edge_vs_handwritten"]}
    assert set(rows) == {"masq", "telnet"}
    assert rows["telnet"]["timing"] == "repeat" and rows["masq"]["timing"] == "single runs"
    for kind, floor in (("telnet", "baseline"), ("masq", "baseline-single")):
        row = rows[kind]
        assert row["floor_ns"] == ns[floor]
        assert row["fused_style"] in ("inline", "calls")
        over = ns[f"edge-{kind}-handwritten"] - ns[floor]
        for linking in ("fused", "tailcall"):
            want = (ns[f"edge-{kind}-{linking}"] - ns[floor]) / over if over > 0 else None
            assert row[f"{linking}_ratio"] == pytest.approx(want)


def test_live_bench_sends_real_frames_and_leaves_nothing(capsys):
    """The live bench's own topology: frames reach the DUT and every configuration that
    ran has a number; its namespaces are gone afterwards."""
    from nfpipe.topo import find_runs
    before, bpffs_before = find_runs(), sorted(os.listdir("/sys/fs/bpf"))
    # xdp-filter (xdp-tools) where it is installed, as .ci/run does: libxdp makes a
    # directory on bpffs that the bench must take away again
    extra = ["xdp-filter"] if shutil.which("xdp-filter") or IN_CI else []
    assert main(["bench", "--live", "xdp-drop", "nfpipe-xdp-native", *extra, "--frames",
                 "20000", "--rounds", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {(r["config"], r["packet"]): r for r in out["results"]}
    assert {c for c, _ in rows} == {"xdp-drop", "nfpipe-xdp-native", "nfpipe-xdp-native-tailcall",
                                    *extra}
    assert sorted(os.listdir("/sys/fs/bpf")) == bpffs_before     # libxdp's dir went too
    for r in rows.values():
        assert not r["skipped"], r
        # received counts what reached the DUT's veth: the frames sent, less those its
        # ring had no room for (a frame or two of the stack's own may add to it); how
        # many the ring drops depends on what else has the DUT's CPU (it took 3,824 of
        # 20,000 once while another test run shared the machine), and ns_per_packet is
        # per frame received, so only some must arrive
        assert r["sent"] == 20000 and 0 < r["received"] <= r["sent"] + 3
        assert r["ns_per_packet"] > 0
    assert out["over_nfpipe_xdp_native"]["nfpipe-xdp-native"] == {"udp": 1.0, "tcp80": 1.0}
    assert find_runs() == before


def test_control_bench_times_every_step_and_leaves_nothing(capsys):
    """deploy/update/destroy of edge.yaml and the filter scales, on its own topology and
    state root: every step has a time, and its namespaces and pins are gone after."""
    import os

    from nfpipe.topo import find_runs
    before, pins = find_runs(), set(os.listdir("/sys/fs/bpf"))
    assert main(["bench", "--control", "--rounds", "1", "--json"]) == 0
    rows = {r["case"]: r for r in json.loads(capsys.readouterr().out)["control"]}
    assert set(rows) == {"deploy-cold", "deploy-warm", "update-runtime", "update-swap",
                         "destroy"} | {f"filter-{n}-{what}" for n in (10, 1000, 10000)
                                       for what in ("build", "update")}
    assert all(r["seconds"] > 0 and len(r["samples"]) == 1 for r in rows.values())
    assert find_runs() == before and set(os.listdir("/sys/fs/bpf")) == pins
