"""End-to-end cases of a test-case file: the pipeline deployed on a topology, real
traffic between its hosts, and what must arrive where.

A case with ``topology:`` is one of these (docs/testing.md)::

    - name: SSH reaches the server, the web does not
      topology: two-hosts             # shipped, a file beside the case file, or inline
      deploy: dut:eth0                # default: the topology's first DUT interface
      traffic:
        - tcp: {from: client, to: server, port: 22}
          expect: delivered
        - udp: {from: client, to: server, port: 53, count: 5}
          expect: {received: 0}

``run_end_to_end`` brings the topology up under a run id of its own, deploys the
pipeline with ``nfpipe.deploy`` (loaded, smoke-tested, attached, pinned) under a
state root of its own, applies the case's runtime ``config`` as ``nfpipe rules``
does, runs each exchange from one host to another, and always takes all of it down
again (``nfpipe.testing.topology_run`` / ``deployment`` check that nothing is left).
A listener binds the wildcard address of its host, so traffic a pipeline rewrites
(an LB's VIP to a backend) is still received; ``dst`` says where the sender sends
when that is not the listener's own address.
"""
from __future__ import annotations

import ipaddress
import itertools
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from nfpipe import deploy as D
from nfpipe.attach import Target
from nfpipe.errors import NfpipeError, SpecError
from nfpipe.resources import topologies_dir
from nfpipe.testing.deployed import deployment, isolated_root
from nfpipe.testing.results import CaseResult, Failure
from nfpipe.testing.topology import LeftBehind, TopologyRun, run_id, topology_run, topology_spec
from nfpipe.topo import TopologySpec, traffic as T
from nfpipe.yamldoc import Checker, Pos

KINDS = ("tcp", "http", "udp", "ping")
CASE_KEYS = ("topology", "deploy", "traffic")
_COMMON = ("from", "to", "dst", "version", "timeout")
ARGS = {"tcp": _COMMON + ("port", "payload"), "http": _COMMON + ("port", "path"),
        "udp": _COMMON + ("port", "payload", "count"), "ping": _COMMON + ("count",)}
EXPECT_KEYS = ("delivered", "received", "source", "at")
HTTP_BODY = b"nfpipe end-to-end\n"
#: how long an exchange expected to get through may take, and how long one expected to
#: be stopped is given to prove it (the price of a negative)
DELIVER_TIMEOUT, BLOCK_TIMEOUT = 5.0, 2.0
_runs = itertools.count(1)


@dataclass(frozen=True)
class Exchange:
    """One exchange between two hosts of the topology and what it must give."""

    index: int                                  # 1-based
    kind: str                                   # tcp, http, udp, ping
    src: str                                    # the sending host
    to: tuple[tuple[str, str | None], ...]      # listening host(s), interface (None: first)
    pos: Pos
    expect_pos: Pos
    port: int | None = None
    dst: str | None = None                      # where the sender sends (default: to's)
    dport: int | None = None
    payload: bytes = b"nfpipe"
    path: str = "/"
    count: int = 1
    version: int = 4
    timeout: float | None = None
    delivered: bool | None = None
    received: int | None = None
    source: str | None = None                   # the address the listener saw it from
    at: str | None = None                       # the host that received it

    @property
    def label(self) -> str:
        to = ",".join(h if i is None else f"{h}:{i}" for h, i in self.to)
        where = f"{to}:{self.port}" if self.port is not None else to
        return f"traffic {self.index} ({self.kind} {self.src} -> {where})"

    def wait(self) -> float:
        if self.timeout is not None:
            return self.timeout
        return BLOCK_TIMEOUT if self.delivered is False or self.received == 0 else \
            DELIVER_TIMEOUT


@dataclass(frozen=True)
class EndToEnd:
    topology: TopologySpec
    deploy: tuple[tuple[str, str], ...]         # (host, interface); empty: the first DUT
    traffic: tuple[Exchange, ...]
    pos: Pos


# --- reading ---------------------------------------------------------------------------------

