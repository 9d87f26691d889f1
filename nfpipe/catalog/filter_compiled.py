"""The filter's compiled classifier: a small rule set as straight-line C.

``classifier: compiled`` (and ``auto``, for the rule set a node is built with, when it
fits the linear entries) turns each linear entry (``filter.linear_entries``: a rule,
or one combination of its port and VLAN ranges) into one ``if`` in the program,
its values integer constants: what bpfilter does for nftables rules.  Where the
linear scan reads an entry from the ``lin`` map and tests its ``need`` bits for
every field, the compiled check names only the fields the rule has, against
immediates, with no map lookup; the compiler folds what it can.

The C comes from integers only (each one range-checked here, never a user's text),
as the value of one preprocessor define, ``NFP_FILTER_COMPILED``, that
``bpf/filter.c`` expands inside its compiled classifier, where the packet's keys
are the locals ``pv sp dp fl vl`` and ``cannot`` (``nfp_filter_cannot``), and
``base`` is the generation's first slot of ``hits``.  The define is part of the
wrapper's (or the fused program's) text, so of the compile cache key: two rule
sets build two objects, an equal one hits the cache.

The policies (default, fragments, malformed) stay in ``gens``: a change of them is
a map write.  A second define, ``NFP_FILTER_COMPILED_ID``, is the fingerprint of the
generated C (``compiled_checks``); the control plane writes the fingerprint of every
linear generation's entries into ``gens[g].compiled_id``, and the program takes its
compiled checks only while the two are equal.  So an ``auto`` node whose rules change
at runtime runs the ``lin`` scan of its new rules (the next build compiles them in);
a ``compiled`` node's rules change only by a new program (``nfpipe deploy`` swaps it
in), so it always runs its checks.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

from nfpipe.catalog.filter_rules import (
    MAX_RULES,
    N_DPORT,
    N_DST4,
    N_DST6,
    N_FLAGS,
    N_PROTO,
    N_SPORT,
    N_SRC4,
    N_SRC6,
    N_VLAN,
    NPORT,
    NPROTO,
    NVLAN,
)
from nfpipe.errors import SpecError
from nfpipe.nfabi import Verdict

#: the define bpf/filter.c expands into its compiled classifier
DEFINE = "NFP_FILTER_COMPILED"
#: the define holding the fingerprint of the entries built in (gens[g].compiled_id)
ID_DEFINE = "NFP_FILTER_COMPILED_ID"
#: what to do instead of a runtime change of a compiled node's rules
HINT = ("edit the pipeline file and 'nfpipe deploy' it: the node's new program is swapped "
        "in without a gap")

_U32 = 0xFFFFFFFF
_ACTION_MIN = min(Verdict)           # a verdict (< 0) or a port 0..7


def _int(v: object, lo: int, hi: int, what: str) -> int:
    """*v* as an int in lo..hi: only such numbers ever reach the generated C."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise SpecError(f"filter: compiled classifier: {what} {v!r} out of range {lo}..{hi}")
    return v


def _range(var: str, pair: Sequence[int], top: int, what: str) -> str:
    lo, hi = (_int(x, 0, top, what) for x in pair)
    if lo > hi:
        raise SpecError(f"filter: compiled classifier: {what} range {lo}..{hi} is empty")
    return f"nfp_filter_in({var}, {lo}, {hi})"


def _addr(field: str, net: Sequence[int], mask: Sequence[int], words: int) -> list[str]:
    """The masked compare of each address word the prefix covers (a word of mask 0 is
    left out: it always holds)."""
    out = []
    for i in range(words):
        m, n = _int(mask[i], 0, _U32, "mask"), _int(net[i], 0, _U32, "network")
        if m:
            out.append(f"((p->{field}[{i}] & {m:#x}) ^ {n & m:#x}) == 0")
    return out


def entry_check(e: dict) -> str:
    """The C of one linear entry: the conditions it checks, then its hit and action."""
    need = _int(e["need"], 0, 0x1FF, "need")
    rule = _int(e["rule"], 0, MAX_RULES - 1, "rule")
    action = _int(e["action"], _ACTION_MIN, 7, "action")
    conds = []
    cannot = need & (N_SRC4 | N_DST4 | N_SRC6 | N_DST6 | N_FLAGS)
    if cannot:                      # an address of the other family, flags of non-TCP
        conds.append(f"!(cannot & {cannot:#x})")
    if need & N_PROTO:
        p = e["proto"]
        conds.append(f"({_range('pv', p[0:2], NPROTO - 1, 'proto')} || "
                     f"{_range('pv', p[2:4], NPROTO - 1, 'proto')})")
    if need & N_DPORT:
        conds.append(_range("dp", e["dport"], NPORT - 1, "dport"))
    if need & N_SPORT:
        conds.append(_range("sp", e["sport"], NPORT - 1, "sport"))
    if need & N_FLAGS:
        mask = _int(e["flags_mask"], 0, 255, "flags mask")
        want = _int(e["flags_want"], 0, 255, "flags")
        conds.append(f"(fl & {mask:#x}) == {want:#x}")
    if need & N_VLAN:
        conds.append(_range("vl", e["vlan"], NVLAN - 1, "vlan"))
    for attr, v4, v6 in (("src", N_SRC4, N_SRC6), ("dst", N_DST4, N_DST6)):
        field = f"{attr[0]}addr"
        if need & v4:
            conds += _addr(field, e[attr], e[f"{attr}_mask"], 1)
        elif need & v6:
            conds += _addr(field, e[attr], e[f"{attr}_mask"], 4)
    hit = f"{{ nfp_percpu_inc(&NFP_NAME(hits), base + {rule}); return {action}; }}"
    return f"if ({' && '.join(conds) or '1'}) {hit}"


def compiled_define(entries: Sequence[dict]) -> str:
    """The value of ``NFP_FILTER_COMPILED``: every entry's check, in order, one per
    continued line (so the wrapper stays readable)."""
    checks = [entry_check(e) for e in entries]
    return " \\\n\t".join(["/* compiled rules */", *checks])


def compiled_checks(entries: Sequence[dict]) -> tuple[str, int]:
    """The value of ``NFP_FILTER_COMPILED`` for *entries*, and its fingerprint: what
    ``gens[g].compiled_id`` holds for a generation of these entries and
    ``NFP_FILTER_COMPILED_ID`` for a program built with them.  64 bits of the SHA-256
    of the C (equal C, equal checks), never 0 (0 is "the tables")."""
    define = compiled_define(entries)
    digest = hashlib.sha256(define.encode()).digest()
    return define, int.from_bytes(digest[:8], "little") | 1


def compiled_defines(define: str, fingerprint: int) -> dict[str, str]:
    """The defines a program holding the checks *define* (``compiled_checks``) is built
    with."""
    return {DEFINE: define, ID_DEFINE: f"{fingerprint:#x}ULL"}
