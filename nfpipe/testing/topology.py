"""A topology brought up for one test and always taken down: what the pytest plugin's
``nfpipe_topology`` fixture hands a test, usable without pytest too::

    with topology_run("two-hosts", run_id="t1a2b-1") as topo:
        client = topo.host("client")
        client.run(["ping", "-c1", topo.host("server").address("eth0")])
        echo = topo.host("server").start(serve_udp_echo, "198.51.100.2", 7000)
        client.python(udp_exchange, "198.51.100.2", 7000, b"hi")

Why a handle around ``nfpipe.topo.Topology`` rather than the Topology itself: a test
talks about hosts (``topo.host("client").run(...)``), and a ``Host`` carries its
namespace, its interfaces and its addresses, so a test never builds namespace names
by hand.  The Topology stays reachable (``topo.topology``) for everything else.

Why a run id per test: namespaces are named ``nfpt.<topology>.<run-id>.<host>``, so
two tests (or two pytest sessions, or a CLI run of the same topology) never share
one, and ``down`` removes exactly this run's.  ``topology_run`` checks after
``down`` that none of the run's namespaces and no state file is left; if one is, it
raises ``LeftBehind`` naming it (a teardown error in pytest, not a silent leak).

Sources: a path to a topology file, the name of one nfpipe ships (``"two-hosts"``,
from ``nfpipe.resources.topologies_dir()``), a mapping (the file's content as data)
or YAML text (anything with a newline).
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nfpipe.resources import topologies_dir
from nfpipe.topo import Topology, TopologySpec, namespaces as nsu
from nfpipe.topo.run import Call

#: How long a command or a callable in a host may take unless the caller says otherwise:
#: a test that hangs on a dropped packet fails in a minute instead of never.
DEFAULT_TIMEOUT = 60.0

_RUN_ID_CHARS = re.compile(r"[^a-z0-9_-]+")


class LeftBehind(AssertionError):
    """Something a fixture made is still there after its teardown (a namespace, a pin,
    an attached program).  An ``AssertionError``, so pytest reports it as a failure of
    the teardown, with the names in the message."""


def run_id(prefix: str, counter: int) -> str:
    """A topology run id unique to this process and test: ``<prefix><4 hex>-<counter>``,
    cut to the 24 characters a run id may have (``nfpipe.topo.schema.RUN_ID_RE``)."""
    base = _RUN_ID_CHARS.sub("", prefix.lower())[:12] or "t"
    if not base[0].isalnum():
        base = "t" + base
    return f"{base}{secrets.token_hex(2)}-{counter}"[:24]


# --- where a topology comes from ----------------------------------------------------------

def topology_spec(source: str | os.PathLike | Mapping[str, Any] | TopologySpec,
                  base: str | os.PathLike | None = None) -> TopologySpec:
    """The ``TopologySpec`` of *source*: a spec as is; a mapping or YAML text parsed; a
    path, relative to *base* (a test file's directory) when it is not absolute; a bare
    name without a suffix, one of the topologies nfpipe ships."""
    if isinstance(source, TopologySpec):
        return source
    if isinstance(source, Mapping):
        return TopologySpec.from_text(yaml.safe_dump(dict(source), sort_keys=False),
                                      "<topology mapping>")
    if isinstance(source, str) and "\n" in source:
        return TopologySpec.from_text(source, "<inline topology>")
    return TopologySpec.from_file(resolve_file(source, base, topologies_dir()))


def resolve_file(source: str | os.PathLike, base: str | os.PathLike | None,
                 shipped: Path) -> Path:
    """*source* as a file: absolute as given; relative, against *base* (else the
    working directory); a bare name (no suffix, no directory) that is not a file
    there, ``<shipped>/<name>.yaml``.  A path that exists nowhere is returned as
    resolved against *base*, so the parser's "cannot read" names the place looked at."""
    path = Path(source)
    if path.is_absolute():
        return path
    here = Path(base) if base is not None else Path.cwd()
    candidate = here / path
    if candidate.exists():
        return candidate
    if not path.suffix and len(path.parts) == 1:
        named = shipped / f"{path}.yaml"
        if named.exists():
            return named
    return candidate


# --- hosts ---------------------------------------------------------------------------------

class Host:
    """One host of a running topology: its namespace, interfaces and addresses, and the
    ways to run things inside it.

    Commands (``run``, ``popen``) are real processes whose network namespace is the
    host's (setns between fork and exec: the mount namespace, so /sys/fs/bpf and the
    test's files, stay the caller's).  Python (``python``, ``start``) runs a function in
    a forked child inside the namespace, so sockets it opens are the host's; its
    arguments and result cross by pickle, the function itself never does (a closure or
    a lambda works)."""

    def __init__(self, run: TopologyRun, name: str):
        self._run = run
        self.name = name

    def __repr__(self) -> str:
        return f"Host({self.name!r}, netns={self.netns!r})"

    @property
    def netns(self) -> str:
        """The namespace's name, as ``ip netns list`` shows it."""
        return self._run.topology.netns(self.name)

    @property
    def interfaces(self) -> list[str]:
        """The host's interfaces as the topology file declares them."""
        return list(self._run.topology.spec.hosts[self.name].interfaces)

    def ifname(self, iface: str) -> str:
        """The kernel's name of *iface* in the host's namespace (what ``deploy`` takes)."""
        return self._run.topology.ifname(self.name, iface)

    def ifindex(self, iface: str) -> int:
        return self._run.topology.ifindex(self.name, iface)

    def address(self, iface: str, version: int = 4) -> str:
        """The first declared IPv*version* address of *iface*, without prefix length."""
        return self._run.topology.address(self.name, iface, version)

    def addresses(self, iface: str) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        return self._run.topology.addresses(self.name, iface)

    def run(self, argv: list[str], *, check: bool = False, timeout: float | None = DEFAULT_TIMEOUT,
            **kwargs: Any) -> subprocess.CompletedProcess:
        """``subprocess.run(argv)`` inside the host.  Unless told otherwise, output is
        captured as text (``.stdout``, ``.stderr``), so an assertion can show it."""
        if not any(k in kwargs for k in ("stdout", "stderr", "capture_output")):
            kwargs["capture_output"] = True
        kwargs.setdefault("text", True)
        return self._run.topology.run(self.name, argv, check=check, timeout=timeout, **kwargs)

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """``subprocess.Popen(argv)`` inside the host: a server for the test's duration.
        Killed at teardown if still running."""
        return self._run.topology.popen(self.name, argv, **kwargs)

    def python(self, fn: Callable[..., Any], *args: Any,
               timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` inside the host; its (picklable) result, or the
        exception it raised, raised here with the child's traceback as a note."""
        return self._run.topology.call(self.name, fn, *args, timeout=timeout, **kwargs)

    def start(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Call:
        """``fn(*args, **kwargs)`` started inside the host in the background (a server, a
        capture); ``.result(timeout)`` waits for it.  Killed at teardown if not done."""
        call = self._run.topology.start(self.name, fn, *args, **kwargs)
        self._run._calls.append(call)
        return call

    def inside(self) -> contextlib.AbstractContextManager[None]:
        """Context manager: the calling thread is in the host's namespace for the body."""
        return self._run.topology.inside(self.name)


class TopologyRun:
    """A topology that is up for one test: ``host(name)``, the DUT interfaces, and the
    ``nfpipe.topo.Topology`` underneath (``topology``).  ``start``/``call``/``popen``/
    ``iproute`` take a host name first, as ``Topology``'s do, so helpers written for a
    Topology take a TopologyRun as well."""

    def __init__(self, topology: Topology):
        self.topology = topology
        self._calls: list[Call] = []

    def __repr__(self) -> str:
        return f"TopologyRun({self.name!r}, run_id={self.run_id!r})"

    @property
    def name(self) -> str:
        return self.topology.name

    @property
    def run_id(self) -> str:
        return self.topology.run_id

    @property
    def hosts(self) -> list[str]:
        return self.topology.hosts

    @property
    def dut(self) -> list[tuple[str, str]]:
        """The (host, interface) pairs the topology marks as where a pipeline runs."""
        return self.topology.dut

    @property
    def namespaces(self) -> list[str]:
        return sorted(self.topology.namespaces.values())

    def host(self, name: str) -> Host:
        self.topology.netns(name)         # NoSuchHost, naming the hosts there are
        return Host(self, name)

    def netns(self, host: str) -> str:
        return self.topology.netns(host)

    def ifname(self, host: str, iface: str) -> str:
        return self.topology.ifname(host, iface)

    def address(self, host: str, iface: str, version: int = 4) -> str:
        return self.topology.address(host, iface, version)

    def run(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return self.host(host).run(argv, **kwargs)

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        return self.host(host).popen(argv, **kwargs)

    def call(self, host: str, fn: Callable[..., Any], *args: Any,
             timeout: float | None = DEFAULT_TIMEOUT, **kwargs: Any) -> Any:
        return self.host(host).python(fn, *args, timeout=timeout, **kwargs)

    def start(self, host: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Call:
        return self.host(host).start(fn, *args, **kwargs)

    def iproute(self, host: str):
        return self.topology.iproute(host)

    # --- teardown ----------------------------------------------------------------------

    def down(self) -> list[str]:
        """Stop what the test started in the hosts, remove the run's namespaces and check
        that nothing of the run is left (``LeftBehind`` otherwise)."""
        try:
            while self._calls:
                call = self._calls.pop()
                with contextlib.suppress(Exception):
                    call.kill()
        finally:
            removed = self.topology.down()
        left = self.leftovers()
        if left:
            raise LeftBehind(f"topology {self.name} (run {self.run_id}) left behind: "
                             f"{', '.join(left)}")
        return removed

    def leftovers(self) -> list[str]:
        """What of this run exists: namespaces by name prefix, the state file."""
        found = [f"netns {n}" for n in nsu.list_namespaces(nsu.run_prefix(self.name,
                                                                          self.run_id))]
        if os.path.exists(nsu.state_path(self.name, self.run_id)):
            found.append(f"state file {nsu.state_path(self.name, self.run_id)}")
        return found


@contextlib.contextmanager
def topology_run(source: str | os.PathLike | Mapping[str, Any] | TopologySpec, *,
                 run_id: str, base: str | os.PathLike | None = None) -> Iterator[TopologyRun]:
    """*source* up under *run_id* for the body, down after it whatever happened.

    A failed ``up()`` removes what it made (``Topology.up``), and this still runs the
    leftovers check.  An error of the body is never hidden by one of the teardown: the
    body's propagates, the teardown's is added to it as a note."""
    topo = Topology(topology_spec(source, base), run_id)
    run = TopologyRun(topo)
    try:
        topo.up()
    except BaseException:
        with contextlib.suppress(Exception):
            run.down()
        raise
    with torn_down(run, run.down):
        yield run


@contextlib.contextmanager
def torn_down(obj: Any, close: Callable[[], None]) -> Iterator[Any]:
    """*obj* for the body, then ``close()`` whatever happened.  The body's error wins: one
    of the teardown is added to it as a note (Python 3.11+), never raised over it."""
    try:
        yield obj
    except BaseException as exc:
        try:
            close()
        except Exception as teardown:
            if hasattr(exc, "add_note"):
                exc.add_note(f"and the teardown failed too: {teardown}")
        raise
    close()
