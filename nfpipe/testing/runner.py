"""Running a pipeline's test cases in the kernel: ``run_cases(pipeline, cases)``.

Every case runs against a pipeline loaded for it alone (``Pipeline.load`` of a build
made once per hook and linking), so no case sees another's state — a NAT mapping,
an LB connection, a counter — and each is closed before the next is loaded.  The
packets of one case run in order on the same pipeline, which is what tests a
stateful NF: the reply after the request.

What a packet did is read from the kernel, not guessed: ``BPF_PROG_TEST_RUN``
gives the hook's return code and the packet after, and the ``nfp_stats`` counters
read before and after give its path (every node it went through and the outcome
there), hence its verdict — which TC's return codes alone cannot tell apart (tx
and redirect are both TC_ACT_REDIRECT).  Both linkings run by default, each case
reported per linking, since a case that passes tail-called and fails fused is a
bug in one of them.

A case's ``config:`` is applied as ``nfpipe rules`` / ``nfpipe backends`` apply
it to a deployed node (``deploy.configure``): a control plane made from the
node's config takes the new runtime keys through the NF's ``update(maps,
config)``, on the loaded node's maps.  Its ``maps:`` entries are written as
``nfpipe map set`` writes them (``nfpipe.btf.present.from_display``, then the map).
"""
from __future__ import annotations

import copy
import dataclasses
import errno
import os
import time
from collections.abc import Callable
from typing import Any

from nfpipe.btf.present import from_display, to_display
from nfpipe.compose import build, make_plan
from nfpipe.compose.build import Build
from nfpipe.errors import KernelError, NfpipeError, UsageError
from nfpipe.kernel import syscall as sc
from nfpipe.nfabi import OUTCOME_NAMES, SHARED_MAPS, STAT_MISS, TC_CODES, XDP_CODES, Verdict
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec
from nfpipe.spec.pipeline import MODES
from nfpipe.testing.cases import (
    Case,
    CaseFile,
    CaseFileError,
    Expect,
    MapCheck,
    Step,
    check_against,
    default_cases_path,
    load_cases,
    merged_config,
)
from nfpipe.testing.e2e import run_end_to_end
from nfpipe.testing.packets import (
    checksum_mismatches,
    field_mismatches,
    packet_diff,
    summary,
)
from nfpipe.testing.results import CaseResult, Failure, StepOutcome, SuiteResult
from nfpipe.yamldoc import Problem

LINKINGS = ("tailcall", "fused")
_VERDICT_OUTCOMES = {v.name.lower(): v for v in Verdict}


def run_cases(pipeline: str | os.PathLike, cases: str | os.PathLike | None = None, *,
              linkings: tuple[str, ...] = LINKINGS, hooks: tuple[str, ...] | None = None,
              select: list[str] | None = None,
              progress: Callable[[str], None] | None = None) -> SuiteResult:
    """Run the cases of *cases* (default: the pipeline's ``.test.yaml``) against the
    pipeline file *pipeline*, with each linking and at each hook (default: the
    file's); *select* keeps the cases whose name contains one of its strings.

    Bad input raises before anything is loaded: the pipeline's ``SpecError`` /
    ``GraphError``, the case file's ``CaseFileError`` (every problem, file:line:col),
    ``UsageError`` when *select* matches no case."""
    spec = PipelineSpec.from_file(pipeline)
    path = os.fspath(cases) if cases is not None else os.fspath(default_cases_path(pipeline))
    casefile = load_cases(path)
    check_against(casefile, spec)
    chosen = casefile.select(select)
    if not chosen:
        raise UsageError(f"no case of {path} matches {' or '.join(map(repr, select or []))} "
                         f"(cases: {', '.join(c.name for c in casefile.cases)})")
    require_bpf()
    hooks = tuple(hooks or (spec.hook,))
    results: list[CaseResult] = []
    for hook in hooks:
        hspec = spec if hook == spec.hook else with_hook(spec, hook)
        for linking in linkings:
            results += _run_linking(hspec, casefile, [c for c in chosen if c.e2e is None],
                                    linking, progress)
            for case in (c for c in chosen if c.e2e is not None):
                if progress is not None:
                    progress(f"{case.name} ({hook}, {linking}, end to end)")
                results.append(run_end_to_end(
                    os.fspath(pipeline), case, case.e2e, hook=hook, linking=linking,
                    hook_override=None if hook == spec.hook else hook))
    order = {c.name: i for i, c in enumerate(chosen)}
    results.sort(key=lambda r: (hooks.index(r.hook), linkings.index(r.linking), order[r.case]))
    return SuiteResult(os.fspath(pipeline), path, spec.name, hooks, tuple(linkings),
                       tuple(results))


