"""End-to-end cases of a test-case file (topology, deploy, traffic): read without a
kernel, every mistake at its file:line:column; run, a pipeline that lets through what
the case says it stops fails at the exchange's expectation, and nothing of the run is
left: no namespace, no pin, no state root."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nfpipe.testing import CaseFileError, run_cases
from nfpipe.testing.cases import parse_cases
from nfpipe.yamldoc import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def problems_of(text: str) -> list[str]:
    with pytest.raises(CaseFileError) as exc:
        parse_cases(load(text, str(EXAMPLES / "t.test.yaml")))
    return [str(p).replace(str(EXAMPLES) + "/", "") for p in exc.value.problems]


def test_an_end_to_end_case_reads_into_exchanges():
    [case] = parse_cases(load("""\
cases:
  - name: e2e
    topology: two-hosts
    deploy: [dut:eth0]
    traffic:
      - tcp: {from: client, to: server, port: 22, payload: hi}
        expect: {delivered: true, source: 192.0.2.2}
      - udp: {from: client, to: "server:eth0", port: 53, count: 7, dst: "198.51.100.2:5353"}
        expect: blocked
      - ping: {from: client, to: server, version: 6}
        expect: {received: 3}
""", "t.test.yaml")).cases
    assert case.steps == () and case.e2e.topology.name == "two-hosts"
    assert case.e2e.deploy == (("dut", "eth0"),)
    tcp, udp, ping = case.e2e.traffic
    assert (tcp.kind, tcp.src, tcp.to, tcp.port, tcp.payload, tcp.delivered, tcp.source) == \
        ("tcp", "client", (("server", None),), 22, b"hi", True, "192.0.2.2")
    assert (udp.to, udp.dst, udp.dport, udp.port, udp.count, udp.delivered, udp.wait()) == \
        ((("server", "eth0"),), "198.51.100.2", 5353, 53, 7, False, 2.0)
    assert (ping.version, ping.count, ping.received, ping.wait()) == (6, 3, 3, 5.0)
    assert tcp.pos.line == 6 and tcp.expect_pos.line == 7


def test_end_to_end_mistakes_are_reported_where_they_are():
    assert problems_of("""\
cases:
  - name: bad
    topology: two-hosts
    deploy: dut:eth9
    packet: Ether()/IP()
    traffic:
      - tcp: {from: clint, to: server}
        expect: delivered
      - http: {from: client, to: server, port: 80}
        expect: {received: 1}
      - ping: {from: client, to: [server, nowhere]}
        expect: {at: server}
      - smtp: {from: client, to: server}
        expect: delivered
  - name: no topology
    deploy: dut:eth0
    traffic: []
  - name: unknown topology
    topology: no-such-topology-anywhere
    traffic: []
