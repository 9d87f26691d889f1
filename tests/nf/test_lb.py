"""lb (bpf/lb.c + nfpipe/catalog/lb.py): the kernel against the reference model, in XDP and TC.

Kernel tests carry the ``kernel`` mark one by one; the config and Maglev tests
run without a kernel.
"""
from __future__ import annotations

import functools
import ipaddress
import math
import os
import random
import struct
import threading
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from nfpipe.catalog import lb as L, parse as P
from nfpipe.catalog.csum import checksum
from nfpipe.errors import KernelError, SpecError
from nfpipe.nfabi import Verdict
from nfpipe.testing import load_nf
from tests.nf.fused import two_instances

kernel = pytest.mark.kernel
HOOKS = ["xdp", "tc"]

E = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
MACS = bytes(E)[:12]
VIP4, VIP6 = "10.100.0.1", "2001:db8:100::1"
WEB = [("10.0.1.1:8080", 1), ("10.0.1.2:8080", 2), ("10.0.1.3:8081", 3)]


def config(web=WEB, draining=(), web_size=4099) -> dict:
    return {"vips": [
        {"vip": f"{VIP4}:80", "proto": "tcp", "table_size": web_size,
         "backends": [{"addr": a, "weight": w, "state": "draining" if a in draining else "active"}
                      for a, w in web]},
        {"vip": f"{VIP4}:53", "proto": "udp", "table_size": 1021,
         "backends": [{"addr": "10.0.2.1:53"}, {"addr": "10.0.2.2:5353", "weight": 3}]},
        {"vip": f"[{VIP6}]:443", "proto": "tcp", "table_size": 1021,
         "backends": [{"addr": "[2001:db8:1::1]:8443"}, {"addr": "[2001:db8:1::2]:8443"}]},
        {"vip": f"[{VIP6}]:53", "proto": "udp", "table_size": 509,
         "backends": [{"addr": "[2001:db8:2::1]:53", "weight": 2}, {"addr": "[2001:db8:2::2]:53"}]},
    ]}


POOL = [f"10.0.1.{i}:{8080 + i % 3}" for i in range(1, 25)]


class RandomWeb:
    """A random walk over the web VIP's backends: each step adds one from POOL, removes
    one, drains or undrains one, changes one's weight, or (rarely) the table size; the
    removals and drains are the steps a history-keeping table would remember."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.web = dict(WEB)
        self.draining: set[str] = set()
        self.size = 4099

    def step(self, op: str | None = None) -> dict:
        rng, web = self.rng, self.web
        op = op or rng.choice(("add", "add", "add", "remove", "remove", "drain", "drain",
                               "weight", "size"))
        if op == "add" and len(web) < 12:
            web[rng.choice([a for a in POOL if a not in web])] = rng.randint(1, 4)
        elif op == "remove" and len(web) > 3:
            gone = rng.choice(sorted(web))
            del web[gone]
            self.draining.discard(gone)
        elif op == "drain":
            a = rng.choice(sorted(web))
            if a in self.draining:
                self.draining.discard(a)
            elif len(self.draining) < len(web) - 1:
                self.draining.add(a)
        elif op == "weight":
            web[rng.choice(sorted(web))] = rng.randint(1, 4)
        elif op == "size" and rng.random() < 0.3:
            self.size = 2053 if self.size == 4099 else 4099
        return self.config()

    def config(self) -> dict:
        return config(web=sorted(web for web in self.web.items()),
                      draining=tuple(self.draining), web_size=self.size)


# ---- helpers -------------------------------------------------------------------------------

def tc_test_run_refuses(data: bytes) -> bool:
    """BPF_PROG_TEST_RUN for TC refuses IPv4 with < 20 bytes of IP header, IPv6 with < 40."""
    ethertype = data[12:14]
    return ((ethertype == b"\x08\x00" and len(data) - 14 < 20) or
            (ethertype == b"\x86\xdd" and len(data) - 14 < 40))


def assert_checksums(data: bytes) -> None:
    """Every IPv4/TCP/UDP checksum in the packet equals scapy's recomputation."""
    pkt = Ether(data)
    fields = []
    for layer in (IP, TCP, UDP):
        if layer in pkt:
            fields.append((layer, pkt[layer].chksum))
            del pkt[layer].chksum
    again = Ether(bytes(pkt))
    for layer, got in fields:
        if layer is UDP and got == 0 and IP in again:
            continue                                   # "no checksum" stays so
        assert got == again[layer].chksum, f"{layer.__name__} checksum {got:#06x} != " \
                                           f"{again[layer].chksum:#06x}"


@functools.lru_cache(maxsize=4096)
def _packed(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


def build(v6: bool, proto: int, src: str, dst: str, sport: int, dport: int,
          vlan: int | None = None, payload: bytes = b"", tcp_flags: int = 0x10) -> bytes:
    """A valid Ethernet/[802.1Q]/IPv4-or-IPv6/TCP-or-UDP packet, checksums right (fast: no
    scapy; test_fast_builder_agrees_with_scapy checks it)."""
    s, d = _packed(src), _packed(dst)
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, tcp_flags, 8192, 0, 0)
        coff = 16
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
        coff = 6
    l4 += payload
    if v6:
        pseudo = s + d + struct.pack("!IxxxB", len(l4), proto)
        l3 = struct.pack("!IHBB", 6 << 28, len(l4), proto, 64) + s + d
        ethertype = 0x86DD
    else:
        pseudo = s + d + struct.pack("!xBH", proto, len(l4))
        hdr = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0) + s + d
        l3 = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
        ethertype = 0x0800
    c = checksum(pseudo + l4)
    if proto == 17 and c == 0:
        c = 0xFFFF
    l4 = l4[:coff] + struct.pack("!H", c) + l4[coff + 2:]
    l2 = MACS
    if vlan is not None:
        l2 += struct.pack("!HH", 0x8100, vlan)
    return l2 + struct.pack("!H", ethertype) + l3 + l4


def addr_port(pkt: Ether, src: bool) -> tuple[str, int]:
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    return (ip.src, l4.sport) if src else (ip.dst, l4.dport)


class Harness:
    """A loaded LB and its model, run packet by packet and compared."""

    def __init__(self, nf, lb: L.LoadBalancer):
        self.nf, self.lb, self.model = nf, lb, L.LBModel(lb)

    def run(self, data: bytes, check_sums: bool = True):
        data = bytes(data)
        want = self.model.process(data)
        if self.nf.hook == "tc" and tc_test_run_refuses(data):
            with pytest.raises(KernelError, match="EINVAL"):
                self.nf.run(data)
            return want
        got = self.nf.run(data)
        assert (got.result, got.data) == (int(want[0]), want[1]), \
            f"kernel {got.result} {got.data.hex()} != model {int(want[0])} {want[1].hex()}"
        assert got.retval == self.nf.expected_retval(got.result)
        if check_sums and got.result == 0 and got.data != data:
            assert_checksums(got.data)
        return got.result, got.data

    def update(self, cfg: dict) -> None:
        self.lb.update(self.nf.maps, cfg)
        self.model.apply(self.lb.plan)

    def backend_of(self, out: bytes) -> str:
        p = P.parse_packet(out)
        host = ipaddress.ip_address(p.dst)
        return f"{host}:{p.dport}" if host.version == 4 else f"[{host}]:{p.dport}"


