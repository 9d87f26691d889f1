"""``nfpipe bench --live``: the seeds' firewall on live frames, beside the alternatives.

A topology of two namespaces joined by a veth: ``gen`` sends, ``dut`` (the device
under test) filters.  The generator is benchmarks/handwritten/trafficgen.c run with
BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES (as xdp-trafficgen does): every
frame it returns XDP_TX for leaves the generator's end of the veth for real.  A
kernel that refuses live frames (EPERM: some sandboxed kernels, ``nfpipe probe``
shows it) gets a packet socket instead, sending bursts of the frame past the qdisc
with sendmmsg(2); each result names its generator.  The
DUT's end has GRO on, so the veth receives through NAPI even without an XDP
program, and threaded NAPI, so that receive work runs in one kernel thread pinned
to a CPU of its own (the generator runs on another).  What is measured is that
thread's CPU time per frame received (``/proc/<pid>/schedstat`` over the veth's
``rx_packets``): the DUT's cost of taking the frame and judging it, whoever judges
it.  Frames the DUT is too slow for are dropped at the veth's ring before it pays
for them, so they do not count; the throughput a DUT CPU sustains is 1e9 / ns.

Configurations, each taking the same two frames (UDP to port 53, TCP SYN to port 80:
both dropped by the seeds' rules), measured round-robin:

* ``xdp-drop``: an XDP program that drops everything (the floor);
* ``hand-written``: benchmarks/handwritten/firewall.c at XDP native;
* nfpipe's firewall at XDP native (fused and tail calls), XDP generic and TC (tcx);
* ``nftables``: a netdev ingress chain with the same rules (``nft``);
* ``iptables``: the raw table's PREROUTING with the same rules (``iptables``);
* ``xdp-filter`` (xdp-tools): it filters by port, not by protocol, so it gets the
  closest rule set it can express (UDP port 53, TCP ports 80 and 443) and says so.

A tool that is missing (or fails) is skipped with the reason printed; install them
with ``apt-get install nftables iptables xdp-tools`` (benchmarks/README.md).
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from nfpipe import resources
from nfpipe.attach import attach_tc, attach_xdp
from nfpipe.attach.features import probe_live_frames
from nfpipe.bench.kernel import firewall_pipeline
from nfpipe.compose import build, make_plan
from nfpipe.kernel import abi, bpffs, libc
from nfpipe.loader import Object
from nfpipe.runtime import Pipeline
from nfpipe.spec import PipelineSpec
from nfpipe.toolchain import compile as nf_compile
from nfpipe.topo import Topology, new_run_id

HANDWRITTEN = resources.data_dir("benchmarks") / "handwritten"
TOPOLOGY = """topology: nfpbench
description: a traffic generator and a device under test
hosts:
  gen:
    sysctls: {net.ipv6.conf.all.disable_ipv6: 1}   # no neighbour discovery frames
    interfaces:
      eth0: {addresses: [10.99.0.1/24]}
  dut:
    sysctls: {net.ipv6.conf.all.disable_ipv6: 1}
    interfaces:
      eth0: {addresses: [10.99.0.2/24]}
links:
  - {endpoints: [gen:eth0, dut:eth0], mtu: 1500}
