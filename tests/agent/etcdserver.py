"""A real etcd server for the tests: Debian's ``etcd-server`` (3.4) on loopback ports
picked free, its own data directory, killed (and its directory removed) at the end.

The ``etcd`` pytest fixture (``etcd_fixture``) skips a test when the binary is missing,
with the reason, and fails it instead under ``CI=true`` (``.ci/run`` installs
``etcd-server``), as the root conftest does for kernel tests.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from nfpipe.agent.etcd import Etcd
from nfpipe.errors import StoreError
from nfpipe.kernel.libc import die_with_parent

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EtcdServer:
    """``start()`` / ``stop()`` (a restart keeps the data and the ports: what an outage
    and its end look like to a client) / ``close()`` (stop and remove everything)."""

    def __init__(self, binary: str):
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="nfpipe-etcd-"))
        self.client_port, self.peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.dir / "etcd.log"

    def start(self, timeout: float = 20.0) -> EtcdServer:
        peer = f"http://127.0.0.1:{self.peer_port}"
        name = f"t{self.client_port}"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--name", name, "--data-dir", str(self.dir / "data"),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", f"{name}={peer}", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent)
        client = Etcd(self.url, timeout=1.0)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.get("/health-probe")
                return self
            except StoreError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"etcd did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def etcd_binary() -> str | None:
    return shutil.which("etcd") or next(
        (p for p in ("/usr/bin/etcd", "/usr/sbin/etcd") if os.access(p, os.X_OK)), None)


def required_etcd_binary() -> str:
    """The etcd binary; the test is skipped without one (failed under CI=true)."""
    binary = etcd_binary()
    if binary is None:
        why = "no etcd binary (apt-get install etcd-server; .ci/run does)"
        if IN_CI:
            pytest.fail(f"CI=true forbids skipping the etcd tests: {why}", pytrace=False)
        pytest.skip(why)
    return binary


@contextlib.contextmanager
def running_etcd():
    server = EtcdServer(required_etcd_binary())
    try:
        yield server.start()
    finally:
        server.close()


def etcd_fixture(scope: str = "function"):
    @pytest.fixture(scope=scope)
    def etcd():
        with running_etcd() as server:
            yield server
    return etcd