@pytest.fixture(params=HOOKS)
def hook(request):
    return request.param


def loaded(hook: str, cfg: dict | None = None):
    lb = L.LoadBalancer(cfg or config())
    nf = load_nf(lb, hook)
    return nf, Harness(nf, lb)


@pytest.fixture
def h(hook):
    nf, harness = loaded(hook)
    yield harness
    nf.close()


def syn4(sport: int, src: str = "192.0.2.10", dport: int = 80, flags: str = "S") -> bytes:
    return build(False, 6, src, VIP4, sport, dport, tcp_flags={"S": 0x02, "A": 0x10}[flags])


# ---- config (no kernel) ----------------------------------------------------------------------

BAD_CONFIGS = {
    "no vips": ({}, "vips: missing"),
    "vips not a list": ({"vips": {"vip": "10.0.0.1:80"}}, "vips: expected a non-empty list"),
    "unknown top key": ({"vips": [], "vipz": 1}, "unknown config key"),
    "bad vip addr": ({"vips": [{"vip": "10.0.0.300:80", "backends": [{"addr": "10.0.1.1:80"}]}]},
                     r"vips\[0\]\.vip: '10.0.0.300' is not an IPv4 or IPv6 address"),
    "vip without port": ({"vips": [{"vip": "10.0.0.1", "backends": [{"addr": "10.0.1.1:80"}]}]},
                         r"vips\[0\]\.vip: expected 'ADDRESS:PORT'"),
    "vip port 0": ({"vips": [{"vip": "10.0.0.1:0", "backends": [{"addr": "10.0.1.1:80"}]}]},
                   r"vips\[0\]\.vip: port must be 1\.\.65535"),
    "unbracketed v6": ({"vips": [{"vip": "2001:db8::1:80", "backends": [{"addr": "x"}]}]},
                       r"vips\[0\]\.vip: expected 'ADDRESS:PORT' \(IPv6 as"),
    "bad proto": ({"vips": [{"vip": "10.0.0.1:80", "proto": "sctp",
                             "backends": [{"addr": "10.0.1.1:80"}]}]},
                  r"vips\[0\]\.proto: expected one of tcp, udp"),
    "table not prime": ({"vips": [{"vip": "10.0.0.1:80", "table_size": 1000,
                                   "backends": [{"addr": "10.0.1.1:80"}]}]},
                        r"vips\[0\]\.table_size: 1000 is not a prime"),
    "table too big": ({"vips": [{"vip": "10.0.0.1:80", "table_size": 65539,
                                 "backends": [{"addr": "10.0.1.1:80"}]}]},
                      r"vips\[0\]\.table_size: expected a prime table size \(2\.\.65537\)"),
    "table smaller than weights": ({"vips": [{"vip": "10.0.0.1:80", "table_size": 7,
                                              "backends": [{"addr": "10.0.1.1:80", "weight": 5},
                                                           {"addr": "10.0.1.2:80", "weight": 5}]}]},
                                   r"vips\[0\]\.table_size: 7 slots cannot share out weights"),
    "duplicate vip": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "10.0.1.1:80"}]},
                                {"vip": "10.0.0.1:80", "backends": [{"addr": "10.0.1.2:80"}]}]},
                      r"vips\[1\]\.vip: duplicate VIP 10\.0\.0\.1:80/tcp"),
    "no backends": ({"vips": [{"vip": "10.0.0.1:80", "backends": []}]},
                    r"vips\[0\]\.backends: expected a non-empty list"),
    "bad backend addr": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "backend:80"}]}]},
                         r"vips\[0\]\.backends\[0\]\.addr: 'backend' is not an IPv4"),
    "backend port 70000": ({"vips": [{"vip": "10.0.0.1:80",
                                      "backends": [{"addr": "10.0.1.1:70000"}]}]},
                           r"backends\[0\]\.addr: port must be 1\.\.65535"),
    "weight 0": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "10.0.1.1:80",
                                                                "weight": 0}]}]},
                 r"vips\[0\]\.backends\[0\]\.weight: expected a positive integer weight"),
    "weight negative": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "10.0.1.1:80",
                                                                       "weight": -2}]}]},
                        r"backends\[0\]\.weight: expected a positive integer"),
    "weight float": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "10.0.1.1:80",
                                                                    "weight": 1.5}]}]},
                     r"backends\[0\]\.weight: expected a positive integer"),
    "bad state": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "10.0.1.1:80",
                                                                 "state": "down"}]}]},
                  r"backends\[0\]\.state: expected active or draining"),
    "duplicate backend": ({"vips": [{"vip": "10.0.0.1:80",
                                     "backends": [{"addr": "10.0.1.1:80"},
                                                  {"addr": "10.0.1.1:80", "weight": 2}]}]},
                          r"backends\[1\]\.addr: duplicate backend 10\.0\.1\.1:80"),
    "family mismatch": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "[::1]:80"}]}]},
                        r"backends\[0\]\.addr: \[::1\]:80 is IPv6 but the VIP 10\.0\.0\.1:80 is "
                        r"IPv4"),
    "unknown backend key": ({"vips": [{"vip": "10.0.0.1:80",
                                       "backends": [{"addr": "10.0.1.1:80", "wieght": 2}]}]},
                            r"backends\[0\]: unknown key\(s\) wieght"),
    "too many vips": ({"vips": [{"vip": f"10.0.0.{i}:80", "backends": [{"addr": "10.0.1.1:80"}]}
                                for i in range(1, L.MAX_VIPS + 2)]}, r"vips: at most 16 VIPs"),
    "bad seed": ({"vips": [{"vip": "10.0.0.1:80", "backends": [{"addr": "10.0.1.1:80"}]}],
                  "hash_seed": -1}, r"hash_seed: expected an unsigned 32-bit integer"),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_config_errors_name_the_key(name):
    cfg, pattern = BAD_CONFIGS[name]
    with pytest.raises(SpecError, match=pattern):
        L.LoadBalancer(cfg)


def test_config_accepts_ipv6_and_defaults():
    lb = L.LoadBalancer({"vips": [{"vip": "[2001:DB8::1]:443",
                                   "backends": [{"addr": "[2001:db8::a]:8443"}]}]})
    (v,) = lb.vips
    assert (v.name, v.family, v.proto, v.table_size) == ("[2001:db8::1]:443", 6, 6, 65537)
    assert v.backends[0].weight == 1 and not v.backends[0].draining
    assert lb.constants() == {"hash_seed": L.DEFAULT_SEED}


# ---- Maglev (no kernel) ------------------------------------------------------------------------

def test_maglev_shares_follow_weights_and_are_deterministic():
    backends = [("a", 1, 1), ("b", 2, 2), ("c", 5, 3)]
    t = L.maglev_table(backends, 4099)
    assert t == L.maglev_table(list(reversed(backends)), 4099)
    assert 0 not in t
    for _, w, bid in backends:
        # each round hands out weight slots per backend: off by at most one round
        assert abs(t.count(bid) - 4099 * w / 8) <= w


