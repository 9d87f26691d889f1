"""Where the files nfpipe reads at run time are: the BPF C sources and headers (``bpf/``),
the example pipelines (``examples/``), the topologies (``topologies/``) and the driver
profiles (``offload/profiles/``).

One place answers it, so that every layer finds the same files whether nfpipe runs
from its source tree or from an installed wheel.  ``NFPIPE_BPF_DIR`` and
``NFPIPE_PROFILES`` override the BPF dir and the profile dir.
"""
from __future__ import annotations

import os
from pathlib import Path

_TREE = Path(__file__).resolve().parent.parent        # the source tree holding nfpipe/


def data_root() -> Path:
    """The directory holding ``bpf/``, ``examples/``, ``topologies/`` and ``offload/``."""
    return _TREE


def bpf_dir() -> Path:
    """nfpipe's ``bpf/``: the catalog NF sources, examples and headers."""
    env = os.environ.get("NFPIPE_BPF_DIR")
    return Path(env) if env else data_root() / "bpf"


def nf_source(name: str) -> Path:
    """A catalog NF's C source (``filter.c``)."""
    return bpf_dir() / name


def examples_dir() -> Path:
    return data_root() / "examples"


def topologies_dir() -> Path:
    return data_root() / "topologies"


def profiles_dir() -> Path:
    env = os.environ.get("NFPIPE_PROFILES")
    return Path(env) if env else data_root() / "offload" / "profiles"
