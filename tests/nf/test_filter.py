"""The filter NF in the kernel (XDP and TC) against its reference model (a linear scan)."""
from __future__ import annotations

import ipaddress
import random
import struct
import threading

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from nfpipe import resources
from nfpipe.catalog import parse as P
from nfpipe.catalog.filter import (
    Filter,
    bench_packet,
    benchmark_rules,
    compile_rules,
    linear_entries,
    parse_rule,
)
from nfpipe.errors import KernelError, RuntimeChangeError, SpecError
from nfpipe.nfabi import Verdict
from nfpipe.testing import load_nf
from tests.nf.fused import two_instances

kernel = pytest.mark.kernel
HOOKS = ["xdp", "tc"]
DROP = int(Verdict.DROP)

E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = IP(src="192.0.2.1", dst="198.51.100.2")
V6 = IPv6(src="2001:db8::1", dst="2001:db8::2")

SEEDS = {"default": "allow", "rules": [
    {"action": "drop", "proto": "udp"},
    {"action": "drop", "proto": "tcp", "dport": [80, 443]},
]}


def tc_test_run_refuses(data: bytes) -> bool:
    """BPF_PROG_TEST_RUN for TC refuses IPv4 with < 20 bytes of IP header, IPv6 with < 40."""
    ethertype = data[12:14]
    return ((ethertype == b"\x08\x00" and len(data) - 14 < 20) or
            (ethertype == b"\x86\xdd" and len(data) - 14 < 40))


def check(loaded, nf: Filter, data: bytes) -> int:
    """Run *data* through the kernel and the model; they must agree.  Returns the result."""
    data = bytes(data)
    want, out = nf.model().run(data)
    if loaded.hook == "tc" and tc_test_run_refuses(data):
        with pytest.raises(KernelError, match="EINVAL"):
            loaded.run(data)
        return want
    run = loaded.run(data)
    assert run.result == want, (run.result, want, data.hex())
    assert run.retval == loaded.expected_retval(run.result)
    assert run.data == out == data              # the filter never rewrites a packet
    return want


@pytest.fixture(scope="module", params=HOOKS)
def hook(request):
    return request.param


# Every kernel test runs with each classifier: "auto" (what users get: the linear scan
# for small rule sets, the tables for large ones), "tables" forced for all, and
# "compiled" (the rules as straight-line C in the program) where the rules fit.
_classifier = ["auto"]


@pytest.fixture(scope="module", params=["auto", "tables", "compiled"], autouse=True)
def classifier(request):
    _classifier[0] = request.param
    yield request.param
    _classifier[0] = "auto"


def only(*names: str):
    """Run a test with these classifiers only, not with each of the module's: the
    test's own parametrization of the fixture takes the place of the module's (a test
    that does not apply to a classifier is not run for it, rather than skipped)."""
    return pytest.mark.parametrize("classifier", names, indirect=True)


#: tests that change the rules of a loaded node: not "compiled", whose rules are in
#: its program (test_compiled_rules_change_by_a_new_program covers it)
rules_change_live = only("auto", "tables")


def make(config: dict) -> Filter:
    """A Filter of *config* with the classifier under test (unless *config* names one)."""
    return Filter({"classifier": _classifier[0], **config})


_cache: dict = {}


def loaded_filter(config: dict, hook: str):
    """One loaded program per (config, hook), reused across the tests of this module."""
    config = {"classifier": _classifier[0], **config}
    key = (repr(config), hook)
    if key not in _cache:
        nf = _filters.get(repr(config)) or _filters.setdefault(repr(config), make(config))
        _cache[key] = (load_nf(nf, hook), nf)
    return _cache[key]


_filters: dict = {}       # compiled once for both hooks


@pytest.fixture(scope="module", autouse=True)
def _close_loaded():
    yield
    for loaded, _nf in _cache.values():
        loaded.close()
    _cache.clear()


# ---- the seeds' examples ------------------------------------------------------------------

SEED_CASES = {
    "udp-dropped": (E / V4 / UDP(sport=1000, dport=53), DROP),
    "udp6-dropped": (E / V6 / UDP(dport=5353), DROP),
    "tcp80-dropped": (E / V4 / TCP(dport=80), DROP),
    "tcp443-dropped": (E / V6 / TCP(dport=443, flags="SA"), DROP),
    "tcp22-allowed": (E / V4 / TCP(dport=22), 0),
    "tcp81-allowed": (E / V4 / TCP(dport=81), 0),
    "tcp442-allowed": (E / V6 / TCP(dport=442), 0),
    "sport80-allowed": (E / V4 / TCP(sport=80, dport=1234), 0),
    "icmp-allowed": (E / V4 / ICMP(), 0),
    "icmpv6-allowed": (E / V6 / ICMPv6EchoRequest(), 0),
    "arp-allowed": (bytes(E)[:12] + b"\x08\x06" + bytes(28), 0),
    # hostile packets: none of them may slip past the drop rules
    "vlan-udp": (E / Dot1Q(vlan=100) / V4 / UDP(dport=53), DROP),
    "qinq-udp": (E / Dot1AD(vlan=200) / Dot1Q(vlan=100) / V4 / UDP(dport=53), DROP),
    "qinq-tcp80": (E / Dot1AD(vlan=200) / Dot1Q(vlan=100) / V6 / TCP(dport=80), DROP),
    "qinq-tcp22": (E / Dot1AD(vlan=200) / Dot1Q(vlan=100) / V4 / TCP(dport=22), 0),
    "three-tags": (E / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / V4 / TCP(dport=22), DROP),
    "ipv4-options-tcp80": (E / IP(src="192.0.2.1", dst="198.51.100.2",
                                  options=b"\x94\x04\x00\x00" * 2) / TCP(dport=80), DROP),
    "ipv4-max-options-tcp80": (E / IP(src="192.0.2.1", dst="198.51.100.2",
                                      options=b"\x01" * 40) / TCP(dport=80), DROP),
    "ipv4-options-tcp22": (E / IP(options=b"\x01" * 8) / TCP(dport=22), 0),
    "ipv6-ext-tcp443": (E / V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() /
                        IPv6ExtHdrDestOpt() / TCP(dport=443), DROP),
    "ipv6-ext-tcp22": (E / V6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(dport=22), 0),
    "ipv6-frag-first-udp": (E / V6 / IPv6ExtHdrFragment(offset=0, m=1, id=5) / UDP(dport=53) /
                            Raw(b"z" * 16), DROP),
    "ipv6-chain-too-long": (E / IPv6(src="2001:db8::1", dst="2001:db8::2") /
                            IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
                            IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
                            IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() /
                            TCP(dport=22), DROP),
    "truncated-tcp": (bytes(E / V4 / TCP(dport=22))[:14 + 20 + 10], DROP),
    "truncated-udp": (bytes(E / V4 / UDP(dport=22))[:14 + 20 + 6], DROP),
    "tcp-doff-past-end": (bytes(E / V4 / TCP(dport=22, dataofs=15)), DROP),
}


def _frags():
    frags = fragment(E / IP(src="192.0.2.1", dst="198.51.100.2", id=7) / UDP(dport=53) /
                     Raw(b"y" * 200), fragsize=64)
    tfrags = fragment(E / IP(src="192.0.2.1", dst="198.51.100.2", id=8) / TCP(dport=22) /
                      Raw(b"y" * 200), fragsize=64)
    return {"udp-first": bytes(frags[0]), "udp-later": bytes(frags[1]),
            "tcp22-first": bytes(tfrags[0]), "tcp22-later": bytes(tfrags[1]),
            "v6-udp-later": bytes(E / V6 / IPv6ExtHdrFragment(offset=8, m=0, id=5, nh=17) /
                                  Raw(b"z" * 16)),
            "v6-tcp-later": bytes(E / V6 / IPv6ExtHdrFragment(offset=8, m=0, id=5, nh=6) /
                                  Raw(b"z" * 16))}


@kernel
@pytest.mark.parametrize("name", sorted(SEED_CASES))
def test_seed_examples_and_hostile_packets(hook, name):
    loaded, nf = loaded_filter(SEEDS, hook)
    pkt, want = SEED_CASES[name]
    assert check(loaded, nf, bytes(pkt)) == want


