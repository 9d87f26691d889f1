"""The agent's HTTP endpoint: ``/metrics`` (Prometheus text), ``/healthz`` (200 while the
agent's loop runs, 503 when it stalled; a JSON body with each pipeline's health) and
``/status`` (the full report, JSON).  A thread of the agent; stdlib ``http.server``."""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from nfpipe.agent.daemon import Agent
from nfpipe.errors import AgentError

log = logging.getLogger("nfpipe.agent")

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