"""
DEFER_IRQS, FLUSH_NS = 1000, 20_000     # NAPI polls at most every 20 us while frames come
REFERENCE = "nfpipe-xdp-native"         # what the ratios are relative to
NFT_RULES = """table netdev nfpbench {
    chain ingress {
        type filter hook ingress device "eth0" priority 0; policy accept;
        meta l4proto udp drop
        tcp dport { 80, 443 } drop
    }
}
"""
IPTABLES_RULES = (["-t", "raw", "-A", "PREROUTING", "-p", "udp", "-j", "DROP"],
                  ["-t", "raw", "-A", "PREROUTING", "-p", "tcp", "-m", "multiport", "--dports",
                   "80,443", "-j", "DROP"])


@dataclass
class LiveResult:
    config: str
    packet: str
    ns_per_packet: float | None          # DUT CPU per frame received (median of rounds)
    received: int = 0                    # frames the DUT took, all rounds
    sent: int = 0
    samples: list = field(default_factory=list)
    skipped: str = ""                    # why there is no number
    generator: str = ""                  # what sent the frames (Bench.generator)


# --- inside the namespaces -----------------------------------------------------------------

def _napi_threads() -> set[int]:
    found = set()
    for d in glob.glob("/proc/[0-9]*/comm"):
        with contextlib.suppress(OSError), open(d) as f:
            if f.read().startswith("napi/"):
                found.add(int(d.split("/")[2]))
    return found


def _dut_receive_thread(ifname: str) -> str:
    """In the DUT: GRO on (the veth then receives through NAPI without XDP) and threaded
    NAPI.  /sys shows the caller's network namespace only once mounted from inside it:
    a private mount namespace of this child does that."""
    from pyroute2.ethtool import Ethtool
    with Ethtool() as eth:
        feats = eth.get_features(ifname)
        feats.features["rx-gro"].enable = True
        eth.set_features(ifname, feats)
    libc.unshare(libc.CLONE_NEWNS)
    libc.mount("none", "/", "", libc.MS_REC | libc.MS_PRIVATE)
    libc.mount("sysfs", "/sys", "sysfs", 0)
    with open(f"/sys/class/net/{ifname}/threaded", "w") as f:
        f.write("1")
    # Poll on a timer rather than on every frame: the thread then takes what queued up in
    # batches of similar size whatever the configuration, instead of waking per handful
    # of frames when it is faster than the generator (which made the cost per frame depend
    # on how much faster).
    for knob, value in (("napi_defer_hard_irqs", DEFER_IRQS), ("gro_flush_timeout", FLUSH_NS)):
        with open(f"/sys/class/net/{ifname}/{knob}", "w") as f:
            f.write(str(value))
    with open(f"/sys/class/net/{ifname}/address") as f:
        return f.read().strip()


def _rx_packets(ifname: str) -> int:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        return ipr.link("get", ifname=ifname)[0].get_attr("IFLA_STATS64")["rx_packets"]


#: frames per sendmmsg(2) of the packet-socket generator
_BURST = 1024
_ENOBUFS, _EAGAIN = 105, 11
#: the packet socket waits for the DUT's ring, so a slow DUT (nftables with 10k rules,
#: one for each filter rule: ~360 µs a frame) would hold it for minutes: it sends for
#: at most this long, and the DUT's time is divided by the frames it received
_SEND_SECONDS = 15.0


def _generate(frame: bytes, count: int, ifindex: int, cpu: int, live: bool = True) -> float:
    """In the generator: *count* frames out of *ifindex*; the seconds it took.  Live
    frames of a test run, or (*live* False: the kernel refuses them) a packet socket
    that sends them past the qdisc, a burst of the same frame per sendmmsg(2), for at
    most _SEND_SECONDS."""
    os.sched_setaffinity(0, {cpu})
    if not live:
        import socket
        frames = libc.SameFrames(frame, _BURST)
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
            sock.bind((socket.if_indextoname(ifindex), 0))
            sock.setsockopt(263, 20, 1)          # SOL_PACKET, PACKET_QDISC_BYPASS
            sent, t = 0, time.monotonic()
            while sent < count and time.monotonic() - t < _SEND_SECONDS:
                n = frames.send(sock.fileno(), count - sent)
                if n == -_ENOBUFS or n == -_EAGAIN:
                    continue                  # the veth's ring is full: the DUT is behind
                if n < 0:
                    raise OSError(-n, f"sendmmsg on {socket.if_indextoname(ifindex)}: "
                                      f"{os.strerror(-n)}")
                sent += n
            return time.monotonic() - t
    with Object.load(nf_compile(HANDWRITTEN / "trafficgen.c")) as obj:
        ctx = struct.pack("<6I", 0, len(frame), 0, ifindex, 0, 0)
        t = time.monotonic()
        obj.programs["trafficgen"].test_run(frame, repeat=count, ctx=ctx, batch_size=64,
                                            flags=abi.BPF_F_TEST_XDP_LIVE_FRAMES)
        return time.monotonic() - t


# --- the bench -----------------------------------------------------------------------------

class Bench:
    def __init__(self, topo: Topology):
        self.topo = topo
        self.ifname = topo.ifname("dut", "eth0")
        self.netns = topo.netns("dut")
        before = _napi_threads()
        self.dut_mac = topo.call("dut", _dut_receive_thread, self.ifname)
        threads = _napi_threads() - before
        if len(threads) != 1:
            raise RuntimeError(f"expected one new NAPI thread for {self.ifname}, found "
                               f"{len(threads)}")
        (self.napi,) = threads
        cpus = sorted(os.sched_getaffinity(0))
        self.gen_cpu, dut_cpu = cpus[0], cpus[-1]
        os.sched_setaffinity(self.napi, {dut_cpu})
        self.shared_cpu = len(cpus) < 2
        self.gen_ifindex = topo.ifindex("gen", "eth0")
        # a kernel that refuses live frames gets the packet-socket generator
        self.live_frames = probe_live_frames() is True
        self.generator = "live frames (BPF_F_TEST_XDP_LIVE_FRAMES)" if self.live_frames \
            else f"packet socket, sendmmsg of {_BURST} (live frames refused: " \
                 f"{probe_live_frames()})"
        e = Ether(src="02:00:00:00:00:01", dst=self.dut_mac)
        ip = IP(src="10.99.0.1", dst="10.99.0.2")
        self.packets = {"udp": bytes(e / ip / UDP(sport=5353, dport=53) / (b"q" * 18)),
                        "tcp80": bytes(e / ip / TCP(sport=40000, dport=80, flags="S"))}

    def _cpu_ns(self) -> int:
        with open(f"/proc/{self.napi}/schedstat") as f:
            return int(f.read().split()[0])

    def measure(self, frame: bytes, count: int) -> tuple[float | None, int]:
        rx0, cpu0 = self.topo.call("dut", _rx_packets, self.ifname), self._cpu_ns()
        self.topo.call("gen", _generate, frame, count, self.gen_ifindex, self.gen_cpu,
                       self.live_frames, timeout=600)
        rx1, last = rx0, -1
        while rx1 != last:                    # until the DUT has drained its ring
            last = rx1
            time.sleep(0.05)
            rx1 = self.topo.call("dut", _rx_packets, self.ifname)
        got = rx1 - rx0
        return ((self._cpu_ns() - cpu0) / got if got else None), got

    # each a context manager that makes the DUT judge frames its way
    @contextlib.contextmanager
    def xdp_program(self, source: str, name: str) -> Iterator[None]:
        with Object.load(nf_compile(HANDWRITTEN / source)) as obj:
            att = attach_xdp(obj.programs[name], self.ifname, mode="native", netns=self.netns)
            try:
                yield
            finally:
                att.detach()
                att.close()

    @contextlib.contextmanager
    def nfpipe(self, mode: str, linking: str = "fused", text: str | None = None
               ) -> Iterator[None]:
        """nfpipe's pipeline *text* (default: the seeds' firewall) at *mode*."""
        text = text or firewall_pipeline("tc-ingress" if mode == "tc" else "xdp")
        spec = PipelineSpec.from_text(text, "<bench>")
        with Pipeline.load(build(make_plan(spec, linking=linking))) as p:
            if mode == "tc":
                att = attach_tc(p.entry, self.ifname, "ingress", netns=self.netns, use="tcx")
            else:
                att = attach_xdp(p.entry, self.ifname, mode=mode, netns=self.netns)
            try:
                yield
            finally:
                att.detach()
                att.close()

    def _tool(self, argv: list[str], stdin: str | None = None) -> None:
        r = self.topo.run("dut", argv, input=stdin, capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"{' '.join(argv)}: {(r.stderr or r.stdout).strip()}")

    @contextlib.contextmanager
    def nftables(self) -> Iterator[None]:
        self._tool(["nft", "-f", "-"], NFT_RULES.replace('"eth0"', f'"{self.ifname}"'))
        try:
            yield
        finally:
            self._tool(["nft", "delete", "table", "netdev", "nfpbench"])

    @contextlib.contextmanager
    def iptables(self) -> Iterator[None]:
        for rule in IPTABLES_RULES:
            self._tool(["iptables", *rule])
        try:
            yield
        finally:
            self._tool(["iptables", "-t", "raw", "-F", "PREROUTING"])   # our namespace's

    @contextlib.contextmanager
    def xdp_filter(self) -> Iterator[None]:
        # libxdp keeps its dispatcher and xdp-filter its maps on bpffs: mount it if it
        # is not, and take it away again after (xdp-filter unload removes its pins)
        mounted = bpffs.ensure_mounted()
        libxdp_dir = os.path.join(bpffs.DEFAULT_ROOT, "xdp")    # libxdp's, made on load
        had_dir = os.path.isdir(libxdp_dir)
        try:
            self._tool(["xdp-filter", "load", "--mode", "native", self.ifname])
            try:
                for port, proto in (("53", "udp"), ("80", "tcp"), ("443", "tcp")):
                    self._tool(["xdp-filter", "port", port, "--proto", proto])
                yield
            finally:
                self._tool(["xdp-filter", "unload", self.ifname])
        finally:
            if not had_dir:                     # what the bench made goes with it
                with contextlib.suppress(OSError):
                    os.rmdir(libxdp_dir)
            if mounted:
                bpffs.unmount(bpffs.DEFAULT_ROOT)


def configs(b: Bench) -> dict[str, tuple[Callable[[], Any], str | None]]:
    """name -> (context manager factory, the program it needs on PATH, if any)."""
    return {
        "xdp-drop": (lambda: b.xdp_program("xdp_drop.c", "xdp_drop"), None),
        "hand-written": (lambda: b.xdp_program("firewall.c", "firewall"), None),
        "nfpipe-xdp-native": (lambda: b.nfpipe("native"), None),
        "nfpipe-xdp-native-tailcall": (lambda: b.nfpipe("native", "tailcall"), None),
        "nfpipe-xdp-generic": (lambda: b.nfpipe("generic"), None),
        "nfpipe-tc": (lambda: b.nfpipe("tc"), None),
        "nftables": (b.nftables, "nft"),
        "iptables": (b.iptables, "iptables"),
        "xdp-filter": (b.xdp_filter, "xdp-filter"),
    }


def run_live(selected: list[str] | None = None, *, frames: int = 2_000_000, rounds: int = 5,
             out=sys.stdout, json_output: bool = False) -> list[LiveResult]:
    topo = Topology.from_text(TOPOLOGY, new_run_id())
    results: dict[tuple[str, str], LiveResult] = {}
    with topo:
        b = Bench(topo)
        table = configs(b)
        names = [n for n in table if not selected or any(n.startswith(s) for s in selected)]
        skipped: dict[str, str] = {}
        for n in names:
            tool = table[n][1]
            if tool and shutil.which(tool) is None:
                skipped[n] = f"{tool} is not installed (apt-get install nftables iptables " \
                             f"xdp-tools)"
        if not json_output:
            print(f"live frames, DUT CPU ns per frame received (median of {rounds} rounds of "
                  f"{frames} frames); generator on CPU {b.gen_cpu}, DUT on CPU "
                  f"{sorted(os.sched_getaffinity(b.napi))[0]}"
                  f"{' (one CPU: they share it)' if b.shared_cpu else ''}; generator: "
                  f"{b.generator}", file=out)
        for n in names:
            for kind in b.packets:
                results[(n, kind)] = LiveResult(n, kind, None, skipped=skipped.get(n, ""),
                                                generator=b.generator)
        for _ in range(rounds):
            for n in names:
                if skipped.get(n):
                    continue
                try:
                    with table[n][0]():
                        for kind, frame in b.packets.items():
                            ns, got = b.measure(frame, frames)
                            r = results[(n, kind)]
                            r.sent += frames
                            r.received += got
                            if ns is not None:
                                r.samples.append(ns)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    skipped[n] = str(exc).splitlines()[0][:200]
                    for kind in b.packets:
                        results[(n, kind)].skipped = skipped[n]
    return finish(list(results.values()), report, out, json_output)


def finish(results: list, report: Callable, out, json_output: bool) -> list:
    """Each result's median of its samples (none when it was skipped), reported unless
    the run prints JSON."""
    for r in results:
        if r.samples and not r.skipped:
            r.ns_per_packet = statistics.median(r.samples)
    if not json_output:
        report(results, out)
    return results


def ratios(results: list[LiveResult]) -> dict[str, dict[str, float]]:
    """config -> packet -> its ns per frame over nfpipe-xdp-native's (> 1: nfpipe is faster)."""
    ref = {r.packet: r.ns_per_packet for r in results if r.config == REFERENCE}
    out: dict[str, dict[str, float]] = {}
    for r in results:
        base = ref.get(r.packet)
        if r.ns_per_packet and base:
            out.setdefault(r.config, {})[r.packet] = r.ns_per_packet / base
    return out


def report(results: list[LiveResult], out) -> None:
    rat = ratios(results)
    kinds = list(dict.fromkeys(r.packet for r in results))
    by = {(r.config, r.packet): r for r in results}
    print(f"  {'configuration':<28}" + "".join(f"{k + ' ns':>10}{'x nfpipe':>10}" for k in kinds),
          file=out)
    for config in dict.fromkeys(r.config for r in results):
        first = by[(config, kinds[0])]
        if first.skipped:
            print(f"  {config:<28}skipped: {first.skipped}", file=out)
            continue
        cells = []
        for k in kinds:
            r = by[(config, k)]
            ns = f"{r.ns_per_packet:10.1f}" if r.ns_per_packet else f"{'-':>10}"
            x = rat.get(config, {}).get(k)
            cells.append(ns + (f"{x:10.2f}" if x else f"{'-':>10}"))
        print(f"  {config:<28}" + "".join(cells), file=out)


def as_json(results: list[LiveResult]) -> dict:
    return {"results": [asdict(r) for r in results], "over_nfpipe_xdp_native": ratios(results)}
