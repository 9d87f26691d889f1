"""Harness of the end-to-end scenarios: topology up, pipeline loaded and attached to the
DUT in one of three modes, traffic from real sockets and scapy, teardown that always runs.

    with Scenario("two-hosts") as sc:                 # topology up (run id: session token)
        sc.http_server("server", "198.51.100.2", 8080)
        with sc.deploy("firewall.yaml", "xdp-native", ["eth0"]) as dep:
            sc.http_get("client", "198.51.100.2", 8080)
            dep.pipeline.edge_counts()
    # pipeline detached and closed, topology down, also when the body raised

Modes: ``xdp-native`` and ``xdp-generic`` (XDP bpf_links in driver / skb mode) and
``tc`` (tcx ingress link).  The pipeline file's ``hook:`` line is replaced by the
mode's hook (``xdp`` or ``tc-ingress``) before it is parsed, so one YAML serves all
three.

Traffic helpers are plain functions run inside a host with ``topo.call`` /
``topo.start`` (a forked child that setns()es into the host's namespace).
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nfpipe.attach import attach_tc, attach_xdp
from nfpipe.compose import build, make_plan
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec
from nfpipe.testing import pinned_objects
from nfpipe.topo import Topology

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOPOLOGIES = ROOT / "topologies"
PIPELINES = HERE / "pipelines"
HTTPD = HERE / "httpd.py"

MODES = ("xdp-native", "xdp-generic", "tc")
HOOK_OF = {"xdp-native": "xdp", "xdp-generic": "xdp", "tc": "tc-ingress"}
ATTACH_MODE = {"xdp-native": "native", "xdp-generic": "generic", "tc": "tcx"}

# Every run id of a pytest session starts with this token, so the session check can
# find exactly what this suite made (and nothing of anybody else's).
SESSION = "e2e" + secrets.token_hex(2)
_counter = 0


def new_run_id() -> str:
    global _counter
    _counter += 1
    return f"{SESSION}-{_counter}{secrets.token_hex(1)}"


# --- pipelines ----------------------------------------------------------------------------

def pipeline_text(pipeline: str | os.PathLike, mode: str) -> tuple[str, str]:
    """(text with the mode's hook, file name for positions); *pipeline* is a path
    (absolute, or relative to netns/pipelines/) or YAML text (contains a newline)."""
    if isinstance(pipeline, str) and "\n" in pipeline:
        text, name = pipeline, "<inline pipeline>"
    else:
        path = Path(pipeline)
        if not path.is_absolute():
            path = PIPELINES / path
        text, name = path.read_text(), str(path)
    hook = HOOK_OF[mode]
    text, n = re.subn(r"(?m)^hook:.*$", f"hook: {hook}", text)
    if n != 1:
        raise ValueError(f"{name}: needs exactly one top-level 'hook:' line")
    return text, name


def load_pipeline(pipeline, mode: str) -> Pipeline:
    text, name = pipeline_text(pipeline, mode)
    spec = PipelineSpec.from_text(text, name)
    return Pipeline.load(build(make_plan(spec)))


@dataclass
class Deployment:
    """A loaded pipeline and its attachments on the DUT."""

    mode: str
    pipeline: Pipeline
    attachments: list = field(default_factory=list)

    def node_maps(self, node: str):
        return self.pipeline.node_maps(node)

    def impl(self, node: str):
        """The node's NetworkFunction (control plane: hits(), update(), write_pcap() ...)."""
        return self.pipeline.plan.spec.nodes[node].impl

    def detach(self) -> None:
        errors = []
        while self.attachments:
            a = self.attachments.pop()
            try:
                a.detach()
            except Exception as exc:     # keep going: detach the rest
                errors.append(exc)
            finally:
                with contextlib.suppress(Exception):
                    a.close()
        if errors:
            raise errors[0]


def attach(prog, mode: str, ifname: str, netns: str):
    if mode == "xdp-native":
        return attach_xdp(prog, ifname, mode="native", netns=netns)
    if mode == "xdp-generic":
        return attach_xdp(prog, ifname, mode="generic", netns=netns)
    if mode == "tc":
        return attach_tc(prog, ifname, "ingress", netns=netns, use="tcx")
    raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")


# --- the scenario: topology + servers + deployments ---------------------------------------

class Scenario:
    """One topology run; ``deploy`` loads and attaches pipelines on its DUT host."""

    def __init__(self, topology: str, run_id: str | None = None):
        path = Path(topology)
        if not path.suffix:
            path = TOPOLOGIES / f"{topology}.yaml"
        self.topo = Topology.from_file(path, run_id or new_run_id())
        self.dut_host = self.topo.dut[0][0]
        self._servers: list[subprocess.Popen] = []

    @classmethod
    def on(cls, topology: Topology) -> Scenario:
        """A scenario on a topology that is already up and that its owner takes down
        (``nfpipe_topology``'s): servers and traffic helpers, nothing of its lifecycle."""
        sc = cls.__new__(cls)
        sc.topo = topology
        sc.dut_host = topology.dut[0][0]
        sc._servers = []
        return sc

    def up(self) -> Scenario:
        self.topo.up()
        return self

    def stop_servers(self) -> None:
        for p in self._servers:
            with contextlib.suppress(Exception):
                p.kill()
                p.wait(2)
            for f in (p.stdout, p.stderr):
                if f is not None:
                    with contextlib.suppress(Exception):
                        f.close()
        self._servers.clear()

    def down(self) -> None:
        try:
            self.stop_servers()
        finally:
            self.topo.down()

    def __enter__(self) -> Scenario:
        try:
            return self.up()
        except BaseException:
            self.topo.down()
            raise

    def __exit__(self, *exc) -> None:
        self.down()

    # -- pipelines --

    @contextlib.contextmanager
    def deploy(self, pipeline, mode: str, ifaces=("eth0",), host: str | None = None):
        """Load *pipeline* for *mode*'s hook and attach its entry program to each of
        *host*'s (default: the DUT's) *ifaces*; detach and close at exit, always."""
        host = host or self.dut_host
        p = load_pipeline(pipeline, mode)
        dep = Deployment(mode, p)
        try:
            _own(p)
            for ifn in ifaces:
                att = attach(p.entry, mode, self.topo.ifname(host, ifn), self.topo.netns(host))
                dep.attachments.append(att)
                _own_attachment(att)
                if att.mode != ATTACH_MODE[mode] or not att.attached:
                    raise RuntimeError(f"{host}:{ifn}: asked for {mode}, the kernel has "
                                       f"{att.info()}")
            yield dep
        finally:
            try:
                dep.detach()
            finally:
                p.close()

    def sysctl(self, host: str, key: str, value) -> str:
        """Write a (per-namespace) sysctl in *host*; returns the value read back."""
        return self.call(host, write_sysctl, key, str(value))

    # -- servers --

    def http_server(self, host: str, addr: str, *ports: int, name: str | None = None,
                    timeout: float = 10.0) -> subprocess.Popen:
        """Start netns/httpd.py in *host* on addr:port...; returns once it listens."""
        err = tempfile.TemporaryFile()  # noqa: SIM115 - a file, not a pipe: it never fills
        p = self.topo.popen(host, [sys.executable, str(HTTPD), name or host, addr,
                                   *map(str, ports)],
                            stdout=subprocess.PIPE, stderr=err)
        self._servers.append(p)
        ready, _, _ = select.select([p.stdout], [], [], timeout)
        line = p.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            p.kill()
            p.wait(5)
            err.seek(0)
            raise RuntimeError(f"httpd in {host} on {addr}:{ports} did not start: "
                               f"{err.read().decode(errors='replace')}")
        err.close()                           # the child keeps its own descriptor
        return p

    # -- traffic (each runs inside a host) --

    def call(self, host: str, fn, *args, timeout: float = 60, **kwargs):
        return self.topo.call(host, fn, *args, timeout=timeout, **kwargs)

    def start(self, host: str, fn, *args, **kwargs):
        return self.topo.start(host, fn, *args, **kwargs)

    def send_and_sniff(self, src: str, frames: list[bytes], dst: str, *,
                       src_if: str = "eth0", dst_if: str = "eth0", duration: float = 1.0,
                       ip_proto: int | None = None, dport: int | None = None,
                       tmpdir: str | os.PathLike = "/tmp") -> list[bytes]:
        """Send raw Ethernet *frames* with scapy out of src:src_if while scapy sniffs on
        dst:dst_if (Python filter on IP protocol / destination port); the frames seen."""
        ready = Path(tmpdir) / f"sniff-{secrets.token_hex(4)}.ready"
        h = self.start(dst, scapy_sniff, dst_if, duration, str(ready), ip_proto, dport)
        try:
            wait_file(ready, h)
            self.call(src, scapy_send, src_if, frames)
            return h.result(timeout=duration + 30)
        finally:
            h.kill()
            with contextlib.suppress(FileNotFoundError):
                ready.unlink()

    def http_get(self, host: str, addr: str, port: int, path: str = "/",
                 timeout: float = 5.0) -> dict:
        return self.call(host, http_get, addr, port, path, timeout)

    def http_many(self, host: str, addr: str, port: int, n: int,
                  timeout: float = 5.0) -> list[dict]:
        return self.call(host, http_many, addr, port, n, timeout, timeout=60 + n * timeout)


# --- functions run inside a host ------------------------------------------------------------

def write_sysctl(key: str, value: str) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path, "w") as f:
        f.write(value)
    with open(path) as f:
        return f.read().strip()


