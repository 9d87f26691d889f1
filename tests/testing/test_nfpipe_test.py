"""`nfpipe test` in the kernel, as a user runs it: the shipped case files pass with both
linkings, a changed rule makes exactly the case it breaks fail (exit 1, its position,
JUnit XML a CI server reads), a rewrite that is not what the case says shows the
fields, a NAT sequence is translated both ways with valid checksums, and every case
gets a pipeline of its own."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from nfpipe.testing import run_cases
from nfpipe.testing.packets import checksum_mismatches

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NFPIPE = ROOT / ".venv" / "bin" / "nfpipe"


def nfpipe(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(NFPIPE), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def line_of(path: Path, text: str) -> int:
    """The 1-based line of *path* holding *text* (once)."""
    [n] = [i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line]
    return n


def test_the_firewall_cases_pass_with_both_linkings():
    r = nfpipe("test", EXAMPLES / "firewall.yaml", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    cases = {c["case"] for c in out["results"]}
    assert len(cases) == 8 and out["counts"] == {"passed": 16, "failed": 0, "error": 0}
    assert sorted((c["case"], c["linking"]) for c in out["results"]) == \
        sorted((c, link) for c in cases for link in ("tailcall", "fused"))
    drop = next(c for c in out["results"] if c["case"].startswith("DNS"))
    assert drop["packets"][0]["verdict"] == "drop" and drop["packets"][0]["retval"] == 1
    real = next(c for c in out["results"] if c["case"].startswith("on real traffic, SSH"))
    assert [(t["kind"], t["delivered"]) for t in real["traffic"]] == \
        [("tcp", True), ("ping", True), ("http", False), ("udp", False)]
    assert real["traffic"][0]["sources"] == ["192.0.2.2"] and real["traffic"][3]["received"] == 0


@pytest.mark.parametrize("name", ["edge", "split-guard", "tc-nat"])
def test_the_other_shipped_cases_pass(name):
    suite = run_cases(EXAMPLES / f"{name}.yaml")
    bad = [(r.case, r.linking, [f.message for f in r.failures]) for r in suite.results
           if not r.passed]
    assert not bad
    assert {r.linking for r in suite.results} == {"tailcall", "fused"}


def test_a_changed_rule_fails_the_case_it_breaks(tmp_path):
    """The user's walk-through of docs/testing.md: open 443 in the pipeline file, and the
    HTTPS packet of one case fails — in both linkings, at its line, exit code 1."""
    fw = tmp_path / "firewall.yaml"
    fw.write_text((EXAMPLES / "firewall.yaml").read_text()
                  .replace("dport: [80, 443]", "dport: [80]"))
    cases = tmp_path / "firewall.test.yaml"
    shutil.copy(EXAMPLES / "firewall.test.yaml", cases)
    junit = tmp_path / "junit.xml"
    r = nfpipe("test", fw, "--junit", junit)
    assert r.returncode == 1, r.stdout + r.stderr
    line = line_of(cases, 'TCP(dport=443, flags="S")') + 2        # its `verdict: drop`
    where = f"{cases}:{line}:11"
    for linking in ("tailcall", "fused"):
        assert (f"{where}: case 'HTTP and HTTPS are dropped' [xdp, {linking}]: packet 2: "
                f"verdict: expected drop (XDP_DROP), got pass (XDP_PASS); path fw.out -> "
                f"stats.out") in r.stdout
    assert "firewall: 14 passed, 2 failed" in r.stdout

    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "16"
    assert root.get("failures") == "2"
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"firewall.xdp.tailcall", "firewall.xdp.fused"}
    for s in suites.values():
        assert s.get("tests") == "8" and s.get("failures") == "1"
        failed = [tc for tc in s.findall("testcase") if tc.find("failure") is not None]
        assert [tc.get("name") for tc in failed] == ["HTTP and HTTPS are dropped"]
        assert failed[0].find("failure").get("message").startswith(f"{where}: packet 2:")
        assert all(float(tc.get("time")) > 0 for tc in s.findall("testcase"))

    # the same failure as JSON, for the one case
    r = nfpipe("test", fw, "-k", "https", "--linking", "fused", "--json")
    assert r.returncode == 1
    [res] = json.loads(r.stdout)["results"]
    assert res["result"] == "failed" and res["linking"] == "fused"
    verdict, counters = res["failures"]          # the HTTPS packet was counted as passed
    assert (verdict["line"], verdict["column"], verdict["packet"]) == (line, 11, 2)
    assert counters["line"] == line + 1 and counters["message"] == \
        "packet 2: counters: fw.drop: expected 2 packets, got 1 packet (54 bytes)"


def test_a_wrong_rewrite_shows_the_fields_that_differ(tmp_path):
    cases = tmp_path / "nat.test.yaml"
    cases.write_text("""cases:
  - name: masquerade
    packet: Ether()/IP(src="192.168.1.10", dst="8.8.8.8")/UDP(sport=5000, dport=53)
    expect:
      fields:
        IP: {src: 198.51.100.9, dst: 8.8.8.8}
        UDP: {sport: 44071}
      checksums: valid
