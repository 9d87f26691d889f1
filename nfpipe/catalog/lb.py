"""lb: an L4 load balancer with weighted Maglev hashing, a connection table and DNAT.

Data plane: ``bpf/lb.c``.  Config (a pipeline node's ``config:``)::

    vips:
      - vip: "10.100.0.1:80"          # or "[2001:db8::1]:443"
        proto: tcp                    # tcp | udp
        table_size: 65537             # a prime, >= the sum of the weights (default 65537)
        backends:
          - {addr: "10.0.1.1:8080", weight: 2}            # state: active (default)
          - {addr: "10.0.1.2:8080", weight: 1, state: draining}
    hash_seed: 27746                  # optional: seed of the flow hash

``LoadBalancer.update(maps, config)`` changes VIPs and backends while traffic
flows; ``LBModel`` is the reference model the kernel tests compare against.
See docs/nf/lb.md.
"""
from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nfpipe.catalog import parse as P
from nfpipe.catalog.base import NetworkFunction, NodeMaps
from nfpipe.catalog.csum import csum_update
from nfpipe.catalog.lb_hash import (  # noqa: F401 (maglev_names, _permutation: the API)
    HINT_WORDS,
    M32,
    VIP_PROBES,
    VIP_SLOTS,
    _hint_set,
    _permutation,
    flow_hash,
    hint_bit,
    maglev_names,
    maglev_table,
    place_vips,
    vip_slot,
)
from nfpipe.errors import SpecError
from nfpipe.kernel import syscall as sc
from nfpipe.nfabi import Verdict

# Limits compiled into bpf/lb.c (its LB_MAX_* defaults).
MAX_VIPS = 16
MAX_TABLE = 65537
MAX_BACKENDS = 1024          # ids 1..1023; 0 means "no backend"
MAX_CONNS = 65536
DEFAULT_TABLE_SIZE = 65537
DEFAULT_SEED = 0x6C62
MAX_WEIGHT = 10000

FAMILY_V4, FAMILY_V6 = 4, 6
VIP_F_ADDR_ONLY = 1
BE_F_VALID, BE_F_DRAINING = 1, 2
# struct lb_vip_slot: key {addr[4], port, proto, family}, vip {index, flags}
_VIP_SLOT = struct.Struct("<4IHBBII")
VIP_SLOT_SIZE = _VIP_SLOT.size
STAT_NAMES = ("malformed", "fragment", "passed", "rewrite_failed")
PROTOS = {"tcp": P.IPPROTO_TCP, "udp": P.IPPROTO_UDP}
STATES = ("active", "draining")


# ---- config -------------------------------------------------------------------------------

def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    i = 3
    while i * i <= n:
        if n % i == 0:
            return False
        i += 2
    return True


def parse_endpoint(text: Any, where: str) -> tuple[int, bytes, int, str]:
    """'10.0.0.1:80' or '[2001:db8::1]:80' -> (family, address bytes, port, canonical text)."""
    if not isinstance(text, str):
        raise SpecError(f"lb: {where}: expected 'ADDRESS:PORT' (IPv6 as '[ADDRESS]:PORT'), "
                        f"got {text!r}")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            sep = ""                 # an unbracketed IPv6 address: ambiguous
    if not sep:
        raise SpecError(f"lb: {where}: expected 'ADDRESS:PORT' (IPv6 as '[ADDRESS]:PORT'), "
                        f"got {text!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SpecError(f"lb: {where}: {host!r} is not an IPv4 or IPv6 address "
                        f"(in {text!r})") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise SpecError(f"lb: {where}: port must be 1..65535, got {port!r} (in {text!r})")
    family = FAMILY_V4 if ip.version == 4 else FAMILY_V6
    canon = f"{ip}:{int(port)}" if family == FAMILY_V4 else f"[{ip}]:{int(port)}"
    return family, ip.packed, int(port), canon


@dataclass(frozen=True)
class BackendSpec:
    name: str                # canonical "addr:port"
    family: int
    addr: bytes
    port: int
    weight: int
    draining: bool


@dataclass(frozen=True)
class VipSpec:
    name: str
    family: int
    addr: bytes
    port: int
    proto: int
    table_size: int
    backends: tuple[BackendSpec, ...]

    @property
    def key(self) -> tuple[int, bytes, int, int]:
        return (self.family, self.addr, self.port, self.proto)

    @property
    def label(self) -> str:
        """How counters and the CLI name the VIP: "10.100.0.1:80/tcp"."""
        return self.name + "/" + ("tcp" if self.proto == 6 else "udp")