def _family(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def http_get(addr: str, port: int, path: str = "/", timeout: float = 5.0) -> dict:
    """One HTTP GET on a new TCP connection; the server's JSON answer."""
    host = f"[{addr}]" if ":" in addr else addr      # for messages
    c = http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        c.request("GET", path)
        client = c.sock.getsockname()[:2]
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"GET http://{host}:{port}{path}: status {r.status}")
        out = json.loads(body)
        out["client"] = list(client)      # the client's own address and port
        return out
    finally:
        c.close()


def http_many(addr: str, port: int, n: int, timeout: float = 5.0) -> list[dict]:
    """*n* GETs, each on its own new connection."""
    return [http_get(addr, port, f"/{i}", timeout) for i in range(n)]


class KeepAlive:
    """An HTTP/1.1 keep-alive connection (one TCP connection, many requests)."""

    def __init__(self, addr: str, port: int, timeout: float = 5.0, source=None):
        self.c = http.client.HTTPConnection(addr, port, timeout=timeout,
                                            source_address=tuple(source) if source else None)
        self.c.connect()
        self.local = self.c.sock.getsockname()[:2]

    def get(self, path: str = "/") -> dict:
        self.c.request("GET", path)
        r = self.c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
        return json.loads(body)

    def close(self) -> None:
        self.c.close()


