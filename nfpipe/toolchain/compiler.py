"""Compile C network functions to BPF ELF objects.

The compiler is the tested one unless the user asks for another:

1. ``NFPIPE_CC`` when set (a command line, e.g. ``"ccache clang-19"``; ``nfpipe
   --cc CMD`` sets it), used as given;
2. else the clang inside the ``ziglang`` wheel (``python -m ziglang cc``), a
   dependency of nfpipe: what a plain ``pip install`` brings and what CI tests;
3. only if that wheel is missing, a ``clang`` on PATH (``clang``, ``clang-21`` ...
   ``clang-14``, tested versions first) whose ``-print-targets`` lists ``bpf``.

A system clang is never picked while the wheel is there, so what the host happens
to have installed changes nothing.  nfpipe is tested (every NF, pipeline and netns
suite in CI) with clang 14 (Debian 12, Ubuntu 22.04), clang 19 (Debian 13) and the
wheel's clang 22; any other clang works as far as nobody has checked, and is
reported so: ``Compiler.warning``, ``nfpipe doctor``, and a warning on stderr the
first time it compiles.

Whatever compiler is used, it sees the same headers: nfpipe's libbpf-compatible
``bpf/include``, the kernel UAPI headers shipped in the ziglang wheel
(``NFPIPE_UAPI_INCLUDE`` overrides them) and nfpipe's libc subset
``bpf/include/libc``, plus the compiler's own ``stddef.h`` & co.; never the
host's ``/usr/include`` (``-nostdinc``).

Objects are cached under ``$NFPIPE_CACHE_DIR`` (else ``$XDG_CACHE_HOME/nfpipe``,
else ``~/.cache/nfpipe``) in ``objects/``.  The cache key covers the source
bytes and path, the full compiler command (flags, defines, include dirs) and
the compiler identity; every header the compiler read (from its ``-MD``
dependency file) is recorded with its content hash in a manifest next to the
object and re-hashed on lookup, so editing any included header rebuilds.
``NFPIPE_NO_CACHE=1`` turns the cache off.
"""
from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import hashlib
import importlib.util
import json
import logging
import os
import platform
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nfpipe.errors import CompileError, NoSuchSource
from nfpipe.resources import bpf_dir

__all__ = ["Compiler", "find_compiler", "compile", "describe", "bpf_dir", "bpf_include_dir",
           "uapi_include_dirs", "builtin_include_dir", "cache_dir", "cache_enabled", "spec_memo",
           "one_look_at_headers",
           "compile_command",
           "DEFAULT_TIMEOUT"]

log = logging.getLogger("nfpipe.toolchain")

DEFAULT_TIMEOUT = 300.0          # seconds one compiler run may take
_PROBE_TIMEOUT = 60.0            # seconds for --version / -print-targets
_CACHE_FORMAT = 1                # bump when the cache layout or key changes
_MAX_VARIANTS = 8                # header-content variants kept per cache key
#: clang major versions CI runs every NF, pipeline and netns suite with: Debian 12's,
#: Debian 13's, and the ziglang wheel's
TESTED_CLANG = {14: "clang 14 (Debian 12, Ubuntu 22.04)", 19: "clang 19 (Debian 13)",
                22: "clang 22 (the ziglang wheel's)"}
CLANG_NAMES = ["clang"] + [f"clang-{v}" for v in sorted(TESTED_CLANG, reverse=True)] + \
    [f"clang-{v}" for v in range(21, 13, -1) if v not in TESTED_CLANG]

# platform.machine() -> the ziglang libc/include dir with that arch's asm/ headers
_ARCH_UAPI_DIRS = {
    "x86_64": "x86-linux-any", "amd64": "x86-linux-any", "i386": "x86-linux-any",
    "i686": "x86-linux-any", "aarch64": "aarch64-linux-any", "arm64": "aarch64-linux-any",
    "armv7l": "arm-linux-any", "armv6l": "arm-linux-any", "riscv64": "riscv-linux-any",
    "ppc64le": "powerpc-linux-any", "ppc64": "powerpc-linux-any",
    "s390x": "s390x-linux-any", "loongarch64": "loongarch-linux-any",
    "mips64": "mips-linux-any", "mips": "mips-linux-any",
}