def test_maglev_is_a_function_of_names_weights_and_size():
    """The ids label slots only: any ids, in any order, give the same table by name."""
    rng = random.Random(7)
    backends = [(f"10.0.0.{i}:80", 1 + i % 4, i) for i in range(1, 12)]
    want = L.maglev_names(L.maglev_table(backends, 4099), {i: n for n, _, i in backends})
    for _ in range(5):
        ids = rng.sample(range(1, 1000), len(backends))
        relabeled = [(n, w, ids[k]) for k, (n, w, _) in enumerate(backends)]
        rng.shuffle(relabeled)
        t = L.maglev_table(relabeled, 4099)
        assert L.maglev_names(t, {i: n for n, _, i in relabeled}) == want
    with pytest.raises(ValueError, match="same name"):
        L.maglev_table([("a", 1, 1), ("a", 2, 2)], 101)


def _maglev_before(backends: list[tuple[str, int, int]], size: int) -> list[int]:
    """maglev_table as it was written first (each turn recomputing its slot from its
    permutation index): the tables fleet agents have in their maps."""
    table = [0] * size
    if not backends:
        return table
    order = sorted(backends, key=lambda b: b[0])
    filled = 0
    perms = [(*L._permutation(name, size), weight, bid) for name, weight, bid in order]
    nxt = [0] * len(perms)
    while filled < size:
        for k, (offset, skip, weight, bid) in enumerate(perms):
            for _ in range(weight):
                j = nxt[k]
                c = (offset + j * skip) % size
                while table[c]:
                    j += 1
                    c = (offset + j * skip) % size
                table[c] = bid
                nxt[k] = j + 1
                filled += 1
                if filled == size:
                    return table
    return table


def test_maglev_is_the_table_it_always_was():
    """The same table, slot for slot, as the first implementation, on random backend
    sets (names, weights up to the table's size, ids) and prime sizes, and on the
    shapes deploys use (65537 slots, few or many backends)."""
    rng = random.Random(12)
    primes = [p for p in range(2, 6000) if L.is_prime(p)]
    cases = [([("10.0.1.1:8080", 1, 1), ("10.0.1.2:8080", 2, 2)], 65537),
             ([(f"10.0.{i // 250}.{i % 250}:80", 1 + i % 3, i + 1) for i in range(300)], 65537),
             ([("a", 1, 7)], 2), ([("a", 1, 1), ("b", 1, 2)], 2)]
    while len(cases) < 300:
        size = rng.choice(primes)
        n = rng.randint(1, min(60, size))
        ids = rng.sample(range(1, L.MAX_BACKENDS), n)
        bes = [(f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{j}:{rng.randint(1, 65535)}",
                rng.choice([1, 1, 2, 3, rng.randint(1, 50)]), ids[j]) for j in range(n)]
        if sum(w for _, w, _ in bes) <= size:
            cases.append((bes, size))
    for bes, size in cases:
        want = _maglev_before(bes, size)
        assert L.maglev_table(bes, size) == want, (size, bes)
        got = L.maglev_table(list(reversed(bes)), size)      # remembered: the same again
        assert got == want
        got[0] = -1                                          # a copy: the caller's to edit
        assert L.maglev_table(bes, size) == want


def _moved(before: list, after: list) -> float:
    return sum(1 for x, y in zip(before, after) if x != y) / len(before)


@pytest.mark.parametrize("n", [5, 10, 30])
def test_maglev_removal_disruption_is_about_1_over_n(n):
    """Removing one of N equal backends moves about 1/N of the flows (its own, which must
    move, plus Maglev's small rebuild noise), measured over the whole table: what a
    freshly built table with the smaller set gives, since the table has no history.
    A hash modulo N would move (N-1)/N of them; the bound fails it (checked below)."""
    size = 65537
    backends = [(f"10.0.{i // 250}.{i % 250 + 1}:80", 1, i + 1) for i in range(n)]
    full = L.maglev_table(backends, size)
    for gone in range(1, min(n, 6) + 1):
        t = L.maglev_table([b for b in backends if b[2] != gone], size)
        moved = _moved(full, t)
        others = sum(1 for x, y in zip(full, t) if x != y and x != gone) / size
        assert 1 / n - 0.005 <= moved <= 1 / n + 0.01, (gone, moved)
        assert others <= 0.01, (gone, others)         # the others' flows stay put
        # shares stay even among the survivors
        for _, _, bid in backends:
            if bid != gone:
                assert abs(t.count(bid) - size / (n - 1)) <= 1
    # a naive table (slot i -> backend i mod N) fails the bound
    naive = lambda m: [backends[i % m][2] for i in range(size)]
    assert _moved(naive(n), naive(n - 1)) > 1 / n + 0.01


def test_maglev_weight_change_and_addition_disturb_little():
    backends = [(f"10.0.0.{i}:80", 1 + i % 3, i) for i in range(1, 8)]
    t = L.maglev_table(backends, 4099)
    t2 = L.maglev_table(backends + [("10.0.0.99:80", 1, 99)], 4099)
    disturbed = sum(1 for i in range(4099) if t[i] != t2[i] and t2[i] != 99)
    assert disturbed < 0.05 * 4099
    total = sum(w for _, w, _ in backends)
    for _, w, bid in backends:
        assert abs(t.count(bid) - 4099 * w / total) <= w


def test_plan_table_is_the_fresh_table_after_any_history():
    """make_plan through adds, removes, drains and weight changes ends with the table of a
    fresh plan of the final config, VIP by VIP, by backend name (ids differ)."""
    walk = RandomWeb(random.Random(15))
    plan = L.LoadBalancer(config()).plan
    for op in [None] * 40 + ["remove", "drain", "remove"]:     # ends on the kept-slot kind
        cfg = walk.step(op)
        plan = L.make_plan(L.LoadBalancer(cfg).vips, plan)
    fresh = L.LoadBalancer(cfg).plan
    for k in fresh.vips:
        assert plan.table_names(k) == fresh.table_names(k), k


def test_plan_keeps_ids_and_flips_generation_only_on_change():
    lb = L.LoadBalancer(config())
    p0 = lb.plan
    p1 = L.make_plan(L.LoadBalancer(config(draining=("10.0.1.2:8080",))).vips, p0)
    web = (4, _packed(VIP4), 80, 6)
    assert p1.backend_id == p0.backend_id
    assert p1.gen[web] == 1 - p0.gen[web]
    other = (4, _packed(VIP4), 53, 17)
    assert p1.gen[other] == p0.gen[other] and p1.tables[other] is p0.tables[other]


def test_csum_update_matches_scapy():
    rng = random.Random(1)
    for _ in range(200):
        pkt = IP(src="192.0.2.1", dst="10.100.0.1") / TCP(sport=rng.randrange(1, 65536),
                                                         dport=80) / Raw(rng.randbytes(7))
        raw = bytearray(bytes(pkt))
        new = rng.randbytes(4)
        check = int.from_bytes(raw[36:38], "big")
        check = L.csum_update(check, bytes(raw[16:20]), new)
        raw[16:20], raw[36:38] = new, check.to_bytes(2, "big")
        again = IP(bytes(raw))
        del again[TCP].chksum
        assert IP(bytes(again))[TCP].chksum == check


