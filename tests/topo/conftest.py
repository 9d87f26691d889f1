"""Fixtures of the topology tests.

Every run id a test uses starts with this session's token, so the suite can
check at the end that nothing it made is left (namespaces, state files,
interfaces in the caller's namespace) without looking at anybody else's.
"""
from __future__ import annotations

import os

import pytest
from topo_common import SESSION, new_run_id


@pytest.fixture
def run_id() -> str:
    return new_run_id()


def leftovers() -> list[str]:
    from nfpipe.topo import namespaces as nsu
    found = [f"netns {n}" for n in nsu.list_namespaces() if f".{SESSION}-" in n]
    try:
        found += [f"state {n}" for n in os.listdir(nsu.STATE_DIR) if f".{SESSION}-" in n]
    except FileNotFoundError:
        pass
    found += [f"link {n}" for n in os.listdir("/sys/class/net") if SESSION in n]
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leftovers_after_suite():
    """Session check: after the suite, nothing named with this session's token remains."""
    yield
    if os.geteuid() != 0:
        return
    left = leftovers()
    if left:
        # clean up for the next run, then fail loudly
        from nfpipe.topo import namespaces as nsu
        for item in left:
            kind, name = item.split(" ", 1)
            if kind == "netns":
                parts = nsu.split_ns_name(name)
                if parts:
                    nsu.teardown(parts[0], parts[1])
        pytest.fail(f"the topology tests left behind: {', '.join(left)}", pytrace=False)


@pytest.fixture
def topo_factory():
    """Topology.from_file/from_text with a fresh run id; downs every topology at teardown."""
    from nfpipe.topo import Topology
    made = []

    def make(path_or_text, *, text=False, run_id=None):
        rid = run_id or new_run_id()
        t = (Topology.from_text(path_or_text, rid, file="<test>") if text
             else Topology.from_file(path_or_text, rid))
        made.append(t)
        return t

    yield make
    errors = []
    for t in made:
        try:
            t.down()
        except Exception as exc:     # keep going: clean up the rest
            errors.append(exc)
    if errors:
        raise errors[0]