def _check_keys(d: Any, allowed: set[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise SpecError(f"lb: {where}: expected a mapping, got {d!r}")
    unknown = set(d) - allowed
    if unknown:
        raise SpecError(f"lb: {where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                        f"(known: {', '.join(sorted(allowed))})")


def _int(v: Any, where: str, lo: int, hi: int, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SpecError(f"lb: {where}: expected {what} ({lo}..{hi}), got {v!r}")
    return v


# Maglev's paper: a table of more than 100 slots per backend keeps every backend's
# share within about 1% of its weight; below that the shares drift apart.
SLOTS_PER_BACKEND = 100


def table_size_warning(v: VipSpec) -> str | None:
    """Why VIP *v*'s table is too small to share flows out evenly, if it is."""
    n = len(v.backends)
    if v.table_size >= SLOTS_PER_BACKEND * n:
        return None
    want = next_prime(SLOTS_PER_BACKEND * n)
    hint = (f"use table_size {want} or more" if want <= MAX_TABLE else
            f"the largest table ({MAX_TABLE}) holds under {SLOTS_PER_BACKEND} slots for each "
            f"of {n} backends: split them across VIPs")
    return (f"table_size {v.table_size} is under {SLOTS_PER_BACKEND} slots for each of its "
            f"{n} backends: Maglev then shares flows out unevenly (a backend may get "
            f"twice the share of another); {hint}")


def next_prime(n: int) -> int:
    while not is_prime(n):
        n += 1
    return n


def parse_vips(raw: Any) -> tuple[VipSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"lb: vips: expected a non-empty list of VIPs, got {raw!r}")
    if len(raw) > MAX_VIPS:
        raise SpecError(f"lb: vips: at most {MAX_VIPS} VIPs (LB_MAX_VIPS), got {len(raw)}")
    vips: list[VipSpec] = []
    seen: set = set()
    n_backends = 0
    for i, v in enumerate(raw):
        w = f"vips[{i}]"
        _check_keys(v, {"vip", "proto", "table_size", "backends"}, w)
        if "vip" not in v:
            raise SpecError(f"lb: {w}.vip: missing (expected 'ADDRESS:PORT')")
        family, addr, port, name = parse_endpoint(v["vip"], f"{w}.vip")
        proto_name = v.get("proto", "tcp")
        if proto_name not in PROTOS:
            raise SpecError(f"lb: {w}.proto: expected one of tcp, udp, got {proto_name!r}")
        proto = PROTOS[proto_name]
        size = v.get("table_size", DEFAULT_TABLE_SIZE)
        _int(size, f"{w}.table_size", 2, MAX_TABLE, "a prime table size")
        if not is_prime(size):
            raise SpecError(f"lb: {w}.table_size: {size} is not a prime (Maglev needs a prime "
                            f"table size, e.g. 65537, 16381, 4099, 1021)")
        key = (family, addr, port, proto)
        if key in seen:
            raise SpecError(f"lb: {w}.vip: duplicate VIP {name}/{proto_name}")
        seen.add(key)
        braw = v.get("backends")
        if not isinstance(braw, list) or not braw:
            raise SpecError(f"lb: {w}.backends: expected a non-empty list of backends, "
                            f"got {braw!r}")
        backends: list[BackendSpec] = []
        names: set[str] = set()
        for j, b in enumerate(braw):
            bw = f"{w}.backends[{j}]"
            _check_keys(b, {"addr", "weight", "state"}, bw)
            if "addr" not in b:
                raise SpecError(f"lb: {bw}.addr: missing (expected 'ADDRESS:PORT')")
            bfam, baddr, bport, bname = parse_endpoint(b["addr"], f"{bw}.addr")
            if bfam != family:
                raise SpecError(f"lb: {bw}.addr: {bname} is IPv{bfam} but the VIP {name} is "
                                f"IPv{family} (the LB rewrites addresses, it does not "
                                f"translate between families)")
            weight = _int(b.get("weight", 1), f"{bw}.weight", 1, MAX_WEIGHT,
                          "a positive integer weight")
            state = b.get("state", "active")
            if state not in STATES:
                raise SpecError(f"lb: {bw}.state: expected active or draining, got {state!r}")
            if bname in names:
                raise SpecError(f"lb: {bw}.addr: duplicate backend {bname} in VIP {name}")
            names.add(bname)
            backends.append(BackendSpec(bname, bfam, baddr, bport, weight, state == "draining"))
        total = sum(b.weight for b in backends)
        if total > size:
            raise SpecError(f"lb: {w}.table_size: {size} slots cannot share out weights that "
                            f"sum to {total}; use a larger prime table_size")
        n_backends += len(backends)
        vips.append(VipSpec(name, family, addr, port, proto, size, tuple(backends)))
    if n_backends > MAX_BACKENDS - 1:
        raise SpecError(f"lb: vips: at most {MAX_BACKENDS - 1} backends in all "
                        f"(LB_MAX_BACKENDS), got {n_backends}")
    return tuple(vips)


# ---- plan: what the maps hold ---------------------------------------------------------------

@dataclass
class Plan:
    """The control plane's view of the maps: indices, ids, tables and generations."""

    vips: dict[tuple, VipSpec] = field(default_factory=dict)          # key -> spec
    vip_index: dict[tuple, int] = field(default_factory=dict)
    gen: dict[tuple, int] = field(default_factory=dict)               # active generation
    tables: dict[tuple, list[int]] = field(default_factory=dict)      # active table
    active_weights: dict[tuple, dict[int, int]] = field(default_factory=dict)
    backend_id: dict[tuple, int] = field(default_factory=dict)        # (vip key, name) -> id
    backends: dict[int, tuple[int, BackendSpec]] = field(default_factory=dict)  # id -> (vip, b)
    # Backends removed from the config while flows may still use them: kept in the
    # backends map as draining (no table names them) so established connections go
    # on; (vip key, name) -> (id, vip index, backend).  purge() lets them go.
    retired: dict[tuple, tuple[int, int, BackendSpec]] = field(default_factory=dict)

    def table_names(self, k: tuple) -> list[str]:
        """VIP *k*'s active table as backend names: equal on every LB with its backend set
        and weights (ids are per LB, names are not)."""
        names = {bid: b.name for bid, (_idx, b) in self.backends.items()}
        return maglev_names(self.tables[k], names)

    def by_index(self) -> dict[int, VipSpec]:
        return {self.vip_index[k]: v for k, v in self.vips.items()}

    def vip_addrs(self) -> set[tuple[int, bytes, int]]:
        return {(v.family, v.addr, v.proto) for v in self.vips.values()}


def make_plan(vips: tuple[VipSpec, ...], prev: Plan | None) -> Plan:
    prev = prev or Plan()
    plan = Plan()
    # New VIPs and backends get indices/ids that nothing in the previous plan holds, so
    # that the maps of a VIP or backend removed by this same update, still live until
    # the update completes, are never overwritten under its packets; ids freed by this
    # update become free for the next one (last resort: reuse them now).
    used_idx = {prev.vip_index[v.key] for v in vips if v.key in prev.vip_index}
    old_idx = set(prev.vip_index.values())
    free_idx = iter(sorted((i for i in range(MAX_VIPS) if i not in used_idx),
                           key=lambda i: (i in old_idx, i)))
    # A backend removed now retires (its flows go on); one that comes back un-retires.
    wanted = {(v.key, b.name) for v in vips for b in v.backends}
    plan.retired = {key: r for key, r in prev.retired.items() if key not in wanted}
    for key, bid in prev.backend_id.items():
        if key not in wanted and key[0] in {v.key for v in vips}:
            idx, b = prev.backends[bid]
            plan.retired[key] = (bid, idx, b)
    back = {key: r[0] for key, r in prev.retired.items() if key in wanted}
    used_ids = {prev.backend_id[(v.key, b.name)] for v in vips for b in v.backends
                if (v.key, b.name) in prev.backend_id} | set(back.values()) | \
        {r[0] for r in plan.retired.values()}
    free_ids = iter(sorted((i for i in range(1, MAX_BACKENDS) if i not in used_ids),
                           key=lambda i: (i in prev.backends, i)))
    for v in vips:
        k = v.key
        plan.vips[k] = v
        idx = prev.vip_index[k] if k in prev.vip_index else next(free_idx)
        plan.vip_index[k] = idx
        for b in v.backends:
            bid = prev.backend_id.get((k, b.name)) or back.get((k, b.name))
            if bid is None:
                bid = next(free_ids)
            plan.backend_id[(k, b.name)] = bid
            plan.backends[bid] = (idx, b)
        active = {plan.backend_id[(k, b.name)]: b.weight for b in v.backends if not b.draining}
        entries = [(b.name, b.weight, plan.backend_id[(k, b.name)])
                   for b in v.backends if not b.draining]
        plan.active_weights[k] = active
        old = prev.tables.get(k)
        if old is not None and len(old) == v.table_size and active == prev.active_weights[k]:
            plan.tables[k] = old                          # unchanged: no new generation
            plan.gen[k] = prev.gen[k]
            continue
        # the table of the new set itself, whatever the previous one was: every LB
        # with this set has this table (maglev_table is a function of names, weights
        # and size; ids only label the slots)
        plan.tables[k] = maglev_table(entries, v.table_size)
        plan.gen[k] = 1 - prev.gen[k] if k in prev.gen else 0
    return plan


# ---- the NF ---------------------------------------------------------------------------------

def _key_json(k: tuple) -> list:
    return [k[0], k[1].hex(), k[2], k[3]]


def _key_from_json(v: list) -> tuple:
    return (v[0], bytes.fromhex(v[1]), v[2], v[3])


def _backend_json(b: BackendSpec) -> dict:
    return {"name": b.name, "family": b.family, "addr": b.addr.hex(), "port": b.port,
            "weight": b.weight, "draining": b.draining}


def _backend_from_json(d: dict) -> BackendSpec:
    return BackendSpec(d["name"], d["family"], bytes.fromhex(d["addr"]), d["port"],
                       d["weight"], d["draining"])


def _addr16(addr: bytes) -> list[int]:
    """Address bytes -> the __be32[4] words as BTF-decoded ints (little-endian host)."""
    return list(struct.unpack("<4I", addr.ljust(16, b"\0")))


def _be16(port: int) -> int:
    """A port number -> its __be16 field value as the codec sees it (host order)."""
    return int.from_bytes(port.to_bytes(2, "big"), "little")


class LoadBalancer(NetworkFunction):
    """L4 load balancer: VIPs -> weighted Maglev over backends, conntrack, DNAT."""

    kind = "lb"
    source_name = "lb.c"
    ports = ("out",)
    config_keys = frozenset({"vips", "hash_seed"})

    def __init__(self, config: Mapping[str, Any] | None = None):
        super().__init__(config)
        if "vips" not in self.config:
            raise SpecError("lb: vips: missing (expected a list of VIPs with their backends)")
        self.vips = parse_vips(self.config["vips"])
        self.hash_seed = _int(self.config.get("hash_seed", DEFAULT_SEED), "hash_seed", 0, M32,
                              "an unsigned 32-bit integer")
        self.plan = make_plan(self.vips, None)
        for i, v in enumerate(self.vips):
            why = table_size_warning(v)
            if why:
                self.warnings.append((("vips", i, "table_size"), why))

    def constants(self) -> dict[str, Any]:
        return {"hash_seed": self.hash_seed}

    def reply_sources(self):
        """Each VIP: a backend's reply leaves with it as its source."""
        return [(("vips", i, "vip"), v.name, ipaddress.ip_address(v.addr))
                for i, v in enumerate(self.vips)]

    # -- writing the maps --

    def _write_backends(self, maps: NodeMaps, plan: Plan, only_changed_from: Plan | None):
        be_map = maps["backends"]
        for bid, (idx, b) in sorted(plan.backends.items()):
            if only_changed_from is not None and only_changed_from.backends.get(bid) == (idx, b):
                continue
            be_map[bid] = {"addr": _addr16(b.addr), "port": _be16(b.port),
                           "family": b.family,
                           "flags": BE_F_VALID | (BE_F_DRAINING if b.draining else 0),
                           "vip": idx}

    def _write_table(self, maps: NodeMaps, idx: int, gen: int, table: list[int]) -> None:
        base, n = (idx * 2 + gen) * MAX_TABLE, len(table)
        sc.map_update_batch_packed(maps["tables"].fd, struct.pack(f"<{n}I", *range(base, base + n)),
                                   struct.pack(f"<{n}I", *table), n)
        maps["table_size"][idx * 2 + gen] = len(table)

    def _vip_keys(self, plan: Plan) -> dict[tuple, dict]:
        """vips map contents: each VIP, plus an ADDR_ONLY marker per (addr, proto)."""
        out: dict[tuple, dict] = {}
        for k, v in plan.vips.items():
            out[(v.family, v.addr, v.port, v.proto)] = {"index": plan.vip_index[k], "flags": 0}
            out.setdefault((v.family, v.addr, 0, v.proto),
                           {"index": plan.vip_index[k], "flags": VIP_F_ADDR_ONLY})
        return out

    def populate(self, maps: NodeMaps) -> None:
        self._apply(maps, self.plan, None)

    def _apply(self, maps: NodeMaps, plan: Plan, prev: Plan | None) -> None:
        # 0. the hint: every address the plan makes a backend's (retired ones too: their
        #    replies go on) gets its bit before anything names it; bits are only added
        #    (a stale one costs a lookup, a missing one would lose traffic)
        self._write_hint(maps, plan)
        # 1. backends first: a table may only name ids that exist.
        self._write_backends(maps, plan, prev)
        for bid in plan.backends:
            if prev is None or bid not in prev.backends:       # a new id starts from zero
                maps["backend_stats"][bid] = dict.fromkeys(
                    ("packets", "bytes", "new_flows", "reply_packets", "reply_bytes"), 0)
        # 2. per VIP: the inactive generation's table and size, then the active word.
        for k, _v in plan.vips.items():
            idx, gen = plan.vip_index[k], plan.gen[k]
            if prev is not None and k in prev.vips and prev.gen[k] == gen:
                continue                                 # table unchanged
            self._write_table(maps, idx, gen, plan.tables[k])
            if prev is None or k not in prev.vips:
                zero = {n: 0 for n in ("packets", "bytes", "new_flows", "no_backend",
                                       "reply_packets", "reply_bytes")}
                maps["vip_stats"][idx] = zero
            maps["active"][idx] = gen                    # the switch: one word
        # 3. VIP keys: the inactive half of the VIP table written whole (their tables
        #    are ready), then switched to in one word.
        new_keys = self._vip_keys(plan)
        if prev is None or new_keys != self._vip_keys(prev) or maps["vip_gen"][0] == 0:
            self._write_vips(maps, new_keys)
        # 4. removed backends: no table names them any more.  One still serving flows of
        #    a VIP that stays is retired (draining: its established connections go on);
        #    the others, and retired ones purged, are cleared.
        if prev is not None:
            retired_ids = {r[0] for r in plan.retired.values()}
            for _key, (bid, idx, b) in plan.retired.items():
                if bid in prev.backends or bid not in {r[0] for r in prev.retired.values()}:
                    maps["backends"][bid] = {"addr": _addr16(b.addr), "port": _be16(b.port),
                                             "family": b.family,
                                             "flags": BE_F_VALID | BE_F_DRAINING, "vip": idx}
            gone = (set(prev.backends) | {r[0] for r in prev.retired.values()}) - \
                set(plan.backends) - retired_ids
            for bid in gone:
                maps["backends"][bid] = {"addr": [0] * 4, "port": 0, "family": 0, "flags": 0,
                                         "vip": 0}

    @staticmethod
    def _write_vips(maps: NodeMaps, keys: dict[tuple, dict]) -> None:
        """The VIP table's inactive half: every key placed (``place_vips``) with a seed
        of its own, every other slot emptied; then ``vip_gen`` (seed << 1 | generation)
        switches packets to it."""
        if maps["vips"].value_size != VIP_SLOT_SIZE:
            raise RuntimeError(f"lb: vips holds {maps['vips'].value_size}-byte slots, this "
                               f"control plane writes {VIP_SLOT_SIZE} (lb.c and lb.py disagree)")
        word = maps["vip_gen"][0]
        gen = (word & 1) ^ 1
        seed, slots = place_vips(sorted(keys), start=(word >> 1) + 1)
        vals = bytearray(VIP_SLOT_SIZE * VIP_SLOTS)           # family 0: empty
        for i, k in slots.items():
            family, addr, port, proto = k
            _VIP_SLOT.pack_into(vals, i * VIP_SLOT_SIZE, *_addr16(addr), _be16(port), proto,
                                family, keys[k]["index"], keys[k]["flags"])
        base = gen * VIP_SLOTS
        sc.map_update_batch_packed(maps["vips"].fd,
                                   struct.pack(f"<{VIP_SLOTS}I", *range(base, base + VIP_SLOTS)),
                                   bytes(vals), VIP_SLOTS)
        maps["vip_gen"][0] = seed << 1 | gen

    @staticmethod
    def _write_hint(maps: NodeMaps, plan: Plan) -> None:
        old = maps["hint"][0]
        be = _hint_set(old["backend"], [b.addr for _idx, b in plan.backends.values()] +
                       [b.addr for _bid, _idx, b in plan.retired.values()])
        if old["ready"] != 1 or be != old["backend"]:
            maps["hint"][0] = {"ready": 1, "pad": 0, "backend": be}

    runtime_keys = frozenset({"vips"})
    map_keys = runtime_keys

    def runtime_state(self) -> dict:
        """The control plane's ids and generations (tables are read back from the maps)."""
        p = self.plan
        return {
            "vips": [{"key": _key_json(k), "index": p.vip_index[k], "gen": p.gen[k],
                      "weights": sorted([bid, w] for bid, w in p.active_weights[k].items())}
                     for k in p.vips],
            "backends": [{"vip": _key_json(k), "name": name, "id": bid}
                         for (k, name), bid in sorted(p.backend_id.items(),
                                                      key=lambda kv: kv[1])],
            "retired": [{"vip": _key_json(k), "id": bid, "index": idx,
                         "backend": _backend_json(b)}
                        for (k, _name), (bid, idx, b) in sorted(p.retired.items(),
                                                                key=lambda kv: kv[1][0])],
        }

    def restore(self, state: Any, maps: NodeMaps) -> None:
        """Rebuild the plan of a running node from its state and its maps' tables."""
        if not state:
            return                       # never updated: populate() wrote make_plan(vips)
        by_key = {v.key: v for v in self.vips}
        p = Plan()
        for v in state["vips"]:
            k = _key_from_json(v["key"])
            if k not in by_key:
                raise SpecError(f"lb node '{maps.instance}': its state names VIP {v['key']} "
                                f"that its config does not have")
            idx, gen = v["index"], v["gen"]
            p.vips[k], p.vip_index[k], p.gen[k] = by_key[k], idx, gen
            p.active_weights[k] = {bid: w for bid, w in v["weights"]}
            size = maps["table_size"][idx * 2 + gen]
            base = (idx * 2 + gen) * MAX_TABLE
            table: list[int] = []
            cursor = struct.pack("<I", base - 1) if base else None
            while len(table) < size:
                _k, vals, cursor, done = sc.map_lookup_batch(
                    maps["tables"].fd, 4, 4, min(8192, size - len(table)), cursor)
                table += [struct.unpack("<I", x)[0] for x in vals]
                if done:
                    break
            p.tables[k] = table[:size]
        for b in state["backends"]:
            k = _key_from_json(b["vip"])
            spec = next(x for x in by_key[k].backends if x.name == b["name"])
            p.backend_id[(k, b["name"])] = b["id"]
            p.backends[b["id"]] = (p.vip_index[k], spec)
        for r in state["retired"]:
            b = _backend_from_json(r["backend"])
            p.retired[(_key_from_json(r["vip"]), b.name)] = (r["id"], r["index"], b)
        self.plan = p

    def update(self, maps: NodeMaps, config: Mapping[str, Any]) -> None:
        """Change VIPs/backends of a loaded node while traffic flows.

        Each VIP's new table goes into its inactive generation and is switched on
        by one word; established flows stay on their backends through the
        connection table.  Draining backends keep their flows; so do backends removed
        from the config: they retire (get no new flows, keep their established ones)
        until ``purge`` — a removed backend is taken out of service, its connections
        are not cut."""
        new = LoadBalancer(config)
        if new.hash_seed != self.hash_seed:
            raise SpecError("lb: hash_seed: a load-time constant; it cannot change at runtime "
                            f"({self.hash_seed} -> {new.hash_seed}); reload the node")
        plan = make_plan(new.vips, self.plan)
        self._apply(maps, plan, self.plan)
        self.config, self.vips, self.plan = new.config, new.vips, plan

    def purge(self, maps: NodeMaps) -> list[str]:
        """Let retired backends go: their remaining flows are re-balanced on their next
        packet.  Returns the names purged."""
        plan = make_plan(self.vips, self.plan)
        names = [b.name for (_bid, _idx, b) in plan.retired.values()]
        plan.retired = {}
        self._apply(maps, plan, self.plan)
        self.plan = plan
        return names

    # -- reading counters --

    def stats(self, maps: NodeMaps) -> dict[str, Any]:
        """Counters summed over CPUs: {"global": {...}, "vips": {name: {...}},
        "backends": {(vip name, backend name): {...}}}."""
        def total(values: list[dict]) -> dict:
            out: dict[str, int] = {}
            for v in values:
                for n, x in v.items():
                    out[n] = out.get(n, 0) + x
            return out
        g = {name: sum(maps["stats"][i]) for i, name in enumerate(STAT_NAMES)}
        vips = {v.label: total(maps["vip_stats"][self.plan.vip_index[k]])
                for k, v in self.plan.vips.items()}
        bes = {}
        for bid, (idx, b) in self.plan.backends.items():
            v = self.plan.by_index()[idx]
            bes[(v.label, b.name)] = \
                total(maps["backend_stats"][bid])
        return {"global": g, "vips": vips, "backends": bes}


# ---- reference model ------------------------------------------------------------------------

class LBModel:
    """What lb.c does to each packet, with its own connection tables and counters.

    ``process(data) -> (result, output bytes)`` where result is the port (0) or
    a Verdict.  Call ``apply(plan)`` after every ``LoadBalancer.update``."""

    def __init__(self, lb: LoadBalancer):
        self.seed = lb.hash_seed
        self.conns: dict[tuple, tuple[int, int]] = {}
        self.rconns: dict[tuple, tuple[bytes, int, int, int]] = {}
        self.stats = {n: 0 for n in STAT_NAMES}
        self.vip_stats: dict[int, dict[str, int]] = {}
        self.backend_stats: dict[int, dict[str, int]] = {}
        self.last_backend = 0
        self.apply(lb.plan)

    def apply(self, plan: Plan) -> None:
        prev = getattr(self, "plan", None)
        self.plan = plan
        self.index = {k: plan.vip_index[k] for k in plan.vips}
        self.tables = {plan.vip_index[k]: list(t) for k, t in plan.tables.items()}
        live = {bid: (idx, b) for bid, (idx, b) in plan.backends.items()}
        live.update({bid: (idx, b) for (bid, idx, b) in plan.retired.values()})
        self.backend_vip = {bid: (idx, b.family, b.addr, b.port)
                            for bid, (idx, b) in live.items()}
        self.addrs = plan.vip_addrs()
        for k, idx in self.index.items():
            if prev is None or k not in prev.vips:
                self.vip_stats[idx] = dict.fromkeys(("packets", "bytes", "new_flows",
                                                     "no_backend", "reply_packets",
                                                     "reply_bytes"), 0)
        for bid in plan.backends:
            if prev is None or bid not in prev.backends:
                self.backend_stats[bid] = dict.fromkeys(("packets", "bytes", "new_flows",
                                                         "reply_packets", "reply_bytes"), 0)

    def choose(self, family: int, saddr: bytes, daddr: bytes, sport: int, dport: int,
               proto: int) -> int:
        """The backend id the lookup table gives a new flow to a VIP (0: none)."""
        idx = self.index[(family, daddr, dport, proto)]
        table = self.tables[idx]
        return table[flow_hash(self.seed, family, saddr, daddr, sport, dport, proto)
                     % len(table)]

    def process(self, data: bytes) -> tuple[int, bytes]:
        self.last_backend = 0
        p = P.parse_packet(data)
        if p.malformed:
            self.stats["malformed"] += 1
            return Verdict.DROP, data
        if p.l3_proto not in (P.ETH_P_IP, P.ETH_P_IPV6) or \
                p.l4_proto not in (P.IPPROTO_TCP, P.IPPROTO_UDP):
            self.stats["passed"] += 1
            return 0, data
        family = FAMILY_V4 if p.is_ipv4 else FAMILY_V6
        dst = p.dst
        if p.flags & P.F_FRAG:
            if (family, dst, p.l4_proto) in self.addrs:
                self.stats["fragment"] += 1
                return Verdict.DROP, data
            self.stats["passed"] += 1
            return 0, data
        vkey = (family, dst, p.dport, p.l4_proto)
        if vkey in self.index:
            return self._forward(data, p, family, self.index[vkey])
        return self._reply(data, p, family)

    def _rewrite(self, data: bytes, p: P.Parsed, family: int, is_src: bool,
                 addr: bytes, port: int) -> bytes:
        out = bytearray(data)
        alen = 4 if family == FAMILY_V4 else 16
        if family == FAMILY_V4:
            aoff = p.l3_off + (12 if is_src else 16)
        else:
            aoff = p.l3_off + (8 if is_src else 24)
        poff = p.l4_off + (0 if is_src else 2)
        coff = p.l4_off + (16 if p.l4_proto == P.IPPROTO_TCP else 6)
        udp = p.l4_proto == P.IPPROTO_UDP
        old_addr = bytes(out[aoff:aoff + alen])
        old_port = bytes(out[poff:poff + 2])
        check = int.from_bytes(out[coff:coff + 2], "big")
        for i in range(0, alen, 4):                     # one helper call per 32-bit word
            check = csum_update(check, old_addr[i:i + 4], addr[i:i + 4], udp)
        if family == FAMILY_V4:
            ipc = int.from_bytes(out[p.l3_off + 10:p.l3_off + 12], "big")
            out[p.l3_off + 10:p.l3_off + 12] = csum_update(ipc, old_addr, addr).to_bytes(2, "big")
        check = csum_update(check, old_port, port.to_bytes(2, "big"), udp)
        out[coff:coff + 2] = check.to_bytes(2, "big")
        out[aoff:aoff + alen] = addr
        out[poff:poff + 2] = port.to_bytes(2, "big")
        return bytes(out)

    def _forward(self, data: bytes, p: P.Parsed, family: int, idx: int) -> tuple[int, bytes]:
        src, dst = p.src, p.dst
        flow = (family, src, dst, p.sport, p.dport, p.l4_proto)
        vs = self.vip_stats[idx]
        bid = 0
        c = self.conns.get(flow)
        if c is not None and c[1] == idx:
            be = self.backend_vip.get(c[0])
            if be is not None and be[0] == idx:
                bid = c[0]
        is_new = bid == 0
        if is_new:
            table = self.tables[idx]
            bid = table[flow_hash(self.seed, family, src, dst, p.sport, p.dport, p.l4_proto)
                        % len(table)]
            be = self.backend_vip.get(bid)
            if not bid or be is None or be[0] != idx:
                vs["no_backend"] += 1
                return Verdict.DROP, data
            _, _, baddr, bport = be
            self.conns[flow] = (bid, idx)
            self.rconns[(family, baddr, src, bport, p.sport, p.l4_proto)] = (dst, p.dport, bid,
                                                                             idx)
        _, _, baddr, bport = self.backend_vip[bid]
        self.last_backend = bid
        out = self._rewrite(data, p, family, False, baddr, bport)
        vs["packets"] += 1
        vs["bytes"] += len(data)
        vs["new_flows"] += is_new
        bs = self.backend_stats[bid]
        bs["packets"] += 1
        bs["bytes"] += len(data)
        bs["new_flows"] += is_new
        return 0, out

    def _reply(self, data: bytes, p: P.Parsed, family: int) -> tuple[int, bytes]:
        r = self.rconns.get((family, p.src, p.dst, p.sport, p.dport, p.l4_proto))
        if r is None:
            self.stats["passed"] += 1
            return 0, data
        vaddr, vport, bid, idx = r
        self.last_backend = bid
        out = self._rewrite(data, p, family, True, vaddr, vport)
        if idx in self.vip_stats:
            self.vip_stats[idx]["reply_packets"] += 1
            self.vip_stats[idx]["reply_bytes"] += len(data)
        if bid in self.backend_stats:
            self.backend_stats[bid]["reply_packets"] += 1
            self.backend_stats[bid]["reply_bytes"] += len(data)
        return 0, out


def bench_cases() -> dict:
    """`nfpipe bench`: an established flow to a VIP.  The one backend has the VIP's own
    address and port, so the rewritten packet is the packet again and every in-kernel
    repeat takes the full path (connection lookup and rewrite)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    cfg = {"vips": [{"vip": "10.100.0.1:80", "proto": "tcp", "table_size": 65537,
                     "backends": [{"addr": "10.100.0.1:80", "weight": 1}]}]}
    packet = bytes(Ether() / IP(src="192.0.2.10", dst="10.100.0.1") /
                   TCP(sport=40000, dport=80, flags="A") / (b"x" * 64))
    cases = {"lb-established": (lambda: LoadBalancer(cfg), packet, True)}
    for n in (10, 1000):
        bcfg, bpacket = _many_backends(n)
        cases[f"lb-{n}-backends"] = (lambda c=bcfg: _Noted(c), bpacket, True)
    return cases


def _many_backends(n: int) -> tuple[dict, bytes]:
    """A VIP over *n* backends, and a flow the Maglev table gives to the one backend
    that is the VIP's own address (so the rewritten packet is the packet again and
    every in-kernel repeat takes the whole path)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    backends = [{"addr": "10.100.0.1:80"}] + [
        {"addr": f"10.{1 + i // 250}.{i % 250}.1:8080"} for i in range(n - 1)]
    cfg = {"vips": [{"vip": "10.100.0.1:80", "proto": "tcp", "table_size": 65537,
                     "backends": backends}]}
    model = LBModel(LoadBalancer(cfg))
    own = next(bid for bid, (_idx, b) in model.plan.backends.items()
               if b.name == "10.100.0.1:80")
    src, vip = ipaddress.ip_address("192.0.2.10").packed, ipaddress.ip_address("10.100.0.1").packed
    sport = next(p for p in range(40000, 65536)
                 if model.choose(4, src, vip, p, 80, 6) == own)
    packet = bytes(Ether() / IP(src="192.0.2.10", dst="10.100.0.1") /
                   TCP(sport=sport, dport=80, flags="A") / (b"x" * 64))
    return cfg, packet


class _Noted(LoadBalancer):
    """The bench's LB, saying what its maps cost the kernel."""

    def bench_note(self, maps: NodeMaps) -> str:
        backends = sum(len(v.backends) for v in self.plan.vips.values())
        mem = sum(maps[m].memory for m in ("tables", "backends", "conns", "rconns"))
        return (f"{backends} backends; its maps: {mem / (1 << 20):.0f} MiB "
                f"of kernel memory")