""")
    suite = run_cases(EXAMPLES / "tc-nat.yaml", cases, linkings=("tailcall",))
    [res] = suite.results
    assert res.result == "failed"
    [f] = res.failures
    assert str(f.pos) == f"{cases}:5:7"
    assert [(d.layer, d.field, d.expected, d.actual) for d in f.diff] == \
        [("IP", "src", "198.51.100.9", "198.51.100.1")]

    r = nfpipe("test", EXAMPLES / "tc-nat.yaml", cases, "--linking", "tailcall")
    assert r.returncode == 1
    table = [line.split() for line in r.stdout.splitlines()]
    assert ["layer", "field", "expected", "actual"] in table
    assert ["IP", "src", "198.51.100.9", "198.51.100.1"] in table


def test_checksums_valid_catches_a_bad_checksum(tmp_path):
    """A packet the pipeline passes untouched keeps the wrong IP checksum it came with:
    `checksums: valid` must say so (the kernel's outputs of the other tests are right)."""
    cases = tmp_path / "sg.test.yaml"
    cases.write_text("""cases:
  - name: bad checksum in, bad checksum out
    packet: Ether()/IP(dst="10.0.0.2", chksum=0x1234)/TCP(dport=80)
    expect: {verdict: pass, unchanged: true, checksums: valid}
""")
    [res] = run_cases(EXAMPLES / "split-guard.yaml", cases, linkings=("fused",)).results
    [f] = res.failures
    assert "checksums" in f.message
    [d] = f.diff
    assert (d.layer, d.field, d.actual) == ("IP", "chksum", "0x1234")


def test_a_nat_sequence_is_translated_both_ways():
    """The tc-nat example's UDP case, checked here with scapy on the bytes the kernel gave
    back, not through the runner's own expectations."""
    suite = run_cases(EXAMPLES / "tc-nat.yaml", select=["outbound UDP"])
    assert len(suite.results) == 2
    for res in suite.results:
        assert res.passed, res.failures
        out, back = (Ether(s.output) for s in res.steps)
        assert (out[IP].src, out[UDP].sport, out[IP].dst) == ("198.51.100.1", 44071, "8.8.8.8")
        assert (back[IP].dst, back[UDP].dport, back[IP].src) == ("192.168.1.10", 5000,
                                                                 "8.8.8.8")
        for s in res.steps:
            assert checksum_mismatches(s.output) == []
        assert [s.path for s in res.steps] == [("nat.out",), ("nat.out",)]


def test_every_case_gets_a_pipeline_of_its_own(tmp_path):
    """The second case expects no NAT mapping and one counted packet: true only if the
    first case's mapping and counters did not carry over."""
    cases = tmp_path / "nat.test.yaml"
    cases.write_text("""cases:
  - name: makes a mapping
    packet: Ether()/IP(src="192.168.1.10", dst="8.8.8.8")/TCP(sport=5000, dport=53, flags="S")
    expect: {maps: [{map: nat__conns, entries: 2}], counters: {nat: {out: 1}}}
  - name: sees none
    packet: Ether()/IP(src="192.168.1.10", dst="192.168.1.11")/TCP(sport=5000, dport=22)
    expect: {maps: [{map: nat__conns, entries: 0}], counters: {nat: {out: 1}}}
""")
    suite = run_cases(EXAMPLES / "tc-nat.yaml", cases)
    assert [(r.case, r.linking, r.result) for r in suite.results] == [
        ("makes a mapping", "tailcall", "passed"), ("sees none", "tailcall", "passed"),
        ("makes a mapping", "fused", "passed"), ("sees none", "fused", "passed")]


def test_a_case_that_runs_tail_called_only_is_reported_per_linking(tmp_path):
    """Deleting a program-array slot is a tail-call thing: the case passes tail-called
    (the missed call drops, and is counted), and cannot run fused; exit code 1."""
    cases = tmp_path / "sg.test.yaml"
    cases.write_text("""cases:
  - name: a missed tail call drops
    maps: [{map: nfp_jmp, key: 2, delete: true}]
    packet: Ether()/IP(dst="10.0.0.2")/UDP(dport=53)
    expect: {verdict: drop, path: [split.udp, split.tail_call_miss]}
""")
    r = nfpipe("test", EXAMPLES / "split-guard.yaml", cases, "--json")
    assert r.returncode == 1
    results = {x["linking"]: x for x in json.loads(r.stdout)["results"]}
    assert results["tailcall"]["result"] == "passed"
    assert results["fused"]["result"] == "error"
    assert "no map 'nfp_jmp' with fused linking" in results["fused"]["failures"][0]["message"]


def test_runtime_rules_and_hooks(tmp_path):
    """A case's `config:` replaces a filter's rules on the loaded node (the `nfpipe
    rules` path) and the next case has the file's rules again; --hook runs the XDP
    pipeline's cases at tc-ingress, where a drop is TC_ACT_SHOT."""
    cases = tmp_path / "fw.test.yaml"
    cases.write_text("""cases:
  - name: web open
    config: {fw: {rules: []}}
    packet: Ether()/IP(dst="10.0.0.2")/TCP(dport=80, flags="S")
    expect: {verdict: pass}
  - name: web closed again
    packet: Ether()/IP(dst="10.0.0.2")/TCP(dport=80, flags="S")
    expect: {verdict: drop}
""")
    suite = run_cases(EXAMPLES / "firewall.yaml", cases, linkings=("tailcall",),
                      hooks=("xdp", "tc-ingress"))
    assert [(r.case, r.hook, r.result) for r in suite.results] == [
        ("web open", "xdp", "passed"), ("web closed again", "xdp", "passed"),
        ("web open", "tc-ingress", "passed"), ("web closed again", "tc-ingress", "passed")]
    assert [r.steps[0].retval for r in suite.results] == [2, 1, 0, 2]   # XDP_*, TC_ACT_*


def test_the_walk_through_of_the_docs_is_what_happens(tmp_path):
    """docs/testing.md's firewall.test.yaml passes on the shipped firewall, and fails as
    the page shows (lines 15 and 16, both linkings) once 443 leaves the web rule."""
    text = (ROOT / "docs" / "testing.md").read_text()
    [snippet] = re.findall(r"^```yaml test-cases\n(.*?)^```", text, re.M | re.S)
    cases = tmp_path / "firewall.test.yaml"
    cases.write_text(snippet)
    suite = run_cases(EXAMPLES / "firewall.yaml", cases)
    assert suite.passed and len(suite.results) == 6
    fw = tmp_path / "firewall.yaml"
    fw.write_text((EXAMPLES / "firewall.yaml").read_text()
                  .replace("dport: [80, 443]", "dport: [80]"))
    r = nfpipe("test", "firewall.yaml", cwd=tmp_path)
    assert r.returncode == 1
    shown = [line for line in text.splitlines() if line.startswith("firewall.test.yaml:")]
    assert len(shown) == 3 and all(line in r.stdout for line in shown), r.stdout


def test_without_root_it_says_so_once_and_runs_nothing():
    """As a user without CAP_BPF (an unprivileged user namespace): one paragraph, exit 1,
    no table of cases that all failed the same way; a bad case file is still bad input."""
    r = subprocess.run(["unshare", "--user", "--map-user=1000", str(NFPIPE), "test",
                        EXAMPLES / "firewall.yaml"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.count("\n") == 1 and "run it with sudo" in r.stderr, r.stderr
    r = subprocess.run(["unshare", "--user", "--map-user=1000", str(NFPIPE), "test",
                        EXAMPLES / "firewall.yaml", EXAMPLES / "nope.test.yaml"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such test-case file" in r.stderr
