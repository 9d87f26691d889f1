"""Pipelines for one test: loaded (``load_pipeline``), or deployed onto a topology's
interfaces under a state root of their own and destroyed after (``deployment``), with a
check that nothing of them is left.  What the pytest plugin's ``nfpipe_pipeline`` and
``nfpipe_deploy`` fixtures are made of, usable without pytest too::

    with load_pipeline("firewall", linking="fused") as p:      # a shipped example
        assert p.test_run(packet).retval == 1

    with deployment("firewall.yaml", [Target("eth0", netns)], root=isolated_root("t1")) as d:
        ...                                                      # real traffic
        assert d.stats()["fw"]["drop"]["packets"] == 3
    # destroyed; no pin under the root, none of its programs on the interfaces

Why a state root per deployment: ``nfpipe.deploy`` keeps a deployed pipeline in
bpffs under ``<root>/<pipeline>/``, one per pipeline name.  A test deploying
``examples/firewall.yaml`` under the default root would take over (update!) a
``firewall`` an operator runs on the same machine, and its destroy would remove it.
Under ``/sys/fs/bpf/nfpipe-test-<token>/`` it is a pipeline of its own, which
``nfpipe status`` (default root) never lists and ``destroy`` of the operator's never
touches.  (The per-name lock in ``nfpipe.deploy.state.LOCK_DIR`` is still shared: a
deploy of the same name elsewhere at the same instant is refused, not corrupted.)

Why the check after destroy: a deploy attaches links, pins programs, maps and
records.  The check looks at the kernel, not at the manifest: no file under the
root, and none of the programs this deployment ever ran (every revision's) attached
at the hook of its interfaces.  ``LeftBehind`` names what it finds.

Sources are as for ``nfpipe_pipeline``: a path (relative to *base*, the test file's
directory), the name of an example nfpipe ships (``"firewall"``), or YAML text.
*hook* overrides the file's ``hook:`` (one file for XDP and TC tests).
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nfpipe import deploy as D
from nfpipe.attach import Target, query
from nfpipe.catalog.base import NetworkFunction, NodeMaps, SourceNF
from nfpipe.catalog.registry import get as catalog_nf
from nfpipe.compose import build, make_plan
from nfpipe.errors import NfpipeError, UsageError
from nfpipe.kernel import bpffs, syscall as sc
from nfpipe.nfabi import PIPELINE_HOOKS
from nfpipe.resources import examples_dir
from nfpipe.runtime import Pipeline
from nfpipe.spec import PipelineSpec
from nfpipe.testing.topology import LeftBehind, resolve_file, torn_down

BPFFS = "/sys/fs/bpf"
#: Isolated state roots are ``<BPFFS>/<ROOT_PREFIX><token>`` (bpffs refuses dots).
ROOT_PREFIX = "nfpipe-test-"

_HOOK_LINE = re.compile(r"(?m)^hook:.*$")


# --- pipelines: files, names, text -------------------------------------------------------

def pipeline_text(source: str | os.PathLike, base: str | os.PathLike | None = None,
                  hook: str | None = None) -> tuple[str, str]:
    """(YAML text, file name) of *source*; with *hook*, its ``hook:`` line replaced.

    The file name is what positions in errors name and what relative ``nf:`` C paths
    resolve against: the file's own path, or for text ``<base>/<inline pipeline>`` so
    a C file next to the test is found."""
    if isinstance(source, str) and "\n" in source:
        here = Path(base) if base is not None else Path.cwd()
        text, file = source, str(here / "<inline pipeline>")
    else:
        path = resolve_file(source, base, examples_dir())
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the pipeline file: {exc.strerror}") from None
        file = str(path)
    if hook is not None:
        if hook not in PIPELINE_HOOKS:
            raise UsageError(f"hook {hook!r}: use one of {', '.join(PIPELINE_HOOKS)}")
        text, n = _HOOK_LINE.subn(f"hook: {hook}", text)
        if n != 1:
            raise UsageError(f"{file}: to override its hook, a pipeline needs exactly one "
                             f"top-level 'hook:' line (found {n})")
    return text, file


def pipeline_spec(source: str | os.PathLike, base: str | os.PathLike | None = None,
                  hook: str | None = None) -> PipelineSpec:
    """*source* parsed (every problem with its file:line:column)."""
    text, file = pipeline_text(source, base, hook)
    return PipelineSpec.from_text(text, file)


def load_pipeline(source: str | os.PathLike, *, base: str | os.PathLike | None = None,
                  linking: str | None = None, hook: str | None = None) -> Pipeline:
    """*source* parsed, validated, built (*linking* overrides the file's) and loaded into
    the kernel, not attached: ``test_run``, ``stats``, ``edge_counts``, ``node_maps``.
    The caller closes it (it is a context manager)."""
    return Pipeline.load(build(make_plan(pipeline_spec(source, base, hook), linking=linking)))


def deploy_file(source: str | os.PathLike, workdir: str | os.PathLike, *,
                base: str | os.PathLike | None = None, hook: str | None = None) -> Path:
    """A file ``nfpipe.deploy`` can read for *source*: the file itself when it is one and
    its hook stays; otherwise a copy in *workdir* with the hook replaced and every
    relative ``nf:`` C path made absolute (so it resolves as it did beside the original).
    The source is parsed first, so a mistake is reported at its own line."""
    spec = pipeline_spec(source, base, hook)
    if hook is None and not (isinstance(source, str) and "\n" in source):
        return Path(spec.file)
    text, file = pipeline_text(source, base, hook)
    data = yaml.safe_load(text)
    here = Path(file).parent
    for node in data.get("nodes") or []:
        nf = node.get("nf") if isinstance(node, dict) else None
        if isinstance(nf, str) and (nf.endswith(".c") or "/" in nf) and \
                not os.path.isabs(nf):
            node["nf"] = str((here / nf).resolve())
    out = Path(workdir) / f"{spec.name}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def nf_from(nf: str | os.PathLike | NetworkFunction, config: Mapping[str, Any] | None = None,
            *, ports: tuple[str, ...] = ("out",),
            base: str | os.PathLike | None = None) -> NetworkFunction:
    """A NetworkFunction for *nf*: as given; a catalog name (``"filter"``) with *config*;
    or a C file (a ``.c`` name or a path, relative to *base*) with *config* setting its
    constants and *ports* its output ports."""
    if isinstance(nf, NetworkFunction):
        if config is not None:
            raise UsageError("give the config to the NetworkFunction, not beside it")
        return nf
    text = os.fspath(nf)
    if text.endswith(".c") or os.sep in text:
        path = Path(text) if os.path.isabs(text) else \
            (Path(base) if base is not None else Path.cwd()) / text
        if not path.is_file():
            raise UsageError(f"C source '{text}' not found (looked at {path})")
        return SourceNF(path.resolve(), config, tuple(ports))
    return catalog_nf(text)(dict(config or {}))


# --- pins ----------------------------------------------------------------------------------

def pinned_objects(root: str | os.PathLike[str] = BPFFS) -> dict[str, tuple[str, int]]:
    """Every pinned object under *root*: path -> (kind, id), kind "prog", "map" or "link",
    read from the pin's fdinfo (so a pin is recognised by what it holds, not its name)."""
    out: dict[str, tuple[str, int]] = {}
    for d, _, files in os.walk(os.fspath(root)):
        for n in files:
            path = os.path.join(d, n)
            try:
                fd = bpffs.open_pinned(path)
            except Exception:        # not a pin, or gone meanwhile
                continue
            try:
                info = sc.fdinfo(fd)
            finally:
                fd.close()
            for key in ("prog_id", "map_id", "link_id"):
                if key in info:
                    out[path] = (key[:-3], int(info[key]))
                    break
    return out


def isolated_root(token: str | None = None) -> str:
    """A deploy state root of its own on bpffs: ``/sys/fs/bpf/nfpipe-test-<token>``."""
    token = token or secrets.token_hex(4)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise UsageError(f"state root token {token!r}: letters, digits, '-' and '_' only")
    return os.path.join(BPFFS, ROOT_PREFIX + token)


# --- a deployment ----------------------------------------------------------------------------

class Deployed:
    """A pipeline deployed (attached, pinned) by ``nfpipe.deploy`` under its own state
    root: its manifest, counters and maps, updates, and ``destroy``.

    Maps handed out by ``node_maps``/``node_view`` are closed by ``destroy``."""

    def __init__(self, file: str | os.PathLike, targets: list[Target], *, root: str,
                 mode: str | None = None, linking: str | None = None, force: bool = False):
        self.root = root
        self.targets = list(targets)
        self.file = Path(file)
        self.destroyed = False
        self._open: list[NodeMaps] = []
        self._prog_ids: set[int] = set()
        self.manifest = D.deploy(file, targets=self.targets, mode=mode, linking=linking,
                                 force=force, root=root)
        self.name = self.manifest.pipeline
        self._remember(self.manifest)

    def __repr__(self) -> str:
        return f"Deployed({self.name!r}, revision {self.manifest.revision}, root={self.root!r})"

    def _remember(self, m: D.Manifest) -> None:
        self._prog_ids.add(m.entry_prog_id)
        self._prog_ids.update(n.prog_id for n in m.nodes if n.prog_id is not None)
        self._prog_ids.update(i.prog_id for i in m.interfaces if i.prog_id is not None)

    @property
    def state_dir(self) -> Path:
        return D.state_dir(self.name, self.root)

    @property
    def interfaces(self) -> list[str]:
        return [f"{t.netns}:{t.ifname}" if t.netns else t.ifname for t in self.targets]

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """node -> outcome -> {"packets", "bytes"}, read from the pinned ``nfp_stats``."""
        return D.stats(self.name, root=self.root)

    def status(self) -> dict[str, Any]:
        """What ``nfpipe status`` reports for it (state, revision, interfaces, nodes)."""
        return D.status(self.name, root=self.root)[0]

    def node_maps(self, node: str) -> NodeMaps:
        """The node's pinned maps (a catalog NF's control plane reads them)."""
        _m, _entry, maps = D.node_maps(self.name, node, root=self.root)
        self._open.append(maps)
        return maps

    def node_view(self, node: str) -> tuple[NetworkFunction, NodeMaps]:
        """(the catalog NF with its deployed config and state, its pinned maps)."""
        impl, maps = D.node_view(self.name, node, root=self.root)
        self._open.append(maps)
        return impl, maps

    def impl(self, node: str) -> NetworkFunction:
        """The catalog NF of *node* as deployed: ``hits(maps)``, ``stats(maps)``, ..."""
        return self.node_view(node)[0]

    def update(self, file: str | os.PathLike, *, mode: str | None = None,
               linking: str | None = None) -> D.Manifest:
        """Deploy *file* over the running pipeline (an update: runtime, swap or
        generation, ``manifest.update["how"]``); returns the new manifest."""
        m = D.deploy(file, targets=self.targets, mode=mode, linking=linking, root=self.root)
        if m.pipeline != self.name:
            self._remember(m)
            raise UsageError(f"{file} is pipeline '{m.pipeline}', not '{self.name}': that was "
                             f"a second deployment, not an update")
        self.manifest = m
        self._remember(m)
        return m

    def destroy(self) -> list[str]:
        """Detach and unpin everything (``nfpipe destroy``); returns what was removed.
        Idempotent: a second call does nothing."""
        while self._open:
            D.close_node_maps(self._open.pop())
        if self.destroyed:
            return []
        self.destroyed = True
        if not self.state_dir.exists():
            return []
        return D.destroy(self.name, root=self.root)

    def leftovers(self) -> list[str]:
        """What of this deployment the kernel still has: pins under the root, any of its
        programs attached at the hook of its interfaces, the pipeline's lock file."""
        found = []
        if os.path.isdir(self.root):
            pins = pinned_objects(self.root)
            for d, _, files in os.walk(self.root):
                for n in sorted(files):
                    path = os.path.join(d, n)
                    kind, i = pins.get(path, ("file", None))
                    found.append(f"pin {path} ({kind} {i})" if i is not None else f"file {path}")
        for t in self.targets:
            try:
                q = query(t.ifname, t.netns)
            except NfpipeError:
                continue              # the interface (its namespace) is gone: so are hooks
            for e in D.occupants(q, self.manifest.hook):
                if e.get("prog_id") in self._prog_ids:
                    found.append(f"program {e['prog_id']} still attached to "
                                 f"{t.netns + ':' if t.netns else ''}{t.ifname}")
        lock = os.path.join(D.LOCK_DIR, f"{self.name}.lock")
        if os.path.exists(lock) and not self.state_dir.exists():
            found.append(f"lock file {lock}")
        return found

    def close(self) -> None:
        """Destroy, remove the (then empty) state root, and check nothing is left."""
        try:
            self.destroy()
        finally:
            _remove_root(self.root)
        left = self.leftovers()
        if os.path.isdir(self.root):
            left.append(f"directory {self.root}")
        if left:
            raise LeftBehind(f"deployment of '{self.name}' left behind: {', '.join(left)}")


@contextlib.contextmanager
def deployment(source: str | os.PathLike, targets: list[Target], *, root: str,
               workdir: str | os.PathLike, base: str | os.PathLike | None = None,
               hook: str | None = None, mode: str | None = None,
               linking: str | None = None, force: bool = False) -> Iterator[Deployed]:
    """*source* deployed onto *targets* under state root *root* for the body; destroyed
    after it whatever happened, then checked (``LeftBehind``).

    A deploy that fails rolls itself back (``nfpipe.deploy``: every interface as it was);
    the state root it may have created is removed here all the same."""
    file = deploy_file(source, workdir, base=base, hook=hook)
    try:
        dep = Deployed(file, targets, root=root, mode=mode, linking=linking, force=force)
    except BaseException:
        _remove_root(root)
        raise
    with torn_down(dep, dep.close):
        yield dep


def _remove_root(root: str) -> None:
    """Remove the state root if nothing but empty directories is left in it (a pin is
    never removed here: ``leftovers`` reports it)."""
    with contextlib.suppress(NfpipeError, OSError):
        bpffs.remove_empty_dirs(root, stop_at=BPFFS)
