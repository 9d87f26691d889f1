"""The Python twin of nfpipe's C network-function ABI (``bpf/include/nfpipe/nf.h`` and
``pipeline.h``): verdicts and how each hook returns them, port and node limits, the
layout of ``nfp_stats``, the maps a pipeline shares, and the rules a node name must
follow to become a C identifier prefix.

Every layer may use it and it uses nothing of nfpipe but its errors; a test
(tests/unit/test_nfabi.py) reads the C headers and checks each value here.
"""
from __future__ import annotations

import enum
import keyword
import re

from nfpipe.errors import SpecError

# --- verdicts and ports (nf.h) ------------------------------------------------------------


class Verdict(enum.IntEnum):
    """Final verdicts of nf.h's ``enum nfp_verdict``; ports are the numbers >= 0."""

    PASS = -1
    DROP = -2
    TX = -3
    REDIRECT = -4
    ABORTED = -5


MAX_PORTS = 8                 # NFP_MAX_PORTS: output ports per NF

#: the verdict a pipeline edge names (``fw.out -> drop``)
VERDICT_NAMES = {"pass": Verdict.PASS, "drop": Verdict.DROP, "tx": Verdict.TX,
                 "redirect": Verdict.REDIRECT, "aborted": Verdict.ABORTED}

#: what each hook returns for a verdict (nfp_hook_verdict in nf.h)
XDP_CODES = {Verdict.PASS: 2, Verdict.DROP: 1, Verdict.TX: 3, Verdict.REDIRECT: 4,
             Verdict.ABORTED: 0}
TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
TC_CODES = {Verdict.PASS: TC_ACT_OK, Verdict.DROP: TC_ACT_SHOT, Verdict.TX: TC_ACT_REDIRECT,
            Verdict.REDIRECT: TC_ACT_REDIRECT, Verdict.ABORTED: TC_ACT_SHOT}

# --- hooks --------------------------------------------------------------------------------

#: the hooks an NF is compiled for, and the C define that selects each
NF_HOOKS = ("xdp", "tc")
HOOK_DEFINES = {"xdp": "NFP_HOOK_XDP", "tc": "NFP_HOOK_TC"}
#: where a pipeline attaches, and the NF hook each one builds for
PIPELINE_HOOKS = ("xdp", "tc-ingress", "tc-egress")


def nf_hook(pipeline_hook: str) -> str:
    """The hook NFs are built for at a pipeline hook: "xdp" or "tc"."""
    return "xdp" if pipeline_hook == "xdp" else "tc"


def hook_define(hook: str) -> str:
    """The preprocessor name that builds nf.h for NF hook *hook*."""
    try:
        return HOOK_DEFINES[hook]
    except KeyError:
        raise SpecError(f"unknown hook '{hook}' (expected one of: "
                        f"{', '.join(NF_HOOKS)})") from None


# --- pipelines (pipeline.h) ---------------------------------------------------------------

MAX_NODES = 64                # NFP_MAX_NODES: slots of nfp_jmp, rows of nfp_stats
STAT_SLOTS = 16               # NFP_STAT_SLOTS: outcomes per node row
STAT_MISS = 13                # NFP_STAT_MISS: a tail call that found no program
#: the maps every program of a tail-call pipeline shares (created by the entry node)
SHARED_MAPS = ("nfp_meta_map", "nfp_stats", "nfp_jmp")


def stat_slot_of_verdict(v: Verdict) -> int:
    """NFP_STAT_VERDICT: the nfp_stats slot counting verdict *v* (8..12)."""
    return MAX_PORTS + (-int(v) - 1)


#: nfp_stats slot -> outcome name, for the slots that are not ports
OUTCOME_NAMES = {stat_slot_of_verdict(v): v.name.lower() for v in Verdict}
OUTCOME_NAMES[STAT_MISS] = "tail_call_miss"

# --- node names (NFP_NAME) ----------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_C_RESERVED = frozenset("""auto break case char const continue default do double else enum
extern float for goto if inline int long register restrict return short signed sizeof static
struct switch typedef union unsigned void volatile while _Bool""".split())  # noqa: SIM905


def is_c_identifier(name: str) -> bool:
    return bool(_IDENT.match(name))


def check_instance_name(name: str) -> str:
    """A node id becomes a C identifier prefix (``NFP_NAME``) and a program name."""
    if not _IDENT.match(name) or name in _C_RESERVED or keyword.iskeyword(name):
        raise SpecError(f"'{name}' cannot name a node: node ids must be C identifiers "
                        f"(letters, digits, '_', not starting with a digit, not a C keyword)")
    if "__" in name:
        raise SpecError(f"node id '{name}' contains '__', which nfpipe uses to separate a "
                        f"node's name from its maps and constants")
    if name.startswith("nfp_"):
        raise SpecError(f"node id '{name}' starts with 'nfp_', which is reserved for nfpipe")
    return name


def prefixed(instance: str, name: str) -> str:
    """The full name of an instance's map or constant: ``<instance>__<name>``."""
    return f"{instance}__{name}"
