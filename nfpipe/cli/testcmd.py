"""``nfpipe test``: a pipeline's test cases (``<pipeline>.test.yaml``) run in the kernel.

Exit codes: 0 every case passed (with every linking, at every hook), 1 a case failed
or could not run, 2 bad input (the pipeline file, the case file, an option).
"""
from __future__ import annotations

from nfpipe.cli import ui
from nfpipe.cli.output import EXIT_FAILURE, EXIT_OK, print_json
from nfpipe.testing import report, run_cases
from nfpipe.testing.runner import LINKINGS


def cmd_test(args) -> int:
    linkings = LINKINGS if args.linking == "both" else (args.linking,)
    suite = run_cases(args.file, args.cases, linkings=linkings,
                      hooks=tuple(args.hook) if args.hook else None, select=args.k)
    if args.junit:
        report.write_junit(suite, args.junit)
    if args.json:
        print_json(report.to_json(suite))
        return EXIT_OK if suite.passed else EXIT_FAILURE
    ui.show(ui.table(list(report.HEADERS), report.table_rows(suite), right=["time"],
                     title=f"nfpipe test {suite.pipeline}"))
    text = report.failures_text(suite)
    if text:
        print(text)
    print(report.summary_line(suite))
    if args.junit:
        print(f"JUnit XML written to {args.junit}")
    return EXIT_OK if suite.passed else EXIT_FAILURE