def parse_end_to_end(ck: Checker, path: tuple, item: dict, base: str) -> EndToEnd | None:
    """The end-to-end part of case *item* at *path* (problems collected in *ck*)."""
    before = len(ck.problems)
    for k in ("packet", "packets", "maps"):
        if k in item:
            ck.problem(path + (k,), f"'{k}' is for kernel cases: an end-to-end case "
                                    f"(topology:) sends 'traffic'", key=True)
    try:
        topo = topology_spec(item["topology"], base)
    except (SpecError, OSError) as exc:
        shipped = ", ".join(sorted(p.stem for p in topologies_dir().glob("*.yaml")))
        ck.problem(path + ("topology",), f"topology: {exc} (a file beside the case file, "
                                         f"one nfpipe ships: {shipped}; or the topology "
                                         f"inline)")
        return None
    hosts = set(topo.hosts)

    def host_iface(p, text: Any, what: str, iface_required: bool = False):
        if not isinstance(text, str) or not text:
            ck.problem(p, f"expected {what} (host or host:interface), found {text!r}")
            return None
        h, _, i = text.partition(":")
        if h not in hosts:
            ck.problem(p, f"no host '{h}' in topology {topo.name} (hosts: "
                          f"{', '.join(sorted(hosts))})")
            return None
        if i and i not in topo.hosts[h].interfaces:
            ck.problem(p, f"host '{h}' has no interface '{i}' (interfaces: "
                          f"{', '.join(topo.hosts[h].interfaces)})")
            return None
        if iface_required and not i:
            ck.problem(p, f"name the interface: {h}:<interface>")
            return None
        return h, i or None

    deploy: list[tuple[str, str]] = []
    d = item.get("deploy")
    if d is not None:
        for j, t in enumerate(d if isinstance(d, list) else [d]):
            hi = host_iface(path + ("deploy",) + ((j,) if isinstance(d, list) else ()), t,
                            "the interface to deploy on", iface_required=True)
            if hi:
                deploy.append(hi)
    elif not topo.dut:
        ck.problem(path + ("topology",), f"topology {topo.name} marks no DUT interface: say "
                                         f"where to deploy (deploy: host:interface)")
    steps = item.get("traffic")
    out: list[Exchange] = []
    if steps is None:
        ck.problem(path, "an end-to-end case needs 'traffic' (a list of tcp, http, udp or "
                         "ping exchanges)")
    elif ck.expect(path + ("traffic",), steps, list, "a list of exchanges") and not steps:
        ck.problem(path + ("traffic",), "no traffic: an end-to-end case tests nothing")
    for j, s in enumerate(steps if isinstance(steps, list) else []):
        x = _exchange(ck, path + ("traffic", j), s, j + 1, host_iface)
        if x is not None:
            out.append(x)
    if len(ck.problems) > before:
        return None
    return EndToEnd(topo, tuple(deploy), tuple(out), ck.doc.at(path + ("topology",)))


def _exchange(ck: Checker, p: tuple, s: Any, index: int, host_iface) -> Exchange | None:
    if not isinstance(s, dict) or len([k for k in s if k in KINDS]) != 1:
        ck.problem(p, f"an exchange is one of {', '.join(KINDS)} with its arguments, and "
                      f"'expect': {{tcp: {{from: client, to: server, port: 22}}, expect: "
                      f"delivered}}")
        return None
    kind = next(k for k in s if k in KINDS)
    ck.known_keys(p, s, (kind, "expect"), "an exchange")
    args = s[kind]
    if not ck.expect(p + (kind,), args, dict, f"the {kind} exchange's arguments "
                                              f"({', '.join(ARGS[kind])})"):
        return None
    ck.known_keys(p + (kind,), args, ARGS[kind], f"a {kind} exchange")
    kw: dict[str, Any] = {}
    for k in ("from", "to"):
        if k not in args:
            ck.problem(p + (kind,), f"missing '{k}' (a host of the topology)")
    src = host_iface(p + (kind, "from"), args.get("from"), "the sending host")
    tos = args.get("to")
    to = [host_iface(p + (kind, "to") + ((j,) if isinstance(tos, list) else ()), t,
                     "the receiving host")
          for j, t in enumerate(tos if isinstance(tos, list) else [tos])]
    if kind != "ping":
        port = args.get("port")
        if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
            ck.problem(p + (kind, "port"), f"expected the port the receiver listens on "
                                           f"(1-65535), found {port!r}")
        kw["port"] = kw["dport"] = port
    if "dst" in args:
        try:
            kw["dst"], dport = _address_port(args["dst"])
            kw["dport"] = dport or kw.get("dport")
        except ValueError:
            ck.problem(p + (kind, "dst"), f"expected an address or address:port "
                                          f"([v6]:port), found {args['dst']!r}")
    if "payload" in args and ck.expect(p + (kind, "payload"), args["payload"], str, "text"):
        kw["payload"] = args["payload"].encode()
    if "path" in args and ck.expect(p + (kind, "path"), args["path"], str, "a URL path"):
        kw["path"] = args["path"] if args["path"].startswith("/") else "/" + args["path"]
    kw["count"] = args.get("count", 5 if kind == "udp" else 3 if kind == "ping" else 1)
    if not (isinstance(kw["count"], int) and 0 < kw["count"] <= 1000):
        ck.problem(p + (kind, "count"), f"expected a count (1-1000), found {kw['count']!r}")
    kw["version"] = args.get("version", 4)
    if kw["version"] not in (4, 6):
        ck.problem(p + (kind, "version"), f"expected 4 or 6, found {kw['version']!r}")
    if "timeout" in args:
        t = args["timeout"]
        if isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t <= 120:
            kw["timeout"] = float(t)
        else:
            ck.problem(p + (kind, "timeout"), f"expected seconds (up to 120), found {t!r}")
    if "expect" not in s:
        ck.problem(p, "missing 'expect': delivered, blocked, or {received: N, source: ADDR, "
                      "at: HOST}")
        return None
    _expect(ck, p + ("expect",), s["expect"], kind, kw)
    if src is None or None in to:
        return None
    return Exchange(index, kind, src[0], tuple(to), ck.doc.at(p), ck.doc.at(p + ("expect",)),
                    **kw)


