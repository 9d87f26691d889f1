"""The checks that run inside the offload VM, in one Python process.

Python is slow under TCG (seconds per import of nfpipe), so the VM runs this
file once: ``python offload/guest.py OUT.json [CHECK...]``.  Each check gets a
fresh netdevsim device (``/sys/bus/netdevsim/new_device``: no udev in the VM,
so its netdev is ``eth<N>``), runs, and records ``{"ok", "detail", "error",
"seconds"}`` under its name; OUT.json is rewritten after every check, so what
finished before a crash or a timeout is kept.  The device is deleted after each
check, which also proves that nothing was left bound to it (netdevsim warns,
and nfpipe checks, that no program or map outlives its device).

The host side (``offload/test_offload_vm.py``) boots the VM once and asserts on
each check's record.  A check is a function ``check_<name>(dev)`` returning a
dict of facts (the detail); failing is raising.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

SYS = Path("/sys/bus/netdevsim")
DEBUGFS = Path("/sys/kernel/debug/netdevsim")
CHECKS: dict[str, Callable] = {}


def check(fn: Callable) -> Callable:
    CHECKS[fn.__name__.removeprefix("check_")] = fn
    return fn


class Nsim:
    """One netdevsim device with one port, created and deleted by this process."""

    _next = 100

    def __init__(self):
        Nsim._next += 1
        self.id = Nsim._next
        (SYS / "new_device").write_text(f"{self.id} 1")
        net = SYS / "devices" / f"netdevsim{self.id}" / "net"
        deadline = time.monotonic() + 10
        while not (net.is_dir() and any(net.iterdir())):
            if time.monotonic() > deadline:
                raise RuntimeError(f"netdevsim{self.id} made no netdev")
            time.sleep(0.05)
        self.ifname = next(net.iterdir()).name
        self.ifindex = int((net / self.ifname / "ifindex").read_text())
        os.system(f"ip link set {self.ifname} up 2>/dev/null")
        self.ddir = DEBUGFS / f"netdevsim{self.id}"
        self.port = self.ddir / "ports" / "0"

    def debugfs(self, name: str, value: str | None = None, port: bool = True) -> str:
        """Read (or set) a netdevsim debugfs knob of the device or its port."""
        path = (self.port if port else self.ddir) / name
        if value is not None:
            path.write_text(value)
        return path.read_text().strip()

    @property
    def offloaded_id(self) -> int:
        return int(self.debugfs("bpf_offloaded_id"))

    def delete(self) -> None:
        (SYS / "del_device").write_text(str(self.id))


def expect_errno(fn: Callable, *errnos: int) -> Exception:
    """Run *fn*; it must raise an error carrying one of *errnos* (``.errno``)."""
    try:
        fn()
    except Exception as exc:
        if getattr(exc, "errno", None) in errnos:
            return exc
        raise AssertionError(f"expected errno {[errno.errorcode[e] for e in errnos]}, got "
                             f"{type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"expected errno {[errno.errorcode[e] for e in errnos]}, no error")


# --------------------------------------------------------------------- the low-level API

def _pass_prog(ifindex: int = 0):
    from nfpipe.attach.features import PASS_XDP
    from nfpipe.kernel import abi, syscall as sc
    from nfpipe.loader.program import Program
    fd, _ = sc.prog_load(abi.ProgType.XDP, PASS_XDP, "GPL", name="nfp_vm_pass",
                         prog_ifindex=ifindex)
    return Program.from_fd(fd)


@check
def check_probe(dev: Nsim) -> dict:
    from nfpipe.attach.probe import probe_interface
    info = probe_interface(dev.ifname)
    assert info["driver"] == "netdevsim", info
    assert info["offload"] is True, info["offload"]
    assert "hw-offload" in info["xdp"].get("xdp_features", []), info["xdp"]
    return {"driver": info["driver"], "offload": info["offload"],
            "xdp_features": info["xdp"].get("xdp_features")}


@check
def check_device_map(dev: Nsim) -> dict:
    """A hash map bound to the device: written and read through the driver, full at 2."""
    from nfpipe.loader.maps import Map
    from nfpipe.loader.specs import MapSpec
    spec = MapSpec("nfp_vm_hash", type=1, key_size=4, value_size=8, max_entries=2)
    too_big = MapSpec("nfp_vm_big", type=1, key_size=4, value_size=8, max_entries=1024)
    expect_errno(lambda: Map.create(too_big, ifindex=dev.ifindex).close(), errno.ENOMEM)
    with Map.create(spec, ifindex=dev.ifindex) as m:
        m[b"\1\0\0\0"] = b"\7" + b"\0" * 7
        m[b"\2\0\0\0"] = b"\11" + b"\0" * 7
        full = expect_errno(lambda: m.__setitem__(b"\3\0\0\0", b"\0" * 8), errno.E2BIG)
        got = m[b"\1\0\0\0"]
        assert bytes(got)[:1] == b"\7", got
    return {"full": str(full)}


@check
def check_attach_offload(dev: Nsim) -> dict:
    """A program loaded for the device, attached in offload mode, then detached."""
    from nfpipe.attach.query import query
    from nfpipe.attach.xdp import attach_xdp
    unbound = _pass_prog()
    try:
        refused = ""
        try:
            attach_xdp(unbound, dev.ifname, mode="offload").detach()
            raise AssertionError("an unbound program attached in offload mode")
        except Exception as exc:
            refused = str(exc)
        assert f"ifindex={dev.ifindex}" in refused, refused
    finally:
        unbound.close()
    prog = _pass_prog(dev.ifindex)
    with prog:
        att = attach_xdp(prog, dev.ifname, mode="offload")
        try:
            assert dev.offloaded_id == prog.id, (dev.offloaded_id, prog.id)
            state = query(dev.ifname)["xdp"]
            assert [a["mode"] for a in state] == ["offload"], state
        finally:
            att.detach()
        assert dev.offloaded_id == 0
    return {"modes": [a["mode"] for a in state]}


@check
def check_native_and_offload(dev: Nsim) -> dict:
    """Native and offloaded programs on one interface at once (xdpmulti)."""
    from nfpipe.attach.query import query
    from nfpipe.attach.xdp import attach_xdp
    with _pass_prog() as native, _pass_prog(dev.ifindex) as hw:
        a = attach_xdp(native, dev.ifname, mode="native")
        try:
            b = attach_xdp(hw, dev.ifname, mode="offload")
            try:
                modes = sorted(x["mode"] for x in query(dev.ifname)["xdp"])
                assert modes == ["native", "offload"], modes
            finally:
                b.detach()
        finally:
            a.detach()
    return {"modes": modes}


@check
def check_refusals(dev: Nsim) -> dict:
    """The device's refusals (debugfs fault injection), each with its error."""
    from nfpipe.attach.xdp import attach_xdp
    from nfpipe.loader.maps import Map
    from nfpipe.loader.specs import MapSpec
    out = {}
    dev.debugfs("bpf_bind_verifier_accept", "N", port=False)
    try:
        out["verifier"] = str(expect_errno(lambda: _pass_prog(dev.ifindex).close(),
                                           errno.EOPNOTSUPP, 524))
    finally:
        dev.debugfs("bpf_bind_verifier_accept", "Y", port=False)
    dev.debugfs("bpf_map_accept", "N")
    try:
        spec = MapSpec("nfp_vm_arr", type=2, key_size=4, value_size=8, max_entries=2)
        out["map"] = str(expect_errno(lambda: Map.create(spec, ifindex=dev.ifindex).close(),
                                      errno.EOPNOTSUPP, 524))
    finally:
        dev.debugfs("bpf_map_accept", "Y")
    dev.debugfs("bpf_xdpoffload_accept", "N")
    try:
        with _pass_prog(dev.ifindex) as prog:
            try:
                attach_xdp(prog, dev.ifname, mode="offload").detach()
                raise AssertionError("offload attach worked with bpf_xdpoffload_accept=N")
            except AssertionError:
                raise
            except Exception as exc:
                out["attach"] = str(exc)
        assert "XDP offload disabled" in out["attach"] or "refused" in out["attach"], out
    finally:
        dev.debugfs("bpf_xdpoffload_accept", "Y")
    return out


