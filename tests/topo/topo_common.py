"""Shared names of the topology tests (imported by conftest and the test modules)."""
from __future__ import annotations

import itertools
import secrets
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOPOLOGIES = REPO / "topologies"
SESSION = "t" + secrets.token_hex(3)
_counter = itertools.count(1)


def new_run_id() -> str:
    return f"{SESSION}-{next(_counter)}"