def _expect(ck: Checker, p: tuple, e: Any, kind: str, kw: dict) -> None:
    if e in ("delivered", "blocked"):
        kw["delivered"] = e == "delivered"
        return
    if not isinstance(e, dict) or not e:
        ck.problem(p, f"expected delivered, blocked, or a mapping of {', '.join(EXPECT_KEYS)}; "
                      f"found {e!r}")
        return
    ck.known_keys(p, e, EXPECT_KEYS, "an exchange's expect")
    if "delivered" in e and ck.expect(p + ("delivered",), e["delivered"], bool, "true or false"):
        kw["delivered"] = e["delivered"]
    if "received" in e:
        if kind not in ("udp", "ping"):
            ck.problem(p + ("received",), f"'received' counts datagrams or echo replies: udp "
                                          f"and ping only, not {kind}", key=True)
        elif ck.expect(p + ("received",), e["received"], int, "a count"):
            kw["received"] = e["received"]
    for k in ("source", "at"):
        if k in e:
            if kind == "ping":
                ck.problem(p + (k,), f"'{k}' is what a listener saw: not for ping", key=True)
            elif ck.expect(p + (k,), e[k], str, "an address" if k == "source" else "a host"):
                kw[k] = e[k]
    if "source" in kw:
        try:
            ipaddress.ip_address(kw["source"])
        except ValueError:
            ck.problem(p + ("source",), f"expected an IP address, found {kw['source']!r}")


def _address_port(text: Any) -> tuple[str, int | None]:
    """``10.0.0.1``, ``10.0.0.1:80``, ``2001:db8::1``, ``[2001:db8::1]:80``."""
    if not isinstance(text, str):
        raise ValueError(text)
    if text.startswith("["):
        addr, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif text.count(":") == 1:
        addr, _, p = text.partition(":")
        port = int(p)
    else:
        addr, port = text, None
    ipaddress.ip_address(addr)
    if port is not None and not 0 < port < 65536:
        raise ValueError(text)
    return addr, port


# --- running ---------------------------------------------------------------------------------

def run_end_to_end(pipeline_file: str, case, e2e: EndToEnd, *, hook: str, linking: str,
                   hook_override: str | None) -> CaseResult:
    """*case* (its ``e2e`` part *e2e*) with the pipeline deployed at *linking*."""
    t0 = time.perf_counter()
    failures: list[Failure] = []
    done: list[dict] = []

    def result(kind: str) -> CaseResult:
        return CaseResult(case.name, case.pos, hook, linking, kind, time.perf_counter() - t0,
                          tuple(failures), traffic=tuple(done))

    token = secrets.token_hex(4)
    try:
        with tempfile.TemporaryDirectory(prefix="nfpipe-e2e-") as work, \
                topology_run(e2e.topology, run_id=run_id("nft", next(_runs))) as topo:
            where = e2e.deploy or topo.dut[:1]
            targets = [Target(topo.host(h).ifname(i), topo.host(h).netns) for h, i in where]
            with deployment(pipeline_file, targets, root=isolated_root(token), workdir=work,
                            hook=hook_override, linking=linking) as dep:
                for node, cfg in case.config.items():
                    D.configure(dep.name, node, cfg, root=dep.root)
                for x in e2e.traffic:
                    seen, problems = run_exchange(topo, x, work)
                    done.append(seen)
                    failures.extend(Failure(x.expect_pos, f"{x.label}: {m}") for m in problems)
    except (NfpipeError, LeftBehind, OSError) as exc:
        failures.append(Failure(case.pos, f"end-to-end: {exc}"))
        return result("error")
    return result("failed" if failures else "passed")