def test_fast_builder_agrees_with_scapy():
    for v6 in (False, True):
        for proto in (6, 17):
            for vlan in (None, 9):
                src, dst = ("2001:db8::1", VIP6) if v6 else ("192.0.2.1", VIP4)
                data = build(v6, proto, src, dst, 1234, 80, vlan, b"abc", tcp_flags=0x12)
                assert_checksums(data)
                l3 = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst, id=1)
                l4 = TCP(sport=1234, dport=80, flags="SA", seq=1) if proto == 6 else \
                    UDP(sport=1234, dport=80)
                l2 = E / Dot1Q(vlan=vlan) if vlan is not None else E
                assert data == bytes(l2 / l3 / l4 / Raw(b"abc"))


# ---- kernel: forwarding and replies ------------------------------------------------------------

def shapes() -> dict[str, tuple[bytes, callable]]:
    """Client -> VIP packets of many shapes, each with a reply builder."""
    v4tcp = IP(src="192.0.2.10", dst=VIP4) / TCP(sport=40000, dport=80, flags="S") / Raw(b"hi")
    v4udp = IP(src="192.0.2.11", dst=VIP4) / UDP(sport=40001, dport=53) / Raw(b"q" * 13)
    v6tcp = IPv6(src="2001:db8:c::10", dst=VIP6) / TCP(sport=40002, dport=443, flags="PA") / \
        Raw(b"x" * 33)
    v6udp = IPv6(src="2001:db8:c::11", dst=VIP6) / UDP(sport=40003, dport=53) / Raw(b"d")
    out = {
        "ipv4-tcp": E / v4tcp,
        "ipv4-udp": E / v4udp,
        "ipv4-udp-no-checksum": E / IP(src="192.0.2.12", dst=VIP4) /
        UDP(sport=40004, dport=53, chksum=0) / Raw(b"z" * 5),
        "ipv4-options": E / IP(src="192.0.2.13", dst=VIP4, options=b"\x94\x04\x00\x00" * 2) /
        TCP(sport=40005, dport=80, flags="S"),
        "vlan": E / Dot1Q(vlan=100) / v4tcp,
        "qinq": E / Dot1AD(vlan=200) / Dot1Q(vlan=100) / v4udp,
        "ipv6-tcp": E / v6tcp,
        "ipv6-udp": E / v6udp,
        "ipv6-ext-headers": E / IPv6(src="2001:db8:c::12", dst=VIP6) / IPv6ExtHdrHopByHop() /
        IPv6ExtHdrDestOpt() / TCP(sport=40006, dport=443, flags="S"),
    }
    return {k: bytes(v) for k, v in out.items()}


def reply_for(request: bytes, forwarded: bytes) -> bytes:
    """The backend's answer to a forwarded packet, in the same L2/L3 shape."""
    pkt = Ether(forwarded)
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    ip.src, ip.dst = ip.dst, ip.src
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    l4.sport, l4.dport = l4.dport, l4.sport
    if TCP in pkt:
        pkt[TCP].flags = "SA"
    if IP in pkt:
        del pkt[IP].chksum
    if l4.chksum != 0 or IPv6 in pkt:
        del l4.chksum
    l4.remove_payload()
    l4.add_payload(Raw(b"answer"))
    if IP in pkt:
        del pkt[IP].len
    else:
        del pkt[IPv6].plen
    if UDP in pkt:
        del pkt[UDP].len
    return bytes(pkt)


@pytest.fixture
def one_cpu():
    """Pin the test to one CPU, so the per-CPU metadata the program left can be read."""
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    yield cpu
    os.sched_setaffinity(0, before)


@kernel
@pytest.mark.parametrize("shape", sorted(shapes()))
def test_forward_and_reply_translate_exactly(h, shape, one_cpu):
    data = shapes()[shape]
    result, out = h.run(data)
    assert h.nf.obj.maps["nfp_meta_map"][0][one_cpu]["backend"] == h.model.last_backend != 0
    assert result == 0 and out != data
    req, fwd = Ether(data), Ether(out)
    # only the destination moved: to the model's backend for this flow
    assert addr_port(fwd, src=True) == addr_port(req, src=True)
    backend = h.backend_of(out)
    bid = h.model.last_backend
    assert h.lb.plan.backends[bid][1].name == backend
    assert len(out) == len(data)
    if shape == "ipv4-udp-no-checksum":
        assert fwd[UDP].chksum == 0
    # the same flow again: same backend, same bytes
    assert h.run(data) == (0, out)
    # the reply: source back to the VIP
    reply = reply_for(data, out)
    result, back = h.run(reply)
    assert result == 0
    assert h.nf.obj.maps["nfp_meta_map"][0][one_cpu]["backend"] == bid
    assert addr_port(Ether(back), src=True) == addr_port(req, src=False)
    assert addr_port(Ether(back), src=False) == addr_port(req, src=True)
    assert_checksums(back)


@kernel
def test_non_vip_traffic_is_untouched(h):
    cases = [
        E / IP(src="192.0.2.1", dst="10.100.0.2") / TCP(dport=80),        # other address
        E / IP(src="192.0.2.1", dst=VIP4) / TCP(dport=81),                # other port
        E / IP(src="192.0.2.1", dst=VIP4) / UDP(dport=80),                # other proto
        E / IP(src="192.0.2.1", dst=VIP4) / ICMP(type=8),                 # ping the VIP
        E / IPv6(src="2001:db8::1", dst=VIP6) / TCP(dport=80),
        E / IP(src="10.0.1.1", dst="192.0.2.1") / TCP(sport=8080, dport=1),   # unknown reply
        E / Raw(b"\x08\x06" + bytes(28)),                                  # ARP-like
    ]
    for pkt in cases:
        data = bytes(pkt)
        if pkt.haslayer(Raw) and not pkt.haslayer(IP):
            data = bytes(E)[:12] + b"\x08\x06" + bytes(28)
        assert h.run(data) == (0, data)
    assert h.lb.stats(h.nf.maps)["global"]["passed"] == len(cases)


@kernel
def test_hostile_packets(h):
    frags = fragment(E / IP(src="192.0.2.1", dst=VIP4, id=9) / UDP(sport=5, dport=53) /
                     Raw(b"f" * 300), fragsize=64)
    other_frags = fragment(E / IP(src="192.0.2.1", dst="10.100.0.9", id=9) / UDP(dport=53) /
                           Raw(b"f" * 300), fragsize=64)
    v6frag = E / IPv6(src="2001:db8::1", dst=VIP6) / IPv6ExtHdrFragment(offset=8, m=0, nh=17) / \
        Raw(b"z" * 16)
    tcp = syn4(1234)
    cases = {
        "frag-first-to-vip": (bytes(frags[0]), Verdict.DROP),
        "frag-later-to-vip": (bytes(frags[1]), Verdict.DROP),
        "ipv6-frag-later-to-vip": (bytes(v6frag), Verdict.DROP),
        "frag-to-other": (bytes(other_frags[1]), 0),
        "truncated-tcp": (tcp[:14 + 20 + 10], Verdict.DROP),
        "truncated-ipv4": (tcp[:14 + 12], Verdict.DROP),
        "bad-ihl": (tcp[:14] + bytes([0x44]) + tcp[15:], Verdict.DROP),
        "three-tags": (bytes(E / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) /
                             IP(dst=VIP4) / TCP(dport=80)), Verdict.DROP),
    }
    for name, (data, want) in cases.items():
        result, out = h.run(data)
        assert result == want, name
        assert out == data, name
    g = h.lb.stats(h.nf.maps)["global"]
    assert g["fragment"] == 3
    assert g["malformed"] == (4 if h.nf.hook == "xdp" else 3)   # TC refuses truncated-ipv4


