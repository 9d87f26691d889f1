"""The offload test VM: a Debian 6.12 kernel with netdevsim, booted in qemu.

No Debian kernel builds netdevsim (the only in-kernel device with BPF offload),
so ``prepare()`` fetches one kernel release's packages with ``apt-get download``
(image, headers, kbuild, source; busybox-static), unpacks them into a cache
directory (never installs them), builds ``drivers/net/netdevsim`` out of tree
against the headers, decompresses the modules the guest needs and writes a
busybox initramfs.  ``run()`` boots that kernel under qemu (TCG: no KVM here)
with the host's root shared read-only over 9p and a writable 9p results
directory; the initramfs loads the modules, mounts the host root, chroots into
it and runs one job script (the host tree's own Python), then powers off.

Stdlib only: ``.ci/run`` prepares the cache before any venv exists::

    python3 offload/vm.py prepare          # cold: ~30 s; cached: nothing to do
    python3 offload/vm.py run -- /path/to/python offload/guest.py OUT.json
    python3 offload/vm.py status

Environment: ``NFPIPE_VM_CACHE`` (default ``$XDG_CACHE_HOME/nfpipe/offload-vm`` or
``~/.cache/nfpipe/offload-vm``), ``NFPIPE_VM_KERNEL`` (a Debian release such as
``6.12.118+deb12``; default: the newest 6.12 apt knows, or the newest prepared).
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: the kernel series the VM runs: Debian 12's security archive carries it
SERIES = "6.12"
#: guest modules in load order (each after what it depends on); netdevsim is built here
MODULES = [
    ("netfs", "fs/netfs/netfs"), ("9pnet", "net/9p/9pnet"),
    ("9pnet_virtio", "net/9p/9pnet_virtio"), ("9p", "fs/9p/9p"),
    ("psample", "net/psample/psample"), ("sch_ingress", "net/sched/sch_ingress"),
    ("cls_bpf", "net/sched/cls_bpf"), ("netdevsim", None),
]
QEMU = "qemu-system-x86_64"
#: where the guest sees the results directory (writable); the host's /tmp stays the
#: host's (read-only: a tree or venv there is visible), the guest's scratch is /run/tmp
GUEST_RESULTS = "/run/nfpvm"
STAMP = "prepared.json"
LAYOUT = 3                    # bump when what prepare() writes changes


class VMError(RuntimeError):
    """The VM could not be prepared or run; the message says which step and why."""


@dataclass(frozen=True)
class Prepared:
    release: str              # 6.12.118+deb12
    dir: Path
    kernel: Path
    initramfs: Path

    @property
    def uname(self) -> str:
        return f"{self.release}-amd64"


def cache_root() -> Path:
    if os.environ.get("NFPIPE_VM_CACHE"):
        return Path(os.environ["NFPIPE_VM_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nfpipe" / "offload-vm"


def _sh(argv: list[str], what: str, cwd: Path | None = None, stdin=subprocess.DEVNULL) -> str:
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=stdin)
    except OSError as exc:
        raise VMError(f"{what}: cannot run {argv[0]}: {exc}") from None
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise VMError(f"{what}: {shlex.join(argv)} exited {p.returncode}:\n{tail}")
    return p.stdout


def _vkey(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", release))


def newest_release() -> str:
    """The newest 6.12 kernel release apt knows (``apt-get update`` first)."""
    out = _sh(["apt-cache", "search", "--names-only",
               rf"^linux-image-{re.escape(SERIES)}\.[0-9]+\+deb12-amd64-unsigned$"],
              "finding the kernel packages")
    found = re.findall(rf"^linux-image-({re.escape(SERIES)}\.\d+\+deb12)-amd64-unsigned",
                       out, re.M)
    if not found:
        raise VMError(f"apt knows no linux-image-{SERIES}.*+deb12-amd64-unsigned: is "
                      f"bookworm-security in the sources and 'apt-get update' done?")
    return max(found, key=_vkey)


def find_prepared(release: str | None = None) -> Prepared | None:
    """The prepared VM of *release* (default: ``NFPIPE_VM_KERNEL`` or the newest one in
    the cache), or None.  Never downloads or builds."""
    release = release or os.environ.get("NFPIPE_VM_KERNEL") or None
    root = cache_root()
    dirs = [root / release] if release else sorted(
        (d for d in root.glob(f"{SERIES}.*") if d.is_dir()), key=lambda d: _vkey(d.name),
        reverse=True)
    for d in dirs:
        try:
            stamp = json.loads((d / STAMP).read_text())
        except (OSError, ValueError):
            continue
        p = Prepared(stamp["release"], d, d / stamp["kernel"], d / stamp["initramfs"])
        if stamp.get("layout") == LAYOUT and p.kernel.is_file() and p.initramfs.is_file():
            return p
    return None


def prepare(release: str | None = None, log=print) -> Prepared:
    """Everything the VM needs in the cache (what is there already is kept)."""
    release = release or os.environ.get("NFPIPE_VM_KERNEL") or newest_release()
    done = find_prepared(release)
    if done is not None:
        return done
    for tool in ("apt-get", "dpkg-deb", "make", "gcc-12", "strip"):
        if shutil.which(tool) is None:
            raise VMError(f"preparing the VM needs {tool} (Debian 12: apt-get install "
                          f"build-essential gcc-12 dpkg)")
    root = cache_root()
    final = root / release
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{release}-", dir=root))
    t0 = time.monotonic()
    try:
        debs = _download(release, work / "debs", log)
        log(f"vm: packages downloaded ({time.monotonic() - t0:.0f} s)")
        tree = work / "tree"
        for key in ("image", "headers", "common", "kbuild", "busybox"):
            _sh(["dpkg-deb", "-x", str(debs[key]), str(tree)], f"unpacking {debs[key].name}")
        uname = f"{release}-amd64"
        headers = tree / "usr/src" / f"linux-headers-{uname}"
        # the headers' Makefile includes the common headers by absolute /usr/src path
        (headers / "Makefile").write_text(
            f"include {tree}/usr/src/linux-headers-{release}-common/Makefile\n")
        nsim = _netdevsim_source(debs["source"], work / "nsim")
        _sh(["make", "-s", "-C", str(headers), f"M={nsim}", "CONFIG_NETDEVSIM=m",
             "CONFIG_DEBUG_INFO_BTF_MODULES=", "CC=gcc-12", "-j2", "modules"],
            "building netdevsim out of tree")
        log(f"vm: netdevsim built ({time.monotonic() - t0:.0f} s)")
        out = work / "out"
        mods = out / "modules"
        mods.mkdir(parents=True)
        kdir = tree / "lib/modules" / uname / "kernel"
        for name, rel in MODULES:
            dst = mods / f"{name}.ko"
            if rel is None:
                shutil.copyfile(nsim / f"{name}.ko", dst)
            else:
                dst.write_bytes(lzma.decompress((kdir / f"{rel}.ko.xz").read_bytes()))
            _sh(["strip", "--strip-debug", str(dst)], f"stripping {dst.name}")
        shutil.copyfile(tree / "boot" / f"vmlinuz-{uname}", out / "vmlinuz")
        write_initramfs(out / "initramfs.cpio.gz", tree / "bin/busybox", mods)
        (out / STAMP).write_text(json.dumps({
            "layout": LAYOUT, "release": release, "kernel": "vmlinuz",
            "initramfs": "initramfs.cpio.gz", "modules": [m for m, _ in MODULES],
            "prepared_in_s": round(time.monotonic() - t0, 1)}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
        log(f"vm: prepared {final} in {time.monotonic() - t0:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p = find_prepared(release)
    assert p is not None
    return p


def _download(release: str, dest: Path, log) -> dict[str, Path]:
    dest.mkdir(parents=True)
    uname = f"{release}-amd64"
    names = {"image": f"linux-image-{uname}-unsigned", "headers": f"linux-headers-{uname}",
             "common": f"linux-headers-{release}-common", "kbuild": f"linux-kbuild-{release}",
             "busybox": "busybox-static"}
    # linux-source-6.12 is one package for every release: pick the matching version
    image_ver = _sh(["apt-cache", "show", "--no-all-versions", names["image"]],
                    "reading the kernel package's version")
    m = re.search(r"^Version: (\S+)", image_ver, re.M)
    if not m:
        raise VMError(f"apt has no version of {names['image']}")
    wanted = list(names.values()) + [f"linux-source-{SERIES}={m.group(1)}"]
    log(f"vm: apt-get download {' '.join(wanted)}")
    _sh(["apt-get", "download", "-q"] + wanted, "downloading the kernel packages", cwd=dest)
    debs = {}
    for key, name in list(names.items()) + [("source", f"linux-source-{SERIES}")]:
        hits = sorted(dest.glob(f"{name}_*.deb"))
        if not hits:
            raise VMError(f"apt-get download left no {name}_*.deb in {dest}")
        debs[key] = hits[0]
    return debs


def _netdevsim_source(source_deb: Path, dest: Path) -> Path:
    """drivers/net/netdevsim of the kernel source tarball inside *source_deb*."""
    member = f"./usr/src/linux-source-{SERIES}.tar.xz"
    dest.mkdir(parents=True)
    deb = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(source_deb)],
                           stdout=subprocess.PIPE)
    tar1 = subprocess.Popen(["tar", "-xO", member], stdin=deb.stdout, stdout=subprocess.PIPE)
    assert deb.stdout is not None
    deb.stdout.close()
    _sh(["tar", "-xJ", "-C", str(dest), "--strip-components=4", "--wildcards",
         f"linux-source-{SERIES}/drivers/net/netdevsim/*"], "unpacking netdevsim's source",
        stdin=tar1.stdout)
    tar1.wait()
    deb.wait()
    if not (dest / "netdev.c").is_file():
        raise VMError(f"no drivers/net/netdevsim in {source_deb.name}")
    return dest


# ------------------------------------------------------------------------- initramfs

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "nfpvm: $*" > /dev/console; }
for m in MODULES; do insmod /lib/modules/$m.ko || say "insmod $m failed"; done
o=trans=virtio,version=9p2000.L,msize=524288
R=/newroot
mount -t 9p -o $o,ro,cache=loose hostroot $R || { say "no host root"; poweroff -f; }
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tmpfs -o mode=0755 tmpfs $R/run
mkdir -m 1777 $R/run/tmp
mkdir $R/run/home $R/run/nfpvm
mount -t debugfs debugfs $R/sys/kernel/debug
mount -t bpf bpf $R/sys/fs/bpf
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mount -t 9p -o $o results $R/run/nfpvm || say "no results dir"
say "up after $(cut -d' ' -f1 /proc/uptime) s"
ip link set lo up 2>/dev/null
chroot $R /bin/sh /run/nfpvm/job.sh > $R/run/nfpvm/job.log 2>&1
echo $? > $R/run/nfpvm/job.rc
say "job exited $(cat $R/run/nfpvm/job.rc) at $(cut -d' ' -f1 /proc/uptime) s"
sync
umount $R/run/nfpvm
poweroff -f
"""


