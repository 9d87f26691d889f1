"""nat (inside — DUT — outside): SNAT out, replies reverse-translated, DNAT in.

The NAT pipeline (netns/pipelines/nat.yaml) is attached to BOTH DUT interfaces:
eth0 (private side) translates outbound packets, eth1 (public side) translates the
replies back and the inbound port forward.  The outside host has no route to
10.0.0.0/24, so without translation nothing comes back (checked first).  The DUT
needs net.ipv4.conf.all.accept_local=1 (set here): translated packets enter its
stack with its own public address as source, which Linux otherwise drops.

* SNAT: HTTP requests from inside (10.0.0.2) to a server outside (203.0.113.2:8000)
  get full answers; the server sees the peer 203.0.113.1 (external_ip) with a port
  from port_range, exactly the port nat.flow_hash predicts; a UDP echo works too;
* DNAT: HTTP from outside to 203.0.113.1:8080 is answered by the server inside
  (10.0.0.2:80), which sees the real outside client address;
* counters: new_snat / new_dnat equal the flows made.

``test_nat_as_conntrack`` does what Linux's own NAT gets right and a naive one
breaks, each with real sockets: an ICMP port unreachable about a SNAT'd flow
reaches the inside socket (ECONNREFUSED), and one from a DNAT target reaches the
outside client; a 4000-byte UDP datagram (three fragments each way) is echoed
through SNAT; GRE (no ports) leaves with the external address and its answer comes
back; a datagram sent with TTL 1 is answered "time exceeded" by the DUT and makes
no mapping.
"""
from __future__ import annotations

import ipaddress
import select
import socket
import struct
import time

from netns.conftest import scenario_fixture
from netns.harness import tcp_connects
from nfpipe.catalog import nat as natmod
from nfpipe.topo.traffic import serve_udp_echo, udp_exchange

scenario = scenario_fixture("nat")

INSIDE, OUTSIDE, EXTERNAL = "10.0.0.2", "203.0.113.2", "203.0.113.1"
N_SNAT, N_DNAT = 8, 5


def _ip(a: str) -> int:
    return int(ipaddress.IPv4Address(a))


def predicted_port(sport: int, dport: int, taken: set, proto: int = 6) -> int:
    """The NF's port choice: the first candidate after flow_hash whose reply tuple is
    free (all flows here go to one remote address and port)."""
    h = natmod.flow_hash(proto, _ip(INSIDE), _ip(OUTSIDE), sport, dport)
    for i in range(16):
        p = 20000 + (h % 10000 + i) % 10000
        if p not in taken:
            return p
    raise AssertionError("no free candidate")


def test_nat(scenario, mode):
    sc = scenario
    if not getattr(sc, "_nat_servers", False):
        sc.http_server("outside", OUTSIDE, 8000, name="outside")
        sc.http_server("inside", INSIDE, 80, name="inside")
        sc._nat_servers = True
        # The translated packets reach the DUT's stack with the DUT's own address as
        # source (SNAT out, DNAT replies): Linux drops those as martians unless
        # accept_local is on.  The nat topology does not set it (reported).
        assert sc.sysctl("dut", "net.ipv4.conf.all.accept_local", 1) == "1"
        # without NAT the outside host cannot answer the private address
        assert not sc.call("inside", tcp_connects, OUTSIDE, 8000, 0.5)

    with sc.deploy("nat.yaml", mode, ["eth0", "eth1"]) as dep:
        # SNAT: full HTTP request/response, the server sees external_ip
        answers = sc.http_many("inside", OUTSIDE, 8000, N_SNAT)
        assert {a["server"] for a in answers} == {"outside"}
        assert {a["peer"] for a in answers} == {EXTERNAL}, (mode, answers)
        ports = [a["port"] for a in answers]
        assert all(20000 <= p <= 29999 for p in ports), ports
        assert len(set(ports)) == N_SNAT
        taken: set = set()
        for a in answers:
            assert a["client"][0] == INSIDE
            want = predicted_port(a["client"][1], 8000, taken)
            assert a["port"] == want, (mode, a, want)
            taken.add(want)

        # UDP through SNAT, echo comes back from the outside host
        h = sc.start("outside", serve_udp_echo, OUTSIDE, 7000, 1)
        reply, peer = sc.call("inside", udp_exchange, OUTSIDE, 7000, b"through-nat")
        assert (reply, peer) == (b"through-nat", OUTSIDE)
        [(seen_from, ttl)] = h.result(timeout=10)
        assert seen_from == EXTERNAL and ttl == 63

        # DNAT: outside -> external_ip:8080 reaches the server inside on port 80
        fwd = sc.http_many("outside", EXTERNAL, 8080, N_DNAT)
        assert {a["server"] for a in fwd} == {"inside"}
        assert {a["peer"] for a in fwd} == {OUTSIDE}
        assert {a["local"] for a in fwd} == {f"{INSIDE}:80"}
        # only the forwarded port is open: 8081 is nobody's
        assert not sc.call("outside", tcp_connects, EXTERNAL, 8081, 0.5)

        c = natmod.counters(dep.node_maps("nat"))
        assert c["new_snat"] == N_SNAT + 1, (mode, c)          # + the UDP flow
        assert c["new_dnat"] == N_DNAT, (mode, c)
        assert c["port_exhausted"] == c["table_full"] == c["dnat_clash"] == 0
        assert c["error"] == c["malformed"] == 0
        edges = dep.pipeline.edge_counts()
        assert edges["nat.out -> pass"] >= c["xlate_src"] + c["xlate_dst"] > 0