# ---- kernel: balancing ---------------------------------------------------------------------

@kernel
def test_spread_follows_weights(h):
    n = 6000
    counts: dict[str, int] = {}
    for i in range(n):
        _, out = h.run(syn4(10000 + i % 50000, src=f"198.18.{i // 250}.{i % 250 + 1}"),
                       check_sums=i < 50)
        b = h.backend_of(out)
        counts[b] = counts.get(b, 0) + 1
    web_key = (4, bytes([10, 100, 0, 1]), 80, 6)
    table = h.lb.plan.tables[web_key]
    total_w = sum(w for _, w in WEB)
    for name, w in WEB:
        bid = h.lb.plan.backend_id[(web_key, name)]
        share = table.count(bid) / len(table)
        assert abs(share - w / total_w) <= w / len(table)      # the table follows the weights
        # flows hash uniformly over slots: binomial(n, share), 5 sigma (p ~ 6e-7 each)
        sigma = math.sqrt(n * share * (1 - share))
        assert abs(counts.get(name, 0) - n * share) <= 5 * sigma, (name, counts)
    st = h.lb.stats(h.nf.maps)
    assert st["vips"][f"{VIP4}:80/tcp"]["new_flows"] == n
    assert sum(st["backends"][(f"{VIP4}:80/tcp", name)]["new_flows"] for name, _ in WEB) == n


@kernel
def test_same_flow_always_same_backend(h):
    flows = [syn4(20000 + i, src=f"198.19.0.{i + 1}") for i in range(100)]
    first = [h.backend_of(h.run(f)[1]) for f in flows]
    assert len(set(first)) == 3
    for _ in range(3):
        again = [h.backend_of(h.run(syn4(20000 + i, src=f"198.19.0.{i + 1}", flags="A"))[1])
                 for i in range(100)]
        assert again == first
    st = h.lb.stats(h.nf.maps)["vips"][f"{VIP4}:80/tcp"]
    assert (st["new_flows"], st["packets"]) == (100, 400)


def flows_by_backend(h, flows: list[bytes]) -> list[str]:
    return [h.backend_of(h.run(f, check_sums=False)[1]) for f in flows]


@kernel
def test_drain_keeps_existing_flows_and_takes_no_new_ones(h):
    drained = "10.0.1.2:8080"
    old = [syn4(30000 + i, src=f"198.20.{i // 200}.{i % 200 + 1}") for i in range(600)]
    before = flows_by_backend(h, old)
    assert before.count(drained) > 100
    h.update(config(draining=(drained,)))
    # established flows, the drained backend's included, stay where they are
    assert flows_by_backend(h, old) == before
    # new flows never go to the drained backend
    new = [syn4(31000 + i, src=f"198.21.{i // 200}.{i % 200 + 1}") for i in range(600)]
    assert drained not in flows_by_backend(h, new)
    st = h.lb.stats(h.nf.maps)["backends"][(f"{VIP4}:80/tcp", drained)]
    assert st["new_flows"] == before.count(drained)
    assert st["packets"] == 2 * before.count(drained)
    # back to active: it takes new flows again
    h.update(config())
    newer = [syn4(32000 + i, src=f"198.22.{i // 200}.{i % 200 + 1}") for i in range(600)]
    assert drained in flows_by_backend(h, newer)


@kernel
def test_removal_retires_the_backend_new_flows_move_established_stay(hook):
    removed = "10.0.1.3:8081"
    kept = [b for b in WEB if b[0] != removed]
    established = [syn4(40000 + i, src=f"198.23.{i // 200}.{i % 200 + 1}") for i in range(600)]
    fresh = [syn4(41000 + i, src=f"198.24.{i // 200}.{i % 200 + 1}") for i in range(600)]
    # a probe LB (same config) tells which backend each fresh flow hashed to before
    probe_nf, probe = loaded(hook)
    with probe_nf:
        fresh_before = flows_by_backend(probe, fresh)
    nf, h = loaded(hook)
    with nf:
        est_before = flows_by_backend(h, established)
        h.update(config(web=kept))
        gen = h.lb.plan.gen[(4, bytes([10, 100, 0, 1]), 80, 6)]
        assert nf.maps["active"][h.lb.plan.vip_index[(4, bytes([10, 100, 0, 1]), 80, 6)]] == gen
        fresh_after = flows_by_backend(h, fresh)
        est_after = flows_by_backend(h, established)
        assert removed in fresh_before and removed in est_before
        # new flows: the removed backend's move; of the others only Maglev's rebuild
        # noise (the table is the fresh table of the new set), well under 2%
        assert all(a != removed for a in fresh_after)
        stayed = [a == b for b, a in zip(fresh_before, fresh_after) if b != removed]
        assert stayed.count(False) <= 0.02 * len(stayed), stayed.count(False)
        # established flows all stay, the removed (retired) backend's included
        assert est_after == est_before
        assert removed not in flows_by_backend(h, fresh)       # and it gets no new ones
        # purge: the retired backend lets go; its flows are re-balanced and stay there
        assert h.lb.purge(nf.maps) == [removed]
        h.model.apply(h.lb.plan)
        est_purged = flows_by_backend(h, established)
        for b, a in zip(est_before, est_purged):
            assert a == b if b != removed else a != removed
        assert flows_by_backend(h, established) == est_purged


@kernel
def test_connection_table_beats_a_changed_table(h):
    """Weights change (a full Maglev rebuild): established flows stay, new ones follow the new
    table; the model predicts both."""
    old = [syn4(50000 + i, src=f"198.25.0.{i + 1}") for i in range(200)]
    before = flows_by_backend(h, old)
    h.update(config(web=[("10.0.1.1:8080", 5), ("10.0.1.2:8080", 1), ("10.0.1.3:8081", 1),
                         ("10.0.1.4:8080", 2)]))
    assert flows_by_backend(h, old) == before
    new = [syn4(51000 + i, src=f"198.26.{i // 200}.{i % 200 + 1}") for i in range(400)]
    after = flows_by_backend(h, new)
    assert after.count("10.0.1.1:8080") > after.count("10.0.1.2:8080")
    assert "10.0.1.4:8080" in after