def write_initramfs(path: Path, busybox: Path, modules: Path) -> None:
    """A gzip'd newc cpio: busybox, /init and the modules (decompressed: busybox's
    insmod reads plain .ko files)."""
    init = INIT.replace("MODULES", " ".join(m for m, _ in MODULES))
    entries: list[tuple[str, int, bytes]] = []
    for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"):
        entries.append((d, 0o040755, b""))
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(("init", 0o100755, init.encode()))
    for ko in sorted(modules.glob("*.ko")):
        entries.append((f"lib/modules/{ko.name}", 0o100644, ko.read_bytes()))
    buf = io.BytesIO()
    for ino, (name, mode, data) in enumerate(entries + [("TRAILER!!!", 0, b"")], 1):
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
        buf.write(hdr.encode() + nb)
        buf.write(b"\0" * (-(110 + len(nb)) % 4))
        buf.write(data)
        buf.write(b"\0" * (-len(data) % 4))
    path.write_bytes(gzip.compress(buf.getvalue(), compresslevel=6))


# ------------------------------------------------------------------------------- run

@dataclass
class RunResult:
    rc: int | None            # the job's exit code; None if it never finished
    console: str              # the serial console (kernel and init messages)
    job_log: str              # the job's stdout and stderr
    files: dict[str, bytes]   # what the job left in its results dir
    seconds: float
    timed_out: bool


