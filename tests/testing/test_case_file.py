"""A pipeline's test-case file read into pure data, without a kernel: the three packet
forms mean the same bytes, an expression cannot reach past scapy's layers, every
mistake is reported at its file:line:column (and `nfpipe test` exits 2 on it)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from nfpipe.spec import PipelineSpec
from nfpipe.testing import CaseFileError, build_packet, default_cases_path, load_cases
from nfpipe.testing.cases import check_against, parse_cases
from nfpipe.testing.packets import PacketError, checksum_mismatches, field_mismatches
from nfpipe.yamldoc import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NFPIPE = ROOT / ".venv" / "bin" / "nfpipe"


def problems_of(text: str, file: str = "t.test.yaml") -> list[str]:
    with pytest.raises(CaseFileError) as exc:
        parse_cases(load(text, file))
    return [str(p) for p in exc.value.problems]


def test_the_three_packet_forms_give_the_same_bytes():
    want = bytes(Ether() / IP(dst="10.0.0.2") / TCP(dport=80, flags="S"))
    assert build_packet('Ether()/IP(dst="10.0.0.2")/TCP(dport=80, flags="S")') == want
    assert build_packet([{"Ether": {}}, {"IP": {"dst": "10.0.0.2"}},
                         {"TCP": {"dport": 80, "flags": "S"}}]) == want
    assert build_packet("hex: " + want.hex(" ")) == want
    assert build_packet([{"Ether": None}, "IP", "UDP"]) == bytes(Ether() / IP() / UDP())


@pytest.mark.parametrize("text", [
    "().__class__.__base__.__subclasses__()",
    "Ether().show()",
    "__import__('os').system('true')",
    "open('/etc/passwd')",
    "[x for x in IP()]",
    "lambda: 1",
    'Ether()/Raw(load="x"*99999999)',          # gigabytes asked for in a few characters
    'Ether()/Raw(load="x"*(65535*65535))',
    "Ether()/Raw(load=[1]*65535*65535)",
])
def test_an_expression_reaches_scapy_layers_only(text):
    with pytest.raises(PacketError):
        build_packet(text)


def test_a_literal_repeats_up_to_a_packet_size():
    assert build_packet('Ether()/Raw(load="ab"*3)') == build_packet('Ether()/Raw(load=3*"ab")')
    assert len(build_packet('Ether()/Raw(load=b"x"*65535)')) == 14 + 65535


def test_schema_errors_name_file_line_and_column():
    text = """cases:
  - name: a
    packet: Ether()/IP()/UDP(dport=53)
    expect: {verdict: dropp}
  - name: b
    packet: [{Ether: {}}, {IP: {dstt: 10.0.0.2}}]
    expect: {verdict: drop}
  - name: c
    packet: Ether()/IP()/TCP()
    expect: {fields: {TCP: {dprt: 80}}, checksums: yes}
  - name: d
    packet: Ether()/Bogus()
    expect: {verdict: drop}
  - name: a
    packet: Ether()
    expect: {verdict: drop}
  - name: f
    packet: Ether()
  - name: g
    packet: Ether()
    expect: {verdict: pass}
    packets: []
"""
    problems = problems_of(text)
    assert problems[0] == ("t.test.yaml:4:23: expected one of pass, drop, tx, redirect, "
                           "aborted, found 'dropp'")
    assert problems[1].startswith("t.test.yaml:6:33: IP has no field 'dstt'")
    assert problems[2].startswith("t.test.yaml:10:29: TCP has no field 'dprt'")
    assert problems[3].startswith("t.test.yaml:10:52: the one value is 'valid'")
    assert problems[4] == "t.test.yaml:12:13: unknown scapy layer 'Bogus' in 'Ether()/Bogus()'"
    assert problems[5].startswith("t.test.yaml:14:11: a second case named 'a' (the first is "
                                  "at line 2)")
    assert problems[6].startswith("t.test.yaml:17:5: missing 'expect'")
    assert problems[7].startswith("t.test.yaml:22:5: give either 'packet' and 'expect'")
    assert problems[8] == "t.test.yaml:22:14: an empty sequence tests nothing"
    assert len(problems) == 9, problems


def test_cases_are_checked_against_their_pipeline():
    spec = PipelineSpec.from_file(EXAMPLES / "firewall.yaml")
    text = """cases:
  - name: unknown node and outcome
    packet: Ether()/IP()/TCP()
    expect: {path: [fw.out, nope.out], counters: {fw: {nonesuch: 1}}}
  - name: a rule to an unwired port
    config: {fw: {rules: [{action: "port:3", proto: tcp}]}}
    packet: Ether()/IP()/TCP()
    expect: {verdict: pass}
  - name: telemetry has no runtime config
    config: {stats: {sample_rate: 3}}
    packet: Ether()/IP()/TCP()
    expect: {verdict: pass}
