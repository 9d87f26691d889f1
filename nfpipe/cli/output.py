"""What every command shares: JSON output, exit codes, and the options every verb takes.

``--json`` (machine output on stdout), ``-v`` (more detail on failures, and the
library's log on stderr) and ``--cc`` (the compiler) are declared once, in
``common``, the parent of the root parser and of every subcommand: ``nfpipe --json
status`` and ``nfpipe status --json`` mean the same.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from nfpipe.errors import NfpipeError, UsageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def common(root: bool = False) -> argparse.ArgumentParser:
    """The options every verb takes.  Subcommands leave them unset unless given, so a
    value given before the verb is kept (argparse.SUPPRESS)."""
    p = argparse.ArgumentParser(add_help=False)
    dflt = {} if root else {"default": argparse.SUPPRESS}
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout",
                   **({"default": False} if root else dflt))
    p.add_argument("-v", "--verbose", action="count",
                   help="more detail: the whole verifier log or compiler command on a "
                        "failure, the library's log on stderr (-vv: debug)",
                   **({"default": 0} if root else dflt))
    p.add_argument("--cc", metavar="CMD",
                   help="the C compiler to build with, as NFPIPE_CC takes it (default: the "
                        "ziglang wheel's clang, the one nfpipe is tested with)",
                   **({"default": None} if root else dflt))
    return p


def jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def print_json(obj: Any) -> None:
    json.dump(jsonable(obj), sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def usage(msg: str) -> UsageError:
    return UsageError(msg)


def parse_value(text: str) -> Any:
    """A --set value: an integer (any base), true/false, or else the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text, 0)
    except ValueError:
        return text


def json_arg(text: str, what: str) -> Any:
    """A map key or value on the command line: JSON (ints, dicts for structs, lists),
    or 0x... hex for raw bytes."""
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise usage(f"bad hex {what}: {text}") from None
    try:
        return json.loads(text)
    except ValueError:
        raise usage(f"the {what} must be JSON (e.g. 42, {{\"addr\": 1}}) or 0x-hex bytes; "
                    f"got {text!r}") from None


# the context each error carries, by attribute, as --json reports it
_ERROR_FIELDS = ("file", "line", "column", "program", "section", "offset", "node", "op",
                 "errno", "hint", "source_line", "insn", "iface", "mode", "netlink_error",
                 "source", "command")


def error_record(exc: NfpipeError, *, verbose: bool = False) -> dict[str, Any]:
    """What ``--json`` prints on stdout when a command fails: the error's kind, its one
    paragraph, the exit code, and the context it carries (with -v: the verifier log or
    the compiler's diagnostics too)."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc),
                           "exit_code": exc.exit_code}
    for name in _ERROR_FIELDS:
        value = getattr(exc, name, None)
        if value not in (None, "", []):
            out[name] = value
    problems = getattr(exc, "problems", None)
    if problems:
        out["problems"] = [{"file": p.pos.file, "line": p.pos.line, "column": p.pos.column,
                            "node": p.node, "message": p.message} if hasattr(p, "pos")
                           else str(p) for p in problems]
    if verbose:
        for name in ("log", "diagnostics"):
            if getattr(exc, name, None):
                out[name] = getattr(exc, name)
    return {"error": out}