""") == [
        "t.test.yaml:5:5: 'packet' is for kernel cases: an end-to-end case (topology:) sends "
        "'traffic'",
        "t.test.yaml:4:13: host 'dut' has no interface 'eth9' (interfaces: eth0, eth1)",
        "t.test.yaml:7:21: no host 'clint' in topology two-hosts (hosts: client, dut, server)",
        "t.test.yaml:7:14: expected the port the receiver listens on (1-65535), found None",
        "t.test.yaml:10:18: 'received' counts datagrams or echo replies: udp and ping only, "
        "not http",
        "t.test.yaml:11:43: no host 'nowhere' in topology two-hosts (hosts: client, dut, "
        "server)",
        "t.test.yaml:12:18: 'at' is what a listener saw: not for ping",
        "t.test.yaml:13:9: an exchange is one of tcp, http, udp, ping with its arguments, and "
        "'expect': {tcp: {from: client, to: server, port: 22}, expect: delivered}",
        "t.test.yaml:16:5: 'deploy' and 'traffic' make an end-to-end case: give its "
        "'topology' too",
        "t.test.yaml:19:15: topology: no-such-topology-anywhere: cannot read: No such file or "
        "directory (a file beside the case file, one nfpipe ships: lb, nat, two-hosts; or "
        "the topology inline)",
    ]


def _ours() -> tuple[set[str], set[str]]:
    ns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout.split())
    roots = {p for p in os.listdir("/sys/fs/bpf") if p.startswith("nfpipe-test-")}
    return {n for n in ns if ".nft" in n}, roots


@pytest.mark.kernel
def test_a_pipeline_that_lets_traffic_through_fails_the_case(tmp_path):
    shutil.copy(EXAMPLES / "firewall.test.yaml", tmp_path)
    fw = (EXAMPLES / "firewall.yaml").read_text()
    broken = fw.replace("dport: [80, 443]", "dport: [443]")     # the web is open
    assert broken != fw
    (tmp_path / "firewall.yaml").write_text(broken)
    before = _ours()
    suite = run_cases(tmp_path / "firewall.yaml", select=["SSH and ICMP get through"],
                      linkings=("tailcall",))
    assert _ours() == before                    # nothing of the run is left
    [r] = suite.results
    assert r.result == "failed"
    cases = tmp_path / "firewall.test.yaml"
    lines = cases.read_text().splitlines()
    [fail] = r.failures
    assert "expect: blocked" in lines[fail.pos.line - 1]
    assert fail.message == "traffic 3 (http client -> server:80): expected blocked, got " \
                           "delivered"
    assert [(t["kind"], t["delivered"]) for t in r.traffic] == \
        [("tcp", True), ("ping", True), ("http", True), ("udp", False)]


LB_PIPELINE = """\
pipeline: e2e-vip
hook: xdp
nodes:
  - id: lb
    nf: lb
    config:
      vips:
        - vip: "203.0.113.10:80"
          proto: tcp
          backends:
            - {addr: "10.1.0.11:8080"}
            - {addr: "10.1.0.12:8080"}
            - {addr: "10.1.0.13:8080", state: draining}
edges:
  - lb.out -> pass
"""

LB_CASES = """\
cases:
  - name: the VIP reaches exactly one active backend
    topology: lb
    deploy: [dut:eth0, dut:eth1]        # clients' side: DNAT; backends': the VIP back
    config:
      lb:
        vips:
          - vip: "203.0.113.10:80"
            proto: tcp
            backends:
              - {addr: "10.1.0.11:8080", state: draining}
              - {addr: "10.1.0.12:8080"}
              - {addr: "10.1.0.13:8080", state: draining}
    traffic:
      - http: {from: client1, to: [backend1, backend2, backend3], port: 8080,
               dst: "203.0.113.10:80"}
        expect: {delivered: true, at: backend2, source: 192.0.2.11}
      - tcp: {from: client2, to: [backend1, backend2, backend3], port: 8080,
              dst: "203.0.113.10:80"}
        expect: {delivered: true, at: WHERE}
"""


@pytest.mark.kernel
@pytest.mark.parametrize("where, result", [("backend2", "passed"), ("backend3", "failed")])
def test_a_vip_is_received_at_the_backend_the_case_names(tmp_path, where, result):
    """`to` a list of listeners and `dst` a VIP: the one backend the runtime config leaves
    active receives the connection, from the client's own address; naming another host
    in `at` fails the exchange."""
    (tmp_path / "vip.yaml").write_text(LB_PIPELINE)
    (tmp_path / "vip.test.yaml").write_text(LB_CASES.replace("WHERE", where))
    suite = run_cases(tmp_path / "vip.yaml", linkings=("tailcall",))
    [r] = suite.results
    assert r.result == result, [f.message for f in r.failures]
    assert [(t["at"], t["sources"]) for t in r.traffic] == \
        [(["backend2"], ["192.0.2.11"]), (["backend2"], ["192.0.2.12"])]
    if result == "failed":
        [f] = r.failures
        assert f.message == "traffic 2 (tcp client2 -> backend1,backend2,backend3:8080): " \
                            "at: expected backend3, received at backend2"