@kernel
def test_all_draining_drops_new_flows_and_counts(h):
    old = syn4(60000, src="198.27.0.1")
    _, out = h.run(old)
    backend = h.backend_of(out)
    h.update(config(draining=tuple(a for a, _ in WEB)))
    assert h.run(syn4(60001, src="198.27.0.2")) == (Verdict.DROP, syn4(60001, src="198.27.0.2"))
    assert h.backend_of(h.run(old)[1]) == backend              # established: still served
    st = h.lb.stats(h.nf.maps)["vips"][f"{VIP4}:80/tcp"]
    assert (st["no_backend"], st["new_flows"], st["packets"]) == (1, 1, 2)


@kernel
def test_update_writes_the_inactive_generation_then_flips(h):
    key = (4, bytes([10, 100, 0, 1]), 80, 6)
    idx = h.lb.plan.vip_index[key]
    old_table = list(h.lb.plan.tables[key])
    assert h.nf.maps["active"][idx] == 0
    h.update(config(draining=("10.0.1.1:8080",)))
    assert h.nf.maps["active"][idx] == 1
    base = lambda gen: (idx * 2 + gen) * L.MAX_TABLE
    tables = h.nf.maps["tables"]
    sample = range(0, 4099, 37)
    assert [tables[base(0) + i] for i in sample] == [old_table[i] for i in sample]
    assert [tables[base(1) + i] for i in sample] == [h.lb.plan.tables[key][i] for i in sample]
    assert h.nf.maps["table_size"][idx * 2 + 1] == 4099


@kernel
def test_updates_are_atomic_per_packet(h):
    """Traffic runs in a thread while the web VIP's table rotates through three configs of
    different sizes and weights: every new flow gets the backend one of the tables gives it,
    never that of a mix (one generation's size with another's slots, a half-written table)."""
    cfgs = [config(),
            config(web=[("10.0.1.1:8080", 5), ("10.0.1.2:8080", 1), ("10.0.1.3:8081", 2)],
                   web_size=2053),
            config(web=[("10.0.1.1:8080", 1), ("10.0.1.2:8080", 4), ("10.0.1.3:8081", 1)],
                   web_size=1021)]
    choosers = [L.LBModel(L.LoadBalancer(c)) for c in cfgs]

    def choices(data: bytes) -> list[str]:
        p = P.parse_packet(data)
        return [m.plan.backends[m.choose(4, p.src, p.dst, p.sport, p.dport, 6)][1].name
                for m in choosers]

    seen: list[tuple[bytes, bytes]] = []
    stop = threading.Event()

    def traffic():
        i = 0
        while not stop.is_set() and i < 60000:
            data = syn4(1024 + i % 50000, src=f"198.31.{i // 50000}.7")
            seen.append((data, h.nf.program.test_run(data).data))
            i += 1

    t = threading.Thread(target=traffic)
    t.start()
    try:
        while len(seen) < 200:
            time.sleep(0.001)
        deadline = time.monotonic() + 60
        for k in range(1, 31):
            h.lb.update(h.nf.maps, cfgs[k % 3])
            mark = len(seen)                    # every table gets traffic, however busy
            while len(seen) < mark + 20 and t.is_alive() and time.monotonic() < deadline:
                time.sleep(0.001)               # the CPU the traffic thread shares is
    finally:
        stop.set()
        t.join()
    used = [0, 0, 0]
    for data, out in seen:
        got, want = h.backend_of(out), choices(data)
        assert got in want
        if want.count(got) == 1:
            used[want.index(got)] += 1
    assert all(used), used                      # the traffic really saw every table


@kernel
def test_the_hint_spares_other_traffic_the_reply_lookup_and_never_hides_a_backend(h):
    """The hint (one bit per hash of each backend address) is what lets other traffic
    skip the rconns lookup: written with every backend's bit, it is consulted (zeroed
    words with ready set would hide a backend's replies: shown below on purpose), and a
    hint nobody wrote (ready 0: maps older than the program) is not trusted."""
    hint = h.nf.maps["hint"]
    want_be = {L.hint_bit(b.addr) for _i, b in h.lb.plan.backends.values()}

    def bits(words):
        return {w * 64 + i for w, x in enumerate(words) for i in range(64) if x >> i & 1}

    got = hint[0]
    assert got["ready"] == 1 and bits(got["backend"]) == want_be
    result, out = h.run(syn4(4242))
    assert result == 0
    backend = h.backend_of(out)
    baddr, bport = backend.rsplit(":", 1)
    reply = bytes(E / IP(src=baddr, dst="192.0.2.10") /
                  TCP(sport=int(bport), dport=4242, flags="SA"))
    result, back = h.run(reply)
    assert result == 0 and IP(back[14:]).src == VIP4        # translated back
    zero = [0] * L.HINT_WORDS
    hint[0] = {"ready": 1, "pad": 0, "backend": zero}
    assert h.nf.run(reply).data == reply                      # trusted: not a backend's
    hint[0] = {"ready": 0, "pad": 0, "backend": zero}
    assert h.nf.run(reply).data == back                       # not trusted: looked up
    h.update(config(draining=("10.0.1.1:8080",)))             # any update writes it again
    assert bits(hint[0]["backend"]) == want_be and hint[0]["ready"] == 1


def _vip_table(maps) -> tuple[int, int, dict[int, tuple]]:
    """(generation, seed, slot -> key) of the VIP table half packets use."""
    word = maps["vip_gen"][0]
    gen, seed = word & 1, word >> 1
    slots = {}
    for i in range(L.VIP_SLOTS):
        e = maps["vips"][gen * L.VIP_SLOTS + i]
        k = e["key"]
        if k["family"]:
            n = 4 if k["family"] == L.FAMILY_V4 else 16
            addr = struct.pack("<4I", *k["addr"])[:n]
            port = int.from_bytes(k["port"].to_bytes(2, "little"), "big")
            slots[i] = ((k["family"], addr, port, k["proto"]), e["vip"])
    return gen, seed, slots


@kernel
def test_the_vip_table_holds_every_key_within_its_probes_and_switches_whole(h):
    """Every VIP and ADDR_ONLY marker of the plan is in the active half, within
    VIP_PROBES slots of lb_vip_slot with no empty slot before it (what the program
    walks), and nothing else is; an update writes the other half and switches with one
    word, so the half before is what packets saw until then (put back, the new VIP is
    gone again)."""
    maps = h.nf.maps
    gen, seed, slots = _vip_table(maps)
    want = h.lb._vip_keys(h.lb.plan)
    assert {k: v for k, v in slots.values()} == want and len(want) == 8
    for at, (k, _v) in slots.items():
        first = L.vip_slot(seed, k)
        walk = [(first + i) % L.VIP_SLOTS for i in range(L.VIP_PROBES)]
        assert at in walk and all(s in slots for s in walk[:walk.index(at)]), (k, at, walk)
    before = maps["vip_gen"][0]
    cfg = config()
    cfg["vips"].append({"vip": "10.100.0.7:8000", "proto": "tcp", "table_size": 101,
                        "backends": [{"addr": "10.0.7.1:80"}]})
    pkt = bytes(E / IP(src="192.0.2.10", dst="10.100.0.7") / TCP(sport=1111, dport=8000))
    h.update(cfg)
    gen2, _seed2, slots2 = _vip_table(maps)
    assert gen2 == gen ^ 1 and len(slots2) == 10
    result, out = h.run(pkt)
    assert result == 0 and h.backend_of(out) == "10.0.7.1:80"
    maps["vip_gen"][0] = before                                 # the old half, untouched
    assert h.nf.run(pkt).data == pkt
    maps["vip_gen"][0] = (before >> 1 ^ 1) << 1 | gen           # its seed is what finds keys
    assert h.nf.run(syn4(4242)).data == syn4(4242)


