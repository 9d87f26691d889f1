"""Human output of the CLI: tables (rich) on stdout, progress on stderr.

Everything here is for people; scripts use ``--json``.  Off a terminal the
tables are plain text (no colour, a fixed width, so piped output stays stable),
and progress is silent.
"""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator


def console(stderr: bool = False):
    from rich.console import Console
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    return Console(file=stream, highlight=False, soft_wrap=False,
                   width=None if tty else 120, no_color=not tty,
                   force_terminal=tty)


def table(columns: Iterable[str], rows: Iterable[Iterable], *, title: str | None = None,
          right: Iterable[str] = ()):
    """A rich Table: *columns* headers, those in *right* right-aligned (numbers)."""
    from rich import box
    from rich.table import Table
    right = set(right)
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
              show_edge=False)
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left", no_wrap=True)
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    return t


def show(*renderables) -> None:
    c = console()
    for r in renderables:
        c.print(r)


@contextlib.contextmanager
def progress(first: str) -> Iterator:
    """A spinner on stderr naming the current step, shown only on a terminal and only
    if the work takes more than a second; yields ``say(step)`` to name the next step."""
    if not sys.stderr.isatty():
        yield lambda _msg: None
        return
    import threading
    status = console(stderr=True).status(first)
    lock = threading.Lock()
    state = {"started": False, "done": False}

    def start() -> None:
        with lock:
            if not state["done"]:
                status.start()
                state["started"] = True

    timer = threading.Timer(1.0, start)
    timer.daemon = True
    timer.start()

    def say(msg: str) -> None:
        status.update(msg)

    try:
        yield say
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["started"]:
                status.stop()


def rate(count: int, before: int | None, seconds: float | None) -> str:
    if before is None or not seconds:
        return ""
    return f"{(count - before) / seconds:,.0f}"