# --------------------------------------------------------------------------- discovery

@dataclass(frozen=True)
class Compiler:
    """A C compiler that can emit BPF objects.

    ``kind`` is how it was found ("env", "clang" or "zig"), ``argv`` the command
    prefix to run, ``version`` the first line of its ``--version``, ``reason``
    why it was chosen.  ``family`` says how it spells the BPF target: "zig"
    (``zig cc`` wants ``bpfel-freestanding``), "gcc" (no ``-target``) or "clang".
    """

    kind: str
    argv: list[str] = field(hash=False)
    version: str
    reason: str
    family: str = "clang"

    @property
    def major(self) -> int | None:
        """The clang major version its ``--version`` names (None: not a clang)."""
        m = re.search(r"clang version (\d+)\.", self.version)
        return int(m.group(1)) if m else None

    @property
    def tested(self) -> bool:
        return self.major in TESTED_CLANG

    @property
    def warning(self) -> str | None:
        """Why this compiler may not build what nfpipe's tests built, if it may not."""
        if self.tested:
            return None
        which = f"clang {self.major}" if self.major is not None else f"'{self.version}'"
        return (f"{which} ({self.display}) is not a compiler nfpipe is tested with "
                f"({', '.join(TESTED_CLANG.values())}): programs may fail the verifier or "
                f"differ; unset NFPIPE_CC to use the ziglang wheel's clang")

    @property
    def display(self) -> str:
        """A short name for messages: "zig cc", "clang-19", "NFPIPE_CC (ccache)"."""
        if self.kind == "zig":
            return "zig cc"
        name = os.path.basename(self.argv[0]) if self.argv else "?"
        return f"NFPIPE_CC ({name})" if self.kind == "env" else name

    def target_flags(self) -> list[str]:
        """The ``-target`` flags for a BPF object in the host's byte order."""
        arch = "bpfel" if sys.byteorder == "little" else "bpfeb"
        if self.kind == "env" and any(a == "-target" or a.startswith(("--target=", "-target="))
                                      for a in self.argv):
            return []
        if self.family == "zig":
            return ["-target", f"{arch}-freestanding"]
        if self.family == "gcc":
            return []
        return ["-target", arch]


_lock = threading.Lock()
_found: dict[tuple, Compiler] = {}


def find_compiler(refresh: bool = False) -> Compiler:
    """The compiler nfpipe uses (cached per process and per NFPIPE_CC/PATH value)."""
    key = (os.environ.get("NFPIPE_CC"), os.environ.get("PATH"))
    with _lock:
        if refresh:
            _found.clear()
        if key not in _found:
            _found[key] = _discover()
        return _found[key]


