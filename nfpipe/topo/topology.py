"""``Topology``: bring a topology file up in network namespaces, use it, take it down.

    with Topology.from_file("topologies/two-hosts.yaml") as topo:
        topo.run("client", ["ping", "-c1", topo.address("server", "eth0")])
        topo.call("server", some_function, arg)      # runs inside the namespace
        topo.ifindex(*topo.dut[0])                   # where a pipeline attaches

``up()`` converges: whatever of the run already exists is kept, what is missing
is created, so a second ``up()`` is a no-op.  If it fails, the namespaces this
call created are removed again (all of them when the run did not exist before),
so a failed ``up()`` leaves nothing behind.  ``down()`` removes the run's
namespaces (found from the state file and by name prefix) and everything in
them: veths, bridges, processes.
"""
from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from nfpipe.errors import NfpipeError, NotFoundError
from nfpipe.faults import fault
from nfpipe.kernel.netns import in_netns
from nfpipe.topo import namespaces as nsu, run as nsrun
from nfpipe.topo.schema import RUN_ID_RE, LinkSpec, TopologySpec

IFA_F_NODAD = 0x02

# ethtool feature names (ETH_SS_FEATURES strings) behind each offload switch.
FEATURES = {
    "tx-checksum": ("tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6",
                    "tx-checksum-sctp"),
    "tso": ("tx-tcp-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp-mangleid-segmentation",
            "tx-tcp6-segmentation", "tx-tcp-accecn-segmentation", "tx-udp-segmentation"),
    "gso": ("tx-generic-segmentation",),
    "gro": ("rx-gro", "rx-gro-list", "rx-udp-gro-forwarding"),
}


class TopologyError(NfpipeError):
    """A topology run could not be brought up, used or taken down."""


class NoSuchHost(TopologyError, NotFoundError):
    """A host the topology does not have."""


def new_run_id() -> str:
    return secrets.token_hex(3)


# --- work done inside a namespace (forked child, see nfpipe.topo.run) -----------------

def _ns_setup(sysctls: list[tuple[str, str]], offloads: list[tuple[str, dict]]) -> dict:
    """Write sysctls, then switch veth offloads off; return what was applied."""
    report: dict[str, Any] = {"sysctls": {}, "offload": {}, "errors": []}
    for key, value in sysctls:
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
            with open(path) as f:
                report["sysctls"][key] = f.read().strip()
        except OSError as exc:
            report["errors"].append(("sysctl", key, exc.errno, exc.strerror))
    if offloads:
        try:
            from pyroute2.ethtool import Ethtool
            eth = Ethtool()
        except Exception as exc:
            report["errors"].append(("ethtool", "", 0, f"pyroute2 Ethtool unavailable: {exc}"))
            return report
        with eth:
            for ifname, wanted in offloads:
                off = [name for group, on in wanted.items() if not on
                       for name in FEATURES[group]]
                try:
                    feats = eth.get_features(ifname)
                    changed = False
                    for name in off:
                        f = feats.features.get(name)
                        if f is not None and f.available and f.enable:
                            f.enable = False
                            changed = True
                    if changed:
                        eth.set_features(ifname, feats)
                    feats = eth.get_features(ifname)
                    state = {}
                    for group in FEATURES:
                        names = [n for n in FEATURES[group] if n in feats.features]
                        state[group] = any(feats.features[n].enable for n in names)
                    report["offload"][ifname] = state
                    still = [n for n in off if n in feats.features and feats.features[n].enable]
                    if still:
                        report["errors"].append(("ethtool", ifname, 0,
                                                 f"could not switch off {', '.join(still)}"))
                except Exception as exc:
                    report["errors"].append(("ethtool", ifname, getattr(exc, "errno", 0) or 0,
                                             f"{type(exc).__name__}: {exc}"))
    return report