# ----------------------------------------------------------------- pipelines, deployed

TREE = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("TMPDIR") or "/tmp")    # the guest's scratch (tmpfs)


def pipeline_file(name: str, tcp_ttl: int = 1, extra_node: bool = False) -> Path:
    """The split-guard example for offload (fused, constants per node), as a file."""
    path = WORK / f"{name}.yaml"
    path.write_text(split_guard(name, tcp_ttl, extra_node))
    return path


def split_guard(name: str, tcp_ttl: int = 1, extra_node: bool = False) -> str:
    if extra_node:          # one more node behind guard_tcp: a new stats row in an update
        return split_guard(name, tcp_ttl).replace(
            "  - guard_tcp.out -> pass\n", "  - guard_tcp.out -> guard_x\n"
            "  - guard_x -> pass\n").replace(
            "edges:\n", f"  - id: guard_x\n    nf: {TREE}/bpf/examples/ttl_guard.c\n"
            "edges:\n")
    return (f"""pipeline: {name}
hook: xdp
mode: offload
nodes:
  - id: split
    nf: {TREE}/bpf/examples/split_l4.c
    ports: [out, udp]
  - id: guard_tcp
    nf: {TREE}/bpf/examples/ttl_guard.c
    config: {{min_ttl: {tcp_ttl}}}
  - id: guard_udp
    nf: {TREE}/bpf/examples/ttl_guard.c
    config: {{min_ttl: 8}}
edges:
  - split.out -> guard_tcp
  - split.udp -> guard_udp
  - guard_tcp.out -> pass
  - guard_udp -> pass
""")


