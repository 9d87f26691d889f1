"""YAML with positions: every value keeps the file, line and column it came from.

``load(text, file)`` composes the YAML (PyYAML's node tree keeps marks) into a
``Doc``: the plain Python data plus a table from each value's path (a tuple of
keys and list indexes) to its position.  File parsers (pipelines, topologies,
rule files) walk the plain data with a ``Checker``, which collects every
``Problem`` at ``doc.at(path)``, so every error can name ``file:line:column``.
Duplicate mapping keys, which PyYAML silently accepts, are errors here.

A document in JSON (YAML's flow subset, what tools write) is read by the json
module instead: a 10,000-rule filter in ~20 ms, where composing its YAML nodes
takes ~1 s.  Its positions are read the YAML way on the first ``doc.at()``, that
is only when there is a problem to place.  Whatever JSON and PyYAML's YAML 1.1
would read differently (a float with an exponent, NaN), a duplicate key, or text
that is not JSON at all takes the YAML reader, as every document did before.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from nfpipe.errors import SpecError

# libyaml's parser when PyYAML has it (the same nodes and marks, several times faster)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple  # a path into the document: ("nodes", 0, "config", "rules", 2)

# Bounds on what one file may make nfpipe read: its size (a 16k-rule filter is about
# 1 MiB of YAML), and the values it expands to (aliases make a few lines of YAML
# stand for billions of values: "billion laughs").
MAX_BYTES = 2 << 20
MAX_VALUES = 300_000        # a 16k-rule filter is about 100k


@dataclass(frozen=True)
class Pos:
    file: str
    line: int      # 1-based
    column: int    # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One problem found in a source file, with its position (and node, for pipelines)."""

    pos: Pos
    message: str
    node: str | None = None

    def __str__(self) -> str:
        return f"{self.pos}: {self.message}"


class ProblemsError(SpecError):
    """Every problem found in one file; ``problems`` lists each with its position."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(first.message, file=first.pos.file, line=first.pos.line,
                         column=first.pos.column)
        if len(self.problems) > 1:
            self.args = (f"{len(self.problems)} problems in {first.pos.file}:\n" +
                         "\n".join(f"  {p}" for p in self.problems),)


@dataclass
class Doc:
    data: Any
    file: str
    positions: dict[Path_, Pos] = field(default_factory=dict)
    key_positions: dict[Path_, Pos] = field(default_factory=dict)
    #: a JSON document's text, until its positions are read (``_place``)
    unplaced: str | None = field(default=None, repr=False, compare=False)

    def _place(self) -> None:
        text, self.unplaced = self.unplaced, None
        if text is not None:
            marked = _load_yaml(text, self.file)
            self.positions, self.key_positions = marked.positions, marked.key_positions

    def at(self, path: Path_, *, key: bool = False) -> Pos:
        """Position of the value at *path* (or of its key), else of its nearest parent."""
        self._place()
        table = self.key_positions if key else self.positions
        p = tuple(path)
        if p in table:
            return table[p]
        while p:
            p = p[:-1]
            if p in self.positions:
                return self.positions[p]
        return Pos(self.file, 1, 1)

    def error(self, path: Path_, message: str, *, key: bool = False) -> SpecError:
        pos = self.at(path, key=key)
        return SpecError(message, file=pos.file, line=pos.line, column=pos.column)


def _pos(file: str, mark) -> Pos:
    return Pos(file, mark.line + 1, mark.column + 1)


def load(text: str, file: str) -> Doc:
    if len(text) > MAX_BYTES:
        raise SpecError(f"the file is over {MAX_BYTES:,} bytes; nfpipe reads files up to "
                        f"{MAX_BYTES:,} bytes (a pipeline of the largest node the catalog "
                        f"allows fits in well under that)", file=file)
    data = _json(text)
    if data is not _NOT_JSON and _within_bound(data):
        return Doc(data, file, unplaced=text)
    return _load_yaml(text, file)      # past the bound: its error names the value


class _YamlReadsOtherwise(Exception):
    """JSON the YAML reader would read otherwise, or report (a duplicate key)."""


_NOT_JSON = object()


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _YamlReadsOtherwise   # the YAML reader names the duplicate and its line
    return out


def _float(literal: str) -> float:
    if "e" in literal or "E" in literal:
        raise _YamlReadsOtherwise   # YAML 1.1 reads 1e3 as a string
    return float(literal)


def _constant(_literal: str) -> Any:
    raise _YamlReadsOtherwise       # NaN, Infinity: strings to YAML


def _json(text: str) -> Any:
    """*text* read as JSON, or _NOT_JSON where the YAML reader must read it."""
    if text.lstrip()[:1] not in ("{", "["):
        return _NOT_JSON
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_float=_float,
                          parse_constant=_constant)
    except (_YamlReadsOtherwise, ValueError, RecursionError):
        return _NOT_JSON


def _within_bound(data: Any) -> bool:
    """Whether a JSON document holds at most MAX_VALUES values, the YAML reader's bound."""
    n, todo = 0, [data]
    while todo:
        v = todo.pop()
        n += 1
        if n > MAX_VALUES:
            return False
        if isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return True


