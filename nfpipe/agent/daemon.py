"""``nfpipe agent``'s loop: read the desired state, reconcile, report, wait for a change.

The data plane never depends on the agent or the store: pipelines are pinned in
bpffs and run without any process.  So when the store cannot be reached the agent
keeps the last desired state it read (or, having read none since it started, does
nothing: what runs was adopted), reports nothing to the store, retries with a
backoff, and on the store's return takes a new snapshot and resumes watching.
SIGTERM / SIGINT stop the loop and leave every pipeline running (``nfpipe destroy``
or removing the desired document takes one down).

``Endpoint`` serves the agent over HTTP (a thread; stdlib ``http.server``):
``/metrics`` (Prometheus text), ``/healthz`` (200 while the loop runs, 503 when it
stalled; a JSON body with each pipeline's health) and ``/status`` (the full report).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nfpipe import deploy as D
from nfpipe.agent.desired import Snapshot, Source
from nfpipe.agent.reconcile import Reconciler
from nfpipe.errors import AgentError, StoreError

log = logging.getLogger("nfpipe.agent")


class Agent:
    """One host's agent: *source* -> *reconciler*, every *resync* seconds at the latest."""

    def __init__(self, source: Source, reconciler: Reconciler, *, resync: float = 30.0,
                 store_retry: float = 1.0, store_retry_max: float = 15.0):
        self.source, self.rec = source, reconciler
        self.resync = resync
        self.store_retry, self.store_retry_max = store_retry, store_retry_max
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.snapshot: Snapshot | None = None
        self.store_up = False
        self.store_error: str | None = None
        self.passes = 0
        self.last_pass = 0.0
        self.started = time.time()
        self.converged_at: float | None = None
        self._reported = ""
        self._reported_at = 0.0

    # -- one pass --

    def run_once(self) -> bool:
        """Read, reconcile, report.  False when the store could not be read."""
        try:
            snap = self.source.snapshot()
            ok = True
        except (StoreError, AgentError) as exc:
            ok = False
            snap = self.snapshot
            with self.lock:
                if self.store_up or self.store_error is None:
                    log.warning("%s: desired state unreadable (keeping what runs): %s",
                                self.rec.host, exc)
                self.store_up, self.store_error = False, str(exc)
        with self.lock:
            if ok:
                self.snapshot, self.store_up, self.store_error = snap, True, None
            if snap is not None:
                acted = self.rec.reconcile(snap) if ok else False
                if not ok:
                    self.rec.refresh_health()
            else:
                acted = False
                self.rec.refresh_health()
            self.passes += 1
            self.last_pass = time.time()
            if ok and not self.rec.failures and not self.rec.busy and not acted and \
                    self.converged_at is None:
                self.converged_at = self.last_pass
            elif acted:
                self.converged_at = None
        self._report()
        return ok

    def _report(self, every: float = 10.0) -> None:
        rep = self.report()
        text = json.dumps({k: v for k, v in rep.items() if k not in ("at", "agent")},
                          sort_keys=True)
        if text == self._reported and time.time() - self._reported_at < every:
            return
        try:
            self.source.report(self.rec.host, rep)
        except StoreError as exc:
            with self.lock:
                self.store_up, self.store_error = False, str(exc)
            return
        self._reported, self._reported_at = text, time.time()

    def report(self) -> dict[str, Any]:
        with self.lock:
            rep = self.rec.report()
            rep["agent"] = {"started_at": self.started, "passes": self.passes,
                            "last_pass": self.last_pass, "store_up": self.store_up,
                            "store_error": self.store_error,
                            "converged": self.converged_at is not None}
            return rep

    # -- the loop --

    def run(self) -> None:
        retry = self.store_retry
        while not self.stop_event.is_set():
            ok = self.run_once()
            if not ok:
                self.stop_event.wait(retry)
                retry = min(retry * 2, self.store_retry_max)
                continue
            retry = self.store_retry
            timeout = self.resync
            nxt = self.rec.next_retry()
            if nxt is not None:
                timeout = max(0.05, min(timeout, nxt - self.rec.clock()))
            try:
                self.source.wait(timeout)
            except StoreError as exc:
                with self.lock:
                    self.store_up, self.store_error = False, str(exc)
                log.warning("%s: lost the store's watch (keeping what runs): %s",
                            self.rec.host, exc)
                self.stop_event.wait(retry)

    def stop(self) -> None:
        self.stop_event.set()
        self.source.close()

    # -- what the HTTP endpoint serves --

    def healthy(self, stale_after: float | None = None) -> tuple[bool, dict[str, Any]]:
        """The agent is healthy when its loop ran recently; pipelines' health is in the
        body (a pipeline failing must not make the orchestrator kill the agent, which
        would not fix it)."""
        stale_after = stale_after or max(3 * self.resync, 60.0)
        rep = self.report()
        alive = self.passes > 0 and time.time() - self.last_pass < stale_after
        return alive, {"alive": alive, "store_up": rep["agent"]["store_up"],
                       "pipelines": {n: {"state": p["state"], "health": p["health"],
                                         "applied_revision": p["applied_revision"]}
                                     for n, p in rep["pipelines"].items()}}

    def metrics(self) -> str:
        """The agent's own gauges and counters, then the owned pipelines' data-plane
        counters (``nfpipe stats --prometheus``), in the Prometheus text format."""
        rep = self.report()
        host = _label(self.rec.host)
        lines = ["# HELP nfpipe_agent_up The agent's loop ran within three resyncs.",
                 "# TYPE nfpipe_agent_up gauge",
                 f'nfpipe_agent_up{{host="{host}"}} {int(self.healthy()[0])}',
                 "# HELP nfpipe_agent_store_up The desired-state store answered last time.",
                 "# TYPE nfpipe_agent_store_up gauge",
                 f'nfpipe_agent_store_up{{host="{host}"}} {int(rep["agent"]["store_up"])}',
                 "# HELP nfpipe_agent_passes_total Reconcile passes.",
                 "# TYPE nfpipe_agent_passes_total counter",
                 f'nfpipe_agent_passes_total{{host="{host}"}} {rep["agent"]["passes"]}',
                 "# HELP nfpipe_agent_deploys_total Deploys and destroys by result.",
                 "# TYPE nfpipe_agent_deploys_total counter"]
        for result, n in sorted(rep["deploys"].items()):
            lines.append(f'nfpipe_agent_deploys_total{{host="{host}",result="{result}"}} {n}')
        store = getattr(self.source, "etcd", None)
        if store is not None:                   # what watching and reporting cost etcd
            lines += ["# HELP nfpipe_agent_store_requests_total Requests made to the store.",
                      "# TYPE nfpipe_agent_store_requests_total counter",
                      f'nfpipe_agent_store_requests_total{{host="{host}"}} {store.requests}',
                      "# HELP nfpipe_agent_store_bytes_total Bytes of request and response "
                      "bodies exchanged with the store.",
                      "# TYPE nfpipe_agent_store_bytes_total counter",
                      f'nfpipe_agent_store_bytes_total{{host="{host}",direction="out"}} '
                      f'{store.bytes_out}',
                      f'nfpipe_agent_store_bytes_total{{host="{host}",direction="in"}} '
                      f'{store.bytes_in}']
        pipes = rep["pipelines"]
        lines += ["# HELP nfpipe_agent_pipeline_revision The desired revision that runs.",
                  "# TYPE nfpipe_agent_pipeline_revision gauge"]
        lines += [f'nfpipe_agent_pipeline_revision{{host="{host}",pipeline="{_label(n)}"}} '
                  f'{p["applied_revision"] if p["applied_revision"] is not None else -1}'
                  for n, p in sorted(pipes.items())]
        lines += ["# HELP nfpipe_agent_pipeline_healthy 1 when attached everywhere, no "
                  "aborts or tail-call misses since the last pass, no failed deploy.",
                  "# TYPE nfpipe_agent_pipeline_healthy gauge"]
        lines += [f'nfpipe_agent_pipeline_healthy{{host="{host}",pipeline="{_label(n)}"}} '
                  f'{int(p["health"] == "healthy")}' for n, p in sorted(pipes.items())]
        lines += ["# HELP nfpipe_agent_pipeline_failed_attempts Failed deploys of the "
                  "desired revision in a row.",
                  "# TYPE nfpipe_agent_pipeline_failed_attempts gauge"]
        lines += [f'nfpipe_agent_pipeline_failed_attempts{{host="{host}",'
                  f'pipeline="{_label(n)}"}} {p["attempts"]}' for n, p in sorted(pipes.items())]
        text = "\n".join(lines) + "\n"
        owned = sorted(self.rec.owned)
        if owned and not self.rec.dry_run:
            try:
                text += D.prometheus(owned, root=self.rec.root)
            except Exception as exc:      # a pipeline destroyed meanwhile: next scrape
                log.debug("metrics: %s", exc)
        return text


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---- the HTTP endpoint -------------------------------------------------------------------

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``:PORT`` (all addresses) -> (host, port); port 0 picks one."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise AgentError(f"--listen: expected HOST:PORT or :PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Endpoint:
    """Serve *agent* on *address* (host, port) until ``close``."""

    def __init__(self, agent: Agent, address: tuple[str, int]):
        self.agent = agent
        handler = _handler(agent)
        try:
            self.server = ThreadingHTTPServer(address, handler)
        except OSError as exc:
            raise AgentError(f"cannot listen on {address[0]}:{address[1]}: {exc}") from None
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="agent-http",
                                       daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: str, ctype: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    self._send(200, agent.metrics(), PROMETHEUS_TYPE)
                elif path in ("/healthz", "/health"):
                    ok, body = agent.healthy()
                    self._send(200 if ok else 503, json.dumps(body, sort_keys=True),
                               "application/json")
                elif path == "/status":
                    self._send(200, json.dumps(agent.report(), sort_keys=True),
                               "application/json")
                else:
                    self._send(404, "not found: /metrics, /healthz, /status\n", "text/plain")
            except Exception as exc:            # one bad scrape must not end the thread
                log.exception("http %s", path)
                self._send(500, f"{type(exc).__name__}: {exc}\n", "text/plain")

        def log_message(self, format, *args) -> None:
            log.debug("http: " + format, *args)

    return Handler
