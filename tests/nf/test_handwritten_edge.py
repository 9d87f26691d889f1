"""benchmarks/handwritten/edge.c does what examples/edge.yaml does: for each kind of
packet, nfpipe's edge pipeline (fused and tail calls) and the hand-written program, each
loaded with fresh state, give the same verdicts, the same output bytes and the same
state (connection, NAT, flow and SYN entries, counters).  The one choice they may make
differently is the masquerade's external port (or ICMP echo id): there the hand-written
program's must lie in edge.yaml's port range with valid checksums, and the packets agree
byte for byte once it is replaced by nfpipe's.  The same comparison run on edge.c with
one rule changed must fail: the last test makes sure it does."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from nfpipe import resources
from nfpipe.bench.kernel import edge_handwritten, edge_pipeline
from nfpipe.toolchain import compile as nf_compile

pytestmark = pytest.mark.kernel
XDP_DROP, XDP_PASS = 1, 2
PORTS = range(20000, 30000)                 # edge.yaml's nat port_range
EDGE_C = resources.data_dir("benchmarks") / "handwritten" / "edge.c"
# Slots of edge.c's `counters` compared with the NFs' own counters.
C_TTL_DROPPED, C_TLM_PACKETS = 4, 15

E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
CLIENT, VIP, EXT, REMOTE = "198.51.100.20", "203.0.113.80", "203.0.113.1", "93.184.216.34"


class Step(NamedTuple):
    packet: Callable[[list[bytes]], bytes]  # from this implementation's earlier outputs
    masq: bool = False                      # the NAT picks the source port / echo id


def pkt(p) -> Callable[[list[bytes]], bytes]:
    data = bytes(p)
    return lambda outs: data


def vip_syn(sport: int = 40000, l2=E) -> Step:
    return Step(pkt(l2 / IP(src=CLIENT, dst=VIP) / TCP(sport=sport, dport=80, flags="S")))


def from_backend(outs: list[bytes]) -> bytes:
    """The backend's SYN-ACK to the first packet's client (wherever the LB sent it)."""
    be = Ether(outs[0])[IP].dst
    return bytes(E / IP(src=be, dst=CLIENT) / TCP(sport=8080, dport=40000, flags="SA"))


def reply_to(step: int, flags: str = "SA") -> Callable[[list[bytes]], bytes]:
    """The remote's answer to output *step* (a masqueraded or forwarded packet)."""
    def make(outs: list[bytes]) -> bytes:
        ip = Ether(outs[step])[IP]
        if ICMP in ip:
            return bytes(E / IP(src=ip.dst, dst=ip.src) / ICMP(type=0, id=ip[ICMP].id))
        l4 = ip[TCP] if TCP in ip else ip[UDP]
        back = (TCP(sport=l4.dport, dport=l4.sport, flags=flags) if TCP in ip else
                UDP(sport=l4.dport, dport=l4.sport) / Raw(b"answer"))
        return bytes(E / IP(src=ip.dst, dst=ip.src) / back)
    return make


def masq_tcp(src: str = "10.0.0.5", l2=E, ip_kw=None, masq: bool = True) -> Step:
    return Step(pkt(l2 / IP(src=src, dst=REMOTE, **(ip_kw or {})) /
                    TCP(sport=51000, dport=443, flags="S")), masq=masq)


