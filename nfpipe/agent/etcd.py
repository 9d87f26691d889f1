"""etcd v3 as the desired-state store, through etcd's JSON gateway, with the stdlib only.

Why the gateway rather than a client library: every etcd v3 server (Debian 12's
``etcd-server`` is 3.4.23) serves the v3 API as JSON over HTTP under ``/v3/``
(``kv/range``, ``kv/put``, ``kv/deleterange``, ``watch``; keys and values base64),
which is all an agent needs; the Python gRPC clients are unmaintained
(``etcd3``: last release 2020, pinned to old protobuf) or pull in grpcio, a large
binary wheel, for four calls.  ``urllib``/``http.client`` it is.

Keys under the fleet's *prefix* (default ``/nfpipe``)::

    <prefix>/pipelines/<name>            a desired-pipeline document (docs/agent.md)
    <prefix>/pipelines/<name>/hosts/<h>  the document host <h> runs instead, during a
                                         rollout (nfpipe.agent.fleet)
    <prefix>/rollouts/<name>             the state of a rollout, and the previous document
    <prefix>/hosts/<host>/status         what the host's agent reports (JSON)

``EtcdSource`` is a ``Source``: ``snapshot`` ranges over the pipelines, ``wait``
watches them from the snapshot's revision (so no change between the two is
missed; a compacted revision means a new snapshot), ``report`` puts the status.
"""
from __future__ import annotations

import base64
import contextlib
import http.client
import json
import queue
import socket
import threading
import time
import urllib.parse
from typing import Any

from nfpipe.agent.desired import Snapshot, build_snapshot
from nfpipe.errors import StoreError

DEFAULT_PREFIX = "/nfpipe"


def _b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text or "")


def prefix_end(prefix: str) -> bytes:
    """The range_end that makes a range or watch cover every key starting with *prefix*."""
    b = bytearray(prefix.encode())
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