@kernel
@pytest.mark.parametrize("policy", ["l3", "drop", "allow", "port:3"])
def test_fragment_policy(hook, policy):
    loaded, nf = loaded_filter({**SEEDS, "fragments": policy}, hook)
    f = _frags()
    # First fragments carry the L4 header: they are matched by ports like any packet.
    assert check(loaded, nf, f["udp-first"]) == DROP
    assert check(loaded, nf, f["tcp22-first"]) == 0
    later = {"l3": None, "drop": DROP, "allow": 0, "port:3": 3}[policy]
    for name in ("udp-later", "v6-udp-later", "tcp22-later", "v6-tcp-later"):
        got = check(loaded, nf, f[name])
        if later is not None:
            assert got == later, name
    if policy == "l3":
        # L3 evaluation: the protocol is known, ports are not.  "drop udp" still drops
        # non-first UDP fragments; "drop tcp to 80/443" cannot see a port: allowed.
        assert check(loaded, nf, f["udp-later"]) == DROP
        assert check(loaded, nf, f["v6-udp-later"]) == DROP
        assert check(loaded, nf, f["tcp22-later"]) == 0


@kernel
def test_fragment_l3_never_matches_ports(hook):
    cfg = {"default": "drop", "rules": [{"action": "allow", "proto": "tcp", "dport": 22},
                                        {"action": "port:1", "dport": "0-65535"},
                                        {"action": "port:1", "sport": 0},
                                        {"action": "port:2", "proto": "tcp"}]}
    loaded, nf = loaded_filter(cfg, hook)
    f = _frags()
    assert check(loaded, nf, f["tcp22-first"]) == 0
    assert check(loaded, nf, f["tcp22-later"]) == 2      # no port rule, not even 0-65535
    assert check(loaded, nf, bytes(E / V4 / ICMP())) == DROP       # ICMP has no ports either
    assert check(loaded, nf, f["v6-tcp-later"]) == 2
    # the later fragment's payload looks like a TCP header to port 22: still not matched
    assert check(loaded, nf, bytes(E / IP(frag=100, proto=6) / TCP(dport=22))) == 2


@kernel
@pytest.mark.parametrize("policy,want", [("drop", DROP), ("allow", 0), ("port:7", 7)])
def test_malformed_policy(hook, policy, want):
    loaded, nf = loaded_filter({**SEEDS, "malformed": policy}, hook)
    assert check(loaded, nf, SEED_CASES["truncated-tcp"][0]) == want
    assert check(loaded, nf, bytes(E / V4 / TCP(dport=22))) == 0


def _incomplete_packets() -> dict[str, bytes]:
    """Packets the stack may accept that nfpipe cannot parse down to L4: each would pass
    a `drop tcp dport 22` / `drop udp` rule if the malformed policy decided."""
    syn = bytes(TCP(sport=4000, dport=22, flags="S"))
    chain = E / V6
    for _ in range(P.MAX_IPV6_EXT + 1):
        chain = chain / IPv6ExtHdrDestOpt()
    first = bytes(E / IP(flags="MF", proto=6) / Raw(syn[:8]))
    return {
        "ipv6-chain-9": bytes(chain / TCP(dport=22, flags="S")),
        "ipv6-chain-9-udp": bytes(chain / UDP(dport=53)),
        "three-tags": bytes(SEED_CASES["three-tags"][0]),
        "ipv4-first-fragment-8-bytes": first,
        "ipv4-first-fragment-padded": first + syn[8:] + bytes(6),
        "ipv6-first-fragment-8-bytes": bytes(E / V6 / IPv6ExtHdrFragment(m=1, nh=6) /
                                             Raw(syn[:8])),
        "ipv6-first-fragment-no-l4": bytes(E / V6 / IPv6ExtHdrFragment(m=1, nh=60) /
                                           Raw(bytes([6, 0]) + bytes(6))),
    }


@kernel
@pytest.mark.parametrize("policy", ["allow", "drop", "port:7"])
def test_incomplete_packets_are_dropped_whatever_the_malformed_policy(hook, policy):
    """The bypass: under `malformed: allow` a padded extension-header chain or a short
    first fragment walked past the drop rules.  Now: dropped, counted as incomplete."""
    cfg = {"default": "allow", "malformed": policy, "rules": [
        {"action": "drop", "proto": "tcp", "dport": 22}, {"action": "drop", "proto": "udp"}]}
    nf = make(cfg)
    packets = _incomplete_packets()
    with load_nf(nf, hook) as loaded:
        for name, data in packets.items():
            assert P.parse_packet(data).incomplete, name
            assert check(loaded, nf, data) == DROP, name
        st = nf.stats(loaded.maps)
        assert st["incomplete"] == len(packets) and st["malformed"] == 0, st
        # a merely malformed packet still takes the policy
        want = {"allow": 0, "drop": DROP, "port:7": 7}[policy]
        assert check(loaded, nf, SEED_CASES["truncated-tcp"][0]) == want
        assert nf.stats(loaded.maps)["malformed"] == 1


