"""What running a pipeline's test cases found: per case, hook and linking, passed or
failed (with every expectation not met, at its file:line:col) or could not run."""
from __future__ import annotations

from dataclasses import dataclass

from nfpipe.testing.packets import FieldDiff
from nfpipe.yamldoc import Pos


@dataclass(frozen=True)
class Failure:
    """One expectation not met (or the case could not run): where the file says it, what
    happened, and for packets the fields that differ."""

    pos: Pos
    message: str
    step: int | None = None
    diff: tuple[FieldDiff, ...] = ()


@dataclass(frozen=True)
class StepOutcome:
    """What one packet did in the kernel."""

    index: int
    verdict: str | None
    retval: int
    path: tuple[str, ...]
    output: bytes


@dataclass(frozen=True)
class CaseResult:
    case: str
    pos: Pos
    hook: str
    linking: str
    result: str                     # "passed", "failed" or "error" (could not run)
    seconds: float
    failures: tuple[Failure, ...] = ()
    steps: tuple[StepOutcome, ...] = ()
    traffic: tuple[dict, ...] = ()      # an end-to-end case: what each exchange did

    @property
    def passed(self) -> bool:
        return self.result == "passed"


@dataclass(frozen=True)
class SuiteResult:
    """Every case of one case file, per hook and linking, in the order they ran."""

    pipeline_file: str
    cases_file: str
    pipeline: str
    hooks: tuple[str, ...]
    linkings: tuple[str, ...]
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0}
        for r in self.results:
            out[r.result] += 1
        return out
