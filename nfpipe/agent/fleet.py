"""The fleet as a whole, through etcd: its status, rolling updates gated on health, and
rollback (``nfpipe fleet status|rollout|rollback``).

A rollout of a new document for pipeline *name* never changes the fleet's document
until every batch has passed: each batch's hosts get the new document as a per-host
override (``<prefix>/pipelines/<name>/hosts/<host>``, which their agents prefer), and
the batch passes when each of its hosts reports the new revision running, then,
after *settle* seconds, still healthy, with no aborted packet and no tail-call miss
during the settle time, and a drop ratio (drops / packets during the settle time)
within the bound.  A batch that fails its gate, or does not apply within *timeout*,
stops the rollout: every updated host's override is removed, so it goes back to the
fleet's (previous) document, and the rollout is recorded as rolled back with the
reason.  When every batch passed, the new document becomes the fleet's and the
overrides go.  The rollout's record (``<prefix>/rollouts/<name>``) keeps the
previous document, which ``rollback`` restores.

The hosts of a rollout are those that report (``<prefix>/hosts/<host>/status``) and
that the new document targets (labels and interfaces).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nfpipe.agent.desired import DesiredPipeline, document_text, parse_document
from nfpipe.agent.etcd import EtcdSource
from nfpipe.agent.reconcile import BAD_OUTCOMES
from nfpipe.errors import AgentError


def batch_size(n: int, max_unavailable: str | int) -> int:
    """``"10%"`` of *n* hosts (rounded down, at least 1), or a count."""
    text = str(max_unavailable).strip()
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            return max(1, math.floor(n * pct / 100))
        k = int(text)
        if k < 1:
            raise ValueError
        return k
    except ValueError:
        raise AgentError(f"--max-unavailable: expected a count >= 1 or a percentage "
                         f"(1%..100%), got {max_unavailable!r}") from None


@dataclass
class Gate:
    settle: float = 10.0              # seconds each batch must stay healthy
    max_drop_ratio: float = 1.0       # drops / packets during the settle time
    timeout: float = 120.0            # for a batch to report the new revision running


@dataclass
class RolloutResult:
    pipeline: str
    revision: int
    state: str                        # done | rolled_back | planned
    batches: list[list[str]]
    updated: list[str] = field(default_factory=list)
    reason: str | None = None
    failed_host: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Fleet:
    def __init__(self, source: EtcdSource, *, poll: float = 0.2,
                 say: Callable[[str], None] | None = None):
        self.src, self.etcd = source, source.etcd
        self.poll = poll
        self.say = say or (lambda _m: None)

    def rollout_key(self, name: str) -> str:
        return f"{self.src.prefix}/rollouts/{name}"

    # -- status --

    def status(self, name: str | None = None) -> dict[str, Any]:
        """Every reporting host: its labels, the store's view of it, and each pipeline's
        desired vs applied revision, state, health and error; plus rollouts."""
        reports = self.src.statuses()
        hosts = {}
        for host, rep in sorted(reports.items()):
            pipes = rep.get("pipelines", {})
            if name is not None:
                pipes = {n: p for n, p in pipes.items() if n == name}
            hosts[host] = {"labels": rep.get("labels", {}), "at": rep.get("at"),
                           "store_up": rep.get("agent", {}).get("store_up"),
                           "pipelines": pipes, "problems": rep.get("problems", {})}
        rollouts = {}
        kvs, _ = self.etcd.get_prefix(f"{self.src.prefix}/rollouts/")
        for key, value, _ in kvs:
            n = key.rsplit("/", 1)[-1]
            if name is None or n == name:
                rec = json.loads(value)
                rec.pop("previous", None)
                rollouts[n] = rec
        return {"hosts": hosts, "rollouts": rollouts}

    # -- rollout --

    def _fleet_doc(self, name: str) -> str | None:
        raw = self.etcd.get(f"{self.src.pipelines_prefix}{name}")
        return raw.decode() if raw is not None else None

    def targeted_hosts(self, d: DesiredPipeline) -> list[str]:
        return sorted(h for h, rep in self.src.statuses().items()
                      if d.targets(h, rep.get("labels", {})) is not None)

    def rollout(self, text: str, *, max_unavailable: str | int = 1, gate: Gate | None = None,
                dry_run: bool = False) -> RolloutResult:
        gate = gate or Gate()
        new = parse_document(text, "the rollout's document")
        text = document_text(new)
        name = new.name
        previous = self._fleet_doc(name)
        old = parse_document(previous, f"{self.src.pipelines_prefix}{name}") \
            if previous is not None else None
        hosts = self.targeted_hosts(new)
        if not hosts:
            raise AgentError(f"rollout of '{name}': no reporting host is targeted by the "
                             f"document (selector {new.selector}, interfaces for "
                             f"{', '.join(new.interfaces)})", pipeline=name)
        k = batch_size(len(hosts), max_unavailable)
        batches = [hosts[i:i + k] for i in range(0, len(hosts), k)]
        result = RolloutResult(name, new.revision, "planned", batches)
        if dry_run:
            return result
        rec = self.etcd.get(self.rollout_key(name))
        if rec is not None and json.loads(rec).get("state") == "running":
            raise AgentError(f"a rollout of '{name}' is running (or died: 'nfpipe fleet "
                             f"rollback {name}' ends it)", pipeline=name)
        self._record(name, "running", result, previous, old)
        for i, batch in enumerate(batches, 1):
            self.say(f"batch {i}/{len(batches)}: {', '.join(batch)}")
            self.etcd.txn(puts={self.src.override_key(name, h): text for h in batch})
            result.updated += batch
            failure = self._gate(name, new.revision, batch, gate)
            if failure is not None:
                host, why = failure
                result.state, result.reason, result.failed_host = "rolled_back", why, host
                self.say(f"gate failed on {host}: {why}; rolling back "
                         f"{len(result.updated)} host(s)")
                self._undo(name, result.updated, old, gate)
                self._record(name, "rolled_back", result, previous, old)
                return result
        self.etcd.txn(puts={f"{self.src.pipelines_prefix}{name}": text},
                      deletes=[self.src.override_key(name, h) for h in hosts])
        result.state = "done"
        self._record(name, "done", result, previous, old)
        return result

    def _record(self, name: str, state: str, result: RolloutResult, previous: str | None,
                old: DesiredPipeline | None) -> None:
        self.etcd.put(self.rollout_key(name), json.dumps({
            "state": state, "to_revision": result.revision,
            "from_revision": old.revision if old else None, "batches": result.batches,
            "updated": result.updated, "reason": result.reason,
            "failed_host": result.failed_host, "at": time.time(), "previous": previous}))

    def _reports(self, name: str) -> dict[str, dict[str, Any]]:
        return {h: rep.get("pipelines", {}).get(name) or {}
                for h, rep in self.src.statuses().items()}

    def _gate(self, name: str, revision: int, batch: list[str],
              gate: Gate) -> tuple[str, str] | None:
        """None when every host of *batch* runs *revision* healthy through the settle
        time; else (host, why)."""
        deadline = time.monotonic() + gate.timeout
        base: dict[str, dict[str, int]] = {}
        while len(base) < len(batch):
            reps = self._reports(name)
            for h in batch:
                p = reps.get(h, {})
                if h in base:
                    continue
                if p.get("error") and p.get("desired_revision") == revision and \
                        p.get("attempts", 0) >= 1 and p.get("applied_revision") != revision:
                    return h, f"its deploy failed: {p['error']}"
                if p.get("applied_revision") == revision and p.get("state") == "running":
                    base[h] = dict(p.get("counters") or {})
            if len(base) < len(batch):
                if time.monotonic() > deadline:
                    waiting = [h for h in batch if h not in base]
                    return waiting[0], (f"did not report revision {revision} running within "
                                        f"{gate.timeout:.0f}s ({len(waiting)} host(s) waiting)")
                time.sleep(self.poll)
        end = time.monotonic() + gate.settle
        while True:
            reps = self._reports(name)
            for h in batch:
                why = self._unhealthy(reps.get(h, {}), base[h], revision, gate)
                if why:
                    return h, why
            if time.monotonic() >= end:
                return None
            time.sleep(min(self.poll, max(0.0, end - time.monotonic())))

    @staticmethod
    def _unhealthy(p: dict[str, Any], base: dict[str, int], revision: int,
                   gate: Gate) -> str | None:
        if p.get("applied_revision") != revision or p.get("state") != "running":
            return f"runs revision {p.get('applied_revision')} ({p.get('state')}), not {revision}"
        c = p.get("counters") or {}
        delta = {k: c.get(k, 0) - base.get(k, 0) for k in ("packets", "drop", *BAD_OUTCOMES)}
        for k in BAD_OUTCOMES:
            if delta[k] > 0:
                return f"{delta[k]} {k.replace('_', '-')} packet(s) during the settle time"
        if delta["packets"] > 0 and delta["drop"] / delta["packets"] > gate.max_drop_ratio:
            return (f"drop ratio {delta['drop'] / delta['packets']:.3f} over the settle time "
                    f"exceeds {gate.max_drop_ratio}")
        if p.get("health") not in (None, "healthy"):
            return f"{p.get('health')}: {p.get('health_reason') or 'no reason given'}"
        return None

    def _undo(self, name: str, hosts: list[str], old: DesiredPipeline | None,
              gate: Gate) -> None:
        self.etcd.txn(deletes=[self.src.override_key(name, h) for h in hosts])
        deadline = time.monotonic() + gate.timeout
        want = old.revision if old else None
        while time.monotonic() < deadline:
            reps = self._reports(name)
            if all(reps.get(h, {}).get("applied_revision") == want for h in hosts):
                return
            time.sleep(self.poll)
        self.say(f"warning: not every host reported revision {want} back within "
                 f"{gate.timeout:.0f}s")

    # -- rollback --

    def rollback(self, name: str) -> dict[str, Any]:
        """The document before the last rollout becomes the fleet's again, at once on every
        host (not gated: it is the way back); overrides of any rollout are removed."""
        raw = self.etcd.get(self.rollout_key(name))
        if raw is None:
            raise AgentError(f"no rollout of '{name}' is recorded: nothing to roll back to",
                             pipeline=name)
        rec = json.loads(raw)
        previous = rec.get("previous")
        kvs, _ = self.etcd.get_prefix(f"{self.src.pipelines_prefix}{name}/hosts/")
        overrides = [key for key, _v, _r in kvs]
        fleet_key = f"{self.src.pipelines_prefix}{name}"
        if previous is None:
            self.etcd.txn(deletes=[fleet_key, *overrides])
        else:
            self.etcd.txn(puts={fleet_key: previous}, deletes=overrides)
        rec.update(state="rolled_back_by_hand", at=time.time())
        self.etcd.put(self.rollout_key(name), json.dumps({**rec, "previous": previous}))
        return {"pipeline": name, "revision": rec.get("from_revision"),
                "removed": previous is None}