def test_vip_placement_keeps_every_key_within_the_probes():
    """place_vips over full tables (16 VIPs and their 16 markers, IPv4 and IPv6 mixed,
    and IPv6 VIPs whose addresses fold to the same word): every key within
    VIP_PROBES of its first slot, none displaced past an empty slot."""
    rng = random.Random(7)
    for trial in range(200):
        keys = set()
        while len(keys) < 32:
            fam = rng.choice((4, 6))
            if trial % 4 == 0:                                 # same xor of the words
                w = rng.getrandbits(32).to_bytes(4, "big")
                addr = w * 4 if rng.random() < 0.5 else (w + w + b"\0" * 8)
                fam = 6
            else:
                addr = rng.getrandbits(32 if fam == 4 else 128).to_bytes(
                    4 if fam == 4 else 16, "big")
            port, proto = rng.randint(1, 65535), rng.choice((6, 17))
            keys |= {(fam, addr, port, proto), (fam, addr, 0, proto)}
        keys = sorted(keys)[:32]
        seed, slots = L.place_vips(keys)
        assert sorted(slots.values()) == keys
        for at, k in slots.items():
            first = L.vip_slot(seed, k)
            walk = [(first + i) % L.VIP_SLOTS for i in range(L.VIP_PROBES)]
            assert at in walk and all(s in slots for s in walk[:walk.index(at)])
    with pytest.raises(ValueError, match="33 VIP keys"):
        L.place_vips([(4, i.to_bytes(4, "big"), 80, 6) for i in range(33)])


@kernel
def test_vip_and_backend_added_and_removed_at_runtime(h):
    cfg = config()
    cfg["vips"].append({"vip": "10.100.0.7:8000", "proto": "tcp", "table_size": 101,
                        "backends": [{"addr": "10.0.7.1:80"}]})
    pkt = bytes(E / IP(src="192.0.2.10", dst="10.100.0.7") / TCP(sport=1111, dport=8000))
    assert h.run(pkt) == (0, pkt)                             # not a VIP yet
    h.update(cfg)
    result, out = h.run(pkt)
    assert result == 0 and h.backend_of(out) == "10.0.7.1:80"
    h.update(config())
    assert h.run(bytes(E / IP(src="192.0.2.10", dst="10.100.0.7") /
                       TCP(sport=1112, dport=8000))) == \
        (0, bytes(E / IP(src="192.0.2.10", dst="10.100.0.7") / TCP(sport=1112, dport=8000)))


# ---- kernel: property test --------------------------------------------------------------------

CLIENTS4 = [f"198.51.{i}.{j}" for i in range(2) for j in range(1, 40)]
CLIENTS6 = [f"2001:db8:c::{i:x}" for i in range(1, 60)]
UPDATES = [
    config(draining=("10.0.1.2:8080",)),
    config(web=[("10.0.1.1:8080", 1), ("10.0.1.2:8080", 2)]),
    config(web=[("10.0.1.1:8080", 1), ("10.0.1.2:8080", 2), ("10.0.1.9:9000", 4)]),
    config(draining=tuple(a for a, _ in WEB)),
    config(web=[("10.0.1.3:8081", 3)], web_size=2053),
    config(),
]


_REPLIES: list[tuple] = []


@functools.lru_cache(maxsize=1)
def hostile_pool() -> tuple[bytes, ...]:
    """Shapes the fast builder does not make: IPv4 options, IPv6 extension headers,
    fragments to and past VIPs, ICMP, QinQ — a few client ports each (scapy, built once)."""
    out = []
    for sport in range(1030, 1036):
        out += [
            E / IP(src="198.51.0.1", dst=VIP4, options=b"\x94\x04\x00\x00") /
            TCP(sport=sport, dport=80, flags="A") / Raw(b"o"),
            E / IPv6(src="2001:db8:c::1", dst=VIP6) / IPv6ExtHdrHopByHop() /
            IPv6ExtHdrDestOpt() / UDP(sport=sport, dport=53),
            E / Dot1AD(vlan=3) / Dot1Q(vlan=4) / IP(src="198.51.0.2", dst=VIP4) /
            UDP(sport=sport, dport=53),
            E / IP(src="198.51.0.3", dst=VIP4) / ICMP(type=8, id=sport),
        ]
        out += fragment(E / IP(src="198.51.0.4", dst=VIP4, id=sport) /
                        UDP(sport=sport, dport=53) / Raw(b"f" * 100), fragsize=48)
        out += fragment(E / IP(src="198.51.0.4", dst="10.9.9.9", id=sport) /
                        UDP(sport=sport, dport=53) / Raw(b"f" * 100), fragsize=48)
        out.append(E / IPv6(src="2001:db8:c::2", dst=VIP6) /
                   IPv6ExtHdrFragment(offset=0, m=1, id=sport) / TCP(sport=sport, dport=443))
    return tuple(bytes(p) for p in out)


def random_packet(rng: random.Random, model: L.LBModel) -> tuple[bytes, bool]:
    """A packet of the property test, and whether it was built valid (checksums right)."""
    roll = rng.random()
    vlan = rng.choice([None, None, None, 7])
    payload = rng.randbytes(rng.randrange(0, 24))
    if roll < 0.2 and model.rconns:
        # a reply from a backend of a known flow (its reverse entry; the table only grows)
        if len(_REPLIES) != len(model.rconns):
            _REPLIES[:] = list(model.rconns)
        fam, baddr, caddr, bport, cport, proto = rng.choice(_REPLIES)
        return build(fam == 6, proto, str(ipaddress.ip_address(baddr)),
                     str(ipaddress.ip_address(caddr)), bport, cport, vlan, payload), True
    if roll < 0.85:
        v6 = rng.random() < 0.35
        proto = rng.choice([6, 17])
        dport = {(False, 6): 80, (False, 17): 53, (True, 6): 443, (True, 17): 53}[(v6, proto)]
        if rng.random() < 0.05:
            dport = rng.choice([81, 8080, 443 if not v6 else 80])
        src = rng.choice(CLIENTS6 if v6 else CLIENTS4)
        return build(v6, proto, src, VIP6 if v6 else VIP4, rng.choice(range(1024, 1064)),
                     dport, vlan, payload, tcp_flags=rng.randrange(256)), True
    if roll < 0.89:
        return rng.choice(hostile_pool()), True
    if roll < 0.93:
        return build(False, rng.choice([6, 17]), rng.choice(CLIENTS4), "10.1.2.3",
                     rng.randrange(1, 65536), rng.randrange(1, 65536), vlan, payload), True
    data = bytearray(build(False, 6, rng.choice(CLIENTS4), VIP4, 1025, 80, vlan, payload))
    if rng.random() < 0.5:
        return bytes(data[:rng.randrange(14, len(data))]), False
    data[rng.randrange(14, len(data))] = rng.randrange(256)
    return bytes(data), False


