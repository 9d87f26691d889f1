"""Where the files nfpipe reads at run time are: the BPF C sources and headers (``bpf/``),
the example pipelines (``examples/``), the topologies (``topologies/``) and the driver
profiles (``offload/profiles/``).

One place answers it, so that every layer finds the same files whether nfpipe runs
from its source tree (an editable install, a checkout on ``PYTHONPATH``) or from an
installed wheel, which carries them as ``nfpipe/data/{bpf,examples,topologies,
profiles}`` (pyproject.toml maps the tree's directories there).  ``NFPIPE_BPF_DIR``
and ``NFPIPE_PROFILES`` override the BPF dir and the profile dir.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from nfpipe.errors import UsageError

_PACKAGE = Path(__file__).resolve().parent
_INSTALLED = _PACKAGE / "data"                 # a wheel's layout
_TREE = _PACKAGE.parent                        # the source tree holding nfpipe/

#: data dir name -> (its place in a wheel, its place in the source tree)
_PLACES = {
    "bpf": ("bpf", "bpf"),
    "examples": ("examples", "examples"),
    "topologies": ("topologies", "topologies"),
    "profiles": ("profiles", "offload/profiles"),
    "benchmarks": ("benchmarks", "benchmarks"),
}


def installed() -> bool:
    """Whether nfpipe runs from an installed wheel (else from its source tree)."""
    return (_INSTALLED / "bpf").is_dir()


def data_dir(name: str) -> Path:
    """The directory of shipped data *name* ("bpf", "examples", "topologies", "profiles",
    "benchmarks": the hand-written programs `nfpipe bench` compares with)."""
    in_wheel, in_tree = _PLACES[name]
    return _INSTALLED / in_wheel if installed() else _TREE / in_tree


def bpf_dir() -> Path:
    """nfpipe's ``bpf/``: the catalog NF sources, examples and headers."""
    env = os.environ.get("NFPIPE_BPF_DIR")
    return Path(env) if env else data_dir("bpf")


def nf_source(name: str) -> Path:
    """A catalog NF's C source (``filter.c``)."""
    return bpf_dir() / name


def examples_dir() -> Path:
    return data_dir("examples")


def topologies_dir() -> Path:
    return data_dir("topologies")


def profiles_dir() -> Path:
    env = os.environ.get("NFPIPE_PROFILES")
    return Path(env) if env else data_dir("profiles")


def examples() -> list[Path]:
    """The example pipelines nfpipe ships (not their test-case files, ``*.test.yaml``)."""
    return sorted(p for p in examples_dir().glob("*.yaml") if not p.name.endswith(".test.yaml"))


_NF_PATH = re.compile(r"(?m)^(\s*(?:-\s*)?(?:\{[^}\n]*?)?\bnf:\s*)(\S+\.c)\b")


def copy_examples(dest: str | os.PathLike, names: list[str] | None = None) -> list[Path]:
    """Copy the example pipelines (or those *names*, with or without ``.yaml``) into
    *dest*, with the C files they use: a C file is copied next to them under ``nf/``
    and the pipeline's ``nf:`` path rewritten to it, so the copies work on their own.
    Returns the files written; an existing file is never overwritten."""
    out_dir = Path(dest)
    chosen = examples()
    if names:
        want = {n.removesuffix(".yaml") for n in names}
        missing = want - {p.stem for p in chosen}
        if missing:
            raise UsageError(f"no example {', '.join(sorted(missing))} (examples: "
                             f"{', '.join(p.stem for p in examples())})")
        chosen = [p for p in chosen if p.stem in want]
    plan: dict[Path, bytes] = {}
    for src in chosen:
        text = src.read_text()
        cases = src.with_name(f"{src.stem}.test.yaml")       # `nfpipe test` reads it
        if cases.is_file():
            plan[out_dir / cases.name] = cases.read_bytes()

        def local(m: re.Match, src: Path = src) -> str:
            c = (src.parent / m.group(2)).resolve()
            plan[out_dir / "nf" / c.name] = c.read_bytes()
            return f"{m.group(1)}nf/{c.name}"
        plan[out_dir / src.name] = _NF_PATH.sub(local, text).encode()
    taken = [str(p) for p in plan if p.exists() and p.read_bytes() != plan[p]]
    if taken:
        raise UsageError(f"not overwriting {', '.join(taken)}: copy into an empty directory")
    for path, data in plan.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return sorted(plan)