KINDS: dict[str, list[Step]] = {
    "vip-syn": [vip_syn()],
    "vip-flow": [vip_syn(),
                 Step(pkt(E / IP(src=CLIENT, dst=VIP) / TCP(sport=40000, dport=80, flags="A") /
                          Raw(b"GET / HTTP/1.0\r\n\r\n"))),
                 # the backend's reply gets the VIP back as its source, and the NAT
                 # leaves it (the VIP is not in the masqueraded network)
                 Step(from_backend)],
    "vip-many": [vip_syn(sport) for sport in range(41000, 41048)],   # weights, draining
    "vip-udp": [Step(pkt(E / IP(src=CLIENT, dst=VIP) / UDP(sport=40000, dport=80)))],
    "telnet": [Step(pkt(E / IP(src=CLIENT, dst="10.0.1.1") / TCP(dport=23, flags="S"))),
               Step(pkt(E / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=23)))],
    "icmp-masq": [Step(pkt(E / IP(src="10.0.0.7", dst=REMOTE, ttl=64) / ICMP(id=7)), masq=True),
                  Step(reply_to(0))],
    "icmp-ttl1": [Step(pkt(E / IP(src="10.0.0.7", dst=REMOTE, ttl=1) / ICMP(id=8))),
                  Step(pkt(E / IP(src=CLIENT, dst=EXT, ttl=1) / ICMP(id=9)))],
    "icmp-in": [Step(pkt(E / IP(src=CLIENT, dst=EXT, ttl=64) / ICMP(id=9))),
                Step(pkt(E / IP(src=CLIENT, dst=EXT, ttl=2) / ICMP(type=0, id=9)))],
    "masq-tcp": [masq_tcp(), Step(reply_to(0)),
                 Step(pkt(E / IP(src="10.0.0.5", dst=REMOTE) /
                          TCP(sport=51000, dport=443, flags="A") / Raw(b"x" * 40)), masq=True)],
    "masq-udp": [Step(pkt(E / IP(src="10.0.0.5", dst="192.0.2.53") / UDP(sport=5353, dport=53) /
                          Raw(b"query")), masq=True),
                 Step(reply_to(0))],
    "masq-options": [masq_tcp(ip_kw={"options": [IPOption_RR()]}), Step(reply_to(0))],
    "masq-ttl1": [masq_tcp(ip_kw={"ttl": 1}, masq=False)],  # left to the stack, no state
    "forward": [Step(pkt(E / IP(src=CLIENT, dst=EXT) / TCP(sport=40000, dport=2222, flags="S"))),
                Step(pkt(E / IP(src="10.0.2.5", dst=CLIENT) /
                         TCP(sport=22, dport=40000, flags="SA"))),
                Step(pkt(E / IP(src=CLIENT, dst=EXT, ttl=1) / TCP(sport=40001, dport=2222)))],
    "pass": [Step(pkt(E / IP(src=CLIENT, dst="192.0.2.1") / TCP(sport=5000, dport=443))),
             Step(pkt(E / IP(src=CLIENT, dst=EXT) / TCP(sport=5000, dport=8443))),
             Step(pkt(E / IP(src="10.0.0.5", dst="10.0.0.6") / UDP(sport=1, dport=2))),
             Step(pkt(E / ARP(psrc="10.0.0.5", pdst="10.0.0.1")))],
    "ipv6": [Step(pkt(E / IPv6(src="2001:db8::1", dst="2001:db8::2") /
                      TCP(sport=40000, dport=80, flags="S"))),
             Step(pkt(E / IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() /
                      IPv6ExtHdrDestOpt() / UDP(sport=1, dport=53))),
             Step(pkt(E / IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=1) /
                      ICMPv6EchoRequest(id=3)))],
    "vlan": [vip_syn(l2=E / Dot1Q(vlan=7)),
             masq_tcp(l2=E / Dot1AD(vlan=100) / Dot1Q(vlan=7)),
             Step(pkt(E / Dot1Q(vlan=7) / IP(src=CLIENT, dst="10.0.1.1") / TCP(dport=23)))],
    "malformed": [Step(pkt(bytes(E / IP(src=CLIENT, dst=VIP) / TCP(dport=80))[:40])),
                  Step(pkt(E / IP(src=CLIENT, dst=VIP, ihl=4) / TCP(dport=80))),
                  Step(pkt(E / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) /
                           IP(src=CLIENT, dst=VIP) / TCP(dport=80)))],
}


class Outcome(NamedTuple):
    steps: list[tuple[int, bytes]]   # (retval, output packet) per step
    state: dict[str, int]


def _sum(v) -> int:
    return sum(v) if isinstance(v, list) else v


def run_nfpipe(linking: str, steps: list[Step]) -> Outcome:
    with edge_pipeline(linking) as p:
        outs, res = [], []
        for s in steps:
            r = p.test_run(s.packet(outs))
            outs.append(r.data)
            res.append((r.retval, r.data))
        m = p.node_maps
        flows = m("stats")["flows"]
        state = {"lb conns": len(m("lb")["conns"]), "lb rconns": len(m("lb")["rconns"]),
                 "nat conns": len(m("nat")["conns"]), "flows": len(flows),
                 "flow packets": sum(v["packets"] for v in flows.values()),
                 "syn sources": len(m("stats")["syn_sources"]),
                 "ttl dropped": _sum(m("ttl")["dropped"][0]),
                 "telemetry packets": _sum(m("stats")["counters"][0])}
    return Outcome(res, state)


def run_handwritten(steps: list[Step], obj_path=None) -> Outcome:
    with edge_handwritten(obj_path) as obj:
        prog, maps = obj.programs["edge"], obj.maps
        outs, res = [], []
        for s in steps:
            r = prog.test_run(s.packet(outs))
            outs.append(r.data)
            res.append((r.retval, r.data))
        flows = maps["tlm_flows"]
        state = {"lb conns": len(maps["lb_conns"]), "lb rconns": len(maps["lb_rconns"]),
                 "nat conns": len(maps["nat_conns"]), "flows": len(flows),
                 "flow packets": sum(v["packets"] for v in flows.values()),
                 "syn sources": len(maps["tlm_syn"]),
                 "ttl dropped": _sum(maps["counters"][C_TTL_DROPPED]),
                 "telemetry packets": _sum(maps["counters"][C_TLM_PACKETS])}
    return Outcome(res, state)


def _masq_l4(p):
    return p[TCP] if TCP in p else p[UDP] if UDP in p else p[ICMP]


def masq_port(data: bytes) -> int:
    l4 = _masq_l4(Ether(data))
    return l4.id if isinstance(l4, ICMP) else l4.sport


def with_port(data: bytes, port: int | None = None) -> bytes:
    """*data* with its source port / echo id set to *port* (if given) and every IPv4 and L4
    checksum computed again by scapy."""
    p = Ether(data)
    l4 = _masq_l4(p)
    if port is not None:
        if isinstance(l4, ICMP):
            l4.id = port
        else:
            l4.sport = port
    del p[IP].chksum, l4.chksum
    return bytes(p)


