"""Turn a verifier log into a ``VerifierError`` that points at the C source.

With BTF line info loaded, the kernel interleaves the log with the C source
lines it is verifying (``; if (v) ... @ nat.c:42``).  The error names the last
such line before the verifier stopped, the instruction it stopped at, and an
excerpt of the log's last meaningful lines; ``.log`` keeps everything.
"""
from __future__ import annotations

import re

from nfpipe.errors import VerifierError
from nfpipe.kernel.syscall import log_noise

_INSN_RE = re.compile(r"^(\d+): \([0-9a-f]{2}\) (.*)$")
_SRC_RE = re.compile(r"^; (.*?)(?: @ (\S+:\d+))?$")


def verifier_error(program: str, err: int, log: str, *, node: str | None = None,
                   excerpt_lines: int = 8) -> VerifierError:
    lines = [ln.rstrip() for ln in log.splitlines()]
    source = insn = None
    for ln in lines:
        m = _INSN_RE.match(ln)
        if m:
            insn = f"{m.group(1)}: {m.group(2)}"
            continue
        m = _SRC_RE.match(ln)
        if m and ln.startswith("; "):
            text, where = m.group(1).strip(), m.group(2)
            source = f"{where}: {text}" if where else text
    meaningful = [ln for ln in lines if ln and not log_noise(ln)]
    excerpt = "\n".join("    " + ln for ln in meaningful[-excerpt_lines:])
    return VerifierError(program, err, log, source_line=source, insn=insn, excerpt=excerpt,
                         node=node)