def _run_probe(argv: list[str], *args: str) -> tuple[bool, str]:
    try:
        p = subprocess.run(argv + list(args), capture_output=True, text=True,
                           timeout=_PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    out = (p.stdout or "") + (p.stderr or "")
    return p.returncode == 0, out


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _family(argv: list[str], version_text: str) -> str:
    first = _first_line(version_text)
    if "(GCC)" in first or " gcc" in first.lower():
        return "gcc"
    names = [os.path.basename(a).lower() for a in argv]
    if "ziglang" in argv or any(n in ("zig", "zig.exe") for n in names):
        return "zig"
    for line in version_text.splitlines():
        if line.startswith("InstalledDir:") and "zig" in line.lower():
            return "zig"
    return "clang"


def _discover() -> Compiler:
    env = os.environ.get("NFPIPE_CC", "").strip()
    if env:
        try:
            argv = shlex.split(env)
        except ValueError as e:
            raise CompileError(f"NFPIPE_CC={env!r} is not a valid command line: {e}") from None
        ok, out = _run_probe(argv, "--version")
        if not ok:
            raise CompileError(f"NFPIPE_CC={env!r} does not run ('{shlex.join(argv)} --version' "
                               f"failed); fix or unset NFPIPE_CC", command=argv,
                               diagnostics=out)
        return Compiler("env", argv, _first_line(out),
                        "NFPIPE_CC is set, so it is used as given; clang on PATH and the "
                        "ziglang wheel were not considered.", _family(argv, out))

    zig = _wheel_clang()
    if isinstance(zig, Compiler):
        return zig
    skipped = []
    for name in CLANG_NAMES:
        path = shutil.which(name)
        if not path:
            continue
        ok, out = _run_probe([path], "-print-targets")
        if not ok or not any(line.split()[:1] in (["bpf"], ["bpfel"]) for line in out.splitlines()):
            skipped.append(f"{path} (no bpf target)")
            continue
        ok, ver = _run_probe([path], "--version")
        if not ok:
            skipped.append(f"{path} (--version failed)")
            continue
        why = f"NFPIPE_CC is unset and {zig}, so {path} (on PATH, with a bpf target) is used"
        if skipped:
            why += "; skipped " + ", ".join(skipped)
        return Compiler("clang", [path], _first_line(ver), why + ".", "clang")
    tried = "no clang with a bpf target on PATH either (tried " + \
        ", ".join(CLANG_NAMES[:2]) + f"..{CLANG_NAMES[-1]}" + \
        ("; skipped " + ", ".join(skipped) if skipped else "") + ")"
    raise CompileError(f"no usable C compiler for BPF: NFPIPE_CC is unset, {zig}, and "
                       f"{tried}; run 'pip install ziglang' (an nfpipe dependency) or set "
                       f"NFPIPE_CC to a clang with the bpf target")


def wheel_clang() -> Compiler:
    """The ziglang wheel's clang, whatever NFPIPE_CC says (a CompileError if there is
    none): for what needs that compiler in particular."""
    c = _wheel_clang()
    if isinstance(c, str):
        raise CompileError(f"no ziglang wheel clang: {c}")
    return c


def _wheel_clang() -> Compiler | str:
    """The ziglang wheel's clang, or why there is none."""
    if importlib.util.find_spec("ziglang") is None:
        return "the ziglang package is not installed"
    argv = [sys.executable, "-m", "ziglang", "cc"]
    ok, out = _run_probe(argv, "--version")
    if not ok:
        return f"'python -m ziglang cc --version' failed ({_first_line(out)})"
    return Compiler("zig", argv, _first_line(out),
                    "NFPIPE_CC is unset, so the ziglang wheel's clang (a dependency of "
                    "nfpipe, the compiler its tests use) is used; a clang on PATH is "
                    "not considered.", "zig")


_warned: set[str] = set()


def _warn_untested(compiler: Compiler) -> None:
    """Say once per process and compiler that it is not a tested one."""
    if compiler.warning and compiler.version not in _warned:
        _warned.add(compiler.version)
        log.warning("%s", compiler.warning)


# --------------------------------------------------------------------------- include dirs

def bpf_include_dir() -> Path:
    """The dir holding nfpipe's ``bpf/bpf_helpers.h`` & co. (``<bpf dir>/include``)."""
    d = bpf_dir()
    inc = d / "include"
    if not (inc / "bpf" / "bpf_helpers.h").is_file():
        src = "NFPIPE_BPF_DIR" if os.environ.get("NFPIPE_BPF_DIR") else "the nfpipe checkout"
        raise CompileError(f"nfpipe's BPF headers are missing: no {inc / 'bpf' / 'bpf_helpers.h'} "
                           f"(bpf dir from {src}); set NFPIPE_BPF_DIR to the bpf/ dir of an "
                           "nfpipe source tree")
    return inc


def ziglang_dir() -> Path | None:
    spec = importlib.util.find_spec("ziglang")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parent


def uapi_include_dirs() -> list[Path]:
    """Kernel UAPI header dirs: ``$NFPIPE_UAPI_INCLUDE`` or the ziglang wheel's.

    The generic ``any-linux-any`` dir comes first (its ``asm/`` headers are right
    for a 64-bit BPF target), then the host arch dir for arch-only ``asm/`` headers
    such as ``asm/byteorder.h``.
    """
    env = os.environ.get("NFPIPE_UAPI_INCLUDE")
    if env is not None:
        return [Path(p) for p in env.split(os.pathsep) if p]
    z = ziglang_dir()
    if z is None:
        return []
    base = z / "lib" / "libc" / "include"
    dirs = [base / "any-linux-any"]
    arch = _ARCH_UAPI_DIRS.get(platform.machine().lower())
    if arch and (base / arch).is_dir():
        dirs.append(base / arch)
    return [d for d in dirs if d.is_dir()]


def cache_dir() -> Path:
    """The nfpipe cache root (objects live in its ``objects/``)."""
    if os.environ.get("NFPIPE_CACHE_DIR"):
        return Path(os.environ["NFPIPE_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "nfpipe"
    return Path.home() / ".cache" / "nfpipe"


_scratch_lock = threading.Lock()
_scratch: Path | None = None


def _scratch_dir() -> Path:
    """One private directory per process for objects built with the cache off and no
    ``output``; removed when the process exits (the paths handed out stay valid until
    then, as cache paths do)."""
    global _scratch
    with _scratch_lock:
        if _scratch is None or not _scratch.is_dir():
            _scratch = Path(tempfile.mkdtemp(prefix="nfpipe-build-"))
            atexit.register(shutil.rmtree, _scratch, True)
        return _scratch


def cache_enabled() -> bool:
    """Whether compiled objects (and what nfpipe learns of them) are cached."""
    return os.environ.get("NFPIPE_NO_CACHE", "").strip().lower() not in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------- compiling

def _define_flags(defines: Mapping[str, object] | None) -> list[str]:
    out = []
    for name in sorted(defines or {}):
        value = defines[name]
        if not name or not (name[0].isalpha() or name[0] == "_") or \
                not all(c.isalnum() or c == "_" for c in name):
            raise CompileError(f"invalid macro name {name!r} in defines")
        if value is None or value is True:
            out.append(f"-D{name}")
        elif value is False:
            out.append(f"-D{name}=0")
        else:
            out.append(f"-D{name}={value}")
    return out


@functools.cache
def builtin_include_dir(compiler: Compiler) -> Path | None:
    """The compiler's own headers (``stddef.h``, ``stdint.h``, ``stdbool.h``, ...).

    ``-nostdinc`` drops them along with the system dirs, so they are given back
    by path: the ``include`` dir of clang's resource dir (or GCC's) from
    ``-print-file-name=include``.  ``None`` for zig cc, which adds its copy of
    clang's headers (``lib/include`` of the zig install) even under
    ``-nostdinc``, and whose ``-print-file-name=include`` names the host GCC's
    dir instead.  Asked once per compiler per process.
    """
    if compiler.family == "zig":
        return None
    ok, out = _run_probe(list(compiler.argv), "-print-file-name=include")
    path = Path(_first_line(out)) if ok else None
    if path is None or not path.is_absolute() or not (path / "stddef.h").is_file():
        raise CompileError(f"{compiler.display} does not say where its builtin headers are "
                           f"('{shlex.join(compiler.argv)} -print-file-name=include' printed "
                           f"{_first_line(out)!r}); nfpipe compiles with -nostdinc and needs "
                           "them for stddef.h & co.", command=list(compiler.argv),
                           diagnostics=out)
    return path


def _target_arch() -> str | None:
    """libbpf's name for the host's kernel architecture (``__TARGET_ARCH_<name>``).

    Only 64-bit kernels: bpf_tracing.h reads registers through the UAPI struct
    pt_regs, whose 'long' members are 8 bytes in a BPF program, so on a 32-bit
    kernel (i686, armv7l) every offset would be wrong; there the header's own
    error ("define __TARGET_ARCH_<arch>") is the honest answer.
    """
    return {"x86_64": "x86", "amd64": "x86", "aarch64": "arm64", "arm64": "arm64",
            "riscv64": "riscv", "ppc64le": "powerpc", "ppc64": "powerpc", "s390x": "s390",
            "loongarch64": "loongarch", "mips64": "mips"}.get(platform.machine().lower())


def compile_command(compiler: Compiler | None = None, *,
                    defines: Mapping[str, object] | None = None,
                    include_dirs: Iterable[str | os.PathLike] = (), cflags: Iterable[str] = (),
                    cpu: str = "v3") -> list[str]:
    """The compiler command without the source, output and dependency-file arguments.

    Headers come from these dirs only, searched in this order: ``include_dirs``,
    nfpipe's ``bpf/include``, the UAPI dirs, nfpipe's libc subset
    ``bpf/include/libc`` (``string.h``, ``sys/socket.h``, ...) and the compiler's
    builtin headers (zig cc searches its own right after ``bpf/include``).
    ``-nostdinc`` keeps the host's ``/usr/include`` and ``/usr/local/include``
    out, so what compiles does not depend on what the host has installed; pass
    ``-I`` for a dir there to use it.

    ``-D__TARGET_ARCH_<host arch>`` (libbpf's names: x86, arm64, ...) tells
    ``bpf/bpf_tracing.h`` the kernel's register layout, as libbpf-style
    Makefiles do, unless ``defines`` or ``cflags`` name a ``__TARGET_ARCH_``.
    """
    compiler = compiler or find_compiler()
    cflags = list(cflags)
    cmd = list(compiler.argv) + compiler.target_flags()
    cmd += ["-O2", "-g", "-Wall", f"-mcpu={cpu}", "-fno-stack-protector",
            # zig cc turns unwind tables on; a BPF object has no use for .eh_frame
            "-fno-unwind-tables", "-fno-asynchronous-unwind-tables"]
    cmd += ["-nostdinc"]
    for d in include_dirs:
        cmd += ["-I", str(Path(d).resolve())]
    inc = bpf_include_dir()
    cmd += ["-I", str(inc)]
    for d in uapi_include_dirs():
        cmd += ["-isystem", str(d)]
    cmd += ["-isystem", str(inc / "libc")]
    builtin = builtin_include_dir(compiler)
    if builtin is not None:
        # last: clang's stdint.h & co. #include_next the libc's, and there is none
        cmd += ["-isystem", str(builtin)]
    arch = _target_arch()
    if arch and not any("__TARGET_ARCH_" in str(d) for d in list(defines or {}) + cflags):
        cmd.append("-D__TARGET_ARCH_" + arch)
    cmd += _define_flags(defines)
    cmd += cflags
    return cmd


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def parse_depfile(text: str, cwd: Path) -> list[Path]:
    """Prerequisites of a make-syntax dependency file (as written by clang -MD)."""
    text = text.replace("\\\r\n", " ").replace("\\\n", " ")
    deps: list[Path] = []
    for rule in text.splitlines():
        if ":" not in rule:
            continue
        # the target ends at the first ': ' that is not an escaped char
        idx = 0
        while True:
            idx = rule.find(":", idx)
            if idx < 0 or idx + 1 >= len(rule) or rule[idx + 1] in " \t":
                break
            idx += 1
        if idx < 0:
            continue
        body = rule[idx + 1:]
        word, i = [], 0
        words = []
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body) and body[i + 1] in " #\\":
                word.append(body[i + 1])
                i += 2
                continue
            if c == "$" and body[i + 1:i + 2] == "$":
                word.append("$")
                i += 2
                continue
            if c in " \t":
                if word:
                    words.append("".join(word))
                    word = []
            else:
                word.append(c)
            i += 1
        if word:
            words.append("".join(word))
        for w in words:
            p = Path(w)
            deps.append(p if p.is_absolute() else cwd / p)
    return deps


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()


def _run_compiler(compiler: Compiler, cmd: list[str], src: Path, timeout: float) -> str:
    """Run one compile; return its stderr (warnings) or raise CompileError."""
    try:
        # own session, so a timeout can kill the compiler and anything it spawned
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, errors="replace",
                                start_new_session=True)
    except OSError as e:
        raise CompileError(f"compiling {src.name} with {compiler.display} failed: cannot run "
                           f"{cmd[0]}: {e.strerror or e}", source=str(src), command=cmd) from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            proc.kill()
        out, err = proc.communicate()
        raise CompileError(f"compiling {src.name} with {compiler.display} timed out after "
                           f"{timeout:g} s", source=str(src), command=cmd,
                           diagnostics=err or "") from None
    except BaseException:
        try:
            os.killpg(proc.pid, 9)
        except OSError:
            pass
        proc.wait()
        raise
    if proc.returncode != 0:
        diag = err or ""
        if out.strip():
            diag = (diag + "\n" + out) if diag else out
        if not diag.strip():
            diag = f"(the compiler exited with status {proc.returncode} and printed nothing)"
        raise CompileError(f"compiling {src.name} with {compiler.display} failed",
                           source=str(src), command=cmd, diagnostics=diag)
    return err or ""


_header_hashes: contextvars.ContextVar[dict[str, str | None] | None] = \
    contextvars.ContextVar("nfpipe_header_hashes", default=None)


@contextlib.contextmanager
def one_look_at_headers():
    """Within the block, the cache lookups of several compiles hash each header once
    (a pipeline's nodes include the same ones): the headers are taken as they were
    when first looked at, as one lookup takes them."""
    token = _header_hashes.set({})
    try:
        yield
    finally:
        _header_hashes.reset(token)


def _lookup(kdir: Path) -> Path | None:
    """A cached object in ``kdir`` whose recorded headers all still hash the same."""
    try:
        manifests = sorted(kdir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    shared = _header_hashes.get()
    hashes: dict[str, str | None] = shared if shared is not None else {}
    for man in manifests:
        try:
            data = json.loads(man.read_text())
            deps = data["deps"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        ok = True
        for path, digest in deps:
            if path not in hashes:
                hashes[path] = _sha256_file(Path(path))
            if hashes[path] != digest:
                ok = False
                break
        obj = man.with_suffix(".o")
        if ok and obj.is_file():
            try:
                os.utime(man)        # most recently used first next time
            except OSError:
                pass
            return obj
    return None


def _prune(kdir: Path) -> None:
    try:
        manifests = sorted(kdir.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for man in manifests[_MAX_VARIANTS:]:
            man.unlink(missing_ok=True)
            man.with_suffix(".o").unlink(missing_ok=True)
            man.with_suffix(".spec").unlink(missing_ok=True)
    except OSError:
        pass


def spec_memo(obj: str | os.PathLike) -> Path | None:
    """Where the ObjectSpec read from *obj* is kept, beside it (``<variant>.spec``,
    see ``ObjectSpec.from_file``), when *obj* is an object of the compile cache and
    the cache is on; else None (an object elsewhere is the user's: nothing is
    written beside it)."""
    if not cache_enabled():
        return None
    path = Path(obj)
    objects = cache_dir() / "objects"
    if path.suffix != ".o" or path.parent.parent.parent != objects:
        return None
    return path.with_suffix(".spec")


def compile(src: str | os.PathLike, output: str | os.PathLike | None = None, *,
            defines: Mapping[str, object] | None = None,
            include_dirs: Iterable[str | os.PathLike] = (), cflags: Iterable[str] = (),
            cpu: str = "v3", timeout: float = DEFAULT_TIMEOUT,
            compiler: Compiler | None = None) -> Path:
    """Compile one C file to a BPF ELF object and return the object's path.

    ``defines`` become ``-DNAME=VALUE`` (``None``/``True``: ``-DNAME``),
    ``include_dirs`` come before nfpipe's headers, ``cflags`` are appended as
    given, ``cpu`` is the ``-mcpu=`` BPF ISA version.  Without ``output`` the
    returned path is inside the cache (do not modify it; with the cache off, in a
    private directory removed when the process exits); with ``output`` the
    object is also copied there and that path returned.  *compiler* overrides the
    one ``find_compiler`` picks (e.g. ``wheel_clang()``, whatever NFPIPE_CC says).
    """
    src_path = Path(src)
    if not src_path.is_file():
        raise NoSuchSource(f"cannot compile {src_path}: no such source file", source=str(src_path))
    src_path = src_path.resolve()
    try:
        source_bytes = src_path.read_bytes()
    except OSError as e:
        raise CompileError(f"cannot compile {src_path}: {e.strerror or e}",
                           source=str(src_path)) from None
    compiler = compiler or find_compiler()
    _warn_untested(compiler)
    include_dirs = list(include_dirs)
    cflags = list(cflags)
    base = compile_command(compiler, defines=defines, include_dirs=include_dirs, cflags=cflags,
                           cpu=cpu)
    out_path = Path(output) if output is not None else None

    if not cache_enabled():
        if out_path is not None:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        else:
            tmp = _scratch_dir() / f"{src_path.stem}.{secrets.token_hex(4)}.o"
        try:
            warnings = _run_compiler(compiler, base + ["-c", str(src_path), "-o", str(tmp)],
                                     src_path, timeout)
            if out_path is None:
                out_path = tmp
            else:
                os.replace(tmp, out_path)
        finally:
            if tmp != out_path and tmp.exists():
                tmp.unlink()
        if warnings.strip():
            log.warning("%s", warnings.rstrip())
        return out_path

    key_material = json.dumps({
        "format": _CACHE_FORMAT,
        "compiler": [compiler.kind, compiler.argv, compiler.version],
        "command": base,
        "source": str(src_path),
        "source_sha256": hashlib.sha256(source_bytes).hexdigest(),
    }, sort_keys=True)
    key = hashlib.sha256(key_material.encode()).hexdigest()[:40]
    kdir = cache_dir() / "objects" / key[:2] / key

    obj = _lookup(kdir)
    if obj is None:
        obj = _compile_into_cache(compiler, base, src_path, kdir, timeout)
    if out_path is not None:
        _atomic_copy(obj, out_path)
        return out_path
    return obj


def _compile_into_cache(compiler: Compiler, base: list[str], src: Path, kdir: Path,
                        timeout: float) -> Path:
    try:
        kdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CompileError(f"cannot create the object cache dir {kdir}: {e.strerror or e}; set "
                           "NFPIPE_CACHE_DIR or NFPIPE_NO_CACHE=1", source=str(src)) from None
    stem = f".tmp-{os.getpid()}-{secrets.token_hex(6)}"
    tmp_o, tmp_d = kdir / (stem + ".o"), kdir / (stem + ".d")
    cmd = base + ["-MD", "-MF", str(tmp_d), "-c", str(src), "-o", str(tmp_o)]
    try:
        warnings = _run_compiler(compiler, cmd, src, timeout)
        try:
            deps = parse_depfile(tmp_d.read_text(errors="surrogateescape"), Path.cwd())
        except OSError:
            raise CompileError(f"compiling {src.name} with {compiler.display} wrote no dependency "
                               f"file (-MD -MF); set NFPIPE_NO_CACHE=1 to build without the cache",
                               source=str(src), command=cmd) from None
        seen, recorded = set(), []
        for d in deps:
            p = str(Path(os.path.normpath(d)))
            if p in seen or p == str(src):
                continue
            seen.add(p)
            digest = _sha256_file(Path(p))
            if digest is None:      # e.g. a header deleted mid-build: never a cache hit
                digest = "missing"
            recorded.append([p, digest])
        recorded.sort()
        variant = hashlib.sha256(json.dumps(recorded).encode()).hexdigest()[:24]
        obj = kdir / f"{variant}.o"
        os.replace(tmp_o, obj)
        manifest = {"source": str(src), "command": base, "deps": recorded,
                    "warnings": warnings}
        _atomic_write(kdir / f"{variant}.json", json.dumps(manifest, indent=1).encode())
    finally:
        for t in (tmp_o, tmp_d):
            try:
                t.unlink()
            except FileNotFoundError:
                pass
    if warnings.strip():
        log.warning("%s", warnings.rstrip())
    _prune(kdir)
    return obj


# --------------------------------------------------------------------------- doctor

_PROBE_PROGRAM = """\
#include <linux/bpf.h>
__attribute__((section("xdp"), used)) int nfpipe_probe(struct xdp_md *ctx) { return XDP_PASS; }
char _license[] __attribute__((section("license"), used)) = "GPL";
"""


def describe() -> dict:
    """What ``nfpipe doctor`` reports about the toolchain; never raises."""
    info: dict = {"kind": None, "argv": None, "version": None, "reason": None, "family": None,
                  "target_flags": None, "error": None, "clang_major": None, "tested": False,
                  "warning": None, "tested_compilers": list(TESTED_CLANG.values())}
    try:
        c = find_compiler()
        info.update({k: v for k, v in asdict(c).items()})
        info["target_flags"] = c.target_flags()
        info["clang_major"], info["tested"], info["warning"] = c.major, c.tested, c.warning
    except CompileError as e:
        info["error"] = str(e)
        c = None
    try:
        info["bpf_include_dir"] = str(bpf_include_dir())
    except CompileError as e:
        info["bpf_include_dir"] = None
        info["error"] = info["error"] or str(e)
    info["uapi_include_dirs"] = [str(d) for d in uapi_include_dirs()]
    # every dir a program's headers can come from, in search order (-nostdinc: no other)
    info["include_dirs"] = ([info["bpf_include_dir"]] if info["bpf_include_dir"] else []) + \
        info["uapi_include_dirs"] + \
        ([str(Path(info["bpf_include_dir"]) / "libc")] if info["bpf_include_dir"] else [])
    if c is not None:
        try:
            builtin = builtin_include_dir(c)
            info["include_dirs"].append(str(builtin) if builtin else
                                        "(the compiler's own, zig cc: lib/include)")
        except CompileError as e:
            info["error"] = info["error"] or str(e)
    info["cache_dir"] = str(cache_dir() / "objects")
    info["cache_enabled"] = cache_enabled()
    info["bpf_target_ok"] = False
    info["bpf_target_error"] = None
    if c is not None and info["bpf_include_dir"]:
        with tempfile.TemporaryDirectory(prefix="nfpipe-doctor-") as tmp:
            src = Path(tmp) / "probe.c"
            src.write_text(_PROBE_PROGRAM)
            try:
                cmd = compile_command(c) + ["-c", str(src), "-o", str(Path(tmp) / "probe.o")]
                _run_compiler(c, cmd, src, DEFAULT_TIMEOUT)
                data = (Path(tmp) / "probe.o").read_bytes()
                # ELF e_machine 247 = EM_BPF
                order = "little" if data[5:6] == b"\x01" else "big"
                info["bpf_target_ok"] = data[:4] == b"\x7fELF" and \
                    int.from_bytes(data[18:20], order) == 247
                if not info["bpf_target_ok"]:
                    info["bpf_target_error"] = "the compiler did not produce a BPF ELF object"
            except CompileError as e:
                info["bpf_target_error"] = str(e)
    elif info["error"]:
        info["bpf_target_error"] = info["error"]
    return info