def keepalive_worker(addr: str, port: int, source, ctl_dir: str,
                     idle_timeout: float = 60.0) -> int:
    """Hold one keep-alive connection; do a GET for each ``cmd<i>`` file that appears
    in *ctl_dir* (answer in ``res<i>``) until a ``stop`` file appears.  Returns the
    number of GETs done."""
    ka = KeepAlive(addr, port, source=source)
    ctl = Path(ctl_dir)
    stop = ctl / "stop"
    i = 0
    try:
        while True:
            cmd_file = ctl / f"cmd{i}"
            end = time.monotonic() + idle_timeout
            while not cmd_file.exists():
                if stop.exists() or time.monotonic() > end:
                    return i
                time.sleep(0.005)
            try:
                res = {"ok": ka.get(f"/ka{i}")}
            except Exception as exc:          # reported to the test, not raised here
                res = {"error": f"{type(exc).__name__}: {exc}"}
            tmp = ctl / f".res{i}"
            tmp.write_text(json.dumps(res))
            tmp.rename(ctl / f"res{i}")
            i += 1
    finally:
        ka.close()       # FIN while the pipeline under test still carries it


class RemoteKeepAlive:
    """A keep-alive HTTP connection held open by a child in *host* across test steps."""

    def __init__(self, scenario: Scenario, host: str, addr: str, port: int, ctl_dir,
                 source=None):
        self.ctl = Path(ctl_dir)
        self.ctl.mkdir(parents=True, exist_ok=True)
        self.i = 0
        self.h = scenario.start(host, keepalive_worker, addr, port, source, str(self.ctl))

    def get(self, timeout: float = 15.0) -> dict:
        """One GET on the held connection: the answer, or {"error": ...}."""
        (self.ctl / f"cmd{self.i}").write_text("get")
        res = self.ctl / f"res{self.i}"
        end = time.monotonic() + timeout
        while not res.exists():
            if time.monotonic() > end or self.h.done():
                self.h.result(1)
                raise TimeoutError("keep-alive worker did not answer")
            time.sleep(0.005)
        self.i += 1
        return json.loads(res.read_text())

    def close(self, timeout: float = 30.0) -> int:
        """Stop the worker (it closes its connection); the number of GETs it did.

        A ``stop`` file rather than a last command: if a GET timed out in ``get`` the
        worker may still be in it, and would otherwise wait for a command that never
        comes."""
        (self.ctl / "stop").write_text("")
        try:
            return self.h.result(timeout=timeout)
        finally:
            self.h.kill()