@kernel
def test_random_traffic_matches_the_model(h):
    rng = random.Random(0x1B1B)
    _REPLIES.clear()
    n, updates = 10_000, iter(UPDATES)
    for i in range(n):
        if i and i % 1500 == 0:
            cfg = next(updates, None)
            if cfg is not None:
                h.update(cfg)
        data, valid = random_packet(rng, h.model)
        h.run(data, check_sums=valid and i % 37 == 0)
    # the counters agree too
    st = h.lb.stats(h.nf.maps)
    for k, v in h.lb.plan.vips.items():
        name = v.name + "/" + ("tcp" if v.proto == 6 else "udp")
        assert st["vips"][name] == h.model.vip_stats[h.lb.plan.vip_index[k]], name
    for bid, (idx, b) in h.lb.plan.backends.items():
        v = h.lb.plan.by_index()[idx]
        name = v.name + "/" + ("tcp" if v.proto == 6 else "udp")
        assert st["backends"][(name, b.name)] == h.model.backend_stats[bid]
    want = dict(h.model.stats)
    if h.nf.hook == "tc":
        want["malformed"] = st["global"]["malformed"]       # TC refuses some truncated ones
    assert st["global"] == want
    assert len(h.model.conns) > 1000 and sum(s["no_backend"] for s in
                                             h.model.vip_stats.values()) > 0


# ---- fused mode: two instances in one program ---------------------------------------------------



AGREE_FLOWS = 20000


@kernel
def test_long_running_lb_agrees_with_a_fresh_one(hook):
    """An LB driven through 33 random changes of its web VIP (adds, removes, drains, weight
    and table-size changes, traffic in between; the last ones removals and a drain) and a freshly loaded LB with the final
    config have the same tables by backend name, and in the kernel send every one of
    20,000 new flows to the same backend: the table is a function of the backend set."""
    walk = RandomWeb(random.Random(1515))
    nf, long = loaded(hook)
    with nf:
        for step, op in enumerate([None] * 30 + ["remove", "drain", "remove"]):
            cfg = walk.step(op)
            long.lb.update(nf.maps, cfg)
            for i in range(50):                       # established flows on the way
                nf.run(syn4(1024 + i, src=f"198.40.{step}.{i + 1}"))
        fresh_nf, fresh = loaded(hook, cfg)
        with fresh_nf:
            for k in fresh.lb.plan.vips:
                assert long.lb.plan.table_names(k) == fresh.lb.plan.table_names(k), k
            web = (4, _packed(VIP4), 80, 6)
            assert long.lb.plan.backend_id != fresh.lb.plan.backend_id or \
                long.lb.plan.gen[web] != fresh.lb.plan.gen[web]   # really another history
            differ = 0
            for i in range(AGREE_FLOWS):
                data = syn4(1024 + i % 60000, src=f"198.41.{i // 60000}.{i % 251 + 1}")
                a = long.backend_of(nf.run(data).data)
                b = fresh.backend_of(fresh_nf.run(data).data)
                differ += a != b
            assert differ == 0, f"{differ} of {AGREE_FLOWS} new flows differ"


@kernel
def test_two_instances_fuse_into_one_program(compile_c):
    """Everything at file scope is per instance: two LBs inline into one program, each
    with its own maps, and the verifier takes it."""
    from nfpipe.loader.object import Object
    path = compile_c(two_instances(L.LoadBalancer({"vips": config()["vips"][:1]}).source),
                     name="lb_fused")
    with Object.load(path) as obj:
        names = set(obj.maps)
        for m in ("vips", "active", "table_size", "tables", "backends", "conns", "rconns"):
            assert {f"a__{m}", f"b__{m}"} <= names
        a, b = L.LoadBalancer(config()), L.LoadBalancer(
            {"vips": [{"vip": "10.0.1.2:8080", "table_size": 101,
                       "backends": [{"addr": "10.9.9.9:9999"}]}]})
        from nfpipe.catalog.base import NodeMaps
        a.populate(NodeMaps(obj.maps, "a"))
        b.populate(NodeMaps(obj.maps, "b"))
        # a sends the flow to 10.0.1.2:8080 for some client; b (a VIP there) rewrites again
        model_a = L.LBModel(a)
        for sport in range(1000, 1100):
            data = syn4(sport)
            _, out = model_a.process(data)
            if model_a.last_backend == a.plan.backend_id[((4, _packed(VIP4), 80, 6),
                                                          "10.0.1.2:8080")]:
                break
        res = obj.programs["fused"].test_run(data)
        assert res.retval == 2                              # XDP_PASS
        _, want = L.LBModel(b).process(out)
        assert res.data == want and P.parse_packet(res.data).dport == 9999


def test_ids_of_removed_backends_are_not_reused_by_the_same_update():
    lb = L.LoadBalancer(config())
    web = (4, _packed(VIP4), 80, 6)
    old = lb.plan.backend_id[(web, "10.0.1.3:8081")]
    swap = config(web=[("10.0.1.1:8080", 1), ("10.0.1.2:8080", 2), ("10.0.1.7:8080", 3)])
    p1 = L.make_plan(L.LoadBalancer(swap).vips, lb.plan)
    new = p1.backend_id[(web, "10.0.1.7:8080")]
    assert new != old and new not in lb.plan.backends
    p2 = L.make_plan(L.LoadBalancer(config()).vips, p1)     # freed by p1: reusable now
    assert p2.backend_id[(web, "10.0.1.3:8081")] == old


def test_control_plane_restored_in_another_process_continues_the_same_plan(h):
    """What a deployed LB keeps in its manifest (runtime_state, JSON) plus its maps rebuild
    exactly the plan of the process that made the changes; an update from the rebuilt
    plan then writes what an update from the original would (same ids, generations and
    tables), so `nfpipe backends` from a fresh CLI continues where the last one stopped."""
    import copy
    import json
    removed = "10.0.1.3:8081"
    kept = [b for b in WEB if b[0] != removed]
    steps = [config(draining=("10.0.1.1:8080",)), config(web=kept),
             config(web=kept + [("10.0.1.9:8080", 2)], web_size=4111)]
    for cfg in steps:
        h.update(cfg)
    state = json.loads(json.dumps(h.lb.runtime_state()))
    again = L.LoadBalancer(copy.deepcopy(steps[-1]))
    again.restore(state, h.nf.maps)
    for field in ("vips", "vip_index", "gen", "tables", "active_weights", "backend_id",
                  "backends", "retired"):
        assert getattr(again.plan, field) == getattr(h.lb.plan, field), field
    assert any(b.name == removed for _i, _x, b in again.plan.retired.values())
    nxt = config(web=kept + [("10.0.1.9:8080", 1)], web_size=4111)
    want = L.make_plan(L.LoadBalancer(nxt).vips, h.lb.plan)
    again.update(h.nf.maps, nxt)
    assert again.plan.tables == want.tables and again.plan.gen == want.gen
    assert again.plan.backend_id == want.backend_id