def telemetry_tail() -> str:
    """Telemetry first: nothing of it can be offloaded, not even a prefix."""
    return (f"pipeline: offl-tele\nhook: xdp\nmode: offload\nnodes:\n"
            f"  - {{id: t, nf: telemetry}}\n"
            f"  - {{id: g, nf: {TREE}/bpf/examples/ttl_guard.c}}\nedges:\n  - t -> g\n"
            f"  - g -> pass\n")


def prewarm() -> int:
    """Build on the host what the checks build in the guest (the compile cache both
    share: the compiler is slow under TCG).  Returns how many pipelines."""
    from nfpipe import resources
    from nfpipe.compose import build, make_plan
    from nfpipe.compose.build import map_layouts
    from nfpipe.compose.offload import offload_build
    from nfpipe.compose.tiers import tiered_build
    from nfpipe.spec import PipelineSpec
    texts = [split_guard("offl"), split_guard("offl", 3), split_guard("offl", 3, True),
             split_guard("offl-f"),
             telemetry_tail(), TIERS.format(name="offl-tiers", tree=TREE, entry="", first=""),
             TIERS.format(name="offl-tb", tree=TREE, entry=TIERS_BAD_ENTRY,
                          first=TIERS_BAD_FIRST)]
    texts.append(TIERS.format(name="cli-tiers", tree=TREE, entry="", first=""))
    specs = [PipelineSpec.from_text(t) for t in texts]
    example = TREE / "examples" / "split-guard.yaml"
    specs.append(PipelineSpec.from_file(example))
    specs.append(PipelineSpec.from_text(example.read_text().replace(
        "../bpf/", f"{TREE}/bpf/").replace("min_ttl: 8", "min_ttl: 9")))
    specs.append(PipelineSpec.from_text(RULES_FILE))
    map_layouts(resources.nf_source("filter.c"), hook="xdp", instance="fw")  # nfpipe rules
    for spec in specs:
        b = build(make_plan(spec, mode="offload"))
        full = offload_build(b, "netdevsim")
        if not full.ok:
            tiered_build(b, "netdevsim", full=full)
    tiered_build(build(make_plan(_tiers_test().spec())), "netdevsim")   # nic_then_host
    return len(specs) + 1


def _bound_progs(dev: Nsim) -> list[str]:
    d = dev.ddir / "bpf_bound_progs"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _sysfs_root() -> str:
    """A bpffs of this VM for deploy state (deploy pins there)."""
    from nfpipe.kernel import bpffs
    bpffs.ensure_mounted()
    return "/sys/fs/bpf/nfpipe-vm"


