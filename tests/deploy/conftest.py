"""Fixtures of the deploy tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from nfpipe.topo import Topology

ROOT = Path(__file__).parent.parent.parent


@pytest.fixture(scope="module")
def topo():
    """topologies/two-hosts.yaml, up for one test module (its own namespaces and veths,
    under unique names), down after it even when a test failed."""
    t = Topology.from_file(ROOT / "topologies" / "two-hosts.yaml")
    t.up()
    try:
        yield t
    finally:
        t.down()