def _load_yaml(text: str, file: str) -> Doc:
    try:
        try:
            node = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError:
            # libyaml found a mistake: PyYAML's own parser says where in clearer words
            node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = exc.problem or str(exc)
        if exc.context:
            msg = f"{exc.context}: {msg}"
        raise SpecError(f"invalid YAML: {msg}", file=file,
                        line=mark.line + 1 if mark else None,
                        column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}", file=file) from None
    doc = Doc(None, file)
    if node is None:
        raise SpecError("the file is empty", file=file, line=1, column=1)
    doc.data = _convert(node, (), doc, [0])
    return doc


def load_file(path: str) -> Doc:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", file=path) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=path) from None
    return load(text, path)


_constructor = yaml.SafeLoader(stream="")


def _convert(node: yaml.Node, path: Path_, doc: Doc, count: list[int]) -> Any:
    count[0] += 1
    if count[0] > MAX_VALUES:
        pos = _pos(doc.file, node.start_mark)
        raise SpecError(f"the document expands to more than {MAX_VALUES:,} values (YAML "
                        f"aliases repeating anchors?); nfpipe reads at most that many",
                        file=doc.file, line=pos.line, column=pos.column)
    doc.positions[path] = _pos(doc.file, node.start_mark)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                pos = _pos(doc.file, knode.start_mark)
                raise SpecError("mapping keys must be plain scalars", file=doc.file,
                                line=pos.line, column=pos.column)
            key = _constructor.construct_object(knode)
            if key == "<<" and knode.tag == "tag:yaml.org,2002:merge":
                pos = _pos(doc.file, knode.start_mark)
                raise SpecError("YAML merge keys ('<<') are not supported", file=doc.file,
                                line=pos.line, column=pos.column)
            if key in out:
                pos = _pos(doc.file, knode.start_mark)
                first = doc.key_positions[path + (key,)]
                raise SpecError(f"duplicate key '{key}' (first given at line {first.line})",
                                file=doc.file, line=pos.line, column=pos.column)
            doc.key_positions[path + (key,)] = _pos(doc.file, knode.start_mark)
            out[key] = _convert(vnode, path + (key,), doc, count)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(v, path + (i,), doc, count) for i, v in enumerate(node.value)]
    return _constructor.construct_object(node)


def describe(value: Any) -> str:
    """How a problem message names a value of the wrong kind."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


class Checker:
    """The base of a file parser: walks ``doc.data`` and collects every problem (with its
    position) instead of stopping at the first."""

    def __init__(self, doc: Doc):
        self.doc = doc
        self.problems: list[Problem] = []

    def problem(self, path: Path_, message: str, *, key: bool = False,
                node: str | None = None) -> None:
        self.problems.append(Problem(self.doc.at(path, key=key), message, node))

    def expect(self, path: Path_, value: Any, typ: type | tuple[type, ...], what: str) -> bool:
        """Whether *value* is a *typ* (a bool is never an int here); a problem if not."""
        ok = isinstance(value, typ) and not (isinstance(value, bool) and typ is not bool)
        if not ok:
            self.problem(path, f"expected {what}, found {describe(value)}")
        return ok

    def known_keys(self, path: Path_, value: dict, keys, what: str) -> None:
        for k in value:
            if k not in keys:
                self.problem(path + (k,), f"unknown key '{k}' in {what} (expected one of: "
                                          f"{', '.join(keys)})", key=True)