@check
def check_deploy_update_destroy(dev: Nsim) -> dict:
    """deploy --mode offload: the offload build bound to the device, attached in offload
    mode; status and stats; an update (a new constant: a new program); destroy leaves
    nothing bound to the device."""
    from nfpipe.attach import Target
    from nfpipe.deploy import deploy, destroy, open_map, stats, status
    root = _sysfs_root()
    t0 = time.monotonic()
    m = deploy(pipeline_file("offl"), targets=[Target(dev.ifname)], mode="offload",
               root=root)
    out: dict = {"deploy_s": round(time.monotonic() - t0, 1)}
    try:
        assert [i.mode for i in m.interfaces] == ["offload"], m.interfaces
        assert dev.offloaded_id == m.entry_prog_id, (dev.offloaded_id, m.entry_prog_id)
        st = status("offl", root=root)[0]
        assert st["state"] == "running" and st["mode"] == "offload", st
        assert st["repaired"] == [], st
        out["placement"] = st["interfaces"][0]["placement"]
        assert any("nfp_stats': yes - array, 2 entries" in ln for ln in out["placement"])
        # the counters live on the device: written and read back through the driver
        with open_map("offl", "nfp_stats", root=root) as sm:
            from nfpipe.kernel import syscall as sc
            assert sm.max_entries == 2 and sc.map_info(sm.fd).ifindex == dev.ifindex
            sm[1] = (5).to_bytes(8, "little") + (300).to_bytes(8, "little")
        out["stats"] = stats("offl", root=root)
        assert out["stats"]["split"] == {"udp": {"packets": 5, "bytes": 300}}, out["stats"]
        first = dev.offloaded_id
        t0 = time.monotonic()
        m2 = deploy(pipeline_file("offl", tcp_ttl=3), root=root)
        out["update_s"] = round(time.monotonic() - t0, 1)
        out["update"] = m2.update
        assert dev.offloaded_id == m2.entry_prog_id != first, (dev.offloaded_id, first)
        assert stats("offl", root=root)["split"] == {"udp": {"packets": 5, "bytes": 300}}
        m3 = deploy(pipeline_file("offl", tcp_ttl=3, extra_node=True), root=root)
        out["update_node"] = m3.update
        assert dev.offloaded_id == m3.entry_prog_id != m2.entry_prog_id
        assert "guard_x" in stats("offl", root=root)
        out["prog_ids"] = [m.entry_prog_id, m2.entry_prog_id]
    finally:
        out["destroy"] = destroy("offl", root=root)
    assert dev.offloaded_id == 0
    deadline = time.monotonic() + 5         # programs are freed after an RCU grace period
    while _bound_progs(dev) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {p: (dev.ddir / "bpf_bound_progs" / p / "id").read_text().strip()
            for p in _bound_progs(dev)}
    assert not left, (left, out)
    return out


def _nothing_left(dev: Nsim, root: str, name: str) -> None:
    assert dev.offloaded_id == 0
    assert not (Path(root) / name).exists(), list((Path(root) / name).iterdir())
    deadline = time.monotonic() + 5
    while _bound_progs(dev) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _bound_progs(dev), _bound_progs(dev)


@check
def check_deploy_refusals(dev: Nsim) -> dict:
    """What cannot be offloaded is refused before anything is loaded, naming the node,
    map or helper; what the device refuses (debugfs fault injection: the verifier, map
    allocation, the XDP offload attach) fails the deploy and leaves nothing behind."""
    from nfpipe.attach import Target
    from nfpipe.deploy import deploy, destroy
    from nfpipe.errors import NfpipeError
    root = _sysfs_root()
    out = {}

    def refused(name: str, path: Path) -> str:
        try:
            deploy(path, targets=[Target(dev.ifname)], mode="offload", root=root)
        except NfpipeError as exc:
            _nothing_left(dev, root, name)
            return str(exc)
        destroy(name, root=root)
        raise AssertionError(f"deploy of {name} worked")

    tele = WORK / "offl-tele.yaml"
    tele.write_text(telemetry_tail())
    out["profile"] = refused("offl-tele", tele)
    assert "--mode offload is not possible" in out["profile"], out
    assert "node 't': map 'flows' is a lru_hash map" in out["profile"], out
    assert "tiers: the entry node 't' cannot be offloaded" in out["profile"], out
    # the verifier refusing is seen by the trial load of the probe, before the pipeline
    for knob, port, expect in (("bpf_bind_verifier_accept", False, "does not load: ENOTSUP"),
                               ("bpf_map_accept", True, "BPF_MAP_CREATE"),
                               ("bpf_xdpoffload_accept", True, "refused the offloaded")):
        dev.debugfs(knob, "N", port=port)
        try:
            out[knob] = refused("offl-f", pipeline_file("offl-f"))
        finally:
            dev.debugfs(knob, "Y", port=port)
        assert expect in out[knob], out
    return out