def qemu_missing() -> str | None:
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (apt-get install qemu-system-x86)"
    return None


def run(prepared: Prepared, job: str, *, timeout: float = 240, memory_mb: int = 1536,
        results_in: dict[str, bytes] | None = None,
        writable: list[Path] | None = None) -> RunResult:
    """Boot *prepared* and run the shell text *job* in the guest (as ``/bin/sh``, in
    the host root, cwd /); *results_in* are files put in the results dir first (the
    guest sees it as /run/nfpvm, ``GUEST_RESULTS``); *writable* host directories are shared writable
    at the same paths (e.g. a compile cache both sides fill).  qemu is always killed
    and the temporary directory removed, whatever happens."""
    if qemu_missing():
        raise VMError(qemu_missing() or "")
    tmp = Path(tempfile.mkdtemp(prefix="nfpipe-vm-"))
    results = tmp / "results"
    results.mkdir()
    console = tmp / "console.log"
    mounts = "".join(f"mkdir -p {shlex.quote(str(d))} 2>/dev/null; mount -t 9p -o "
                     f"trans=virtio,version=9p2000.L,msize=524288 w{i} "
                     f"{shlex.quote(str(d))} || exit 90\n"
                     for i, d in enumerate(writable or []))
    (results / "job.sh").write_text("export HOME=/run/home TMPDIR=/run/tmp PATH=/usr/sbin:"
                                    "/usr/bin:/sbin:/bin PYTHONDONTWRITEBYTECODE=1\ncd /\n" +
                                    mounts + job)
    for name, data in (results_in or {}).items():
        (results / name).write_bytes(data)
    argv = [QEMU, "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", str(memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(prepared.kernel), "-initrd", str(prepared.initramfs),
            "-append", "console=ttyS0 panic=-1 oops=panic quiet loglevel=4",
            "-serial", f"file:{console}",
            "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
            "-fsdev", f"local,id=res,path={results},security_model=none",
            "-device", "virtio-9p-pci,fsdev=res,mount_tag=results"]
    for i, d in enumerate(writable or []):
        argv += ["-fsdev", f"local,id=w{i},path={d},security_model=none",
                 "-device", f"virtio-9p-pci,fsdev=w{i},mount_tag=w{i}"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    timed_out = False
    try:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            out = b""
        rc_text = _read(results / "job.rc").strip()
        files = {p.name: p.read_bytes() for p in results.iterdir()
                 if p.is_file() and p.name not in ("job.sh", "job.rc", "job.log")}
        con = _read(console)
        if out:
            con += "\n[qemu] " + out.decode(errors="replace")
        return RunResult(int(rc_text) if rc_text.isdigit() else None, con,
                         _read(results / "job.log"), files, time.monotonic() - t0, timed_out)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="offload/vm.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare", help="download, build and cache what the VM needs")
    sub.add_parser("status", help="say what is prepared")
    r = sub.add_parser("run", help="boot the VM and run a command in it")
    r.add_argument("--timeout", type=float, default=240)
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "prepare":
            p = prepare()
            print(f"vm: ready: {p.dir}")
        elif args.cmd == "status":
            p = find_prepared()
            print(f"vm: {'prepared: ' + str(p.dir) if p else 'not prepared'}; "
                  f"qemu: {qemu_missing() or 'found'}")
            return 0 if p and not qemu_missing() else 1
        else:
            p = find_prepared()
            if p is None:
                raise VMError("the VM is not prepared: run 'python3 offload/vm.py prepare'")
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            res = run(p, shlex.join(cmd) or "true", timeout=args.timeout)
            sys.stdout.write(res.console + res.job_log)
            print(f"vm: rc={res.rc} in {res.seconds:.1f} s"
                  f"{' (timed out)' if res.timed_out else ''}")
            return 0 if res.rc == 0 else 1
    except VMError as exc:
        print(f"vm: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
