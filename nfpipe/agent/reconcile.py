"""The reconciler: one host's running pipelines made what its desired state says, with
nfpipe's own deploy (transactional first deploy, hitless update) and destroy.

It only touches what it deployed: ownership is recorded in its state directory
(``owned.json``: pipeline -> digest of what was applied, the desired revision, the
pipeline file it wrote), and a pipeline found deployed that it does not own is
reported, never updated or destroyed.  After a restart (even ``kill -9``) it reads
``owned.json`` and the pinned manifests and *adopts* what runs: a pipeline whose
applied digest is still the desired one is not deployed again, so nothing is
re-attached and traffic is not disturbed.  A deploy that fails (a verifier
rejection, a refused interface) is reported with its error and retried with an
exponential backoff, and only once the desired document changes or the backoff
expires, never in a hot loop.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nfpipe import deploy as D
from nfpipe.agent.desired import DesiredPipeline, Snapshot
from nfpipe.errors import AgentError, DeployError, NfpipeError

log = logging.getLogger("nfpipe.agent")

OWNED = "owned.json"
PIPELINES = "pipelines"
#: the outcomes of nfp_stats that say a pipeline is broken (the gates read them too)
BAD_OUTCOMES = ("aborted", "tail_call_miss")
#: seconds before a deploy that found the pipeline's lock held is tried again
BUSY_RETRY = 0.5


@dataclass
class Owned:
    """What this agent deployed of one pipeline."""

    digest: str
    revision: int                  # the desired document's revision applied
    file: str                      # the pipeline file the deploy read
    applied_at: float = 0.0


@dataclass
class Failure:
    digest: str
    attempts: int
    retry_at: float
    error: str
    kind: str


@dataclass
class PipelineStatus:
    """One pipeline of one host, as reported (JSON: ``asdict``)."""

    desired_revision: int | None = None
    applied_revision: int | None = None     # the desired revision that runs
    manifest_revision: int | None = None    # nfpipe's own revision counter
    state: str = "absent"                   # running | degraded | absent | failed | foreign
    health: str = "unknown"                 # healthy | unhealthy | unknown
    health_reason: str | None = None        # why unhealthy
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 0
    retry_at: float | None = None
    interfaces: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


def _now() -> float:
    return time.time()


class Reconciler:
    """Converge *host*'s pipelines under the deploy state root *root* to a snapshot."""

    def __init__(self, host: str, labels: Mapping[str, str], state_dir: str | os.PathLike, *,
                 root: str = D.STATE_ROOT, backoff: float = 5.0, backoff_max: float = 300.0,
                 clock: Callable[[], float] = _now, dry_run: bool = False,
                 simulate: Callable[[str, int], dict[str, int]] | None = None):
        """*dry_run*: deploy and destroy nothing, report as if they had succeeded, with
        the counters *simulate(pipeline, revision)* gives (default zeros): a simulated
        host, for rollouts rehearsed on a fleet of them (tests, ``--dry-run``)."""
        self.host, self.labels = host, dict(labels)
        self.dry_run, self.simulate = dry_run, simulate
        self.state_dir = Path(state_dir)
        self.root = root
        self.backoff, self.backoff_max = backoff, backoff_max
        self.clock = clock
        self.owned: dict[str, Owned] = {}
        self.failures: dict[str, Failure] = {}
        self.status: dict[str, PipelineStatus] = {}
        self.problems: dict[str, str] = {}
        self.deploys = {"ok": 0, "error": 0, "destroyed": 0}
        self._last_bad: dict[str, dict[str, int]] = {}
        self._busy_until: float | None = None
        (self.state_dir / PIPELINES).mkdir(parents=True, exist_ok=True)
        self._load_owned()
        for name, own in self.owned.items():         # reported before the first snapshot
            self.status[name] = PipelineStatus(applied_revision=own.revision)

    # -- ownership --

    def _load_owned(self) -> None:
        path = self.state_dir / OWNED
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise AgentError(f"unreadable ownership record: {exc}", source=str(path)) from None
        if data.get("host") not in (None, self.host):
            raise AgentError(f"this state directory belongs to host {data.get('host')!r}, "
                             f"not {self.host!r}: give each agent its own --state-dir",
                             source=str(path))
        self.owned = {n: Owned(**o) for n, o in data.get("pipelines", {}).items()}

    def _save_owned(self) -> None:
        path = self.state_dir / OWNED
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"host": self.host, "root": self.root,
                                   "pipelines": {n: asdict(o) for n, o in self.owned.items()}},
                                  indent=1, sort_keys=True))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def pipeline_file(self, name: str) -> Path:
        return self.state_dir / PIPELINES / f"{name}.yaml"

    def _deployed(self, name: str) -> Any:
        """The manifest of *name* under the root (a stand-in with ``file`` and ``revision``
        in a dry run), or None."""
        if self.dry_run:
            own = self.owned.get(name)
            return SimpleNamespace(file=own.file, revision=own.revision) if own else None
        d = D.state_dir(name, self.root)
        return D.read_manifest(d) if d.exists() else None

    # -- one pass --

    def reconcile(self, snap: Snapshot) -> bool:
        """Make the host what *snap* says; True when a deploy or destroy ran."""
        self.problems = dict(snap.problems)
        mine: dict[str, DesiredPipeline] = {}
        for name, d in snap.pipelines.items():
            if d.targets(self.host, self.labels) is not None:
                mine[name] = d
        acted = False
        for name, d in sorted(mine.items()):
            acted |= self._converge_one(name, d)
        gone = sorted(set(self.owned) - set(mine))
        if gone and snap.problems:
            # a document that does not parse may be the one of a pipeline that runs:
            # a typo must not destroy a data plane, so nothing is removed until it parses
            self.problems["removals held"] = (f"not removing {', '.join(gone)} while "
                                              f"{len(snap.problems)} document(s) do not parse")
            gone = []
        for name in gone:
            acted |= self._remove(name)
        for name in list(self.status):
            if name not in mine and name not in self.owned:
                del self.status[name]
        self.refresh_health()
        return acted

    def _converge_one(self, name: str, d: DesiredPipeline) -> bool:
        st = self.status.setdefault(name, PipelineStatus())
        st.desired_revision = d.revision
        digest = d.digest(self.host, self.labels)
        st.interfaces = [str(t) for t in d.targets(self.host, self.labels) or []]
        own = self.owned.get(name)
        m = self._deployed(name)
        if own is None and m is not None and m.file == str(self.pipeline_file(name)):
            # deployed from this agent's own file, but killed before it recorded that:
            # ours; the deploy below finds it unchanged (or updates it), re-attaching nothing
            log.info("%s: %s: adopting a deploy this agent made but did not record",
                     self.host, name)
            own = self.owned[name] = Owned("", d.revision, m.file, self.clock())
            self._save_owned()
        if own is None and m is not None:
            st.state, st.error = "foreign", (f"pipeline '{name}' is deployed on this host "
                                             f"but not by this agent (file {m.file}): "
                                             f"left alone")
            st.error_kind = "foreign"
            return False
        if own is not None and m is not None and m.file != own.file:
            st.state, st.error = "foreign", (f"pipeline '{name}' was deployed over this "
                                             f"agent's by another deploy (file {m.file}): "
                                             f"left alone")
            st.error_kind = "foreign"
            return False
        if own is not None and m is not None and own.digest == digest:
            self.failures.pop(name, None)
            st.applied_revision, st.error, st.error_kind, st.attempts = \
                own.revision, None, None, 0
            st.retry_at = None
            return False                           # running what is desired: adopted
        fail = self.failures.get(name)
        if fail is not None and fail.digest == digest and self.clock() < fail.retry_at:
            return False                           # backing off
        return self._deploy(name, d, digest, st)

    def _deploy(self, name: str, d: DesiredPipeline, digest: str, st: PipelineStatus) -> bool:
        f = self.pipeline_file(name)
        tmp = f.with_suffix(".tmp")
        tmp.write_text(d.pipeline_text())
        os.replace(tmp, f)
        targets = d.targets(self.host, self.labels) or []
        log.info("%s: deploying %s revision %s on %s", self.host, name, d.revision,
                 ", ".join(map(str, targets)))
        try:
            m = SimpleNamespace(revision=d.revision) if self.dry_run else \
                D.deploy(f, targets=targets, mode=d.mode, root=self.root)
        except DeployError as exc:
            if str(exc).startswith("another nfpipe deploy"):
                # the pipeline's lock is held (by a deploy of the same name: by hand, or
                # another agent on this machine): soon again, not counted as a failure
                self._busy_until = self.clock() + BUSY_RETRY
                return False
            return self._failed(name, digest, st, exc)
        except NfpipeError as exc:
            return self._failed(name, digest, st, exc)
        self.owned[name] = Owned(digest, d.revision, str(f), self.clock())
        self._save_owned()
        self.failures.pop(name, None)
        self.deploys["ok"] += 1
        st.applied_revision, st.manifest_revision = d.revision, m.revision
        st.error = st.error_kind = st.retry_at = None
        st.attempts = 0
        return True

    def _failed(self, name: str, digest: str, st: PipelineStatus, exc: NfpipeError) -> bool:
        old = self.failures.get(name)
        attempts = old.attempts + 1 if old is not None and old.digest == digest else 1
        delay = min(self.backoff * 2 ** (attempts - 1), self.backoff_max)
        self.failures[name] = Failure(digest, attempts, self.clock() + delay, str(exc),
                                      type(exc).__name__)
        self.deploys["error"] += 1
        log.warning("%s: %s: deploy failed (attempt %d, next in %.0fs): %s", self.host, name,
                    attempts, delay, exc)
        st.error, st.error_kind, st.attempts = str(exc), type(exc).__name__, attempts
        st.retry_at = self.clock() + delay
        return True

    def _remove(self, name: str) -> bool:
        own = self.owned[name]
        m = self._deployed(name)
        if m is not None and m.file != own.file:
            log.warning("%s: %s: no longer desired, but another deploy replaced it: left "
                        "alone", self.host, name)
        elif m is not None:
            log.info("%s: destroying %s (no longer desired here)", self.host, name)
            try:
                if not self.dry_run:
                    D.destroy(name, root=self.root)
            except DeployError as exc:
                st = self.status.setdefault(name, PipelineStatus())
                st.error, st.error_kind = str(exc), type(exc).__name__
                return False
            self.deploys["destroyed"] += 1
        del self.owned[name]
        self._save_owned()
        self.failures.pop(name, None)
        self.status.pop(name, None)
        self._last_bad.pop(name, None)
        return True

    # -- health --

    def refresh_health(self) -> None:
        """Each pipeline's state (from bpffs and the kernel) and counters; unhealthy when
        not attached everywhere or when aborted / tail-call-miss counts grew."""
        for name, st in self.status.items():
            if st.error_kind == "foreign":
                continue                           # someone else's: not ours to judge
            if name not in self.owned:
                st.state = "failed" if name in self.failures else "absent"
                st.health = "unhealthy" if name in self.failures else "unknown"
                continue
            try:
                if self.dry_run:
                    row = {"state": "running", "revision": self.owned[name].revision}
                    sim = self.simulate(name, self.owned[name].revision) \
                        if self.simulate else {}
                    counters = {"sim": {k: {"packets": v} for k, v in sim.items()}}
                else:
                    row = D.status(name, root=self.root)[0]
                    counters = D.stats(name, root=self.root)
            except NfpipeError as exc:
                st.state, st.health = "absent", "unhealthy"
                st.error = st.error or str(exc)
                continue
            st.state = row.get("state", "absent")
            st.manifest_revision = row.get("revision")
            totals = {"packets": 0, "drop": 0, **dict.fromkeys(BAD_OUTCOMES, 0)}
            for outcomes in counters.values():
                for outcome, c in outcomes.items():
                    totals["packets"] += c["packets"]
                    if outcome in totals:
                        totals[outcome] += c["packets"]
            st.counters = totals
            bad = {o: totals[o] for o in BAD_OUTCOMES}
            last = self._last_bad.get(name, bad)
            grew = {o: n - last.get(o, n) for o, n in bad.items() if n > last.get(o, n)}
            self._last_bad[name] = bad
            reasons = []
            if st.state != "running":
                reasons.append(f"state {st.state}")
            reasons += [f"{n} {o.replace('_', '-')} packet(s) since the last pass"
                        for o, n in grew.items()]
            if name in self.failures:
                reasons.append(f"the deploy of the desired revision failed "
                               f"({self.failures[name].kind})")
            st.health = "unhealthy" if reasons else "healthy"
            st.health_reason = "; ".join(reasons) or None

    def report(self) -> dict[str, Any]:
        return {"host": self.host, "labels": self.labels, "at": self.clock(),
                "pipelines": {n: asdict(s) for n, s in sorted(self.status.items())},
                "problems": self.problems, "deploys": dict(self.deploys)}

    @property
    def busy(self) -> bool:
        """A deploy found its pipeline's lock held and waits to be tried again."""
        return self._busy_until is not None

    def next_retry(self) -> float | None:
        """When the earliest backed-off (or lock-busy) deploy may be tried again (None:
        none waits)."""
        times = [f.retry_at for f in self.failures.values()]
        if self._busy_until is not None:
            times.append(self._busy_until)
            self._busy_until = None
        return min(times, default=None)