TIERS = """pipeline: {name}
hook: xdp
mode: offload
nodes:
{entry}  - {{id: split, nf: {tree}/bpf/examples/split_l4.c, ports: [out, udp]}}
  - {{id: gt, nf: {tree}/bpf/examples/ttl_guard.c, config: {{min_ttl: 2}}}}
  - {{id: t, nf: telemetry}}
edges:
{first}  - split.out -> gt
  - split.udp -> drop
  - gt -> t
  - t -> pass
"""


TIERS_BAD_ENTRY = "  - {id: t0, nf: telemetry}\n"
TIERS_BAD_FIRST = "  - t0 -> split\n"


@check
def check_deploy_tiered(dev: Nsim) -> dict:
    """A pipeline whose tail cannot be offloaded (telemetry: LRU maps, a ring buffer):
    deploy --mode offload puts its prefix on the NIC and the whole pipeline at native
    XDP on the same interface; status shows both attachments, stats both tiers'
    counters (the NIC's read through the device); destroy removes both.  A pipeline
    whose entry cannot be offloaded is refused, naming it."""
    from nfpipe.attach import Target
    from nfpipe.attach.query import query
    from nfpipe.deploy import deploy, destroy, open_map, stats, status
    from nfpipe.errors import DeployError, NfpipeError
    root = _sysfs_root()
    path = WORK / "offl-tiers.yaml"
    path.write_text(TIERS.format(name="offl-tiers", tree=TREE, entry="", first=""))
    out: dict = {}
    m = deploy(path, targets=[Target(dev.ifname)], mode="offload", root=root)
    try:
        out["modes"] = sorted(i.mode for i in m.interfaces)
        assert out["modes"] == ["native", "offload"], m.interfaces
        nic = next(i for i in m.interfaces if i.mode == "offload")
        assert dev.offloaded_id == nic.prog_id != m.entry_prog_id
        out["placement"] = nic.placement
        assert any(ln.startswith("tiered: yes") for ln in nic.placement), nic.placement
        st = status("offl-tiers", root=root)[0]
        assert st["state"] == "running" and st["repaired"] == [], st    # nothing stray
        assert {Path(p).exists() for p in (m.nic_program, m.entry_program)} == {True}, m
        assert sorted(x["mode"] for x in query(dev.ifname)["xdp"]) == ["native", "offload"]
        with open_map("offl-tiers", "nic:nfp_stats", root=root) as sm:
            sm[0] = (3).to_bytes(8, "little") + (180).to_bytes(8, "little")
        out["stats"] = stats("offl-tiers", root=root)
        assert out["stats"]["split"] == {"out": {"packets": 3, "bytes": 180}}, out["stats"]
        try:
            deploy(path, root=root)
            raise AssertionError("an update of a tiered pipeline was taken")
        except DeployError as exc:
            out["update"] = str(exc)
    finally:
        out["destroy"] = destroy("offl-tiers", root=root)
    assert query(dev.ifname)["xdp"] == [], query(dev.ifname)
    _nothing_left(dev, root, "offl-tiers")
    bad = WORK / "offl-tiers-bad.yaml"
    bad.write_text(TIERS.format(name="offl-tb", tree=TREE, entry=TIERS_BAD_ENTRY,
                                first=TIERS_BAD_FIRST))
    try:
        deploy(bad, targets=[Target(dev.ifname)], mode="offload", root=root)
        raise AssertionError("a pipeline with an entry that cannot be offloaded deployed")
    except NfpipeError as exc:
        out["refused"] = str(exc)
    assert "the entry node 't0' cannot be offloaded" in out["refused"], out
    _nothing_left(dev, root, "offl-tb")
    return out