def differences(want: Outcome, got: Outcome, steps: list[Step]) -> list[str]:
    """What *got* (the hand-written program) does otherwise than *want* (nfpipe)."""
    problems = []
    for i, (s, (wr, wd), (gr, gd)) in enumerate(zip(steps, want.steps, got.steps)):
        if wr != gr:
            problems.append(f"step {i}: verdict {gr}, nfpipe {wr}")
            continue
        if wr != XDP_PASS or wd == gd:
            continue
        if not s.masq:
            problems.append(f"step {i}: output differs:\n  {gd.hex()}\n  {wd.hex()} (nfpipe)")
            continue
        port = masq_port(gd)
        if port not in PORTS:
            problems.append(f"step {i}: masquerade port {port} outside {PORTS}")
        if with_port(gd) != gd:
            problems.append(f"step {i}: checksums not valid: {gd.hex()}")
        if with_port(gd, masq_port(wd)) != wd:
            problems.append(f"step {i}: output differs beyond the port:\n  {gd.hex()}\n"
                            f"  {wd.hex()} (nfpipe)")
    if want.state != got.state:
        problems.append(f"state {got.state}, nfpipe {want.state}")
    return problems


@pytest.fixture(scope="module")
def nfpipe_outcomes() -> dict[str, Outcome]:
    out = {}
    for kind, steps in KINDS.items():
        fused, tailcall = run_nfpipe("fused", steps), run_nfpipe("tailcall", steps)
        assert fused == tailcall, kind          # nfpipe's two linkings agree exactly
        for i, (s, (r, data)) in enumerate(zip(steps, fused.steps)):
            if s.masq and r == XDP_PASS:
                assert masq_port(data) in PORTS and with_port(data) == data, (kind, i)
        out[kind] = fused
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_the_hand_written_edge_program_does_what_the_pipeline_does(kind, nfpipe_outcomes):
    assert differences(nfpipe_outcomes[kind], run_handwritten(KINDS[kind]), KINDS[kind]) == []


def test_the_kinds_reach_every_stage(nfpipe_outcomes):
    """The packets take the paths they are named for (else the comparison proves less)."""
    o = nfpipe_outcomes
    dst = {Ether(d)[IP].dst for r, d in o["vip-many"].steps}
    assert dst == {"10.0.1.1", "10.0.1.2"}            # weighted, the draining one unused
    assert Ether(o["vip-syn"].steps[0][1])[IP].dst == "10.0.1.2"
    assert [r for r, _ in o["telnet"].steps] == [XDP_DROP, XDP_DROP]
    assert [r for r, _ in o["icmp-ttl1"].steps] == [XDP_DROP, XDP_DROP]
    assert Ether(o["icmp-masq"].steps[1][1])[IP].dst == "10.0.0.7"
    assert Ether(o["masq-tcp"].steps[1][1])[IP].dst == "10.0.0.5"
    assert Ether(o["forward"].steps[0][1])[IP].dst == "10.0.2.5"
    assert Ether(o["forward"].steps[1][1])[IP].src == EXT
    assert o["forward"].steps[2][0] == XDP_DROP
    reply = Ether(o["vip-flow"].steps[2][1])
    assert (reply[IP].src, reply[TCP].sport, reply[IP].dst) == (VIP, 80, CLIENT)
    assert o["masq-ttl1"].state["nat conns"] == 0
    assert all(r == XDP_DROP for r, _ in o["malformed"].steps)


# One rule of edge.c changed at a time: the comparison above must notice each.
MUTANTS = {
    "telnet port": ("#define TELNET_PORT 23", "#define TELNET_PORT 24"),
    "ttl guard": ("#define MIN_TTL 1", "#define MIN_TTL 0"),
    "port range": ("#define NAT_PORT_LO 20000", "#define NAT_PORT_LO 30000"),
    "forward": ("#define FWD_TO_PORT 22", "#define FWD_TO_PORT 23"),
    "flow hash": ("#define LB_HASH_SEED 0x6c62", "#define LB_HASH_SEED 0x6c63"),
    "vip port": ("#define VIP_PORT 80", "#define VIP_PORT 81"),
    "checksum": ("	sum += (__u16)~from16 + to16;", "	sum += to16;"),
    "syn sources": ("(p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN", "(p->tcp_flags & TCP_SYN)"),
    "reply entry": ("	if (bpf_map_update_elem(&nat_conns, &rk, &rv, BPF_NOEXIST))\n		return -1;\n",
                    ""),
}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_a_changed_rule_is_caught(mutant, nfpipe_outcomes, tmp_path):
    old, new = MUTANTS[mutant]
    text = EDGE_C.read_text()
    assert text.count(old) == 1, mutant
    src = tmp_path / "edge.c"
    src.write_text(text.replace(old, new))
    obj = nf_compile(src)
    assert any(differences(nfpipe_outcomes[k], run_handwritten(steps, obj), steps)
               for k, steps in KINDS.items()), mutant
