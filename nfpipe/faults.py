"""Crash injection for the tests that prove repair: with ``NFPIPE_FAULT=<stage>`` the
process kills itself at that stage as abruptly as SIGKILL does (no finally, no
atexit).  Deploy (``nfpipe.deploy.steps.FAULT_STAGES``) and topologies (``topo-link``:
after the first link of ``up``) have stages."""
from __future__ import annotations

import os
import signal


def fault(stage: str) -> None:
    if os.environ.get("NFPIPE_FAULT") == stage:
        os.kill(os.getpid(), signal.SIGKILL)
