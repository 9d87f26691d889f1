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
"""
from __future__ import annotations

import ipaddress

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
