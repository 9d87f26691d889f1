#!/usr/bin/env python3
"""Compile a corpus of third-party XDP/TC programs with nfpipe's toolchain.

    compile_corpus.py CORPUS [--root DIR] [--wheel] [--json] [-v]

CORPUS is either

* a list file: one program a line, ``NAME SOURCE [FLAG ...]`` (shell words,
  ``#`` starts a comment); ``SOURCE`` and ``-I DIR`` are relative to ``--root``
  (default: the list file's directory); other flags (``-D...``, ``-std=...``)
  are passed to the compiler as given; or
* a directory with one sub-directory per program: the program is the one
  ``.c`` file there with a ``SEC(`` in it (or the file named in ``program``),
  optional compiler flags are in ``flags`` (shell words, ``-I`` relative to
  the sub-directory).

Each program is compiled the way ``nfpipe compile`` would (its include dirs
before nfpipe's), without the object cache, and with
``-Werror=implicit-function-declaration`` (clang 16+'s default) for every
compiler.  Reported per program: compiled, or the first error; a compiled
object that still calls functions nothing defines (``memcpy`` when the
compiler did not treat it as a builtin) is reported as such, since no loader
can resolve them.  Then the programs
grouped by reason, and the share that compiled.  ``--wheel`` uses the ziglang
wheel's clang even when a system clang is on PATH (``NFPIPE_CC`` is set to
it).  benchmarks/README.md says how the corpus used there was built.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Program:
    name: str
    source: Path
    include_dirs: list[Path] = field(default_factory=list)
    cflags: list[str] = field(default_factory=list)


@dataclass
class Result:
    name: str
    ok: bool
    kind: str            # "compiled" or the reason it did not
    detail: str = ""     # the first error line, or the unresolved symbols


def _split_flags(words: list[str], base: Path) -> tuple[list[Path], list[str]]:
    incs, rest = [], []
    it = iter(words)
    for w in it:
        if w == "-I":
            incs.append(base / next(it))
        elif w.startswith("-I"):
            incs.append(base / w[2:])
        else:
            rest.append(w)
    return incs, rest


def read_list(path: Path, root: Path) -> list[Program]:
    progs = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if len(words) < 2:
            raise SystemExit(f"{path}:{n}: expected 'NAME SOURCE [FLAG ...]'")
        incs, rest = _split_flags(words[2:], root)
        progs.append(Program(words[0], root / words[1], incs, rest))
    return progs


def read_dir(path: Path) -> list[Program]:
    progs = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        named = sub / "program"
        if named.is_file():
            src = sub / named.read_text().strip()
        else:
            cands = [c for c in sorted(sub.glob("*.c")) if "SEC(" in c.read_text(errors="replace")]
            if len(cands) != 1:
                raise SystemExit(f"{sub}: {len(cands)} .c files with SEC(; name one in 'program'")
            src = cands[0]
        flags = sub / "flags"
        words = shlex.split(flags.read_text(), comments=True) if flags.is_file() else []
        incs, rest = _split_flags(words, sub)
        progs.append(Program(sub.name, src, incs, rest))
    return progs


_FIRST_ERROR = re.compile(r"^(?P<loc>[^\s:][^:]*:\d+:\d+): (?:fatal )?error: (?P<msg>.*)$", re.M)
_KINDS = [
    (re.compile(r"'(?P<x>[^']+)' file not found"), "missing header {x}"),
    (re.compile(r"unknown type name '(?P<x>[^']+)'"), "unknown type name"),
    (re.compile(r"use of undeclared identifier '(?P<x>[^']+)'"), "undeclared identifier"),
    (re.compile(r"(?:call to undeclared|implicit declaration of) function '(?P<x>[^']+)'"),
     "undeclared function"),
    (re.compile(r"redefinition of '(?P<x>[^']+)'"), "redefinition"),
    (re.compile(r"variable has incomplete type '(?P<x>[^']+)'"), "incomplete type"),
]


def classify(diagnostics: str) -> tuple[str, str]:
    """(kind, first error line) of a failed compile."""
    m = _FIRST_ERROR.search(diagnostics)
    if not m:
        lines = [ln for ln in diagnostics.splitlines() if ln.strip()]
        return "no diagnostic", (lines[0] if lines else "")
    msg = m.group("msg")
    first = f"{m.group('loc')}: {msg}"
    for rx, kind in _KINDS:
        k = rx.search(msg)
        if k:
            return kind.format(x=k.group("x")), first
    # a message of its own: names in quotes vary, the rest is the kind
    return re.sub(r"'[^']*'", "'…'", msg), first


def undefined_functions(obj: Path) -> list[str]:
    """Symbols the object's code refers to that nothing defines, other than the
    externs declared __ksym/__kconfig (BTF lists those in .ksyms/.kconfig)."""
    from elftools.elf.elffile import ELFFile

    from nfpipe.btf.btf import BTF
    from nfpipe.btf.types import Datasec

    with open(obj, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            return []
        declared = set()
        btf = elf.get_section_by_name(".BTF")
        if btf is not None:
            types = BTF.parse(btf.data())
            for t in types.types:
                if isinstance(t, Datasec) and t.name in (".ksyms", ".kconfig"):
                    declared.update(types[v.type].name for v in t.vars)
        out = set()
        for sec in elf.iter_sections():
            if sec.name.startswith(".rel") and not sec.name.startswith((".rel.BTF", ".rel.debug")):
                for rel in sec.iter_relocations():
                    sym = symtab.get_symbol(rel["r_info_sym"])
                    if sym.name and sym["st_shndx"] == "SHN_UNDEF" and sym.name not in declared:
                        out.add(sym.name)
        return sorted(out)


# An implicitly declared function is an error from clang 16 on but only a
# warning before; either way no loader can resolve the call, so every compiler
# is held to the same rule.
STRICT = ["-Werror=implicit-function-declaration"]


def compile_one(prog: Program) -> Result:
    from nfpipe.errors import CompileError
    from nfpipe.toolchain import compiler as toolchain

    with tempfile.TemporaryDirectory(prefix="nfpipe-corpus-") as tmp:
        out = Path(tmp) / "prog.o"
        try:
            toolchain.compile(prog.source, out, include_dirs=prog.include_dirs,
                              cflags=STRICT + prog.cflags)
        except CompileError as e:
            if not e.diagnostics:
                return Result(prog.name, False, "nfpipe error", str(e).splitlines()[0])
            kind, first = classify(e.diagnostics)
            return Result(prog.name, False, kind, first)
        undef = undefined_functions(out)
    if undef:
        return Result(prog.name, False, "calls undefined functions", ", ".join(undef))
    return Result(prog.name, True, "compiled")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path, help="a list file or a directory of program dirs")
    ap.add_argument("--root", type=Path, help="base of a list file's paths (default: its dir)")
    ap.add_argument("--wheel", action="store_true",
                    help="use the ziglang wheel's clang (sets NFPIPE_CC)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the first error of each")
    args = ap.parse_args(argv)

    if args.wheel:
        os.environ["NFPIPE_CC"] = shlex.join([sys.executable, "-m", "ziglang", "cc"])
    os.environ["NFPIPE_NO_CACHE"] = "1"
    # the programs' own warnings (nfpipe logs them) would bury the results
    logging.getLogger("nfpipe.toolchain").setLevel(logging.ERROR)
    if args.corpus.is_dir():
        progs = read_dir(args.corpus)
    else:
        progs = read_list(args.corpus, (args.root or args.corpus.parent).resolve())

    from nfpipe.toolchain import compiler as toolchain
    compiler = toolchain.find_compiler()
    results = []
    for p in progs:
        r = compile_one(p)
        results.append(r)
        if not args.json:
            mark = "ok  " if r.ok else "FAIL"
            line = f"{mark} {r.name}"
            if not r.ok:
                line += f"  [{r.kind}]"
                if args.verbose:
                    line += f"\n       {r.detail}"
            print(line, flush=True)

    ok = sum(r.ok for r in results)
    groups: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        if not r.ok:
            groups[r.kind].append(r)
    if args.json:
        print(json.dumps({"compiler": compiler.display, "version": compiler.version,
                          "compiled": ok, "total": len(results),
                          "results": [asdict(r) for r in results]}, indent=1))
        return 0
    print(f"\ncompiler: {compiler.display} ({compiler.version})")
    for kind, rs in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"{len(rs):3d}  {kind}: " + ", ".join(r.name for r in rs))
    share = 100.0 * ok / len(results) if results else 0.0
    print(f"\ncompiled {ok} of {len(results)} ({share:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