@check
def check_nic_then_host_verdicts(_dev: Nsim) -> dict:
    """The NIC tier's program and the host's, run one after the other under
    BPF_PROG_TEST_RUN with the hand-over record in the metadata area between them,
    give the whole pipeline's verdicts (tests/pipeline/test_tiers.py's walk, here in a
    kernel that lets XDP programs call bpf_xdp_adjust_meta, whatever the host's)."""
    from nfpipe.compose import build, make_plan
    from nfpipe.compose.tiers import tiered_build
    tiers = _tiers_test()
    b = build(make_plan(tiers.spec()))
    tb, why = tiered_build(b, "netdevsim")
    assert tb is not None, why
    out = tiers.nic_then_host(b, tb)
    assert out == {"packets": 10, "handed": 3}, out
    return out


def _tiers_test():
    """tests/pipeline/test_tiers.py, the module (its spec and its walk)."""
    if str(TREE) not in sys.path:
        sys.path.insert(0, str(TREE))
    import tests.pipeline.test_tiers as tiers
    return tiers


# ------------------------------------------------- the CLI, and the kernel's own view

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cli(*argv: str) -> tuple[int, str, str]:
    """``nfpipe ARGV...`` in this process (its parser, its output, its exit code: the
    CLI's own code; a new interpreter costs 7-20 s under TCG)."""
    import contextlib
    import io

    from nfpipe.cli.main import main as nfpipe_main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = nfpipe_main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def run(*argv: str, timeout: float = 120) -> str:
    import subprocess
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (argv, res.returncode, res.stdout, res.stderr)
    return res.stdout


def ip_link(dev: Nsim) -> str:
    """``ip -d link show dev IFACE``: iproute2's view of the XDP attachments."""
    return run("ip", "-d", "link", "show", "dev", dev.ifname)


def bpftool_prog(prog_id: int) -> str | None:
    """``bpftool prog show id N`` (plain text: ``offloaded_to IFACE`` for a bound
    program), or None where bpftool is not installed (off CI only)."""
    import shutil
    if shutil.which("bpftool") is None:
        assert not IN_CI, "CI=true: bpftool must be installed (.ci/run installs it)"
        return None
    return run("bpftool", "prog", "show", "id", str(prog_id))


def _xdp_ids(text: str) -> dict[str, int]:
    """The program ids per XDP mode in ``ip -d link`` output: ``prog/xdp id N`` for
    one attachment, ``prog/xdpdrv id N`` / ``prog/xdpoffload id N`` under xdpmulti."""
    import re
    return {m: int(i) for m, i in re.findall(r"prog/(xdp\w*) id (\d+)", text)}


@contextlib.contextmanager
def destroyed_after(dev: Nsim, name: str, out: dict) -> Iterator[None]:
    """``nfpipe destroy NAME`` after the block, whatever happens in it (recorded in
    *out*); when the block went well, the device must then be as it was: no XDP
    program on it, nothing bound to it, no state left on bpffs."""
    try:
        yield
    finally:
        rc, text, err = cli("destroy", name)
        out["destroy"] = (rc, text.splitlines(), err)
    assert rc == 0, out["destroy"]
    assert not _xdp_ids(ip_link(dev)), ip_link(dev)
    _nothing_left(dev, "/sys/fs/bpf/nfpipe", name)