def tcp_connects(addr: str, port: int, wait: float = 0.5) -> bool:
    """Non-blocking connect; True if it completes within *wait* seconds.

    *wait* stays below the initial SYN retransmission timeout (1 s), so a connect
    that does not complete has sent exactly one SYN."""
    s = socket.socket(_family(addr), socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        err = s.connect_ex((addr, port))
        if err not in (0, 115):           # EINPROGRESS
            return False
        _, w, _ = select.select([], [s], [], wait)
        return bool(w) and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    finally:
        # RST-free close of a half-open connect: linger 0 aborts at once
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()


def udp_send(addr: str, port: int, n: int, payload: bytes = b"x" * 32,
             sport: int | None = None) -> int:
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
        if sport:
            s.bind(("", sport))
        for _ in range(n):
            s.sendto(payload, (addr, port))
            time.sleep(0.002)
    return n


def udp_listen(addr: str, port: int, duration: float, ready_file: str | None = None) -> list:
    """Receive datagrams on addr:port for *duration* seconds; [(peer, payload)]."""
    got = []
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
        s.bind((addr, port))
        if ready_file:
            open(ready_file, "w").close()
        end = time.monotonic() + duration
        while (left := end - time.monotonic()) > 0:
            r, _, _ = select.select([s], [], [], left)
            if r:
                data, peer = s.recvfrom(65536)
                got.append((peer[0], data))
    return got


ETH_P_ALL = 0x0003


def capture_until(ifname: str, stop_file: str, ready_file: str, direction: str = "out",
                  max_seconds: float = 60.0) -> list[bytes]:
    """Every frame *ifname* sends ("out") or receives ("in") until *stop_file* exists."""
    want = socket.PACKET_OUTGOING if direction == "out" else None
    frames = []
    end = time.monotonic() + max_seconds
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((ifname, 0))
        s.settimeout(0.05)
        open(ready_file, "w").close()
        while time.monotonic() < end:
            try:
                frame, a = s.recvfrom(65600)
            except TimeoutError:
                if os.path.exists(stop_file):
                    break
                continue
            outgoing = a[2] == socket.PACKET_OUTGOING
            if (want is not None) == outgoing:
                frames.append(frame)
    return frames


@contextlib.contextmanager
def capturing(scenario: Scenario, host: str, ifname: str, direction: str = "out",
              tmpdir: str | os.PathLike = "/tmp"):
    """Capture on host:ifname for the body; ``result[0]`` is the list of frames after."""
    tag = secrets.token_hex(4)
    stop = Path(tmpdir) / f"cap-{tag}.stop"
    ready = Path(tmpdir) / f"cap-{tag}.ready"
    h = scenario.start(host, capture_until, ifname, str(stop), str(ready), direction)
    result: list = []
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            if time.monotonic() > deadline or h.done():
                h.result(1)
                raise RuntimeError("capture did not start")
            time.sleep(0.01)
        yield result
        time.sleep(0.1)
        stop.touch()
        result.append(h.result(timeout=10))
    finally:
        if not result:
            h.kill()
        for f in (stop, ready):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def scapy_send(iface: str, frames: list[bytes], gap: float = 0.0) -> int:
    """Send raw Ethernet frames (bytes) out of *iface* with scapy."""
    from scapy.all import Ether, sendp
    for f in frames:
        sendp(Ether(f), iface=iface, verbose=False)
        if gap:
            time.sleep(gap)
    return len(frames)


def scapy_sniff(iface: str, duration: float, ready_file: str | None = None,
                ip_proto: int | None = None, dport=None) -> list[bytes]:
    """Frames received on *iface* for *duration* s (scapy; Python filter, no tcpdump):
    IPv4/IPv6 packets of *ip_proto* (IPv6: the next header) to *dport* (a port or a
    collection of ports) when given."""
    from scapy.all import IP, AsyncSniffer, IPv6

    def keep(p) -> bool:
        if ip_proto is None and dport is None:
            return True
        ip = p.getlayer(IP) or p.getlayer(IPv6)
        if ip is None:
            return False
        if ip_proto is not None and (ip.proto if IP in p else ip.nh) != ip_proto:
            return False
        if dport is None:
            return True
        d = getattr(ip.payload, "dport", None)
        return d in dport if isinstance(dport, (list, tuple, set, frozenset)) else d == dport

    sn = AsyncSniffer(iface=iface, lfilter=keep, store=True)
    sn.start()
    deadline = time.monotonic() + 5
    while not getattr(sn, "running", False) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)                       # the socket is bound once running is set
    if ready_file:
        open(ready_file, "w").close()
    time.sleep(duration)
    sn.stop()
    return [bytes(p) for p in (sn.results or [])]


