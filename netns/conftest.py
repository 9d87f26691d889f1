"""Fixtures of the end-to-end scenarios (netns/).

Every test here is a ``kernel`` test: the repository's conftest.py skips it off CI
without root or BTF, and under ``CI=true`` fails instead (as in tests/).  A
session fixture checks at the end that nothing this suite made is left: no
namespace, topology state file or interface carrying the session's run-id token,
and no pin on bpffs of any program, map or link the scenarios created (other
users of bpffs on the machine are left alone).
"""
from __future__ import annotations

import os

import pytest

from netns.harness import MODES, SESSION, Scenario, leftovers, our_pins


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.kernel)     # the root conftest's gate applies


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """After the suite: no namespace, state, interface or bpffs pin made by it remains."""
    yield
    if os.geteuid() != 0:
        return
    left = leftovers(SESSION)
    pins = our_pins()
    if left:
        from nfpipe.topo import namespaces as nsu
        for item in left:
            kind, name = item.split(" ", 1)
            parts = nsu.split_ns_name(name) if kind == "netns" else None
            if parts:
                nsu.teardown(parts[0], parts[1])
    assert not left and not pins, \
        f"the scenarios left behind: {', '.join(left + [f'pin {p}' for p in pins])}"


@pytest.fixture(params=MODES)
def mode(request) -> str:
    return request.param


def scenario_fixture(topology: str):
    """A module-scoped fixture: one topology run per test module, always taken down."""
    @pytest.fixture(scope="module")
    def _fixture():
        # the root conftest's gate has already skipped (or, under CI, failed) the test
        # when the kernel cannot run it: this is only reached when it can
        sc = Scenario(topology)
        with sc:
            yield sc
    return _fixture