def _ah(nh: int, icv: int = 12) -> bytes:
    return struct.pack("!BBHII", nh, (12 + icv) // 4 - 2, 0, 0x1234, 1) + bytes(range(icv))


@kernel
def test_ah_rules_match_and_ah_does_not_hide_ports(hook):
    """`proto: ah` matches IPv6 as well as IPv4; a port rule sees through AH."""
    cfg = {"default": "allow", "rules": [
        {"action": "drop", "proto": "tcp", "dport": 22},
        {"action": "port:2", "proto": "ah"},
        {"action": "port:3", "proto": "udp", "dport": 53}]}
    nf = make(cfg)
    ip4 = IP(src="192.0.2.1", dst="198.51.100.2", proto=51)
    ip6 = IPv6(src="2001:db8::1", dst="2001:db8::2", nh=51)
    cases = [
        (E / ip4 / Raw(_ah(6) + bytes(TCP(dport=22))), DROP),              # TCP in AH
        (E / ip6 / Raw(_ah(6, icv=20) + bytes(TCP(dport=22))), DROP),
        (E / ip4 / Raw(_ah(6) + bytes(TCP(dport=23))), 2),                 # other TCP: AH
        (E / ip6 / Raw(_ah(6, icv=4) + bytes(TCP(dport=23))), 2),
        (E / ip6 / Raw(_ah(17, icv=12) + bytes(UDP(dport=53))), 2),        # AH rule first
        (E / V6 / IPv6ExtHdrHopByHop(nh=51) / Raw(_ah(59, icv=4)), 2),     # AH, no next
        (E / ip4 / Raw(_ah(50) + bytes(16)), 2),                           # ESP in AH
        (E / V6 / UDP(dport=53), 3),                                       # no AH
        (E / V4 / TCP(dport=23), 0),
    ]
    with load_nf(nf, hook) as loaded:
        for pkt, want in cases:
            assert check(loaded, nf, bytes(pkt)) == want, pkt.summary()
        hits = nf.hits(loaded.maps)
        assert hits == [2, 5, 1], hits


# ---- rule semantics ---------------------------------------------------------------------------

RICH = {"default": "drop", "rules": [
    {"action": "port:1", "src": "10.1.2.0/24", "dst": "10.9.0.0/16", "proto": "tcp"},
    {"action": "drop", "src": "10.1.0.0/16"},
    {"action": "port:2", "src": "10.0.0.0/8", "sport": "1024-65535", "dport": "8000-8080"},
    {"action": "port:3", "dst": "2001:db8:1::/48", "proto": "udp", "dport": [53, "5353"]},
    {"action": "port:4", "src": "2001:db8::/32"},
    {"action": "port:5", "tcp_flags": "SYN,!ACK"},
    {"action": "port:6", "vlan": [100, "200-210"]},
    {"action": "port:7", "proto": "icmp"},
    {"action": "allow", "proto": 47},
]}


def v4(src, dst="10.9.1.1"):
    return IP(src=src, dst=dst)


RICH_CASES = [
    # priorities and overlapping prefixes
    (E / v4("10.1.2.3") / TCP(dport=1), 1),
    (E / v4("10.1.2.3", "10.8.0.1") / TCP(dport=1, flags="A"), DROP),     # rule 1 (drop)
    (E / v4("10.1.2.3") / UDP(dport=8000), DROP),                         # rule 1 before 2
    (E / v4("10.2.0.1") / UDP(sport=1024, dport=8000), 2),
    (E / v4("10.2.0.1") / TCP(sport=65535, dport=8080, flags="A"), 2),
    (E / v4("10.2.0.1") / TCP(sport=1023, dport=8000, flags="A"), DROP),  # sport edge
    (E / v4("10.2.0.1") / TCP(sport=2000, dport=7999, flags="A"), DROP),  # dport edge
    (E / v4("10.2.0.1") / TCP(sport=2000, dport=8081, flags="A"), DROP),
    (E / v4("11.2.0.1") / TCP(sport=2000, dport=8000, flags="A"), DROP),  # outside 10/8
    # IPv6 CIDRs
    (E / IPv6(src="2001:db9::1", dst="2001:db8:1:ffff::1") / UDP(dport=53), 3),
    (E / IPv6(src="2001:db9::1", dst="2001:db8:1::1") / UDP(dport=5353), 3),
    (E / IPv6(src="2001:db9::1", dst="2001:db8:2::1") / UDP(dport=53), DROP),
    (E / IPv6(src="2001:db9::1", dst="2001:db8:1::1") / TCP(dport=53, flags="A"), DROP),
    (E / IPv6(src="2001:db8:ffff::1", dst="::1") / TCP(dport=53, flags="A"), 4),
    (E / IPv6(src="2001:db8::1", dst="2001:db8:1::1") / UDP(dport=53), 3),
    # an IPv6 address that looks like 10.1.x.x in its first bytes is not IPv4
    (E / IPv6(src="a01:203::1", dst="::2") / TCP(dport=1, flags="A"), DROP),
    # TCP flags
    (E / v4("192.0.2.1") / TCP(flags="S"), 5),
    (E / v4("192.0.2.1") / TCP(flags="SE"), 5),
    (E / v4("192.0.2.1") / TCP(flags="SA"), DROP),
    (E / v4("192.0.2.1") / UDP(), DROP),
    # VLAN: the outer tag
    (E / Dot1Q(vlan=100) / v4("192.0.2.1") / TCP(flags="A"), 6),
    (E / Dot1Q(vlan=205) / v4("192.0.2.1") / UDP(), 6),
    (E / Dot1Q(vlan=211) / v4("192.0.2.1") / UDP(), DROP),
    (E / Dot1AD(vlan=100) / Dot1Q(vlan=7) / v4("192.0.2.1") / UDP(), 6),
    (E / Dot1AD(vlan=7) / Dot1Q(vlan=100) / v4("192.0.2.1") / UDP(), DROP),
    (E / Dot1Q(vlan=100) / Raw(b"\x08\x06" + bytes(28)), 6),     # not IP: only vlan rules
    # protocols
    (E / v4("192.0.2.1") / ICMP(type=3, code=3), 7),
    (E / IPv6(src="::1", dst="::2") / ICMPv6EchoRequest(), DROP),
    (E / IP(src="192.0.2.1", dst="10.9.1.1", proto=47) / Raw(b"x" * 20), 0),
    (bytes(E)[:12] + b"\x08\x06" + bytes(28), DROP),
]


@kernel
@pytest.mark.parametrize("i", range(len(RICH_CASES)))
def test_rule_semantics(hook, i):
    loaded, nf = loaded_filter(RICH, hook)
    pkt, want = RICH_CASES[i]
    assert check(loaded, nf, bytes(pkt)) == want


@kernel
def test_hit_counters(hook):
    nf = make(SEEDS)
    with load_nf(nf, hook) as loaded:
        for _ in range(3):
            loaded.run(bytes(E / V4 / UDP()))
        loaded.run(bytes(E / V4 / TCP(dport=443)))
        loaded.run(bytes(E / V4 / TCP(dport=22)))
        loaded.run(SEED_CASES["truncated-tcp"][0])
        assert nf.hits(loaded.maps) == [3, 1]
        st = nf.stats(loaded.maps)
        assert st["default"] == 1 and st["malformed"] == 1 and st["aborted"] == 0


@kernel
def test_catch_all_rule_is_counted_and_ends_the_list(hook):
    cfg = {"default": "allow", "rules": [{"action": "port:2", "dport": 22},
                                         {"action": "drop"},
                                         {"action": "port:3", "proto": "udp"}]}
    nf = make(cfg)
    with load_nf(nf, hook) as loaded:
        assert check(loaded, nf, bytes(E / V4 / TCP(dport=22))) == 2
        assert check(loaded, nf, bytes(E / V4 / UDP(dport=1))) == DROP
        assert check(loaded, nf, bytes(E / V6 / ICMPv6EchoRequest())) == DROP
        assert nf.hits(loaded.maps) == [1, 2, 0]


@kernel
def test_no_rules_applies_the_default(hook):
    nf = make({"default": "port:4"})
    with load_nf(nf, hook) as loaded:
        assert check(loaded, nf, bytes(E / V4 / TCP())) == 4
        assert check(loaded, nf, bytes(E / V6 / UDP())) == 4


# ---- 10k rules ----------------------------------------------------------------------------------

rules_n = benchmark_rules
BENCH_PACKET = bench_packet()


@kernel
@only("auto", "tables")          # compiled holds at most 64 entries (test_config_errors)
def test_10k_rules(hook, classifier):
    cfg = {"default": "drop", "rules": rules_n(10000)}
    loaded, nf = loaded_filter(cfg, hook)
    assert check(loaded, nf, BENCH_PACKET) == 5
    assert nf.model().match(BENCH_PACKET)[1] == 9999
    assert check(loaded, nf, bytes(E / Dot1Q(vlan=43) / BENCH_PACKET[18:])) == DROP
    i = 9997          # 10.39.13.0/24 -> tcp dport 1097 -> port 5
    pkt = bytes(E / IP(src="10.39.13.77", dst="1.2.3.4") / TCP(dport=1000 + i % 100))
    assert nf.model().match(pkt)[1] == i
    assert check(loaded, nf, pkt) == i % 8
    assert check(loaded, nf, bytes(E / IPv6(src="2001:db8:2700::5", dst="2001:db8:ffff::1") /
                                   UDP(sport=5000, dport=2000 + 9984 % 10))) == DROP
    assert check(loaded, nf, bytes(E / IP(src="10.39.13.77") / UDP(dport=53))) == DROP
    assert nf.hits(loaded.maps)[9999] >= 1


# ---- random property test ------------------------------------------------------------------

V4_NETS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.0.2.0/24",
           "0.0.0.0/0", "10.128.0.0/9"]
V6_NETS = ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::1/128", "::/0", "fe80::/10"]
V4_ADDRS = ["10.1.2.3", "10.1.2.4", "10.1.9.9", "10.200.0.1", "192.0.2.7", "8.8.8.8"]
V6_ADDRS = ["2001:db8::1", "2001:db8:1::1", "2001:db8:1::2", "fe80::1", "2002::1"]


def random_rules(rng: random.Random, n: int) -> list[dict]:
    rules = []
    for _ in range(n):
        r: dict = {"action": rng.choice(["allow", "drop", "port:1", "port:2", "port:7"])}
        fam = rng.choice([None, 4, 6])
        nets = V4_NETS if fam == 4 else V6_NETS
        if fam and rng.random() < 0.6:
            r["src"] = rng.choice(nets)
        if fam and rng.random() < 0.5:
            r["dst"] = rng.choice(nets)
        roll = rng.random()
        if roll < 0.3:
            r["proto"] = "tcp"
        elif roll < 0.5:
            r["proto"] = "udp"
        elif roll < 0.55:
            r["proto"] = rng.choice(["icmp", "icmpv6", 47, "ah"])
        if r.get("proto") in (None, "tcp", "udp"):
            for key in ("sport", "dport"):
                if rng.random() < 0.3:
                    lo = rng.choice([0, 22, 53, 80, 443, 1024, 8000, 65535])
                    hi = min(65535, lo + rng.choice([0, 0, 1, 100, 65535]))
                    r[key] = rng.choice([lo, f"{lo}-{hi}", [lo, 443]])
        if r.get("proto") in (None, "tcp") and rng.random() < 0.2:
            names = rng.sample(["SYN", "ACK", "FIN", "RST"], rng.randint(1, 2))
            r["tcp_flags"] = ",".join(("!" if rng.random() < 0.4 else "") + x for x in names)
        if rng.random() < 0.15:
            r["vlan"] = rng.choice([5, 100, "100-200", [7, 4095]])
        rules.append(r)
    return rules


