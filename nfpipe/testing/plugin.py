"""nfpipe's pytest plugin: fixtures that put pipelines, NFs, topologies and deployments in
the kernel for one test and always take them out again, and the kernel-test gate.

Installed with nfpipe (the ``pytest11`` entry point ``nfpipe``), so a user's tests get
it without a conftest; see docs/pytest-plugin.md.  nfpipe's own tests get it the same
way (the repository's conftest.py registers it only when an old install lacks the
entry point).

Fixtures, each a factory (a test may call it more than once), function-scoped so one
test's kernel objects never leak into the next, each cleaning up at teardown also
when the test failed:

* ``nfpipe_pipeline(source, linking=None, hook=None)`` -> a loaded ``Pipeline``;
* ``nfpipe_nf(nf, config=None, hook="xdp", ...)`` -> a ``LoadedNF`` (one NF alone);
* ``nfpipe_topology(source)`` -> a ``TopologyRun`` (hosts in namespaces of their own);
* ``nfpipe_deploy(topo, source, host=None, ifname=None, ...)`` -> a ``Deployed``
  (attached and pinned under a state root of its own; destroyed and checked after).

The gate: a test marked ``kernel``, or using any of these fixtures, needs root and a
kernel that takes BPF programs.  Off CI it is skipped with the reason when that is
missing; with ``CI=true`` (``1``, ``yes``) it fails instead, so a CI job that cannot
run them never passes by skipping them.  ``kernel_unavailable()`` says why not.

Why ``pytest_runtest_setup`` and not only a check in the fixtures: the gate must run
before *any* fixture of the test, including the user's own that may load programs
itself, and for ``kernel``-marked tests that use no fixture of ours.  The fixtures
check again when called, for a fixture requested dynamically
(``request.getfixturevalue``), which collection cannot see.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from nfpipe.attach import Target
from nfpipe.catalog.base import NetworkFunction
from nfpipe.errors import UsageError
from nfpipe.kernel import syscall as sc
from nfpipe.runtime import Pipeline
from nfpipe.testing.deployed import Deployed, deployment, isolated_root, load_pipeline, nf_from
from nfpipe.testing.nf import LoadedNF, load_nf
from nfpipe.testing.topology import TopologyRun, run_id, topology_run

#: The fixtures that need the kernel: a test using one is gated like a ``kernel`` test.
KERNEL_FIXTURES = frozenset({"nfpipe_pipeline", "nfpipe_nf", "nfpipe_topology",
                             "nfpipe_deploy"})
MARKER = "kernel: needs root and a BPF-capable kernel (loads programs, BPF_PROG_TEST_RUN)"
#: The ini option naming the start of every topology run id and state root the
#: fixtures make, so a leftover (after a SIGKILL) says whose it is.
RUN_PREFIX_INI = "nfpipe_run_prefix"
DEFAULT_RUN_PREFIX = "pt"

_counter = itertools.count(1)


# --- the gate ------------------------------------------------------------------------------

def in_ci() -> bool:
    """True when ``CI`` is ``1``, ``true`` or ``yes`` (any case): skips become failures."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


IN_CI = in_ci()


@functools.lru_cache(maxsize=1)
def kernel_unavailable() -> str | None:
    """Why this process cannot run kernel tests, or None when it can.

    Root (CAP_BPF, CAP_NET_ADMIN for the attach and namespace work), kernel BTF (the
    loader relies on it), and bpf() itself answering: a one-entry array map is created
    and closed, so a kernel built without BPF, or a seccomp/LSM policy refusing it,
    is named here rather than in the first fixture's traceback.  Asked once per
    process (the answer cannot change under a running session)."""
    if os.geteuid() != 0:
        return "kernel tests need root (CAP_BPF, CAP_NET_ADMIN)"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    refused = sc.bpf_refusal()
    return None if refused is None else f"the kernel refuses bpf(): {refused}"


def require_kernel() -> None:
    """Skip the running test (fail it under CI) if the kernel cannot run it."""
    reason = kernel_unavailable()
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true forbids skipping kernel tests: {reason}", pytrace=False)
    pytest.skip(reason)


# --- hooks ---------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(RUN_PREFIX_INI, "start of the run ids of topologies and deploy state roots "
                  "the nfpipe fixtures create (letters, digits; default 'pt')",
                  default=DEFAULT_RUN_PREFIX)