@check
def check_cli_example(dev: Nsim) -> dict:
    """The shipped example as a user runs it: ``nfpipe plan`` and ``nfpipe deploy
    examples/split-guard.yaml --mode offload`` (the first one as a process of its own),
    status, stats, destroy; the kernel's own view in between: ``ip -d link``
    (xdpoffload, the program's id), debugfs ``bpf_offloaded_id``, bpftool
    (``offloaded_to``)."""
    example = str(TREE / "examples" / "split-guard.yaml")
    out: dict = {}
    rc, text, err = cli("plan", example, "--mode", "offload", "--iface", dev.ifname)
    assert rc == 0, (rc, text, err)
    out["plan"] = text.splitlines()
    assert any("offload" in ln and "yes" in ln for ln in out["plan"]), text
    t0 = time.monotonic()
    res = __import__("subprocess").run(
        [sys.executable, "-m", "nfpipe", "deploy", example, "--iface", dev.ifname,
         "--mode", "offload"], capture_output=True, text=True, timeout=240)
    out["deploy_s"] = round(time.monotonic() - t0, 1)
    out["deploy"] = (res.stdout + res.stderr).splitlines()
    with destroyed_after(dev, "split-guard", out):
        assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
        rc, text, err = cli("status", "split-guard", "--json")
        assert rc == 0, (rc, text, err)
        st = json.loads(text)[0]
        assert st["state"] == "running" and st["mode"] == "offload", st
        link = ip_link(dev)
        out["ip_link"] = link.splitlines()
        ids = _xdp_ids(link)
        assert "xdpoffload" in link and list(ids.values()) == [dev.offloaded_id], (ids, link)
        prog_id = dev.offloaded_id
        assert st["interfaces"][0]["now"] == [prog_id] == [st["interfaces"][0]["prog_id"]], st
        tool = bpftool_prog(prog_id)
        out["bpftool"] = tool.splitlines() if tool else "bpftool not installed"
        if tool is not None:
            assert f"offloaded_to {dev.ifname}" in tool, tool
        rc, text, err = cli("stats", "split-guard", "--json")
        assert rc == 0, (rc, text, err)
        out["stats"] = json.loads(text)
        assert set(out["stats"]) >= {"split", "guard_tcp", "guard_udp"}, out["stats"]
        # an update of the running offloaded pipeline, its file still "linking: auto"
        # and no --mode: it stays one program on the NIC, swapped in place
        changed = WORK / "split-guard.yaml"
        changed.write_text(Path(example).read_text().replace("../bpf/", f"{TREE}/bpf/")
                           .replace("min_ttl: 8", "min_ttl: 9"))
        rc, text, err = cli("deploy", str(changed))
        out["update"] = (text + err).splitlines()
        assert rc == 0, (rc, text, err)
        assert dev.offloaded_id not in (0, prog_id), (dev.offloaded_id, prog_id)
        assert _xdp_ids(ip_link(dev)) == {"xdp": dev.offloaded_id}, ip_link(dev)
    return out


@check
def check_cli_tiered(dev: Nsim) -> dict:
    """A tiered deploy through the CLI: the prefix on the NIC, the pipeline at native
    XDP on the same interface; ``ip -d link`` shows xdpmulti with both programs,
    bpftool shows the NIC's bound to the device and the host's not."""
    path = WORK / "cli-tiers.yaml"
    path.write_text(TIERS.format(name="cli-tiers", tree=TREE, entry="", first=""))
    out: dict = {}
    rc, text, err = cli("deploy", str(path), "--iface", dev.ifname, "--mode", "offload")
    out["deploy"] = (text + err).splitlines()
    with destroyed_after(dev, "cli-tiers", out):
        assert rc == 0, (rc, text, err)
        link = ip_link(dev)
        out["ip_link"] = link.splitlines()
        ids = _xdp_ids(link)
        assert "xdpmulti" in link, link
        assert ids.get("xdpoffload") == dev.offloaded_id and ids.get("xdpdrv"), (ids, link)
        nic, host = bpftool_prog(ids["xdpoffload"]), bpftool_prog(ids["xdpdrv"])
        out["bpftool"] = [nic, host]
        if nic is not None:
            assert f"offloaded_to {dev.ifname}" in nic, nic
            assert "offloaded_to" not in host, host
        rc, text, err = cli("status", "cli-tiers")
        assert rc == 0, (rc, text, err)
        out["status"] = text.splitlines()
        assert not any("repaired" in ln for ln in out["status"]), text
    return out


RULES_FILE = """pipeline: offl-rules
hook: xdp
nodes:
  - id: fw
    nf: filter
    config: {default: allow, rules: [{action: drop, proto: udp, name: no UDP}]}
edges:
  - fw -> pass
"""


def _rules(name: str, node: str) -> dict:
    rc, text, err = cli("rules", name, node, "--json")
    assert rc == 0, (rc, text, err)
    return json.loads(text)


