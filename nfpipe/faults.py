"""Crash injection for the tests that prove repair and rollback.

``NFPIPE_FAULT=<stage>`` makes the process kill itself at that stage as abruptly as
SIGKILL does (no finally, no atexit): what a repair must undo.
``NFPIPE_FAULT=<stage>:interrupt`` raises ``KeyboardInterrupt`` there instead, as a
Ctrl-C at that moment would: what the deploy's own rollback must undo.
Deploy (``nfpipe.deploy.steps.FAULT_STAGES``) and topologies (``topo-link``: after
the first link of ``up``) have stages."""
from __future__ import annotations

import os
import signal


def fault(stage: str) -> None:
    want = os.environ.get("NFPIPE_FAULT")
    if want == stage:
        os.kill(os.getpid(), signal.SIGKILL)
    elif want == f"{stage}:interrupt":
        raise KeyboardInterrupt(f"NFPIPE_FAULT={want}")