class Topology:
    """One run of a topology: namespaces named ``nfpt.<topology>.<run_id>.<host>``."""

    def __init__(self, spec: TopologySpec, run_id: str | None = None):
        if run_id is None:
            run_id = new_run_id()
        if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
            raise TopologyError(f"bad run id {run_id!r}: use lower-case letters, digits, '-' "
                                f"or '_', at most 24 characters, starting with a letter or digit")
        self.spec = spec
        self.run_id = run_id
        self.name = spec.name
        self._procs: list = []

    @classmethod
    def from_file(cls, path: str | os.PathLike, run_id: str | None = None) -> Topology:
        return cls(TopologySpec.from_file(path), run_id)

    @classmethod
    def from_text(cls, text: str, run_id: str | None = None,
                  file: str = "<topology>") -> Topology:
        return cls(TopologySpec.from_text(text, file), run_id)

    # --- names --------------------------------------------------------------------------

    @property
    def hosts(self) -> list[str]:
        return list(self.spec.hosts)

    @property
    def dut(self) -> list[tuple[str, str]]:
        return list(self.spec.dut)

    @property
    def namespaces(self) -> dict[str, str]:
        """Every namespace of the run: hosts, then bridges (keyed by bridge name)."""
        out = {h: nsu.ns_name(self.name, self.run_id, h) for h in self.spec.hosts}
        for b in self.spec.bridges:
            out[b] = nsu.ns_name(self.name, self.run_id, b)
        return out

    def _host(self, host: str) -> str:
        if host not in self.spec.hosts and host not in self.spec.bridges:
            raise NoSuchHost(f"topology '{self.name}' has no host '{host}' (hosts: "
                                f"{', '.join(self.spec.hosts)})")
        return host

    def netns(self, host: str) -> str:
        """The network namespace name of *host* (as `ip netns` lists it)."""
        return nsu.ns_name(self.name, self.run_id, self._host(host))

    def nspath(self, host: str) -> str:
        return nsu.ns_path(self.netns(host))

    def ifname(self, host: str, iface: str) -> str:
        """The kernel's name of *iface* inside *host*'s namespace (the declared name)."""
        if iface not in self.spec.hosts[self._host(host)].interfaces:
            raise TopologyError(f"host '{host}' of topology '{self.name}' has no interface "
                                f"'{iface}' (it has: "
                                f"{', '.join(self.spec.hosts[host].interfaces) or 'none'})")
        return iface

    def ifindex(self, host: str, iface: str) -> int:
        name = self.ifname(host, iface)
        with nsu.iproute(self.netns(host)) as ipr:
            idx = nsu.link_index(ipr, name)
        if idx is None:
            raise TopologyError(f"{host}:{iface} does not exist in namespace "
                                f"{self.netns(host)}: is the topology up?")
        return idx

    def addresses(self, host: str, iface: str) -> list:
        """The declared addresses of an interface (ipaddress.IPv4Interface/IPv6Interface)."""
        return list(self.spec.iface(host, self.ifname(host, iface)).addresses)

    def address(self, host: str, iface: str, version: int = 4) -> str:
        """The first declared IPv*version* address of an interface, without prefix length."""
        for a in self.addresses(host, iface):
            if a.version == version:
                return str(a.ip)
        raise TopologyError(f"{host}:{iface} has no IPv{version} address")

    # --- up / down ----------------------------------------------------------------------

    def _state(self, complete: bool) -> dict:
        return {"topology": self.name, "run_id": self.run_id,
                "file": os.path.abspath(self.spec.file) if not self.spec.file.startswith("<")
                else self.spec.file,
                "namespaces": self.namespaces, "dut": [f"{h}:{i}" for h, i in self.dut],
                "pid": os.getpid(), "created": time.time(), "complete": complete}

    def is_up(self) -> bool:
        st = nsu.read_state(self.name, self.run_id)
        return bool(st and st.get("complete")) and all(
            nsu.ns_exists(n) for n in self.namespaces.values())

    def up(self) -> Topology:
        with nsu.run_lock(self.name, self.run_id):
            prior = nsu.read_state(self.name, self.run_id)
            existed = [n for n in self.namespaces.values() if nsu.ns_exists(n)]
            state = self._state(False)
            if prior:
                state["created"] = prior.get("created", state["created"])
            nsu.write_state(state)
            created: list[str] = []
            try:
                for n in self.namespaces.values():
                    if not nsu.ns_exists(n):
                        nsu.create_ns(n)
                        created.append(n)
                self._configure()
            except BaseException:
                if not existed:
                    for n in reversed(list(self.namespaces.values())):
                        _quiet(nsu.remove_ns, n)
                    nsu.remove_state(self.name, self.run_id)
                else:
                    for n in created:
                        _quiet(nsu.remove_ns, n)
                raise
            state["complete"] = True
            nsu.write_state(state)
        return self

    def down(self) -> list[str]:
        """Remove the run's namespaces and everything in them; returns those removed."""
        for p in self._procs:
            _quiet(p.kill)
            _quiet(p.wait, 2)
        self._procs.clear()
        return nsu.teardown(self.name, self.run_id, list(self.namespaces.values()))

    def __enter__(self) -> Topology:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # --- configuration ------------------------------------------------------------------

    def _configure(self) -> None:
        spec = self.spec
        ns = self.namespaces
        ipr: dict[str, Any] = {}
        try:
            for key, n in ns.items():
                ipr[key] = nsu.IPRoute(netns=n)
            for key in ns:
                self._nl(f"set lo up in {ns[key]}", ipr[key].link, "set",
                         index=nsu.link_index(ipr[key], "lo"), state="up")
            ports: dict[str, list[tuple[str, str, int | None]]] = {k: [] for k in ns}
            for link in spec.links:
                self._make_link(link, ipr, ports)
                fault("topo-link")
            # sysctls and offloads are per namespace: one forked child each
            for key in ns:
                host = spec.hosts.get(key)
                sysctls = list(host.sysctls.items()) if host else []
                offloads = [(ifn, off.as_dict()) for ifn, _, off in ports[key]
                            if not all(off.as_dict().values())]
                if sysctls or offloads:
                    self._setup_ns(key, sysctls, offloads)
            for key in ns:
                for ifn, _mtu, _ in ports[key]:
                    idx = nsu.link_index(ipr[key], ifn)
                    if key in spec.hosts:
                        for a in spec.iface(key, ifn).addresses:
                            self._addr(ipr[key], idx, key, ifn, a)
                    self._nl(f"set {key}:{ifn} up", ipr[key].link, "set", index=idx,
                             state="up")
            for host in spec.hosts.values():
                for r in host.routes:
                    self._route(ipr[host.name], host.name, r)
            self._wait_carrier(ipr, ports)
        finally:
            for i in ipr.values():
                _quiet(i.close)

    def _wait_carrier(self, ipr: dict, ports: dict, timeout: float = 5.0) -> None:
        """Wait until every veth end is operationally up, so traffic can flow at once."""
        deadline = time.monotonic() + timeout
        pending = [(k, ifn) for k, lst in ports.items() for ifn, _, _ in lst]
        while pending:
            left = []
            for k, ifn in pending:
                links = ipr[k].get_links(nsu.link_index(ipr[k], ifn))
                if not links or links[0].get("IFLA_OPERSTATE") != "UP":
                    left.append((k, ifn))
            pending = left
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(f"{k}:{i}" for k, i in pending)
                raise TopologyError(f"interfaces did not come up within {timeout} s: {names}")
            time.sleep(0.02)

    def _nl(self, op: str, fn: Callable, *args, ok=(), **kwargs):
        try:
            return fn(*args, **kwargs)
        except NetlinkError as exc:
            if exc.code in ok:
                return None
            raise nsu.netlink_error(op, exc) from None

    def _make_link(self, link: LinkSpec, ipr: dict, ports: dict) -> None:
        spec = self.spec
        ns = self.namespaces
        if link.bridge is None:
            pairs = [(link.endpoints[0], link.endpoints[1])]
        else:
            b = link.bridge
            bidx = nsu.link_index(ipr[b], b)
            if bidx is None:
                self._nl(f"create bridge {b} in {ns[b]}", ipr[b].link, "add", ifname=b,
                         kind="bridge")
                bidx = nsu.link_index(ipr[b], b)
            if link.mtu:
                self._nl(f"set mtu of bridge {b}", ipr[b].link, "set", index=bidx, mtu=link.mtu)
            self._nl(f"set bridge {b} up", ipr[b].link, "set", index=bidx, state="up")
            pairs = [(ep, (b, f"p{j}")) for j, ep in enumerate(link.endpoints)]
        for (ha, ia), (hb, ib) in pairs:
            a_idx = nsu.link_index(ipr[ha], ia)
            b_idx = nsu.link_index(ipr[hb], ib)
            if a_idx is None or b_idx is None:
                for h, i, idx in ((ha, ia, a_idx), (hb, ib, b_idx)):
                    if idx is not None:   # half a pair left by a crash: start afresh
                        self._nl(f"delete stale {h}:{i}", ipr[h].link, "del", index=idx,
                                 ok=(19,))
                peer: dict[str, Any] = {"ifname": ib}
                if hb != ha:
                    peer["net_ns_fd"] = ns[hb]
                self._nl(f"create veth {ha}:{ia} <-> {hb}:{ib}", ipr[ha].link, "add",
                         ifname=ia, kind="veth", peer=peer)
            mtu_a = spec.mtu_of(ha, ia)
            mtu_b = spec.mtu_of(hb, ib) if hb in spec.hosts else (link.mtu or mtu_a)
            for h, i, mtu in ((ha, ia, mtu_a), (hb, ib, mtu_b)):
                idx = nsu.link_index(ipr[h], i)
                if idx is None:
                    raise TopologyError(f"veth end {h}:{i} missing in {ns[h]} after creation")
                if mtu:
                    self._nl(f"set mtu {mtu} on {h}:{i}", ipr[h].link, "set", index=idx,
                             mtu=mtu)
                ports[h].append((i, mtu, link.offload))
            if link.bridge is not None:
                pidx = nsu.link_index(ipr[hb], ib)
                self._nl(f"attach {ib} to bridge {hb}", ipr[hb].link, "set", index=pidx,
                         master=nsu.link_index(ipr[hb], hb))

    def _setup_ns(self, key: str, sysctls, offloads) -> None:
        report = nsrun.start(self.nspath(key), _ns_setup, (sysctls, offloads),
                             where=f"namespace {self.netns(key)}").result(timeout=30)
        for kind, what, err, text in report["errors"]:
            if kind == "sysctl":
                host = self.spec.hosts[key]
                pos = host.sysctl_pos.get(what)
                where = f"{pos}: " if pos else ""
                raise TopologyError(f"{where}cannot set sysctl {what} on host '{key}': {text}"
                                    + (" (no such sysctl in a network namespace)"
                                       if err == 2 else ""))
            raise TopologyError(
                f"cannot switch veth offloads off on {key}:{what} with pyroute2's ethtool: "
                f"{text}; set 'offload: true' on the link to leave offloads alone")

    def _addr(self, ipr, idx: int, host: str, ifn: str, a) -> None:
        kw: dict[str, Any] = {"index": idx, "address": str(a.ip), "prefixlen": a.network.prefixlen}
        if a.version == 6:
            kw["flags"] = IFA_F_NODAD   # usable at once: no duplicate address detection delay
            kw["family"] = socket.AF_INET6
        else:
            kw["family"] = socket.AF_INET
            if a.network.prefixlen < 31:
                kw["broadcast"] = str(a.network.broadcast_address)
        try:
            ipr.addr("add", **kw)
        except NetlinkError as exc:
            if exc.code == 17 and any(
                    x.get("IFA_ADDRESS") == str(a.ip) and x["prefixlen"] == a.network.prefixlen
                    for x in ipr.get_addr(index=idx)):
                return      # already there (idempotent up)
            raise nsu.netlink_error(f"add address {a} to {host}:{ifn}", exc) from None

    def _route(self, ipr, host: str, r) -> None:
        kw: dict[str, Any] = {"dst": str(r.to.network_address), "dst_len": r.to.prefixlen,
                              "family": socket.AF_INET if r.family == 4 else socket.AF_INET6}
        if r.via is not None:
            kw["gateway"] = str(r.via)
        if r.dev is not None:
            kw["oif"] = nsu.link_index(ipr, r.dev)
        if r.metric is not None:
            kw["priority"] = r.metric
        try:
            ipr.route("replace", **kw)
        except NetlinkError as exc:
            err = nsu.netlink_error(f"add route {r} on host '{host}'", exc)
            raise TopologyError(f"{r.pos}: {err}") from None

    # --- running things in the namespaces -------------------------------------------------

    def _live_nspath(self, host: str) -> str:
        path = self.nspath(host)
        if not os.path.exists(path):
            raise TopologyError(f"namespace {self.netns(host)} does not exist: run "
                                f"{self.run_id} of topology '{self.name}' is not up")
        return path

    def run(self, host: str, argv, **kwargs):
        """``subprocess.run(argv, **kwargs)`` with the command inside *host*'s namespace."""
        return nsrun.run(self._live_nspath(host), argv, **kwargs)

    def popen(self, host: str, argv, **kwargs):
        """``subprocess.Popen`` inside *host*'s namespace; killed by ``down()`` if still running."""
        p = nsrun.popen(self._live_nspath(host), argv, **kwargs)
        self._procs.append(p)
        return p

    def start(self, host: str, fn: Callable, *args, **kwargs) -> nsrun.Call:
        """Run ``fn(*args, **kwargs)`` in a forked child inside *host*'s namespace; returns a
        handle whose ``result(timeout)`` gives the return value (or raises its exception)."""
        return nsrun.start(self._live_nspath(host), fn, args, kwargs,
                           where=f"host '{host}' ({self.netns(host)})")

    def inside(self, host: str):
        """Context manager: the calling thread is in *host*'s namespace for the body
        (e.g. to attach an already loaded program by ifindex there)."""
        return in_netns(self._live_nspath(host))

    def iproute(self, host: str):
        """A pyroute2 ``IPRoute`` (context manager) whose socket is in *host*'s namespace."""
        self._live_nspath(host)
        return nsu.iproute(self.netns(host))

    def call(self, host: str, fn: Callable, *args, timeout: float | None = 60, **kwargs) -> Any:
        """``fn(*args, **kwargs)`` run inside *host*'s namespace; returns its (picklable) result."""
        return self.start(host, fn, *args, **kwargs).result(timeout=timeout)

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict:
        st = nsu.read_state(self.name, self.run_id)
        out: dict[str, Any] = {
            "topology": self.name, "run_id": self.run_id, "file": self.spec.file,
            "up": self.is_up(), "state_file": nsu.state_path(self.name, self.run_id)
            if st else None, "dut": [f"{h}:{i}" for h, i in self.dut], "hosts": {},
            "bridges": {}}
        for key, n in self.namespaces.items():
            entry: dict[str, Any] = {"netns": n, "exists": nsu.ns_exists(n), "interfaces": {}}
            if entry["exists"]:
                try:
                    with nsu.iproute(n) as ipr:
                        addrs: dict[int, list[str]] = {}
                        for a in ipr.get_addr():
                            addrs.setdefault(a["index"], []).append(
                                f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}")
                        for link in ipr.get_links():
                            name = link.get("IFLA_IFNAME")
                            if name == "lo":
                                continue
                            entry["interfaces"][name] = {
                                "ifindex": link["index"], "mtu": link.get("IFLA_MTU"),
                                "state": link.get("IFLA_OPERSTATE"),
                                "mac": link.get("IFLA_ADDRESS"),
                                "addresses": [x for x in addrs.get(link["index"], [])
                                              if not x.startswith("fe80:")]}
                except NfpipeError as exc:
                    entry["error"] = str(exc)
            (out["hosts"] if key in self.spec.hosts else out["bridges"])[key] = entry
        return out


def _quiet(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def find_runs(topology: str | None = None) -> list[dict]:
    """Runs present on this machine (state files and namespaces), optionally of one topology."""
    out = []
    for (topo, run), info in sorted(nsu.runs_present().items()):
        if topology is not None and topo != topology:
            continue
        st = info["state"] or {}
        expected = sorted(set((st.get("namespaces") or {}).values()))
        present = sorted(set(info["namespaces"]))
        out.append({"topology": topo, "run_id": run, "file": st.get("file"),
                    "state_file": nsu.state_path(topo, run) if info["state"] else None,
                    "complete": bool(st.get("complete")), "pid": st.get("pid"),
                    "pid_alive": nsu.pid_alive(st.get("pid")),
                    "namespaces": present,
                    "missing": [n for n in expected if n not in present],
                    "orphan": info["state"] is None,
                    "dut": st.get("dut", [])})
    return out


def down_run(topology: str, run_id: str) -> list[str]:
    return nsu.teardown(topology, run_id)


def down_all() -> list[str]:
    removed = []
    for r in find_runs():
        removed += nsu.teardown(r["topology"], r["run_id"])
    return removed


def topology_name_of(path: str | Path) -> str:
    return TopologySpec.from_file(path).name