def link_mac(scenario: Scenario, host: str, ifname: str) -> str:
    with scenario.topo.iproute(host) as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        return ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")


def wait_file(path: Path, h, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline or h.done():
            h.result(1)
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.01)


# --- leftovers --------------------------------------------------------------------------

# Every BPF object the scenarios created (kind -> ids), so the session check can tell
# our pins from those of anybody else using this machine's bpffs at the same time.
OWNED: dict[str, set[int]] = {"prog": set(), "map": set(), "link": set()}


def _own(pipeline: Pipeline) -> None:
    for obj in pipeline.objects.values():
        OWNED["prog"].update(p.id for p in obj.programs.values())
        OWNED["map"].update(m.id for m in obj.maps.values())


def _own_attachment(att) -> None:
    link_id = getattr(att, "id", None)
    if isinstance(link_id, int):
        OWNED["link"].add(link_id)


def our_pins(root: str = "/sys/fs/bpf") -> list[str]:
    return sorted(f"{path} ({kind} {i})" for path, (kind, i) in pinned_objects(root).items()
                  if i in OWNED[kind])


def leftovers(token: str = SESSION) -> list[str]:
    from nfpipe.topo import namespaces as nsu
    found = [f"netns {n}" for n in nsu.list_namespaces() if f".{token}-" in n]
    with contextlib.suppress(FileNotFoundError):
        found += [f"state {n}" for n in os.listdir(nsu.STATE_DIR) if f".{token}-" in n]
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if token in n]
    return found