def _ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def _ip6(a: str) -> bytes:
    import ipaddress
    return ipaddress.IPv6Address(a).packed


def random_packet(rng: random.Random) -> bytes:
    """Many shapes, built with struct (fast); sometimes cut short or with a byte flipped."""
    out = bytearray(b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01")
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2, 3])):
        out += struct.pack("!H", rng.choice([0x8100, 0x88A8]))
        out += struct.pack("!H", rng.choice([5, 7, 100, 150, 4095, rng.randrange(4096)]))
    proto = rng.choice([6, 6, 17, 17, 1, 58, 47])
    later = False
    l3 = rng.random()
    if l3 < 0.05:
        out += b"\x08\x06" + bytes(28)
        return bytes(out)
    sport = rng.choice([0, 22, 53, 80, 443, 1023, 1024, 8000, 65535, rng.randrange(65536)])
    dport = rng.choice([0, 22, 53, 80, 443, 1023, 1024, 8000, 65535, rng.randrange(65536)])
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, rng.randrange(256), 0, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8, 0)
    elif proto in (1, 58):
        l4 = struct.pack("!BBHHH", rng.choice([0, 8, 3, 128]), 0, 0, 1, 1)
    else:
        l4 = b"\x00" * 8
    l4 += bytes(rng.randrange(20))
    if l3 < 0.6:
        if rng.random() < 0.1:                    # transport-mode AH in front of L4
            l4, proto = _ah(proto, rng.choice([4, 12])) + l4, 51
        opts = b"\x01" * 4 * rng.choice([0, 0, 1, 10])
        frag = rng.choice([0, 0, 0, 0x2000, 5, 0x2005])
        later = bool(frag & 0x1FFF)
        ihl = 5 + len(opts) // 4
        out += b"\x08\x00"
        out += struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(l4), 1, frag, 64,
                           proto, 0, _ip4(rng.choice(V4_ADDRS)), _ip4(rng.choice(V4_ADDRS)))
        out += opts
    else:
        exts = b""
        nh = proto
        for _ in range(rng.choice([0, 0, 1, 2])):
            kind = rng.choice([0, 43, 60, 44, 51])
            if kind == 44:
                off = rng.choice([0, 8])
                later = later or off != 0
                exts = struct.pack("!BBHI", nh, 0, off, 1) + exts
            elif kind == 51:
                exts = _ah(nh, rng.choice([4, 12])) + exts
            else:
                exts = struct.pack("!BB6x", nh, 0) + exts
            nh = kind
        out += b"\x86\xdd"
        out += struct.pack("!IHBB16s16s", 0x60000000, len(exts) + len(l4), nh, 64,
                           _ip6(rng.choice(V6_ADDRS)), _ip6(rng.choice(V6_ADDRS)))
        out += exts
    out += l4
    roll = rng.random()
    if roll < 0.08:
        out = out[:rng.randrange(14, len(out))]
    elif roll < 0.12:
        out[rng.randrange(12, len(out))] = rng.randrange(256)
    return bytes(out)


@kernel
def test_random_packets_match_the_model(hook):
    rng = random.Random(0xF117E5)
    cfg = {"default": "port:3", "fragments": "l3", "rules": random_rules(rng, 60)}
    nf = make(cfg)
    model = nf.model()
    seen = set()
    with load_nf(nf, hook) as loaded:
        for _ in range(10000):
            data = random_packet(rng)
            want = model.run(data)[0]
            seen.add(want)
            if hook == "tc" and tc_test_run_refuses(data):
                continue
            run = loaded.run(data)
            assert run.result == want, (data.hex(), run.result, want)
            assert run.data == data
    assert len(seen) >= 5            # the rule set and packets exercise several actions


@kernel
def test_random_small_rule_sets_on_the_linear_scan(hook):
    """Small random rule sets (every field, several ranges) forced onto the linear
    classifier (or, under "compiled", built into the program): each packet's result is
    the model's."""
    rng = random.Random(0x11AE)
    small = "compiled" if _classifier[0] == "compiled" else "linear"
    for n in (1, 3, 8, 16):
        rules = random_rules(rng, n)
        while linear_entries([parse_rule(i, r) for i, r in enumerate(rules)]) is None:
            rules.pop()
        nf = Filter({"default": "port:3", "classifier": small, "rules": rules})
        model = nf.model()
        with load_nf(nf, hook) as loaded:
            assert loaded.maps["gens"][Filter.active_generation(loaded.maps)]["linear"] == 1
            for _ in range(1500):
                data = random_packet(rng)
                if hook == "tc" and tc_test_run_refuses(data):
                    continue
                assert loaded.run(data).result == model.run(data)[0], (rules, data.hex())