def pytest_configure(config: pytest.Config) -> None:
    # a project (nfpipe's own pyproject.toml) may declare the marker already: once is enough
    if not any(str(line).split(":", 1)[0].strip() == "kernel"
               for line in config.getini("markers")):
        config.addinivalue_line("markers", MARKER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        if KERNEL_FIXTURES.intersection(names) and item.get_closest_marker("kernel") is None:
            item.add_marker(pytest.mark.kernel)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is not None:
        require_kernel()


# --- the fixtures ----------------------------------------------------------------------------

def _base(request: pytest.FixtureRequest) -> Path:
    """Where relative paths of a test resolve: its file's directory."""
    return Path(request.path).parent


def _token(request: pytest.FixtureRequest) -> str:
    """A token unique to this call in this session (run ids, state roots)."""
    return run_id(str(request.config.getini(RUN_PREFIX_INI)), next(_counter))


@pytest.fixture
def nfpipe_pipeline(request: pytest.FixtureRequest) -> Iterator[Callable[..., Pipeline]]:
    """``nfpipe_pipeline(source, linking=None, hook=None)``: the pipeline in *source*
    loaded into the kernel (not attached), closed at teardown.

    *source*: a pipeline file (relative to the test file's directory), the name of an
    example nfpipe ships (``"firewall"``) or YAML text; *linking* ``"tailcall"`` or
    ``"fused"`` overrides the file's, *hook* (``"xdp"``, ``"tc-ingress"``,
    ``"tc-egress"``) its ``hook:``.  The result is a live ``nfpipe.Pipeline``:
    ``test_run(packet)``, ``stats()``, ``edge_counts()``, ``node_maps(node)``."""
    with contextlib.ExitStack() as stack:   # each closed, also if another fails
        def load(source: str | os.PathLike, linking: str | None = None,
                 hook: str | None = None) -> Pipeline:
            require_kernel()
            return stack.enter_context(load_pipeline(source, base=_base(request),
                                                     linking=linking, hook=hook))
        yield load


@pytest.fixture
def nfpipe_nf(request: pytest.FixtureRequest) -> Iterator[Callable[..., LoadedNF]]:
    """``nfpipe_nf(nf, config=None, hook="xdp", *, ports=("out",), instance=None,
    egress=False)``: one NF built alone for *hook* ("xdp" or "tc"), loaded, its maps
    populated from *config*; closed at teardown.

    *nf*: a catalog name (``"filter"``), a C file written to ``nfpipe/nf.h`` (relative
    to the test file's directory; *config* sets its constants, *ports* names its
    output ports), or a ``NetworkFunction``.  ``run(packet)`` is one
    BPF_PROG_TEST_RUN: ``.verdict``, ``.port``, ``.retval``, ``.data``."""
    with contextlib.ExitStack() as stack:   # each closed, also if another fails
        def load(nf: str | os.PathLike | NetworkFunction,
                 config: Mapping[str, Any] | None = None, hook: str = "xdp", *,
                 ports: tuple[str, ...] = ("out",), instance: str | None = None,
                 egress: bool = False) -> LoadedNF:
            require_kernel()
            impl = nf_from(nf, config, ports=tuple(ports), base=_base(request))
            return stack.enter_context(load_nf(impl, hook, instance, egress=egress))
        yield load


@pytest.fixture
def nfpipe_topology(request: pytest.FixtureRequest) -> Iterator[Callable[..., TopologyRun]]:
    """``nfpipe_topology(source)``: the topology up in namespaces named for this test
    (``nfpt.<topology>.<run id>.<host>``), down at teardown, then checked for leftovers.

    *source*: a topology file (relative to the test file's directory), the name of one
    nfpipe ships (``"two-hosts"``), a mapping or YAML text.  The result's
    ``host(name)`` runs commands (``.run(argv)`` -> CompletedProcess) and Python
    (``.python(fn, *args)``, ``.start(fn, *args)``) inside the host."""
    with contextlib.ExitStack() as stack:   # each closed, also if another fails
        def up(source: str | os.PathLike | Mapping[str, Any]) -> TopologyRun:
            require_kernel()
            return stack.enter_context(topology_run(source, run_id=_token(request),
                                                    base=_base(request)))
        yield up


@pytest.fixture
def nfpipe_deploy(request: pytest.FixtureRequest,
                  nfpipe_topology: Callable[..., TopologyRun],  # noqa: ARG001 - set up first
                  tmp_path: Path) -> Iterator[Callable[..., Deployed]]:
    """``nfpipe_deploy(topo, source, host=None, ifname=None, *, hook=None, mode=None,
    linking=None, force=False)``: *source* deployed with ``nfpipe.deploy`` onto
    *host*'s *ifname* (one name or a list; default: the topology's first DUT
    interface, or *host*'s), under a bpffs state root of its own
    (``/sys/fs/bpf/nfpipe-test-<token>``) so it never meets another deployment.

    At teardown it is destroyed, and the fixture asserts that no pin is left under its
    root and none of its programs is attached to the interfaces.  (It depends on
    ``nfpipe_topology``, so it is torn down before any topology of the test.)"""
    with contextlib.ExitStack() as stack:   # each closed, also if another fails
        def deploy(topo: TopologyRun, source: str | os.PathLike, host: str | None = None,
                   ifname: str | list[str] | None = None, *, hook: str | None = None,
                   mode: str | None = None, linking: str | None = None,
                   force: bool = False) -> Deployed:
            require_kernel()
            targets = _targets(topo, host, ifname)
            token = _token(request)
            workdir = tmp_path / f"deploy-{token}"
            workdir.mkdir()
            return stack.enter_context(deployment(
                source, targets, root=isolated_root(token), workdir=workdir,
                base=_base(request), hook=hook, mode=mode, linking=linking, force=force))
        yield deploy


def _targets(topo: TopologyRun, host: str | None,
             ifname: str | list[str] | None) -> list[Target]:
    """The deploy targets: *host*'s *ifname*s, by default the topology's DUT ones."""
    if not isinstance(topo, TopologyRun):
        raise UsageError(f"nfpipe_deploy: the first argument is a topology from "
                         f"nfpipe_topology, not {type(topo).__name__}")
    dut = topo.dut
    if host is None:
        if not dut:
            raise UsageError(f"topology {topo.name} marks no DUT interface: name host= "
                             f"and ifname=")
        host = dut[0][0]
    if ifname is None:
        mine = [i for h, i in dut if h == host]
        if not mine:
            raise UsageError(f"host {host!r} of topology {topo.name} has no DUT interface: "
                             f"name ifname=")
        names = mine[:1]
    else:
        names = [ifname] if isinstance(ifname, str) else list(ifname)
    h = topo.host(host)
    return [Target(h.ifname(n), h.netns) for n in names]