class Etcd:
    """The few etcd v3 calls the agent and ``nfpipe fleet`` make, over the JSON gateway
    of the first endpoint that answers (``http://HOST:PORT``, comma-separated)."""

    def __init__(self, endpoints: str | list[str], *, timeout: float = 5.0):
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e]
        if not endpoints:
            raise StoreError("no endpoint given", endpoint="-", op="connect")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.timeout = timeout
        self._good = 0
        # what this client cost the store: requests made, bytes sent and received
        # (bodies; a watch's stream counted as it arrives), for /metrics and the tests
        self.requests = self.bytes_out = self.bytes_in = 0
        self._count_lock = threading.Lock()

    def _count(self, requests: int = 0, out: int = 0, received: int = 0) -> None:
        with self._count_lock:
            self.requests += requests
            self.bytes_out += out
            self.bytes_in += received

    def _conn(self, endpoint: str, timeout: float) -> http.client.HTTPConnection:
        u = urllib.parse.urlsplit(endpoint)
        if u.scheme != "http" or not u.hostname:
            raise StoreError("only http://HOST:PORT endpoints are supported", endpoint=endpoint,
                             op="connect")
        return http.client.HTTPConnection(u.hostname, u.port or 2379, timeout=timeout)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST *body* to ``/v3/<path>`` and return the JSON answer; tries each endpoint
        once, starting with the one that answered last."""
        order = self.endpoints[self._good:] + self.endpoints[:self._good]
        last: StoreError | None = None
        for endpoint in order:
            try:
                conn = self._conn(endpoint, self.timeout)
                payload = json.dumps(body)
                try:
                    self._count(requests=1, out=len(payload))
                    conn.request("POST", f"/v3/{path}", payload,
                                 {"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    data = resp.read()
                    self._count(received=len(data))
                finally:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                last = StoreError(f"unreachable: {exc}", endpoint=endpoint, op=path)
                continue
            if resp.status != 200:
                raise StoreError(f"HTTP {resp.status}: {data[:300].decode(errors='replace')}",
                                 endpoint=endpoint, op=path, status=resp.status)
            self._good = self.endpoints.index(endpoint)
            try:
                return json.loads(data)
            except ValueError:
                raise StoreError(f"not JSON: {data[:200]!r}", endpoint=endpoint,
                                 op=path) from None
        assert last is not None
        raise last

    # -- kv --

    def get_prefix(self, prefix: str) -> tuple[list[tuple[str, bytes, int]], int]:
        """Every (key, value, mod_revision) under *prefix*, and the store's revision."""
        out = self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        kvs = [(_unb64(kv["key"]).decode(errors="replace"), _unb64(kv.get("value", "")),
                int(kv.get("mod_revision", 0))) for kv in out.get("kvs", [])]
        return kvs, int(out.get("header", {}).get("revision", 0))

    def get(self, key: str) -> bytes | None:
        out = self.call("kv/range", {"key": _b64(key)})
        kvs = out.get("kvs", [])
        return _unb64(kvs[0].get("value", "")) if kvs else None

    def put(self, key: str, value: str | bytes) -> int:
        """Store *value* at *key*; the store's new revision."""
        out = self.call("kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(out.get("header", {}).get("revision", 0))

    def txn(self, puts: dict[str, str | bytes] | None = None,
            deletes: list[str] | None = None) -> int:
        """Several puts and deletes as one transaction (one revision: a watcher wakes
        once); the store's new revision."""
        ops: list[dict[str, Any]] = [
            {"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in (puts or {}).items()]
        ops += [{"request_delete_range": {"key": _b64(k)}} for k in deletes or []]
        if not ops:
            return 0
        out = self.call("kv/txn", {"compare": [], "success": ops, "failure": []})
        return int(out.get("header", {}).get("revision", 0))

    def delete(self, key: str) -> int:
        out = self.call("kv/deleterange", {"key": _b64(key)})
        return int(out.get("deleted", 0))

    # -- watch --

    def watch_once(self, prefix: str, start_revision: int, timeout: float,
                   stop: threading.Event | None = None) -> int | None:
        """Block until a key under *prefix* changes at or after *start_revision* (returns
        the revision of that change), or *timeout* passes (returns None).  A compacted
        *start_revision* returns it as is: the caller takes a new snapshot."""
        endpoint = self.endpoints[self._good]
        deadline = time.monotonic() + timeout
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": start_revision}}
        try:
            conn = self._conn(endpoint, min(self.timeout, max(timeout, 0.05)))
            payload = json.dumps(body)
            self._count(requests=1, out=len(payload))
            conn.request("POST", "/v3/watch", payload,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise StoreError(f"unreachable: {exc}", endpoint=endpoint, op="watch") from None
        # a socket timeout would leave the buffered response unreadable: a thread reads
        # the stream blocking, the caller waits on a queue, and the socket's shutdown
        # ends the thread
        events: queue.Queue = queue.Queue()

        def read() -> None:
            try:
                while True:
                    line = resp.readline()
                    self._count(received=len(line))
                    if not line:
                        events.put(StoreError("watch stream closed", endpoint=endpoint,
                                              op="watch"))
                        return
                    line = line.strip()
                    if line:
                        events.put(line)
            except Exception as exc:       # also what a shutdown from the caller raises
                events.put(StoreError(f"watch broken: {exc}", endpoint=endpoint, op="watch"))

        reader = None
        try:
            if resp.status != 200:
                raise StoreError(f"HTTP {resp.status}", endpoint=endpoint, op="watch",
                                 status=resp.status)
            if conn.sock is not None:
                conn.sock.settimeout(None)
            reader = threading.Thread(target=read, name="etcd-watch", daemon=True)
            reader.start()
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or (stop is not None and stop.is_set()):
                    return None
                try:
                    item = events.get(timeout=min(left, 0.5))
                except queue.Empty:
                    continue
                if isinstance(item, StoreError):
                    raise item
                try:
                    msg = json.loads(item)
                except ValueError:
                    continue
                if "error" in msg:
                    raise StoreError(f"watch: {msg['error']}", endpoint=endpoint, op="watch")
                result = msg.get("result", {})
                if int(result.get("compact_revision") or 0) > 0:
                    return start_revision
                changes = result.get("events") or []
                if changes:
                    return max(int(e.get("kv", {}).get("mod_revision", 0)) for e in changes)
        finally:
            if conn.sock is not None:
                with contextlib.suppress(OSError):
                    conn.sock.shutdown(socket.SHUT_RDWR)
            if reader is not None:
                reader.join(timeout=2)
            conn.close()


class EtcdSource:
    """Desired pipelines from ``<prefix>/pipelines/``; reports to ``<prefix>/hosts/``."""

    def __init__(self, endpoints: str | list[str], *, prefix: str = DEFAULT_PREFIX,
                 host: str | None = None, timeout: float = 5.0):
        self.etcd = Etcd(endpoints, timeout=timeout)
        self.prefix = prefix.rstrip("/")
        self.host = host
        self.revision = 0
        self._stop = threading.Event()

    @property
    def pipelines_prefix(self) -> str:
        return f"{self.prefix}/pipelines/"

    def status_key(self, host: str) -> str:
        return f"{self.prefix}/hosts/{host}/status"

    def override_key(self, name: str, host: str) -> str:
        """Where a rollout puts the document *host* runs of pipeline *name* instead of
        the fleet's (``nfpipe fleet rollout``: the hosts of the batches done so far)."""
        return f"{self.pipelines_prefix}{name}/hosts/{host}"

    def snapshot(self) -> Snapshot:
        """The fleet's documents, each replaced by this host's override where a rollout
        put one (``<prefix>/pipelines/<name>/hosts/<host>``)."""
        kvs, rev = self.etcd.get_prefix(self.pipelines_prefix)
        self.revision = rev
        fleet: dict[str, tuple[str, str]] = {}
        mine: dict[str, tuple[str, str]] = {}
        for key, value, _ in kvs:
            name, _, rest = key[len(self.pipelines_prefix):].partition("/")
            if not rest:
                fleet[name] = (value.decode(errors="replace"), key)
            elif self.host is not None and rest == f"hosts/{self.host}":
                mine[name] = (value.decode(errors="replace"), key)
        return build_snapshot(list({**fleet, **mine}.values()), rev)

    def wait(self, timeout: float) -> None:
        """Returns on a change after the last snapshot, or after *timeout*; a store
        that cannot be reached raises ``StoreError`` (the agent backs off)."""
        self.etcd.watch_once(self.pipelines_prefix, self.revision + 1, timeout, self._stop)

    def report(self, host: str, status: dict[str, Any]) -> None:
        self.etcd.put(self.status_key(host), json.dumps(status, sort_keys=True))

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Every host's last report (what ``nfpipe fleet status`` shows)."""
        kvs, _ = self.etcd.get_prefix(f"{self.prefix}/hosts/")
        out = {}
        for key, value, _rev in kvs:
            rest = key[len(self.prefix) + len("/hosts/"):]
            host, _, leaf = rest.partition("/")
            if leaf == "status":
                try:
                    out[host] = json.loads(value)
                except ValueError:
                    out[host] = {"error": f"unreadable status: {value[:100]!r}"}
        return out

    def close(self) -> None:
        self._stop.set()