@check
def check_rules_offloaded(dev: Nsim) -> dict:
    """``nfpipe rules`` on an offloaded filter: its maps live on the device (netdevsim:
    two entries a map, so one linear entry per generation).  A new rule is written into
    the other generation through the device and made active, no program reloaded; a
    rule set that needs more entries than the device gave the filter is refused with
    nothing changed; bpftool sees the maps bound to the device."""
    from nfpipe.deploy.inspection import manifest_of
    from nfpipe.deploy.steps import close_node_maps, open_node_maps
    path = WORK / "offl-rules.yaml"
    path.write_text(RULES_FILE)
    ssh, two = WORK / "rules-ssh.yaml", WORK / "rules-two.yaml"
    ssh.write_text("rules:\n  - {action: drop, proto: tcp, dport: 22, name: no ssh}\n")
    two.write_text("rules:\n  - {action: drop, proto: tcp, dport: 22}\n"
                   "  - {action: drop, proto: udp}\n")
    out: dict = {}
    rc, text, err = cli("deploy", str(path), "--iface", dev.ifname, "--mode", "offload")
    out["deploy"] = (text + err).splitlines()
    with destroyed_after(dev, "offl-rules", out):
        assert rc == 0, (rc, text, err)
        prog_id = dev.offloaded_id
        assert _xdp_ids(ip_link(dev)) == {"xdp": prog_id}, ip_link(dev)
        before = _rules("offl-rules", "fw")
        assert [r["name"] for r in before["rules"]] == ["no UDP"], before
        m = manifest_of("offl-rules")
        pin = m.maps["fw__lin"]
        if bpftool_prog(prog_id) is not None:
            shown = run("bpftool", "map", "show", "pinned", pin)
            out["bpftool_map"] = shown.splitlines()
            assert f"offloaded_to {dev.ifname}" in shown and "max_entries 2" in shown, shown
        rc, text, err = cli("rules", "offl-rules", "fw", str(ssh))
        out["update"] = (text + err).splitlines()
        assert rc == 0 and "1 rules active" in text and "no program reloaded" in text, \
            (rc, text, err)
        after = _rules("offl-rules", "fw")
        assert [r["name"] for r in after["rules"]] == ["no ssh"], after
        assert dev.offloaded_id == prog_id                     # the same program
        maps = open_node_maps(manifest_of("offl-rules"), "fw")  # read through the device
        try:
            gen = maps["active"][0] & 1
            entry, g = maps["lin"][gen], maps["gens"][gen]
            out["device_entry"] = {"gen": gen, "dport": entry["dport"], "nlin": g["nlin"]}
            assert entry["dport"] == [22, 22] and g["ready"] == 1 and g["nlin"] == 1, entry
        finally:
            close_node_maps(maps)
        revision = manifest_of("offl-rules").revision
        rc, text, err = cli("rules", "offl-rules", "fw", str(two))
        out["refused"] = (rc, err.strip())
        assert rc != 0 and "holds 1 linear entry" in err, (rc, text, err)
        assert manifest_of("offl-rules").revision == revision
        assert [r["name"] for r in _rules("offl-rules", "fw")["rules"]] == ["no ssh"]
        maps = open_node_maps(manifest_of("offl-rules"), "fw")
        try:
            assert maps["active"][0] & 1 == gen and maps["lin"][gen]["dport"] == [22, 22]
        finally:
            close_node_maps(maps)
        rc, text, err = cli("status", "offl-rules", "--json")
        assert rc == 0 and json.loads(text)[0]["state"] == "running", (rc, text, err)
    return out


# ------------------------------------------------------------------------------- running

def main(argv: list[str]) -> int:
    out = Path(argv[0])
    names = argv[1:] or list(CHECKS)
    results: dict[str, dict] = {"_meta": {"uname": os.uname().release, "pid": os.getpid()}}
    t_all = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        rec: dict = {"ok": False}
        dev = None
        try:
            dev = Nsim()
            rec["detail"] = CHECKS[name](dev)
            rec["ok"] = True
        except BaseException as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
            rec["traceback"] = traceback.format_exc()[-4000:]
        finally:
            if dev is not None:
                try:
                    dev.delete()
                except OSError as exc:
                    rec["ok"] = False
                    rec["error"] = rec.get("error", "") + f"; deleting the device: {exc}"
        rec["seconds"] = round(time.monotonic() - t0, 2)
        results[name] = rec
        print(f"guest: {name}: {'ok' if rec['ok'] else rec['error']} ({rec['seconds']} s)",
              flush=True)
        out.write_text(json.dumps(results, indent=1))
    results["_meta"]["seconds"] = round(time.monotonic() - t_all, 2)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
