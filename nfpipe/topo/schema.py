"""The topology file: YAML -> ``TopologySpec`` (pure data, every part with its position).

The format is documented in docs/topologies.md.  Like the pipeline parser, this
collects every problem it finds (each with file:line:column) and raises one
``TopologySpecError`` listing them all.  Nothing here touches the kernel.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from typing import Any

from nfpipe.yamldoc import Checker, Doc, Pos, ProblemsError, describe, load, load_file

TOP_KEYS = ("topology", "description", "hosts", "links", "dut")
HOST_KEYS = ("interfaces", "routes", "sysctls", "description")
IFACE_KEYS = ("addresses", "mtu")
LINK_KEYS = ("endpoints", "bridge", "mtu", "offload")
ROUTE_KEYS = ("to", "via", "dev", "metric")
OFFLOAD_KEYS = ("tx-checksum", "tso", "gso", "gro")

# Names end up in namespace names ("nfpt.<topology>.<run>.<host>") and in files
# under /run: no dots (the separator), no slashes, nothing a shell would mangle.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
# Interface names: at most 15 bytes (IFNAMSIZ - 1); no dots so sysctl keys such as
# net.ipv4.conf.<ifname>.rp_filter stay unambiguous.
IFNAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,14}$")
SYSCTL_RE = re.compile(r"^(net|kernel)\.[A-Za-z0-9_.-]+$")
MIN_MTU, MAX_MTU = 68, 65535


class TopologySpecError(ProblemsError):
    """Problems in one topology file; ``problems`` lists each with its position."""


@dataclass(frozen=True)
class Offload:
    """Which offloads stay on for a veth (both ends).  Default: all off."""
    tx_checksum: bool = False
    tso: bool = False
    gso: bool = False
    gro: bool = False

    def as_dict(self) -> dict[str, bool]:
        return {"tx-checksum": self.tx_checksum, "tso": self.tso, "gso": self.gso,
                "gro": self.gro}


@dataclass
class RouteSpec:
    to: ipaddress.IPv4Network | ipaddress.IPv6Network
    via: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    dev: str | None
    metric: int | None
    pos: Pos

    @property
    def family(self) -> int:
        return self.to.version

    def __str__(self) -> str:
        s = f"{self.to}"
        if self.via is not None:
            s += f" via {self.via}"
        if self.dev:
            s += f" dev {self.dev}"
        return s


@dataclass
class IfaceSpec:
    host: str
    name: str
    addresses: list = field(default_factory=list)   # ipaddress.IPv4Interface / IPv6Interface
    mtu: int | None = None                          # None: the link's MTU
    pos: Pos | None = None


@dataclass
class HostSpec:
    name: str
    interfaces: dict[str, IfaceSpec]
    routes: list[RouteSpec]
    sysctls: dict[str, str]
    pos: Pos
    description: str = ""
    sysctl_pos: dict[str, Pos] = field(default_factory=dict)


@dataclass
class LinkSpec:
    """A veth pair (two endpoints) or a bridge with one veth per endpoint."""
    index: int
    endpoints: list[tuple[str, str]]    # (host, iface)
    bridge: str | None
    mtu: int | None
    offload: Offload
    pos: Pos


@dataclass
class TopologySpec:
    name: str
    hosts: dict[str, HostSpec]
    links: list[LinkSpec]
    dut: list[tuple[str, str]]
    file: str
    description: str = ""

    @property
    def bridges(self) -> list[str]:
        return [link.bridge for link in self.links if link.bridge]

    def iface(self, host: str, iface: str) -> IfaceSpec:
        return self.hosts[host].interfaces[iface]

    def link_of(self, host: str, iface: str) -> LinkSpec:
        for link in self.links:
            if (host, iface) in link.endpoints:
                return link
        raise KeyError((host, iface))

    def mtu_of(self, host: str, iface: str) -> int | None:
        spec = self.iface(host, iface)
        if spec.mtu is not None:
            return spec.mtu
        return self.link_of(host, iface).mtu

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TopologySpec:
        return parse_topology(load_file(os.fspath(path)))

    @classmethod
    def from_text(cls, text: str, file: str = "<topology>") -> TopologySpec:
        return parse_topology(load(text, file))


def parse_topology(doc: Doc) -> TopologySpec:
    parser = _Parser(doc)
    spec = parser.parse()
    if parser.problems:
        raise TopologySpecError(parser.problems)
    return spec


def parse_endpoint(text: Any) -> tuple[str, str] | None:
    if not isinstance(text, str) or text.count(":") != 1:
        return None
    host, iface = (s.strip() for s in text.split(":"))
    return host, iface


class _Parser(Checker):
    def mapping(self, path, value, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"{what} must be a mapping, found {describe(value)}")
            return {}
        return value

    def mtu(self, path, value) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not (
                MIN_MTU <= value <= MAX_MTU):
            self.problem(path, f"mtu must be an integer from {MIN_MTU} to {MAX_MTU}, "
                               f"found {describe(value)}")
            return None
        return value

    # --- top level --------------------------------------------------------------------

    def parse(self) -> TopologySpec | None:
        data = self.doc.data
        if not isinstance(data, dict):
            self.problem((), f"a topology file is a mapping with keys {', '.join(TOP_KEYS)}; "
                             f"found {describe(data)}")
            return None
        self.known_keys((), data, TOP_KEYS, "the topology")
        name = data.get("topology")
        if name is None:
            self.problem((), "missing 'topology' (the topology's name)")
            name = ""
        elif not isinstance(name, str) or not NAME_RE.match(name):
            self.problem(("topology",), f"bad topology name {name!r}: use lower-case letters, "
                                        f"digits, '-' or '_', at most 32 characters")
            name = str(name)
        description = data.get("description") or ""
        if not isinstance(description, str):
            self.problem(("description",), "description must be a string")
            description = ""
        hosts = self.hosts(data)
        links = self.links(data, hosts)
        self.check_interfaces(hosts, links)
        self.check_routes(hosts)
        dut = self.dut(data, hosts)
        return TopologySpec(name=name, hosts=hosts, links=links, dut=dut,
                            file=self.doc.file, description=description)

    # --- hosts ------------------------------------------------------------------------

    def hosts(self, data) -> dict[str, HostSpec]:
        raw = data.get("hosts")
        if raw is None:
            self.problem((), "missing 'hosts' (the network namespaces)")
            return {}
        raw = self.mapping(("hosts",), raw, "'hosts'")
        if not raw and isinstance(data.get("hosts"), dict):
            self.problem(("hosts",), "'hosts' is empty")
        out = {}
        for hname, hval in raw.items():
            path = ("hosts", hname)
            if not isinstance(hname, str) or not NAME_RE.match(hname):
                self.problem(path, f"bad host name {hname!r}: use lower-case letters, digits, "
                                   f"'-' or '_', at most 32 characters", key=True)
                continue
            hval = self.mapping(path, hval, f"host '{hname}'")
            self.known_keys(path, hval, HOST_KEYS, f"host '{hname}'")
            host = HostSpec(name=hname, interfaces={}, routes=[], sysctls={},
                            pos=self.doc.at(path, key=True),
                            description=str(hval.get("description") or ""))
            for iname, ival in self.mapping(path + ("interfaces",), hval.get("interfaces"),
                                            "'interfaces'").items():
                ipath = path + ("interfaces", iname)
                if not isinstance(iname, str) or not IFNAME_RE.match(iname):
                    self.problem(ipath, f"bad interface name {iname!r}: a letter, then "
                                        f"letters, digits, '-' or '_', at most 15 bytes",
                                 key=True)
                    continue
                if iname == "lo":
                    self.problem(ipath, "'lo' exists in every namespace; it cannot be declared",
                                 key=True)
                    continue
                ival = self.mapping(ipath, ival, f"interface '{hname}:{iname}'")
                self.known_keys(ipath, ival, IFACE_KEYS, f"interface '{hname}:{iname}'")
                host.interfaces[iname] = IfaceSpec(
                    host=hname, name=iname, addresses=self.addresses(ipath, ival),
                    mtu=self.mtu(ipath + ("mtu",), ival.get("mtu")),
                    pos=self.doc.at(ipath, key=True))
            host.routes = self.routes(path, hval.get("routes"))
            for key, value in self.mapping(path + ("sysctls",), hval.get("sysctls"),
                                           "'sysctls'").items():
                spath = path + ("sysctls", key)
                if not isinstance(key, str) or not SYSCTL_RE.match(key) or ".." in key:
                    self.problem(spath, f"bad sysctl name {key!r}: a dotted name under net. "
                                        f"or kernel., e.g. net.ipv4.ip_forward", key=True)
                    continue
                if isinstance(value, bool):
                    value = int(value)
                if not isinstance(value, (int, str)) or "\n" in str(value):
                    self.problem(spath, f"sysctl value must be a number or a one-line string, "
                                        f"found {describe(value)}")
                    continue
                host.sysctls[key] = str(value)
                host.sysctl_pos[key] = self.doc.at(spath, key=True)
            out[hname] = host
        return out

    def addresses(self, ipath, ival) -> list:
        raw = ival.get("addresses")
        if raw is None:
            return []
        if isinstance(raw, str):
            raw = [raw]
            items = [(ipath + ("addresses",), raw[0])]
        elif isinstance(raw, list):
            items = [(ipath + ("addresses", i), a) for i, a in enumerate(raw)]
        else:
            self.problem(ipath + ("addresses",), f"addresses must be a list of CIDR addresses "
                                                 f"such as 10.0.0.1/24, found {describe(raw)}")
            return []
        out = []
        for apath, a in items:
            if not isinstance(a, str) or "/" not in a:
                self.problem(apath, f"expected an address with a prefix length such as "
                                    f"10.0.0.1/24 or fd00::1/64, found {describe(a)}")
                continue
            try:
                addr = ipaddress.ip_interface(a.strip())
            except ValueError as exc:
                self.problem(apath, f"bad address {a!r}: {exc}")
                continue
            if addr.ip.is_multicast or addr.ip.is_unspecified or addr.ip.is_loopback:
                self.problem(apath, f"address {a!r} cannot be assigned to an interface")
                continue
            if addr in out:
                self.problem(apath, f"address {a} is listed twice")
                continue
            out.append(addr)
        return out

    def routes(self, hpath, raw) -> list[RouteSpec]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(hpath + ("routes",), f"routes must be a list, found {describe(raw)}")
            return []
        out = []
        for i, r in enumerate(raw):
            rpath = hpath + ("routes", i)
            if not isinstance(r, dict):
                self.problem(rpath, f"a route is a mapping {{to, via, dev, metric}}, found "
                                    f"{describe(r)}")
                continue
            self.known_keys(rpath, r, ROUTE_KEYS, "a route")
            via = None
            if r.get("via") is not None:
                try:
                    via = ipaddress.ip_address(str(r["via"]).strip())
                except ValueError as exc:
                    self.problem(rpath + ("via",), f"bad gateway: {exc}")
                    continue
            to = r.get("to")
            if to is None:
                self.problem(rpath, "a route needs 'to' (a prefix, or 'default')")
                continue
            if to in ("default", "default4", "default6"):
                if to == "default" and via is None:
                    self.problem(rpath + ("to",), "'default' without 'via' is ambiguous: write "
                                                  "default4 or default6, or give 'via'")
                    continue
                version = {"default4": 4, "default6": 6}.get(to) or via.version
                net = ipaddress.ip_network("0.0.0.0/0" if version == 4 else "::/0")
            else:
                try:
                    net = ipaddress.ip_network(str(to).strip(), strict=True)
                except ValueError as exc:
                    self.problem(rpath + ("to",), f"bad destination {to!r}: {exc}")
                    continue
            if via is not None and via.version != net.version:
                self.problem(rpath + ("via",), f"gateway {via} is IPv{via.version} but the "
                                               f"destination {net} is IPv{net.version}")
                continue
            dev = r.get("dev")
            if dev is not None and not isinstance(dev, str):
                self.problem(rpath + ("dev",), f"dev must be an interface name, found "
                                               f"{describe(dev)}")
                dev = None
            if via is None and dev is None:
                self.problem(rpath, "a route needs 'via' (a gateway), 'dev' or both")
                continue
            metric = r.get("metric")
            if metric is not None and (isinstance(metric, bool) or not isinstance(metric, int)
                                       or not 0 <= metric < 2 ** 32):
                self.problem(rpath + ("metric",), f"metric must be a non-negative integer, "
                                                  f"found {describe(metric)}")
                metric = None
            out.append(RouteSpec(to=net, via=via, dev=dev, metric=metric,
                                 pos=self.doc.at(rpath)))
        return out

    # --- links ------------------------------------------------------------------------

    def offload(self, path, raw) -> Offload:
        if raw is None:
            return Offload()
        if isinstance(raw, bool):
            return Offload(raw, raw, raw, raw)
        if not isinstance(raw, dict):
            self.problem(path, f"offload is a boolean (all on / all off) or a mapping of "
                               f"{', '.join(OFFLOAD_KEYS)} to booleans, found {describe(raw)}")
            return Offload()
        self.known_keys(path, raw, OFFLOAD_KEYS, "offload")
        vals = {}
        for k in OFFLOAD_KEYS:
            v = raw.get(k, False)
            if not isinstance(v, bool):
                self.problem(path + (k,), f"offload {k} must be true or false, found "
                                          f"{describe(v)}")
                v = False
            vals[k.replace("-", "_")] = v
        return Offload(**vals)

    def links(self, data, hosts) -> list[LinkSpec]:
        raw = data.get("links")
        if raw is None:
            self.problem((), "missing 'links' (the veth pairs and bridges)")
            return []
        if not isinstance(raw, list):
            self.problem(("links",), f"'links' must be a list, found {describe(raw)}")
            return []
        out = []
        seen: dict[tuple[str, str], int] = {}
        bridges: set[str] = set()
        for i, item in enumerate(raw):
            path = ("links", i)
            if isinstance(item, list):
                item = {"endpoints": item}
                epath = path
            elif isinstance(item, dict):
                self.known_keys(path, item, LINK_KEYS, "a link")
                epath = path + ("endpoints",)
            else:
                self.problem(path, f"a link is a list of two endpoints 'host:iface' or a "
                                   f"mapping with {', '.join(LINK_KEYS)}; found {describe(item)}")
                continue
            eps = item.get("endpoints")
            if not isinstance(eps, list):
                self.problem(epath, f"a link needs 'endpoints', a list of 'host:iface', found "
                                    f"{describe(eps)}")
                continue
            bridge = item.get("bridge")
            if bridge is not None:
                if not isinstance(bridge, str) or not NAME_RE.match(bridge) or len(bridge) > 15:
                    self.problem(path + ("bridge",), f"bad bridge name {bridge!r}: lower-case "
                                                     f"letters, digits, '-', '_', at most 15")
                    continue
                if bridge in hosts:
                    self.problem(path + ("bridge",), f"bridge '{bridge}' has the name of a "
                                                     f"host; bridges get their own namespace")
                    continue
                if bridge in bridges:
                    self.problem(path + ("bridge",), f"bridge '{bridge}' is declared twice")
                    continue
                bridges.add(bridge)
                if len(eps) < 1:
                    self.problem(epath, "a bridge needs at least one endpoint")
                    continue
            elif len(eps) != 2:
                self.problem(epath, f"a veth link has exactly two endpoints (found {len(eps)}); "
                                    f"give 'bridge: NAME' to connect more")
                continue
            endpoints = []
            ok = True
            for j, e in enumerate(eps):
                ep_path = epath + (j,)
                ep = parse_endpoint(e)
                if ep is None:
                    self.problem(ep_path, f"an endpoint is 'host:iface', found {describe(e)}")
                    ok = False
                    continue
                h, ifn = ep
                if h not in hosts:
                    self.problem(ep_path, f"unknown host '{h}' (hosts: {', '.join(hosts)})")
                    ok = False
                    continue
                if not IFNAME_RE.match(ifn) or ifn == "lo":
                    self.problem(ep_path, f"bad interface name {ifn!r}: a letter, then letters, "
                                          f"digits, '-' or '_', at most 15 bytes, not 'lo'")
                    ok = False
                    continue
                if ep in seen:
                    self.problem(ep_path, f"interface {h}:{ifn} is already used by link "
                                          f"#{seen[ep] + 1}")
                    ok = False
                    continue
                seen[ep] = i
                endpoints.append(ep)
            if not ok:
                continue
            out.append(LinkSpec(index=i, endpoints=endpoints, bridge=bridge,
                                mtu=self.mtu(path + ("mtu",), item.get("mtu")),
                                offload=self.offload(path + ("offload",), item.get("offload")),
                                pos=self.doc.at(path)))
        return out

    def check_interfaces(self, hosts, links) -> None:
        linked = {ep for link in links for ep in link.endpoints}
        for host in hosts.values():
            for iname in host.interfaces:
                if (host.name, iname) not in linked:
                    self.problem(("hosts", host.name, "interfaces", iname),
                                 f"interface {host.name}:{iname} is not an endpoint of any link",
                                 key=True)
        for (h, ifn) in linked:
            if h in hosts and ifn not in hosts[h].interfaces:
                hosts[h].interfaces[ifn] = IfaceSpec(host=h, name=ifn, pos=hosts[h].pos)

    def check_routes(self, hosts) -> None:
        for host in hosts.values():
            for i, r in enumerate(host.routes):
                if r.dev is not None and r.dev not in host.interfaces and r.dev != "lo":
                    self.problem(("hosts", host.name, "routes", i, "dev"),
                                 f"host '{host.name}' has no interface '{r.dev}'")

    def dut(self, data, hosts) -> list[tuple[str, str]]:
        raw = data.get("dut")
        if raw is None:
            return []
        items = [(("dut",), raw)] if isinstance(raw, str) else (
            [(("dut", i), v) for i, v in enumerate(raw)] if isinstance(raw, list) else None)
        if items is None:
            self.problem(("dut",), f"dut is 'host:iface' or a list of them, found "
                                   f"{describe(raw)}")
            return []
        out = []
        for path, v in items:
            ep = parse_endpoint(v)
            if ep is None:
                self.problem(path, f"expected 'host:iface', found {describe(v)}")
                continue
            if ep[0] not in hosts or ep[1] not in hosts[ep[0]].interfaces:
                self.problem(path, f"dut interface {v} is not an interface of the topology")
                continue
            if ep in out:
                self.problem(path, f"dut interface {v} is listed twice")
                continue
            out.append(ep)
        return out