class _SmallDense(Filter):
    """The filter with a dense-step map of *cells* cells a generation: the steps that do
    not fit stay in the hash map, so one rule set classifies through both kinds."""

    cells = 128

    def map_sizes(self) -> dict[str, int]:
        return {"dense": 2 * self.cells // 64}         # 64 cells an element


@kernel
def test_rfc_steps_are_dense_tables_where_they_fit_and_hash_steps_elsewhere(hook):
    """The RFC steps whose class counts multiply to what the dense map holds are array
    cells, the others hash entries; where the dense map holds the fields' cross table,
    that one read replaces the steps; an address field no rule tells apart is not looked
    up.  Every packet's result is still the model's, through each mix of both, and an
    update moves the layout to the other generation's half."""
    from nfpipe.catalog.filter import _compiled
    from nfpipe.catalog.filter_rules import CROSS_SLOT, DIR_NONE, FIXED_DST
    rng = random.Random(0xDE45E)
    rules = [r for r in random_rules(rng, 40) if "dst" not in r]
    cfg = {"default": "port:3", "fragments": "l3", "classifier": "tables", "rules": rules}
    for cells in (128, 1 << 20):
        _SmallDense.cells = cells
        _compiled.clear()           # no earlier rule set's crossed fields to follow
        nf = _SmallDense(cfg)
        model = nf.model()
        with load_nf(nf, hook) as loaded:
            maps = loaded.maps
            for update in (False, True):
                if update:
                    nf.update(maps, dict(cfg, rules=rules[:-1]))
                    model = nf.model()
                gen = Filter.active_generation(maps)
                g = maps["gens"][gen]
                assert g["linear"] == 0 and g["fixed"] & FIXED_DST    # no rule names dst
                dense = [i for i, st in enumerate(g["dense_stride"][:g["nsteps"]]) if st]
                half = maps["dense"].max_entries // 2 * 64        # cells
                if cells == 128:
                    # no room for the cross table (2520 cells): six steps, some each way
                    assert g["cross_cells"] == 0 and g["nsteps"] == 6, g
                    assert 0 < len(dense) < 6, g
                else:
                    # the fields crossed in one table (alone, every field: 2520 cells
                    # holding the first rule), the steps left all dense
                    t = nf.tables
                    n = len(t.cross_table)
                    assert n and g["cross_cells"] == n and g["nsteps"] == len(t.steps), g
                    assert len(dense) == len(t.steps) < 6, g
                    assert g["result"] == (CROSS_SLOT if not t.steps else 6 + len(t.steps)), g
                    assert gen * half <= g["cross_base"] <= (gen + 1) * half - n, g
                assert all(gen * half <= g["dense_base"][i] < (gen + 1) * half for i in dense)
                # the IPv4 sources by their table where it fits (the trie in 128 cells)
                if cells == 128:
                    assert g["dir_src"] == DIR_NONE, g
                else:
                    assert gen * half <= g["dir_src"] < (gen + 1) * half, g
                for _ in range(1500):
                    data = random_packet(rng)
                    if hook == "tc" and tc_test_run_refuses(data):
                        continue
                    want = model.run(data)[0]
                    assert loaded.run(data).result == want, (data.hex(), want, cells)


@kernel
@only("compiled", "auto")
def test_compiled_node_does_not_read_the_linear_entries(hook, classifier):
    """A compiled node (and an auto one, built with rules that fit the linear entries)
    classifies from its program: with `lin` cleared and its count set to 0, every
    packet still gets the model's result, and the hits go to the rule's slot (both
    entries of a rule with two ports count in one)."""
    nf = make(RICH)
    with load_nf(nf, hook) as loaded:
        gen = Filter.active_generation(loaded.maps)
        lin = loaded.maps["lin"]
        for i in range(len(nf.linear)):
            lin[gen * 64 + i] = bytes(lin.value_size)
        loaded.maps["gens"][gen] = {**loaded.maps["gens"][gen], "nlin": 0}
        want = [0] * len(nf.rules)
        for pkt, expect in RICH_CASES:
            assert check(loaded, nf, bytes(pkt)) == expect
            rule = nf.model().match(bytes(pkt))[1]
            if rule is not None and not (hook == "tc" and tc_test_run_refuses(bytes(pkt))):
                want[rule] += 1
        assert nf.hits(loaded.maps) == want and sum(want) > 3


@kernel
@only("auto")
def test_an_auto_node_runs_its_built_in_rules_until_they_change_at_runtime(hook, classifier):
    """auto builds the rules a node is built with into its program: with `lin` cleared,
    packets still get their results.  A runtime change to other rules writes another
    compiled_id, and the scan of the new rules serves; back to the built-in rules, the
    program's checks serve again."""
    a = make(RULES_A)
    built = int(a.build_defines()["NFP_FILTER_COMPILED_ID"].removesuffix("ULL"), 16)

    def clear_lin(maps) -> None:
        gen = Filter.active_generation(maps)
        assert maps["gens"][gen]["compiled_id"] == built
        lin = maps["lin"]
        for i in range(64):
            lin[gen * 64 + i] = bytes(lin.value_size)
        maps["gens"][gen] = {**maps["gens"][gen], "nlin": 0}

    with load_nf(a, hook) as loaded:
        maps = loaded.maps
        clear_lin(maps)
        was = [check(loaded, a, p) for p in UPDATE_PACKETS]
        b = a.update_rules(maps, {**RULES_B, "classifier": "auto"})
        assert maps["gens"][Filter.active_generation(maps)]["compiled_id"] not in (0, built)
        now = [check(loaded, b, p) for p in UPDATE_PACKETS]
        assert now != was                        # B's rules, not the program's
        a2 = b.update_rules(maps, a.config)
        clear_lin(maps)
        assert [check(loaded, a2, p) for p in UPDATE_PACKETS] == was
        # past the linear entries: the tables, compiled_id 0, never the program's checks
        big = b.update_rules(maps, {"classifier": "auto", "default": "port:3",
                                    "rules": benchmark_rules(200)})
        assert big.linear is None
        assert maps["gens"][Filter.active_generation(maps)]["compiled_id"] == 0
        assert check(loaded, big, BENCH_PACKET) == 5


@kernel
@only("compiled")
def test_a_compiled_node_of_64_entries_loads_and_matches_the_model(hook, classifier):
    """The largest compiled node (64 entries, every field) passes the verifier and gives
    the model's result on random packets."""
    rng = random.Random(0xC0DE)
    rules: list = []
    while True:
        r = random_rules(rng, 1)[0]
        if parse_rule(0, r).matches_all:   # a catch-all would end the entries
            continue
        if linear_entries([parse_rule(i, x) for i, x in enumerate(rules + [r])]) is None:
            break
        rules.append(r)
    nf = make({"default": "port:3", "rules": rules})
    assert len(nf.linear) >= 60
    model = nf.model()
    with load_nf(nf, hook) as loaded:
        for _ in range(2000):
            data = random_packet(rng)
            if hook == "tc" and tc_test_run_refuses(data):
                continue
            assert loaded.run(data).result == model.run(data)[0], data.hex()


@kernel
@only("compiled")
def test_compiled_rules_change_by_a_new_program(hook, classifier):
    """A compiled node refuses a runtime change of its rules (nothing written: its
    results stay); its policies change live; a new build of the new rules gives the
    new results."""
    a, b = make(RULES_A), make(RULES_B)
    assert a.build_defines() != b.build_defines()
    assert a.build_defines() == make(RULES_A).build_defines()
    with load_nf(a, hook) as loaded:
        gen = Filter.active_generation(loaded.maps)
        with pytest.raises(RuntimeChangeError, match="rules cannot change at runtime"):
            a.update_rules(loaded.maps, {**RULES_B, "classifier": "compiled"})
        with pytest.raises(RuntimeChangeError, match="classifier, rules cannot change"):
            a.update_rules(loaded.maps, RULES_B)
        assert Filter.active_generation(loaded.maps) == gen
        for p in UPDATE_PACKETS:
            assert loaded.run(p).result == a.model().run(p)[0]
        c = a.update_rules(loaded.maps, {**a.config, "default": "port:5"})
        assert Filter.active_generation(loaded.maps) != gen
        assert {check(loaded, c, p) for p in UPDATE_PACKETS} >= {5}
    with load_nf(b, hook) as loaded:
        for p in UPDATE_PACKETS:
            check(loaded, b, p)


@kernel
def test_auto_classifier_follows_the_size_of_the_rule_set_across_updates(hook):
    small, big = SEEDS, {"default": "allow", "rules": benchmark_rules(200)}
    a = Filter(small)
    assert a.linear is not None and len(a.linear) == 3       # udp; tcp 80; tcp 443
    assert Filter(big).linear is None
    packets = [bytes(p) for p, _ in SEED_CASES.values()] + UPDATE_PACKETS + [BENCH_PACKET]
    with load_nf(a, hook) as loaded:
        def linear() -> int:
            return loaded.maps["gens"][Filter.active_generation(loaded.maps)]["linear"]

        assert linear() == 1
        for p in packets:
            check(loaded, a, p)
        b = a.update_rules(loaded.maps, big)
        assert linear() == 0
        for p in packets:
            check(loaded, b, p)
        assert b.hits(loaded.maps)[199] == 1                 # BENCH_PACKET: the last rule
        c = b.update_rules(loaded.maps, small)
        assert linear() == 1
        for p in packets:
            check(loaded, c, p)
        want = [0, 0]
        for p in packets:
            rule = c.model().match(p)[1]
            if rule is not None:
                want[rule] += 1
        assert c.hits(loaded.maps) == want


@pytest.mark.parametrize("seed", range(6))
def test_compiler_matches_linear_scan_without_kernel(seed):
    """The compiled tables, evaluated in Python like the C code does, against the scan."""
    rng = random.Random(seed)
    nf = Filter({"default": "port:3", "rules": random_rules(rng, rng.choice([1, 5, 40, 120]))})
    t = nf.tables
    for _ in range(1500):
        data = random_packet(rng)
        assert eval_tables(nf, t, data) == nf.model().run(data)[0]


@only("tables")
@pytest.mark.parametrize("seed", range(4))
def test_a_changed_rule_set_compiled_by_the_last_plan_matches_the_scan(seed, classifier,
                                                                       monkeypatch):
    """A rule set one rule away from the last one compiled follows that one's plan (no
    plan search) and its tables still give every packet the first matching rule; a
    rule set unlike it is searched for, as if compiled alone."""
    from nfpipe.catalog import filter_rfc
    from nfpipe.catalog.filter_rfc import compile_rules
    rng = random.Random(seed)
    rules = random_rules(rng, 120)
    before = Filter({"default": "port:3", "rules": rules})
    changed = list(rules)
    changed[rng.randrange(len(rules))] = random_rules(rng, 1)[0]
    nf = Filter({"default": "port:3", "rules": changed})
    last = compile_rules(before.rules)
    with monkeypatch.context() as m:           # the plan is followed, never searched for
        m.setattr(filter_rfc, "_partner", lambda *a: pytest.fail("searched for a partner"))
        t = compile_rules(nf.rules, like=last)
    assert t.plan == last.plan
    for _ in range(1500):
        data = random_packet(rng)
        assert eval_tables(nf, t, data) == nf.model().run(data)[0]
    other = Filter({"default": "port:3", "rules": random_rules(rng, 7)})
    alone = compile_rules(other.rules)
    assert compile_rules(other.rules, like=last).steps == alone.steps


def _change_one_rule(rng: random.Random,
                     rules: list[dict]) -> tuple[list[dict], int, str | None]:
    """*rules* with one rule changed: its action, one of its values (the same fields
    constrained: a change the compile takes as one), or the whole rule.  Returns the
    new list, the rule's index and the field changed ("action" for an action only,
    None for the whole rule)."""
    out = list(rules)
    i = rng.randrange(len(out))
    r = dict(out[i])
    roll = rng.random()
    if roll < 0.25:
        r["action"] = rng.choice([a for a in ("allow", "drop", "port:1", "port:2", "port:7")
                                  if a != r["action"]])
        what: str | None = "action"
    elif roll < 0.75 and any(k in r for k in ("src", "dst", "sport", "dport")):
        what = rng.choice([k for k in ("src", "dst", "sport", "dport") if k in r])
        if what in ("src", "dst"):
            net = ipaddress.ip_network(r[what])
            nets = V4_NETS if net.version == 4 else V6_NETS
            r[what] = rng.choice([n for n in nets if ipaddress.ip_network(n) != net])
        else:
            lo = rng.randrange(65535)
            r[what] = f"{lo}-{min(65535, lo + rng.choice([1, 5, 300]))}"
    else:
        r, what = random_rules(rng, 1)[0], None
    out[i] = r
    return out, i, what


@only("tables")
@pytest.mark.parametrize("seed", range(4))
def test_a_rule_set_changed_again_and_again_is_compiled_as_a_change_of_the_last(
        seed, classifier, monkeypatch):
    """Each of a run of one-rule changes is compiled from the tables of the one before
    (a live update of a 10k-rule set takes milliseconds so): the fields the change did
    not touch are the last compile's, a step keeps the rows it had, a changed action
    changes no table at all, and every table stays compact (at most a few classes no
    value maps to).  Throughout, every packet gets the first matching rule, as the
    scan gives it."""
    from nfpipe.catalog import filter_rfc
    from nfpipe.catalog.filter_rfc import _classes_used, _stale, compile_rules
    from nfpipe.catalog.filter_rules import FIELDS
    rng = random.Random(seed)
    rules = [r for r in random_rules(rng, 90) if len(r) > 1][:60]   # no catch-all
    for k in range(200):             # sources of their own: a step pairs them with the rest
        r = {"action": rng.choice(["drop", "port:1", "allow"]),
             "src": f"10.{k >> 8}.{k & 255}.0/24"}
        if rng.random() < 0.7:
            r.update(proto="tcp", dport=rng.choice([22, 80, 443, 8080, "1000-2000"]))
        if rng.random() < 0.3:
            r["dst"] = rng.choice(["10.9.0.0/16", "10.1.2.0/24"])
        rules.append(r)
    rng.shuffle(rules)
    rows_kept = []
    combine = filter_rfc._Compiler.combine

    def counted(self, A, B, slot, final, cap, last=None):
        if last is not None and B.classes == last[1] and A.classes[:len(last[0])] == last[0]:
            rows_kept.append(len(last[0]))
        return combine(self, A, B, slot, final, cap, last)
    monkeypatch.setattr(filter_rfc._Compiler, "combine", counted)
    last = compile_rules(Filter({"default": "port:3", "rules": rules}).rules)
    changes = 0
    for _ in range(16):
        rules, i, what = _change_one_rule(rng, rules)
        nf = Filter({"default": "port:3", "rules": rules})
        t = compile_rules(nf.rules, like=last)
        assert t.memo is not None and last.memo is not None
        if what is not None and t.catch_all == last.catch_all and \
                i < len(t.memo.rules):          # not a rule after a catch-all
            kept = [f for f in range(len(FIELDS)) if t.memo.fields[f] is last.memo.fields[f]]
            # or none: a change that gave a field many new classes (a rule moved to an
            # address that covers many others) is compiled afresh, on the last plan
            assert kept in ([f for f in range(len(FIELDS)) if FIELDS[f] != what],
                            [] if what != "action" else None), what
            changes += bool(kept)
            if what == "action":
                assert t.steps == last.steps and t.cross_table == last.cross_table
        for f in range(len(FIELDS)):
            out = t.memo.fields[f]
            assert not _stale(out[0].classes, _classes_used(out)), FIELDS[f]
        for _ in range(300):
            data = random_packet(rng)
            assert eval_tables(nf, t, data) == nf.model().run(data)[0]
        last = t
    assert changes >= 4 and rows_kept      # compiled as changes, steps kept their rows


@only("tables")
def test_two_nodes_rule_sets_changed_in_turn_each_compile_as_a_change_of_their_own(
        classifier):
    """A process that changes two filter nodes' rules in turn (the agent), and builds a
    rule set it has seen before in between (the bench builds one before it deploys
    it), compiles each change from the tables of the same node's last rule set: a
    changed action leaves every field and step as they were."""
    from nfpipe.catalog import filter as F
    from nfpipe.catalog.filter_rules import FIELDS
    rng = random.Random(0x2F17)
    sets = [[r for r in random_rules(rng, 600) if len(r) > 1][:300] for _ in range(2)]

    def tables(rules):
        return Filter({"default": "port:3", "classifier": "tables", "rules": rules}).tables
    F._compiled.clear()
    last = [tables(s) for s in sets]
    for n in range(6):
        k = n % 2
        assert tables(sets[1 - k]) is last[1 - k]       # found again, not compiled
        while True:
            changed, _i, what = _change_one_rule(rng, sets[k])
            if what == "action":
                break
        t = tables(changed)
        assert t.memo is not None and last[k].memo is not None
        kept = [FIELDS[f] for f in range(len(FIELDS))
                if t.memo.fields[f] is last[k].memo.fields[f]]
        assert kept == list(FIELDS), (n, kept)
        assert t.steps == last[k].steps and t.cross_table == last[k].cross_table
        sets[k], last[k] = changed, t


def table_lookup(table, addr: bytes) -> int:
    """What NFP_NAME(dir4) in bpf/filter.c reads: a byte a level from the root."""
    from nfpipe.catalog.filter_rules import DIR_NEXT
    off = 0
    for byte in addr:
        c = table[off + byte]
        if not c & DIR_NEXT:
            return c
        off = c & ~DIR_NEXT
    raise AssertionError("an address table points past the last byte")


@only("tables")
@pytest.mark.parametrize("seed", range(3))
def test_ipv4_address_table_gives_the_longest_prefix_class(seed, classifier):
    """The byte-a-level table of the IPv4 prefixes gives each address the class of its
    longest matching prefix, for prefixes of every length, nested and overlapping."""
    from nfpipe.catalog.filter_rfc import address_table
    rng = random.Random(seed)
    nets = {ipaddress.ip_network("0.0.0.0/0")}
    while len(nets) < 300:
        a = rng.choice([rng.getrandbits(32), 0x0A000000 | rng.getrandbits(12) << 8,
                        0x0A0102 << 8 | rng.getrandbits(8)])
        nets.add(ipaddress.ip_network((a, rng.choice([1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31,
                                                      32, rng.randrange(33)])), strict=False))
    entries = [(n.prefixlen, n.network_address.packed, i) for i, n in enumerate(nets)]
    rng.shuffle(entries)
    table = address_table(entries, 1 << 20)
    longest_first = sorted(((pl, int.from_bytes(net, "big"), c) for pl, net, c in entries),
                           reverse=True)
    ordered = sorted(nets)
    for _ in range(3000):
        n = rng.choice(ordered)
        a = int(n.network_address) + rng.randrange(n.num_addresses)
        want = next(c for pl, net, c in longest_first if a >> (32 - pl) == net >> (32 - pl))
        assert table_lookup(table, a.to_bytes(4, "big")) == want, (hex(a), want)
    assert address_table(entries, 2000) is None         # over its limit: none (the trie)


_PAIRS: dict[int, tuple[list, dict]] = {}


def _pairs(entries: list) -> dict:
    """A step's entries by (left class, right class), made once per step."""
    got = _PAIRS.get(id(entries))
    if got is None or got[0] is not entries:
        if len(_PAIRS) > 64:
            _PAIRS.clear()
        got = _PAIRS[id(entries)] = (entries, {(a, b): v for a, b, v in entries})
    return got[1]


def eval_tables(nf: Filter, t, data: bytes) -> int:
    """What bpf/filter.c computes from the tables (for the kernel-free test above)."""
    from nfpipe.catalog.filter import FRAG_L3, ROW_DEFAULT
    from nfpipe.catalog.filter_rules import CROSS_SLOT, NO_MATCH
    p = P.parse_packet(data)
    if p.incomplete:
        return DROP
    if p.malformed:
        return nf.malformed
    if p.flags & P.F_FRAG_LATER and nf.fragments != FRAG_L3:
        return nf.fragments

    def lpm(entries, addr):
        best = None
        a = int.from_bytes(addr, "big")
        w = len(addr) * 8
        for pl, net, c in entries:
            if a >> (w - pl) == int.from_bytes(net, "big") >> (w - pl) if pl else True:
                if best is None or pl > best[0]:
                    best = (pl, c)
        return best[1]
    if p.is_ipv4:           # the address tables, as the C reads them where they fit
        cls = [lpm(t.src4, p.src) if t.src4_table is None else table_lookup(t.src4_table, p.src),
               lpm(t.dst4, p.dst) if t.dst4_table is None else table_lookup(t.dst4_table, p.dst)]
    elif p.is_ipv6:
        cls = [lpm(t.src6, p.src), lpm(t.dst6, p.dst)]
    else:
        cls = [t.noaddr_src, t.noaddr_dst]
    ip = p.is_ipv4 or p.is_ipv6
    ports = p.has_l4 and p.l4_proto in (6, 17)
    cls.append(t.proto[(257 + p.l4_proto if p.flags & P.F_AH else p.l4_proto) if ip else 256])
    cls.append(t.sport[p.sport if ports else 65536])
    cls.append(t.dport[p.dport if ports else 65536])
    cls.append(t.flags[p.tcp_flags if p.has_l4 and p.l4_proto == 6 else 256])
    cls.append(t.vlan[p.vlan[0] if p.vlan_depth else 4096])
    dflt = nf.default if t.catch_all is None else nf.rules[t.catch_all].action
    slots = dict(enumerate(cls))
    if t.cross_table is not None:
        v = t.cross_table[sum(c * stride for c, stride in zip(cls, t.cross_strides))]
        if v == NO_MATCH:
            return dflt
        slots[CROSS_SLOT] = v
    for i, (left, right, entries) in enumerate(t.steps):
        table = _pairs(entries)
        key = (slots[left], slots[right])
        v = table.get(key, table.get((slots[left], ROW_DEFAULT)))
        if v is None:
            return dflt
        slots[len(cls) + i] = v
    return nf.rules[slots[t.result]].action


# ---- atomic updates ------------------------------------------------------------------------------

RULES_A = {"default": "port:3", "rules": [
    {"action": "port:1", "src": "10.0.0.0/8"},
    {"action": "port:2", "proto": "tcp", "dport": 80}]}
RULES_B = {"default": "port:6", "fragments": "drop", "rules": [
    {"action": "port:4", "proto": "tcp", "dport": [80, 81]},
    {"action": "port:5", "src": "10.1.0.0/16"},
    {"action": "drop", "vlan": 9}]}
UPDATE_PACKETS = [bytes(E / IP(src="10.1.1.1") / TCP(dport=80)),
                  bytes(E / IP(src="11.1.1.1") / TCP(dport=80)),
                  bytes(E / IP(src="10.1.1.1") / UDP(dport=80)),
                  bytes(E / IP(src="11.1.1.1") / UDP(dport=81)),
                  bytes(E / IPv6(src="::1") / TCP(dport=81)),
                  bytes(E / Dot1Q(vlan=9) / IP(src="10.2.1.1") / TCP(dport=81))]


@kernel
@rules_change_live
def test_atomic_update_while_traffic_flows(hook, classifier):
    a, b = make(RULES_A), make(RULES_B)
    want = [{a.model().run(p)[0], b.model().run(p)[0]} for p in UPDATE_PACKETS]
    assert all(len(w) == 2 for w in want)        # every packet tells the two sets apart
    bad: list = []
    seen: set = set()
    stop = threading.Event()
    with load_nf(a, hook) as loaded:
        def traffic():
            i = 0
            while not stop.is_set():
                k = i % len(UPDATE_PACKETS)
                r = loaded.run(UPDATE_PACKETS[k]).result
                seen.add((k, r))
                if r not in want[k]:
                    bad.append((k, r))
                i += 1
        t = threading.Thread(target=traffic)
        t.start()
        try:
            current = a
            for i in range(30):
                current = current.update_rules(loaded.maps, RULES_B if i % 2 == 0 else RULES_A)
        finally:
            stop.set()
            t.join()
        assert not bad, bad[:10]
        assert len(seen) > len(UPDATE_PACKETS)    # both sets were seen while flipping
        # and after the last flip (to A), A's results:
        for p in UPDATE_PACKETS:
            assert loaded.run(p).result == a.model().run(p)[0]
        assert Filter.active_generation(loaded.maps) in (0, 1)
        assert Filter.stats(loaded.maps)["aborted"] == 0


@kernel
@rules_change_live
def test_failed_update_changes_nothing(hook, classifier):
    a = make(RULES_A)
    with load_nf(a, hook) as loaded:
        gen = Filter.active_generation(loaded.maps)
        with pytest.raises(SpecError):
            a.update_rules(loaded.maps, {"rules": [{"action": "explode"}]})
        with pytest.raises(SpecError, match="too complex"):
            a.update_rules(loaded.maps, {"max_table_entries": 3, "rules": RICH["rules"],
                                         "classifier": "tables"})
        assert Filter.active_generation(loaded.maps) == gen
        for p in UPDATE_PACKETS:
            assert loaded.run(p).result == a.model().run(p)[0]


# ---- config errors (no kernel) --------------------------------------------------------------------

@pytest.mark.parametrize("config,match", [
    ({"default": "reject"}, r"default: unknown action 'reject'"),
    ({"fragments": "maybe"}, r"fragments: unknown action"),
    ({"malformed": "l3"}, r"malformed: unknown action 'l3'"),
    ({"default": "port:8"}, r"default: unknown action 'port:8'"),
    ({"colour": "red"}, r"unknown config key\(s\) colour"),
    ({"rules": {"action": "drop"}}, r"rules: expected a list"),
    ({"rules": ["drop"]}, r"rules\[0\]: expected a mapping"),
    ({"rules": [{"proto": "udp"}]}, r"rules\[0\]: missing 'action'"),
    ({"rules": [{"action": "drop", "prot": "udp"}]}, r"rules\[0\]: unknown key\(s\) prot"),
    ({"rules": [{"action": "drop", "src": "10.0.0.1/8"}]}, r"rules\[0\].src: bad CIDR"),
    ({"rules": [{"action": "drop", "dst": "10.0.0.0/33"}]}, r"rules\[0\].dst: bad CIDR"),
    ({"rules": [{"action": "drop", "src": 10}]}, r"rules\[0\].src: expected a CIDR"),
    ({"rules": [{"action": "drop", "src": "10.0.0.0/8", "dst": "::/0"}]},
     r"different address families"),
    ({"rules": [{"action": "drop", "proto": "udpp"}]}, r"unknown protocol 'udpp'"),
    ({"rules": [{"action": "drop", "proto": 256}]}, r"unknown protocol 256"),
    ({"rules": [{"action": "drop", "dport": 65536}]}, r"dport: bad port 65536"),
    ({"rules": [{"action": "drop", "dport": "90-80"}]}, r"dport: bad port '90-80'"),
    ({"rules": [{"action": "drop", "sport": "http"}]}, r"sport: bad port 'http'"),
    ({"rules": [{"action": "drop", "sport": []}]}, r"sport: empty list"),
    ({"rules": [{"action": "drop", "proto": "icmp", "dport": 1}]}, r"ports need proto tcp"),
    ({"rules": [{"action": "drop", "proto": "udp", "tcp_flags": "SYN"}]},
     r"TCP flags need proto tcp"),
    ({"rules": [{"action": "drop", "tcp_flags": "SYN,BOGUS"}]}, r"unknown TCP flag 'BOGUS'"),
    ({"rules": [{"action": "drop", "tcp_flags": "SYN,!SYN"}]}, r"flag SYN given twice"),
    ({"rules": [{"action": "drop", "vlan": 4096}]}, r"vlan: bad VLAN id 4096"),
    ({"max_table_entries": 0}, r"max_table_entries: expected a number"),
    ({"max_table_entries": 1 << 21}, r"max_table_entries: expected a number"),
    ({"rules": [{"action": "drop"}] * 16385}, r"16385 rules, more than the 16384"),
    ({"classifier": "compiled", "rules": benchmark_rules(100)},
     r"classifier: compiled holds at most 64 entries"),
    ({"classifier": "jit"}, r"classifier: expected one of auto, linear, tables, compiled"),
])
def test_config_errors(config, match):
    with pytest.raises(SpecError, match=match):
        Filter(config)


def test_a_changed_rule_set_is_parsed_where_it_changed_and_checked_as_a_new_one():
    """A rule list that differs from the one parsed before in one place reuses the other
    rules' parse, but only for the same text at the same place: a rule equal by Python's
    == yet not in type (`true` for `1`) is still refused, a changed rule is parsed
    anew, and a rule moved to another place has that place's index."""
    base = [{"action": "drop", "proto": 6, "dport": 80},
            {"action": "drop", "proto": 17}, {"action": "allow", "proto": 1}]
    first = Filter({"rules": base})
    assert [r.proto for r in first.rules] == [6, 17, 1]
    with pytest.raises(SpecError, match=r"rules\[0\].proto: unknown protocol True"):
        Filter({"rules": [dict(base[0], proto=True)] + base[1:]})
    with pytest.raises(SpecError, match=r"rules\[1\].dport: ports need proto tcp"):
        Filter({"rules": [base[0], dict(base[1], proto=1, dport=53), base[2]]})
    changed = Filter({"rules": [base[0], dict(base[1], dport=53), base[2]]})
    assert changed.rules[0] is first.rules[0] and changed.rules[1].dport == ((53, 53),)
    moved = Filter({"rules": [base[2], base[0], base[1]]})
    assert [(r.index, r.proto) for r in moved.rules] == [(0, 1), (1, 6), (2, 17)]
    assert moved.model().run(bytes(Ether() / IP() / UDP(dport=9)))[0] == DROP


def test_config_accepts_the_documented_forms():
    nf = Filter({"default": "drop", "fragments": "allow", "malformed": "port:port2", "rules": [
        {"action": "port:2", "src": "10.0.0.0/8", "dst": "10.1.0.0/16", "sport": "1024-65535",
         "dport": [22, "8000-8080"], "tcp_flags": "SYN,!ACK", "vlan": 100, "proto": "tcp",
         "name": "ssh and alt-http from inside"},
        {"action": "allow", "src": "2001:db8::/32", "proto": "icmpv6"},
        {"action": "drop", "dst": "192.0.2.7"}]})
    r = nf.rules[0]
    assert r.dport == ((22, 22), (8000, 8080)) and r.tcp_flags == (0x12, 0x02)
    assert nf.malformed == 2 and nf.default == DROP and nf.fragments == 0
    assert nf.rules[2].dst.prefixlen == 32


def test_compiled_c_holds_range_checked_integers_only():
    """The generated C is made of numbers checked here: an entry holding anything else
    (a string, a bool, a value out of its field's range) is refused, not written."""
    from nfpipe.catalog.filter_compiled import entry_check
    nf = Filter({"classifier": "compiled", **RICH})
    text = nf.build_defines()["NFP_FILTER_COMPILED"]
    assert text.count("nfp_percpu_inc") == len(nf.linear) and '"' not in text
    good = dict(nf.linear[0])
    entry_check(good)
    for key, bad in (("action", "0; system()"), ("action", 8), ("rule", 16384), ("need", True),
                     ("dport", [90, 80]), ("vlan", [0, 4097]), ("src", ["10", 0, 0, 0])):
        e = {**good, "need": 0x1FF, "proto": [6, 6, 263, 263], "dport": [1, 2],
             "sport": [1, 2], "vlan": [1, 2], "flags_mask": 0, "flags_want": 0,
             "src": [0] * 4, "src_mask": [1] * 4, "dst": [0] * 4, "dst_mask": [1] * 4}
        e[key] = bad
        with pytest.raises(SpecError, match="compiled classifier"):
            entry_check(e)


def test_compiled_rules_are_part_of_the_wrapper_and_its_cache_key():
    """Each rule set builds its own wrapper text (so object); an equal one the same."""
    from nfpipe.compose.nodes import wrapper_source
    def text(cfg):
        return wrapper_source(resources.nf_source("filter.c"), hook="xdp", instance="fw",
                              mode="tailcall", defines=Filter(cfg).build_defines())
    a = text({"classifier": "compiled", **RULES_A})
    assert a == text({"classifier": "compiled", **RULES_A})
    assert a != text({"classifier": "compiled", **RULES_B})
    assert text({"classifier": "auto", **RULES_A}) == a      # auto builds its rules in too
    for other in ("linear", "tables"):
        assert "NFP_FILTER_COMPILED" not in text({"classifier": other, **RULES_A})


def test_too_complex_names_the_numbers():
    # every dst-only rule meets every src-only rule: a 150 x 150 cross product (past
    # what one cross table holds, so it is combined as a step)
    rules = [{"action": "allow", "dst": f"10.1.{i}.0/24", "proto": "tcp"} for i in range(150)] + \
            [{"action": "drop", "src": f"10.0.{i}.0/24", "proto": "tcp"} for i in range(150)]
    with pytest.raises(SpecError, match=r"rule set too complex: .* needs \d+ .* "
                                        r"max_table_entries=1000"):
        compile_rules([parse_rule(i, r) for i, r in enumerate(rules)], 1000)
    t = compile_rules([parse_rule(i, r) for i, r in enumerate(rules)], 100000)
    assert 22500 <= t.combine_entries <= 100000


def test_a_checked_rule_set_is_compiled_once(monkeypatch):
    """A runtime change compiles the new rules to check them (prepare), then rebuilds
    the Filter from the config as the manifest stored it (JSON, keys sorted) to write
    the maps: that second Filter uses the tables already compiled."""
    import json

    import nfpipe.catalog.filter as F
    compiled = []
    real = F.compile_rules
    monkeypatch.setattr(F, "compile_rules", lambda *a, **k: compiled.append(1) or real(*a, **k))
    config = {"rules": [dict(r, action="drop") if r["action"].startswith("port") else r
                        for r in benchmark_rules(300)]}
    checked = Filter(config)
    checked.prepare()
    stored = Filter(json.loads(json.dumps(config, sort_keys=True)))
    assert stored.tables is checked.tables and len(compiled) == 1
    changed = Filter({"rules": config["rules"][:-1]})
    assert changed.tables is not checked.tables and len(compiled) == 2


# ---- fused-mode readiness -------------------------------------------------------------------------

def test_two_instances_compile_in_one_unit(compile_c):
    """Everything at file scope is NFP_NAME-prefixed and the shared types are guarded, so
    two filter nodes can be inlined into one program."""
    from nfpipe.loader.objspec import ObjectSpec
    src = resources.nf_source("filter.c")
    text = two_instances(src, "fw_a", "fw_b")
    spec = ObjectSpec.from_file(compile_c(text, name="two_filters"))
    names = {m.name for m in spec.maps} if isinstance(spec.maps, list) else set(spec.maps)
    for inst in ("fw_a", "fw_b"):
        assert {f"{inst}__active", f"{inst}__combine", f"{inst}__src6"} <= names