# --- run inside a host ---------------------------------------------------------------------

IP_RECVERR = 11                 # <linux/in.h>
SO_EE_ORIGIN_ICMP = 2
IPPROTO_GRE = 47


def udp_refused(addr: str, port: int, timeout: float = 5.0) -> bool:
    """A connected UDP socket sends to *addr*:*port* until the port-unreachable error
    reaches it (ECONNREFUSED: the ICMP error matched this socket's 4-tuple)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((addr, port))
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                s.send(b"anyone?")
                s.recv(64)
            except ConnectionRefusedError:
                return True
            except TimeoutError:
                pass
    return False


def _await_payload(s: socket.socket, payload: bytes, deadline: float,
                   resend: tuple | None = None) -> str | None:
    """On raw socket *s*: the source of the first packet carrying *payload* before
    *deadline* (None if none came), sending *resend* (data, address) before each wait."""
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        if resend:
            s.sendto(*resend)
        try:
            data, peer = s.recvfrom(65536)
        except TimeoutError:
            continue
        if data[(data[0] & 0xF) * 4:] == payload:        # past the IP header
            return peer[0]
    return None


def raw_exchange(proto: int, addr: str, payload: bytes, timeout: float = 5.0) -> str:
    """Send *payload* as IP protocol *proto* to *addr* until the same payload comes
    back from it; the address the answer came from."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, proto) as s:
        peer = _await_payload(s, payload, time.monotonic() + timeout, (payload, (addr, 0)))
    if peer is None:
        raise TimeoutError(f"no answer of protocol {proto} from {addr}")
    return peer


def raw_echo(proto: int, payload: bytes, timeout: float = 10.0) -> str:
    """Answer the first packet of protocol *proto* carrying *payload* with the same
    payload; the source address it came from."""
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, proto) as s:
        peer = _await_payload(s, payload, time.monotonic() + timeout)
        if peer is None:
            raise TimeoutError(f"no packet of protocol {proto}")
        s.sendto(payload, (peer, 0))
    return peer


def udp_ttl1(addr: str, port: int, timeout: float = 5.0) -> tuple[int, int, str]:
    """Send one datagram with TTL 1; the ICMP error it earns, from the socket's error
    queue: (ICMP type, code, the address that sent it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.connect((addr, port))
        s.send(b"ttl one")
        p = select.poll()
        p.register(s, select.POLLERR)
        if not p.poll(timeout * 1000):
            raise TimeoutError("no ICMP error for a TTL 1 datagram")
        _, anc, _, _ = s.recvmsg(64, 512, socket.MSG_ERRQUEUE)
        for level, kind, data in anc:
            if (level, kind) == (socket.IPPROTO_IP, IP_RECVERR):
                _errno, origin, icmp_type, code = struct.unpack_from("=IBBB", data)
                assert origin == SO_EE_ORIGIN_ICMP, origin
                offender = socket.inet_ntoa(data[16 + 4:16 + 8])   # sockaddr_in after it
                return icmp_type, code, offender
    raise AssertionError("an error queue entry without IP_RECVERR data")


def test_nat_as_conntrack(scenario, mode):
    sc = scenario
    with sc.deploy("nat.yaml", mode, ["eth0", "eth1"]) as dep:
        # ICMP errors, SNAT: the outside host refuses a port; the error, sent to
        # external_ip:P about external_ip:P, must reach the inside socket
        assert sc.call("inside", udp_refused, OUTSIDE, 7999), mode
        # DNAT: the inside target refuses 5353; the error leaves from 10.0.0.2 about
        # 10.0.0.2:5353 and must reach the outside client as from external_ip:5353
        assert sc.call("outside", udp_refused, EXTERNAL, 5353), mode

        # fragments: 4000 bytes of UDP is three fragments on a 1500 MTU, each way
        big = bytes(range(256)) * 15 + b"end"
        h = sc.start("outside", serve_udp_echo, OUTSIDE, 7001, 1)
        reply, peer = sc.call("inside", udp_exchange, OUTSIDE, 7001, big)
        assert (reply, peer) == (big, OUTSIDE), (mode, len(reply))
        [(seen_from, _)] = h.result(timeout=10)
        assert seen_from == EXTERNAL

        # a protocol without ports: the address is translated both ways
        marker = b"\x00\x00\x88\xb5nfpipe-gre-" + mode.encode()   # GRE, experimental type
        h = sc.start("outside", raw_echo, IPPROTO_GRE, marker)
        assert sc.call("inside", raw_exchange, IPPROTO_GRE, OUTSIDE, marker) == OUTSIDE
        assert h.result(timeout=10) == EXTERNAL, mode

        before = natmod.counters(dep.node_maps("nat"))
        # TTL 1: the DUT's stack answers time exceeded to the inside host; no mapping
        assert sc.call("inside", udp_ttl1, OUTSIDE, 7002) == (11, 0, "10.0.0.1"), mode
        c = natmod.counters(dep.node_maps("nat"))
        assert c["ttl"] == before["ttl"] + 1, (mode, c)
        assert c["new_snat"] == before["new_snat"], (mode, c)

        assert c["icmp_error"] >= 2, (mode, c)
        assert c["new_snat"] == 3 and c["new_dnat"] == 1, (mode, c)   # refused, big, GRE
        assert c["error"] == c["malformed"] == c["fragment"] == c["icmp_unknown"] == 0, c