def require_bpf() -> None:
    """Refuse once, before any case, where the kernel will not take a BPF object from
    this process (not root): instead of every case failing with the same EPERM."""
    exc = sc.bpf_refusal()
    if exc is None:
        return
    if exc.errno not in (errno.EPERM, errno.EACCES):
        raise exc
    raise KernelError("BPF_MAP_CREATE", exc.errno, hint=(
        "nfpipe test loads the pipeline into this machine's kernel, which takes BPF "
        "programs and maps only from root (CAP_BPF and CAP_NET_ADMIN); run it with "
        "sudo"))


def with_hook(spec: PipelineSpec, hook: str) -> PipelineSpec:
    """*spec* at another hook (the mode reset to auto when the file's is not one of that
    hook's): what ``--hook`` tests."""
    mode = spec.mode if spec.mode in MODES.get(hook, ()) else "auto"
    return dataclasses.replace(spec, hook=hook, mode=mode)


def _run_linking(spec: PipelineSpec, casefile: CaseFile, chosen: list[Case],
                 linking: str, progress) -> list[CaseResult]:
    if not chosen:
        return []
    t0 = time.perf_counter()
    try:
        built = build(make_plan(spec, linking=linking))
    except NfpipeError as exc:           # this linking cannot be built: each case says so
        seconds = time.perf_counter() - t0
        return [CaseResult(c.name, c.pos, spec.hook, linking, "error", seconds,
                           (Failure(c.pos, f"the pipeline does not build with {linking} "
                                           f"linking: {exc}"),)) for c in chosen]
    _check_map_names(casefile, built)
    out = []
    for case in chosen:
        if progress is not None:
            progress(f"{case.name} ({spec.hook}, {linking})")
        out.append(run_case(built, case))
    return out


def _check_map_names(casefile: CaseFile, built: Build) -> None:
    """Every map a case names exists: a typo is bad input (exit 2).  The program array
    and metadata map of tail calls are the exception: a fused pipeline has neither, so
    a case using them cannot run fused, which is that case's result there."""
    names = {m for ospec in built.objects.values() for m in ospec.maps}
    problems = []
    for case in casefile.cases:
        refs = [(w.map, w.pos) for w in case.maps] + \
               [(m.map, m.pos) for s in case.steps for m in s.expect.maps]
        for name, pos in refs:
            if name not in names and name not in SHARED_MAPS:
                known = sorted(n for n in names if not n.startswith("."))
                problems.append(Problem(pos, f"case '{case.name}': no map '{name}' in this "
                                             f"pipeline (maps: {', '.join(known)})"))
    if problems:
        raise CaseFileError(problems)


def run_case(built: Build, case: Case) -> CaseResult:
    """One case on a pipeline loaded for it from *built*, closed after."""
    plan = built.plan
    t0 = time.perf_counter()
    failures: list[Failure] = []
    outcomes: list[StepOutcome] = []
    try:
        with Pipeline.load(built) as p:
            try:
                _prepare(p, case)
            except (NfpipeError, ValueError, KeyError) as exc:
                return _result(case, plan, "error", t0,
                               [Failure(case.pos, f"setting up the case failed: {exc}")])
            for step in case.steps:
                outcome, failed = _run_step(p, step)
                outcomes.append(outcome)
                failures += failed
    except NfpipeError as exc:
        return _result(case, plan, "error", t0, [Failure(case.pos, str(exc))], outcomes)
    return _result(case, plan, "failed" if failures else "passed", t0, failures, outcomes)


def _result(case: Case, plan, result: str, t0: float, failures, outcomes=()) -> CaseResult:
    return CaseResult(case.name, case.pos, plan.spec.hook, plan.linking, result,
                      time.perf_counter() - t0, tuple(failures), tuple(outcomes))


# --- before the packets -------------------------------------------------------------------

