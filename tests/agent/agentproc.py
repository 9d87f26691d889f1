"""``nfpipe agent`` as a real process for the end-to-end tests: started with its own
state directory and deploy state root, queried over its HTTP endpoint, killed with
SIGKILL or stopped with SIGTERM; everything it deployed is destroyed at ``cleanup``."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from nfpipe import deploy as D
from nfpipe.kernel.libc import die_with_parent
from nfpipe.topo.traffic import serve_udp_echo, udp_exchange
from tests.agent.etcdserver import free_port

REPO = Path(__file__).resolve().parents[2]


class AgentProc:
    def __init__(self, host: str, state_dir: Path, root: str, source: list[str], *,
                 labels: dict[str, str] | None = None, resync: float = 2.0,
                 backoff: float = 1.0):
        self.host, self.state_dir, self.root = host, Path(state_dir), root
        self.port = free_port()
        self.argv = [sys.executable, "-m", "nfpipe.cli.main", "agent", "--host", host,
                     "--state-dir", str(state_dir), "--root", root,
                     "--listen", f"127.0.0.1:{self.port}", "--resync", str(resync),
                     "--backoff", str(backoff), *source]
        for k, v in (labels or {}).items():
            self.argv += ["--label", f"{k}={v}"]
        self.log = self.state_dir.parent / f"agent-{host}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, fault: str | None = None) -> AgentProc:
        """Start the agent and wait for its first pass; with *fault*, it runs with
        ``NFPIPE_FAULT=<fault>`` (its deploy kills it at that stage) and is not waited
        for."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "NFPIPE_FAULT"}
        if fault:
            env["NFPIPE_FAULT"] = fault
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=REPO, env=env,
                                         preexec_fn=die_with_parent)
        if not fault:
            self.wait(lambda s: s["agent"]["passes"] >= 1, 60, "the agent's first pass")
        return self

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def status(self) -> dict | None:
        try:
            code, body = self.get("/status")
        except OSError:
            return None
        return json.loads(body) if code == 200 else None

    def wait(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the agent exited ({self.proc.returncode}) waiting for "
                                     f"{what}: {self.log.read_text()[-3000:]}")
            last = self.status()
            if last is not None:
                with contextlib.suppress(KeyError, TypeError):
                    if pred(last):
                        return last
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last status: "
                             f"{json.dumps(last)[:3000]}; log: {self.log.read_text()[-2000:]}")

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def cleanup_root(root: str) -> None:
    """Destroy every pipeline deployed under *root*, then remove it."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        with contextlib.suppress(Exception):
            D.destroy(name, root=root)
    with contextlib.suppress(OSError):
        os.rmdir(root)


# --- desired documents and traffic on the two-hosts topology ---------------------------

SERVER = "198.51.100.2"
PASS, BLOCK, BLOCK2 = 7000, 9999, 7001


def document(name: str, revision: int, where: dict[str, list[str]], dports: list[int],
             nf_extra: str = "") -> str:
    rules = ", ".join(f"{{action: drop, proto: udp, dport: {p}}}" for p in dports)
    ifaces = "\n".join(f'    "{h}": [{", ".join(repr(t) for t in ts)}]' for h, ts in where.items())
    nodes = f"    - {{id: fw, nf: filter, config: {{rules: [{rules}]}}}}\n"
    edges = "    - fw -> pass\n"
    if nf_extra:
        nodes += f"    - {{id: bad, nf: {nf_extra}}}\n"
        edges = "    - fw -> bad\n    - bad -> pass\n"
    return (f"revision: {revision}\nhosts:\n  selector: {{role: edge}}\n  interfaces:\n{ifaces}\n"
            f"  mode: native\npipeline:\n  pipeline: {name}\n  hook: xdp\n  nodes:\n{nodes}"
            f"  edges:\n{edges}")


def passes(topo, port: int) -> bool:
    echo = topo.start("server", serve_udp_echo, SERVER, port, 1, 3.0)
    try:
        topo.call("client", udp_exchange, SERVER, port, b"x", 2.0, 0.1)
        ok = True
    except TimeoutError:
        ok = False
    finally:
        try:
            echo.result(timeout=10)
        except Exception:
            pass
    return ok
