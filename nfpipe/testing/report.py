"""What ``nfpipe test`` reports: the summary table's rows, each failure as text, the
same as JSON for scripts, and JUnit XML for CI servers.

JUnit is the format Jenkins and GitLab read (``<testsuites>`` / ``<testsuite>`` /
``<testcase>`` with ``<failure>`` or ``<error>``), one test case per case, hook and
linking: ``classname`` is ``<pipeline>.<hook>.<linking>`` so a CI page groups the
linkings, and a case that fails fused only shows as one red row among green ones.
Written with ``xml.etree`` (no dependency).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from nfpipe.testing.packets import format_diff
from nfpipe.testing.results import CaseResult, Failure, SuiteResult

HEADERS = ("case", "hook", "linking", "result", "time")


def table_rows(suite: SuiteResult) -> list[tuple[str, str, str, str, str]]:
    """One row per case, hook and linking: what the summary table shows."""
    return [(r.case, r.hook, r.linking, r.result.upper() if not r.passed else r.result,
             f"{r.seconds * 1000:.0f} ms") for r in suite.results]


def summary_line(suite: SuiteResult) -> str:
    c = suite.counts()
    parts = [f"{c['passed']} passed"]
    if c["failed"]:
        parts.append(f"{c['failed']} failed")
    if c["error"]:
        parts.append(f"{c['error']} could not run")
    return (f"{suite.pipeline}: {', '.join(parts)} ({len({r.case for r in suite.results})} "
            f"case(s) x {', '.join(suite.linkings)} linking at {', '.join(suite.hooks)}; "
            f"{suite.cases_file})")


def failure_text(result: CaseResult, failure: Failure) -> str:
    """One failure as a paragraph: where, which case and linking, what, and the diff."""
    head = (f"{failure.pos}: case '{result.case}' [{result.hook}, {result.linking}]: "
            f"{failure.message}")
    if failure.diff:
        head += "\n" + format_diff(list(failure.diff))
    return head


def failures_text(suite: SuiteResult) -> str:
    """Every failure of the run, in the order the cases ran."""
    return "\n".join(failure_text(r, f) for r in suite.results for f in r.failures)


def to_json(suite: SuiteResult) -> dict[str, Any]:
    """The run as JSON-able data (what ``nfpipe test --json`` prints)."""
    return {
        "pipeline": suite.pipeline, "pipeline_file": suite.pipeline_file,
        "cases_file": suite.cases_file, "hooks": list(suite.hooks),
        "linkings": list(suite.linkings), "passed": suite.passed, "counts": suite.counts(),
        "results": [{
            "case": r.case, "hook": r.hook, "linking": r.linking, "result": r.result,
            "seconds": round(r.seconds, 6), "file": r.pos.file, "line": r.pos.line,
            "column": r.pos.column,
            "failures": [{"file": f.pos.file, "line": f.pos.line, "column": f.pos.column,
                          "packet": f.step, "message": f.message,
                          "diff": [{"layer": d.layer, "field": d.field,
                                    "expected": d.expected, "actual": d.actual}
                                   for d in f.diff]} for f in r.failures],
            "packets": [{"packet": s.index, "verdict": s.verdict, "retval": s.retval,
                         "path": list(s.path), "output_hex": s.output.hex()}
                        for s in r.steps],
            "traffic": list(r.traffic),
        } for r in suite.results],
    }


def junit_xml(suite: SuiteResult) -> str:
    """The run as JUnit XML: one ``<testsuite>`` per hook and linking."""
    root = ET.Element("testsuites", name=f"nfpipe test {suite.pipeline}")
    groups: dict[tuple[str, str], list[CaseResult]] = {}
    for r in suite.results:
        groups.setdefault((r.hook, r.linking), []).append(r)
    total = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for (hook, linking), results in groups.items():
        failures = sum(r.result == "failed" for r in results)
        errors = sum(r.result == "error" for r in results)
        seconds = sum(r.seconds for r in results)
        ts = ET.SubElement(root, "testsuite", name=f"{suite.pipeline}.{hook}.{linking}",
                           tests=str(len(results)), failures=str(failures),
                           errors=str(errors), skipped="0", time=f"{seconds:.3f}",
                           file=suite.cases_file)
        for k, v in (("tests", len(results)), ("failures", failures), ("errors", errors),
                     ("time", seconds)):
            total[k] += v
        for r in results:
            tc = ET.SubElement(ts, "testcase", name=r.case,
                               classname=f"{suite.pipeline}.{hook}.{linking}",
                               time=f"{r.seconds:.3f}", file=r.pos.file, line=str(r.pos.line))
            if r.passed:
                continue
            tag = "failure" if r.result == "failed" else "error"
            first = r.failures[0] if r.failures else None
            el = ET.SubElement(tc, tag, type="nfpipe.test",
                               message=f"{first.pos}: {first.message}" if first else r.result)
            el.text = "\n\n".join(failure_text(r, f) for f in r.failures)
    root.set("tests", str(total["tests"]))
    root.set("failures", str(total["failures"]))
    root.set("errors", str(total["errors"]))
    root.set("time", f"{total['time']:.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(suite: SuiteResult, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(junit_xml(suite))