def _prepare(p: Pipeline, case: Case) -> None:
    for node, change in case.config.items():
        impl = p.plan.spec.nodes[node].impl
        # As deploy.configure converges a runtime change: a control plane made from the
        # node's config (the spec's own stays as the file says, for the next case) takes
        # the merged config on the live maps.  A node loaded just now has no state to
        # restore: populate() wrote exactly what its config says.
        live = type(impl)(copy.deepcopy(impl.config))
        live.update(p.node_maps(node), merged_config(impl.config, change))
    for w in case.maps:
        m = find_map(p, w.map)
        key = from_display(m.key_codec, w.key)
        if w.delete:
            if not m.delete(key):
                raise KeyError(f"map '{w.map}' has no entry for key {w.key!r} to delete")
        else:
            m.update(key, from_display(m.value_codec, w.value))


def find_map(p: Pipeline, name: str):
    """A loaded pipeline's map by its full name (``fw__hits``, ``nfp_stats``)."""
    for obj in p.objects.values():
        if name in obj.maps:
            return obj.maps[name]
    raise NoSuchMap(f"the pipeline has no map '{name}' with {p.plan.linking} linking")


class NoSuchMap(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


# --- one packet ---------------------------------------------------------------------------

def _run_step(p: Pipeline, step: Step) -> tuple[StepOutcome, list[Failure]]:
    before = p.stats()
    res = p.test_run(step.packet)
    after = p.stats()
    path = hops(p, before, after)
    verdict = verdict_of(p, path, res.retval)
    outcome = StepOutcome(step.index, verdict, res.retval, tuple(path), bytes(res.data))
    return outcome, check_step(p, step, outcome, after)


def hops(p: Pipeline, before, after) -> list[str]:
    """``node.outcome`` of every node the packet went through, in plan order (which
    is the order of the graph: entry first, then topologically)."""
    out = []
    for n in p.plan.order:
        b, a = before.get(n.id, {}), after.get(n.id, {})
        for outcome, c in a.items():
            prev = b[outcome].packets if outcome in b else 0
            if c.packets > prev:
                out.append(f"{n.id}.{outcome}")
    return out


def verdict_of(p: Pipeline, path: list[str], retval: int) -> str | None:
    """The pipeline's verdict: the last hop's, or its port's edge's; from the hook's
    code only when no node counted the packet."""
    if path:
        node, _, outcome = path[-1].rpartition(".")
        if outcome in _VERDICT_OUTCOMES:
            return outcome
        if outcome == OUTCOME_NAMES[STAT_MISS]:      # tail_call_miss: the miss verdict
            return p.plan.miss_verdict
        for t in p.plan.nodes[node].targets:
            if t.port == outcome and t.node is None:
                return t.verdict
    codes = XDP_CODES if p.plan.hook == "xdp" else TC_CODES
    for v, code in codes.items():
        if code == retval:
            return v.name.lower()
    return None


def _code_name(hook: str, retval: int) -> str:
    names = ({0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
             if hook == "xdp" else {0: "TC_ACT_OK", 2: "TC_ACT_SHOT", 7: "TC_ACT_REDIRECT"})
    return names.get(retval, str(retval))


def check_step(p: Pipeline, step: Step, got: StepOutcome, stats) -> list[Failure]:
    """Every expectation of *step* against what the packet did."""
    e: Expect = step.expect
    out: list[Failure] = []

    def fail(key: str, message: str, diff=()) -> None:
        out.append(Failure(e.at(key), f"packet {step.index}: {message}", step.index,
                           tuple(diff)))

    where = f"path {' -> '.join(got.path) or '(no node counted it)'}"
    hook = p.plan.hook
    if e.verdict is not None:
        codes = XDP_CODES if hook == "xdp" else TC_CODES
        want_code = codes[_VERDICT_OUTCOMES[e.verdict]]
        if got.verdict != e.verdict or got.retval != want_code:
            fail("verdict", f"verdict: expected {e.verdict} ({_code_name(hook, want_code)}), "
                            f"got {got.verdict} ({_code_name(hook, got.retval)}); {where}")
    if e.port is not None:
        last = got.path[-1] if got.path else None
        ok = last is not None and (last == e.port if "." in e.port
                                   else last.rpartition(".")[2] == e.port)
        if not ok:
            fail("port", f"port: expected the packet to leave by {e.port}, it left by "
                         f"{last or 'no port'}; {where}")
    if e.path is not None and tuple(e.path) != got.path:
        fail("path", f"path: expected {' -> '.join(e.path)}, got "
                     f"{' -> '.join(got.path) or '(no node counted it)'}")
    if e.unchanged and got.output != step.packet:
        fail("unchanged", "unchanged: the packet came out rewritten",
             packet_diff(step.packet, got.output))
    if "unchanged" in e.positions and not e.unchanged and got.output == step.packet:
        fail("unchanged", "unchanged: false, but the packet came out as it went in")
    if e.output is not None and got.output != e.output:
        fail("output", f"output: {len(got.output)} bytes differ from the {len(e.output)} "
                       f"expected ({summary(got.output)})", packet_diff(e.output, got.output))
    if e.fields:
        diff = field_mismatches(got.output, e.fields)
        if diff:
            fail("fields", f"fields: {len(diff)} field(s) not as expected in "
                           f"{summary(got.output)}", diff)
    if e.checksums:
        diff = checksum_mismatches(got.output)
        if diff:
            fail("checksums", "checksums: not what scapy recomputes", diff)
    for node, row in (e.counters or {}).items():
        have = stats.get(node, {})
        for outcome, (pk, by) in row.items():
            c = have.get(outcome)
            gp, gb = (c.packets, c.bytes) if c is not None else (0, 0)
            if (pk is not None and pk != gp) or (by is not None and by != gb):
                want = _packets(pk) if pk is not None else "any packets"
                want += f" ({by} bytes)" if by is not None else ""
                fail("counters", f"counters: {node}.{outcome}: expected {want}, got "
                                 f"{_packets(gp)} ({gb} bytes)")
    for mc in e.maps:
        msg = check_map(p, mc)
        if msg:
            out.append(Failure(mc.pos, f"packet {step.index}: maps: {msg}", step.index))
    return out


def _packets(n: int) -> str:
    return f"{n} packet" if n == 1 else f"{n} packets"


# --- map entries --------------------------------------------------------------------------

def check_map(p: Pipeline, mc: MapCheck) -> str | None:
    """Why the map does not hold what *mc* says (None: it does)."""
    try:
        m = find_map(p, mc.map)
    except NoSuchMap as exc:
        return str(exc)
    if mc.entries is not None:
        n = len(m)
        return None if n == mc.entries else \
            f"{mc.map}: expected {mc.entries} entries, found {n}"
    try:
        key = from_display(m.key_codec, mc.key)
        raw = m.lookup(key)
    except ValueError as exc:
        return f"{mc.map}: {exc}"
    if mc.absent:
        return None if raw is None else \
            f"{mc.map}[{mc.key!r}]: expected no entry, found {_display(m, raw)!r}"
    if raw is None:
        return f"{mc.map}[{mc.key!r}]: no entry (expected {mc.value!r})"
    have = _display(m, raw)
    if m.percpu and not isinstance(mc.value, list):
        have = _sum_cpus(have)
    if not _matches(mc.value, have):
        return f"{mc.map}[{mc.key!r}]: expected {mc.value!r}, found {have!r}"
    return None


def _display(m, raw: Any) -> Any:
    if m.percpu and isinstance(raw, list):
        return [to_display(m.value_codec, v) for v in raw]
    return to_display(m.value_codec, raw)


def _sum_cpus(values: list) -> Any:
    """A per-CPU value as one: numbers (and numeric struct fields) summed."""
    if all(isinstance(v, int) for v in values):
        return sum(values)
    if all(isinstance(v, dict) for v in values) and values:
        out = dict(values[0])
        for k, v in out.items():
            if isinstance(v, int):
                out[k] = sum(x[k] for x in values)
        return out
    return values


def _matches(want: Any, have: Any) -> bool:
    """*have* holds *want*: a mapping may name only some fields; text and numbers
    compare as text (``"10.0.0.1"``, ``80`` vs ``"80"``)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _matches(v, have[k])
                                              for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and \
            all(_matches(a, b) for a, b in zip(want, have))
    if isinstance(want, (bytes, bytearray)):
        return bytes(want) == have
    return want == have or str(want) == str(have)