def run_exchange(topo: TopologyRun, x: Exchange, work: str) -> tuple[dict, list[str]]:
    """Run one exchange; what happened (JSON-able) and every expectation it missed."""
    client = topo.host(x.src)
    listeners = [(h, topo.host(h).address(i or topo.host(h).interfaces[0], x.version))
                 for h, i in x.to]
    dst = x.dst or listeners[0][1]
    bind = "::" if ipaddress.ip_address(dst).version == 6 else "0.0.0.0"
    wait = x.wait()
    seen: dict[str, Any] = {"exchange": x.index, "kind": x.kind, "from": x.src,
                            "to": [h for h, _ in listeners], "dst": dst, "port": x.dport}
    got: dict[str, list] = {}                   # listener host -> peers it saw
    if x.kind == "ping":
        n = _call(client, T.ping, dst, x.count, wait / x.count if x.count else wait,
                  timeout=wait + 30)
        seen["received"] = n if isinstance(n, int) else 0
    elif x.kind in ("tcp", "http"):
        fn, args = (T.serve_tcp_echo, (bind, x.port, 1, wait + 5)) if x.kind == "tcp" else \
            (T.serve_http, (bind, x.port, HTTP_BODY, wait + 5))
        servers = [(h, topo.host(h).start(fn, *args)) for h, _a in listeners]
        time.sleep(0.05)
        if x.kind == "tcp":
            reply = _call(client, T.tcp_exchange, dst, x.dport, x.payload, wait,
                          timeout=wait + 30)
            seen["delivered"] = reply == x.payload
        else:
            reply = _call(client, T.http_get, dst, x.dport, x.path, wait, timeout=wait + 30)
            seen["delivered"] = isinstance(reply, tuple) and reply == (200, HTTP_BODY)
            seen["status"] = reply[0] if isinstance(reply, tuple) else None
        for h, call in servers:
            peers = _result(call, 2.0 if seen["delivered"] else 0.2)
            if peers:
                got[h] = [p[0] if isinstance(p, tuple) else p for p in peers]
    else:                                       # udp
        servers = []
        for h, _a in listeners:
            ready = os.path.join(work, f"udp-{x.index}-{h}.ready")
            servers.append((h, ready, topo.host(h).start(
                T.serve_udp_count, bind, x.port, ready, 1.0 + 0.02 * x.count)))
        deadline = time.monotonic() + 10
        while not all(os.path.exists(r) for _h, r, _c in servers) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        _call(client, T.udp_send, dst, x.dport, x.payload, x.count, timeout=x.count + 30)
        for h, _r, call in servers:
            peers = _result(call, 10.0 + 0.02 * x.count)
            if peers:
                got[h] = peers
        seen["received"] = sum(len(v) for v in got.values())
    if x.kind in ("udp", "ping"):
        seen["delivered"] = seen["received"] == x.count
    seen["at"] = sorted(got)
    seen["sources"] = sorted({p for v in got.values() for p in v})
    return seen, _missed(x, seen)


def _missed(x: Exchange, seen: dict) -> list[str]:
    out = []
    counted = x.kind in ("udp", "ping")
    what = f"{seen.get('received', 0)} of {x.count} " + \
        ("echo replies" if x.kind == "ping" else "datagrams") if counted else ""
    if x.delivered is True and not seen["delivered"]:
        out.append(f"expected delivered, got {what or 'blocked'}"
                   f"{'' if counted else f' (nothing within {x.wait():g} s)'}")
    if x.delivered is False and (seen["delivered"] or seen.get("received")):
        out.append(f"expected blocked, got {what or 'delivered'}")
    if x.received is not None and seen.get("received") != x.received:
        out.append(f"received: expected {x.received}, got {what}")
    if x.source is not None and seen["sources"] != [x.source]:
        out.append(f"source: expected {x.source}, the listener saw "
                   f"{', '.join(seen['sources']) or 'nothing'}")
    if x.at is not None and seen["at"] != [x.at]:
        out.append(f"at: expected {x.at}, received at {', '.join(seen['at']) or 'no host'}")
    return out


def _call(host, fn, *args, timeout: float):
    """``fn(*args)`` in *host*; its result, or None when the network said no (a timeout,
    a refused or reset connection: what a stopped exchange looks like).  Anything else
    is a fault, raised."""
    try:
        return host.python(fn, *args, timeout=timeout)
    except OSError:                             # TimeoutError, ConnectionError included
        return None


def _result(call, timeout: float):
    """A listener's result: what it saw, or None when nothing came (its accept timed out,
    or it is killed here after *timeout*)."""
    try:
        return call.result(timeout=timeout)
    except OSError:
        return None