"""
    with pytest.raises(CaseFileError) as exc:
        check_against(parse_cases(load(text, "fw.test.yaml")), spec)
    problems = [str(p) for p in exc.value.problems]
    assert problems == [
        "fw.test.yaml:4:14: case 'unknown node and outcome': path: no node 'nope' in "
        "pipeline 'firewall' (nodes: fw, stats)",
        "fw.test.yaml:4:40: case 'unknown node and outcome': counters: node 'fw' has no "
        "outcome 'nonesuch' (its ports: out, port1, port2, port3, port4, port5, port6, "
        "port7; verdicts: pass, drop, tx, redirect, aborted, tail_call_miss)",
        "fw.test.yaml:6:14: case 'a rule to an unwired port': config: the new config sends "
        "packets to port(s) port3 of 'fw', which the pipeline does not wire (wired: out)",
        "fw.test.yaml:10:14: case 'telemetry has no runtime config': config: node 'stats' "
        "(telemetry) has no config that changes at runtime",
    ]


@pytest.mark.parametrize("name", ["firewall", "edge", "split-guard", "tc-nat"])
def test_the_shipped_case_files_read_and_fit_their_pipelines(name):
    pipeline = EXAMPLES / f"{name}.yaml"
    assert default_cases_path(pipeline) == EXAMPLES / f"{name}.test.yaml"
    cases = load_cases(default_cases_path(pipeline))
    assert len(cases.cases) >= 4
    check_against(cases, PipelineSpec.from_file(pipeline))


def test_field_and_checksum_comparisons():
    good = bytes(Ether() / IP(src="192.0.2.1", dst="10.0.0.2") / UDP(sport=40000, dport=53))
    assert field_mismatches(good, {"IP": {"src": "192.0.2.1"}, "UDP": {"sport": 40000}}) == []
    [d] = field_mismatches(good, {"IP": {"src": "198.51.100.1"}})
    assert (d.layer, d.field, d.expected, d.actual) == ("IP", "src", "198.51.100.1",
                                                        "192.0.2.1")
    [d] = field_mismatches(good, {"TCP": {"dport": 80}})
    assert d.actual is None                                    # no TCP layer at all
    assert checksum_mismatches(good) == []
    bad = bytearray(good)
    bad[24] ^= 0xFF                                            # the IP header checksum
    [d] = checksum_mismatches(bytes(bad))
    assert (d.layer, d.field) == ("IP", "chksum") and d.expected != d.actual
    none = bytes(Ether() / IP() / UDP(chksum=0))               # UDP over IPv4: "no checksum"
    assert checksum_mismatches(none) == []


def test_a_bad_case_file_exits_2_with_its_position(tmp_path):
    cases = tmp_path / "fw.test.yaml"
    cases.write_text("cases:\n  - name: x\n    packet: Ether()/IP()/UDP()\n"
                     "    expect: {verdict: sometimes}\n")
    r = subprocess.run([str(NFPIPE), "test", str(EXAMPLES / "firewall.yaml"), str(cases)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"{cases}:4:23: expected one of pass, drop" in r.stderr
    assert r.stderr.startswith("nfpipe: error:") and r.stdout == ""
    missing = subprocess.run([str(NFPIPE), "test", str(tmp_path / "nothing.yaml")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "nothing.yaml" in missing.stderr


def test_examples_are_pipelines_and_copy_with_their_cases(tmp_path):
    """`nfpipe examples` lists pipelines only; `--copy` brings each one's test cases."""
    from nfpipe import resources
    assert [p.name for p in resources.examples()] == ["edge.yaml", "firewall.yaml",
                                                      "split-guard.yaml", "tc-nat.yaml"]
    written = resources.copy_examples(tmp_path, ["firewall"])
    assert sorted(p.name for p in written) == ["firewall.test.yaml", "firewall.yaml"]
    assert (tmp_path / "firewall.test.yaml").read_bytes() == \
        (EXAMPLES / "firewall.test.yaml").read_bytes()
