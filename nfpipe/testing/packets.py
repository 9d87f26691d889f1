"""Packets of a test-case file: how a case writes one, and how a result is compared.

A packet is written in one of three forms, each turned into bytes when the case
file is read (so a mistake is reported at its line before anything is loaded):

* a scapy expression, ``Ether()/IP(dst="10.0.0.2")/UDP(dport=53)``, evaluated with
  only scapy's layer names in scope and no builtins.  The expression is checked
  first (calls, ``/``, literals, keyword arguments and layer names only; no
  attribute access), because ``eval`` without builtins alone still lets
  ``().__class__`` reach anything;
* a list of layers, ``[{Ether: {}}, {IP: {dst: 10.0.0.2}}, {TCP: {flags: S}}]``
  (a bare ``- UDP`` is a layer with no fields set), stacked with ``/``;
* ``hex:`` and the bytes (spaces and colons allowed): what a capture shows.

Comparing is field by field (``FieldDiff``: layer / field / expected / actual), on
the packets as scapy dissects them from Ethernet up, so a failing rewrite reads as
``IP src 192.0.2.1 198.51.100.1`` rather than two hex dumps.
"""
from __future__ import annotations

import ast
import logging
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from nfpipe.errors import SpecError


@dataclass(frozen=True)
class FieldDiff:
    """One field that is not what was expected (``actual`` None: the layer is missing)."""

    layer: str
    field: str
    expected: str
    actual: str | None


class PacketError(SpecError):
    """A packet (or a field expectation) a case file cannot mean; ``path`` is where
    inside the value the problem is, for its position."""

    def __init__(self, message: str, path: tuple = ()):
        self.path = tuple(path)
        super().__init__(message)


_layers: dict[str, type] | None = None


def layer_names() -> dict[str, type]:
    """Every scapy layer class by name (what an expression and a layer list may name)."""
    global _layers
    if _layers is None:
        import scapy.all  # noqa: F401  (loads every layer into conf.layers)
        from scapy.config import conf
        _layers = {cls.__name__: cls for cls in conf.layers}
    return _layers


def layer_class(name: Any, path: tuple = ()) -> type:
    if not isinstance(name, str) or name not in layer_names():
        raise PacketError(f"unknown scapy layer {name!r} (layers are scapy's class names: "
                          f"Ether, Dot1Q, IP, IPv6, TCP, UDP, ICMP, Raw, ...)", path)
    return layer_names()[name]


def field_names(cls: type) -> list[str]:
    return [f.name for f in cls.fields_desc]


# --- building -----------------------------------------------------------------------------

def build_packet(value: Any) -> bytes:
    """The bytes of a packet written in one of the three forms (PacketError if none)."""
    with _quiet_scapy():
        return _build(value)


@contextmanager
def _quiet_scapy():
    """Without scapy's warnings on stderr: an ``Ether()`` without ``dst`` looks for a
    route and says it used broadcast, which is what a test packet means."""
    log = logging.getLogger("scapy.runtime")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _build(value: Any) -> bytes:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("hex:"):
            return _hex(text[4:])
        return bytes(_evaluate(text))
    if isinstance(value, list):
        return bytes(_stack(value))
    raise PacketError("a packet is a scapy expression ('Ether()/IP()/UDP(dport=53)'), a "
                      "list of layers ([{Ether: {}}, {IP: {dst: 10.0.0.2}}]) or 'hex: ...'")


def _hex(text: str) -> bytes:
    digits = "".join(text.replace(":", " ").split())
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        raise PacketError(f"'hex:' takes hex digits (spaces and ':' allowed), got "
                          f"{text.strip()[:40]!r}") from None
    if not data:
        raise PacketError("'hex:' with no bytes")
    return data


_ALLOWED = (ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.keyword,
            ast.BinOp, ast.Div, ast.Mult, ast.Add, ast.UnaryOp, ast.USub, ast.List,
            ast.Tuple)


MAX_REPEAT = 65535             # a packet is at most 64 KiB: "x"*10**9 is no packet


def _bounded_repeat(node: ast.BinOp) -> bool:
    """``"x"*8`` or ``8*b"x"``: a literal repeated a literal number of times, up to
    MAX_REPEAT (so an expression cannot ask for gigabytes)."""
    sides = (node.left, node.right)
    text = [n for n in sides if isinstance(n, ast.Constant) and isinstance(n.value, (str, bytes))]
    count = [n for n in sides if isinstance(n, ast.Constant) and isinstance(n.value, int)
             and not isinstance(n.value, bool)]
    return len(text) == 1 and len(count) == 1 and 0 <= count[0].value <= MAX_REPEAT


def _evaluate(text: str) -> Any:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise PacketError(f"not a scapy expression: {exc.msg} in {text!r}") from None
    names = layer_names()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            what = type(node).__name__
            hint = " (attribute access)" if isinstance(node, ast.Attribute) else ""
            raise PacketError(f"a packet expression may use layers, calls, '/', literals and "
                              f"keyword arguments only, not {what}{hint}: {text!r}")
        if isinstance(node, ast.Name) and node.id not in names:
            raise PacketError(f"unknown scapy layer {node.id!r} in {text!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult) and \
                not _bounded_repeat(node):
            raise PacketError(f"'*' repeats a text or bytes literal by a number up to "
                              f"{MAX_REPEAT} ('x'*8), nothing else: {text!r}")
    try:
        pkt = eval(compile(tree, "<packet>", "eval"), {"__builtins__": {}}, dict(names))
    except Exception as exc:
        raise PacketError(f"scapy could not build {text!r}: {exc}") from None
    if not hasattr(pkt, "fields_desc"):
        raise PacketError(f"{text!r} is not a packet")
    return pkt


def _stack(items: list) -> Any:
    if not items:
        raise PacketError("a layer list needs at least one layer")
    pkt = None
    for i, item in enumerate(items):
        if isinstance(item, str):
            name, fields = item, {}
        elif isinstance(item, Mapping) and len(item) == 1:
            name, fields = next(iter(item.items()))
            fields = fields or {}
        else:
            raise PacketError("each layer is '{Name: {field: value}}' or a bare layer name",
                              (i,))
        cls = layer_class(name, (i,))
        if not isinstance(fields, Mapping):
            raise PacketError(f"the fields of {name} are a mapping {{field: value}}", (i, name))
        for f in fields:
            if f not in field_names(cls):
                raise PacketError(f"{name} has no field {f!r} (its fields: "
                                  f"{', '.join(field_names(cls))})", (i, name, f))
        try:
            layer = cls(**{str(k): v for k, v in fields.items()})
            pkt = layer if pkt is None else pkt / layer
            bytes(pkt)
        except Exception as exc:
            raise PacketError(f"scapy could not build {name}({_kw(fields)}): {exc}",
                              (i,)) from None
    return pkt


def _kw(fields: Mapping) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in fields.items())


def dissect(data: bytes) -> Any:
    """The packet as scapy reads it from its Ethernet header (XDP's and TC's view)."""
    from scapy.layers.l2 import Ether
    return Ether(data)


def summary(data: bytes) -> str:
    return dissect(data).summary()


# --- expectations on fields ---------------------------------------------------------------

def check_field_expectations(expected: Any) -> dict[str, dict[str, Any]]:
    """``{Layer: {field: value}}`` with every layer and field known (PacketError at the
    first one that is not); returns it as plain dicts."""
    if not isinstance(expected, Mapping) or not expected:
        raise PacketError("expected {Layer: {field: value}}, e.g. {IP: {src: 192.0.2.1}}")
    out: dict[str, dict[str, Any]] = {}
    for name, fields in expected.items():
        cls = layer_class(_base_name(name), (name,))
        if not isinstance(fields, Mapping) or not fields:
            raise PacketError(f"the fields of {name} are a mapping {{field: value}}", (name,))
        for f in fields:
            if f not in field_names(cls):
                raise PacketError(f"{name} has no field {f!r} (its fields: "
                                  f"{', '.join(field_names(cls))})", (name, f))
        out[str(name)] = dict(fields)
    return out


def _base_name(name: Any) -> Any:
    """``IP#2`` (the second IP header: the inner one of a tunnel or ICMP error) → IP."""
    return name.split("#", 1)[0] if isinstance(name, str) else name


def _layer(pkt: Any, name: str) -> Any:
    base, _, nth = name.partition("#")
    return pkt.getlayer(layer_names()[base], nb=int(nth) if nth.isdigit() else 1)


def _show(layer: Any, fname: str, value: Any) -> str:
    """A field's value as scapy shows it, with the number beside a name scapy gives it
    (``53 (domain)``, ``6 (tcp)``): a port is looked for by number."""
    try:
        text = str(layer.get_field(fname).i2repr(layer, value))
    except Exception:
        return repr(value)
    if type(value) is int and text != str(value) and not text.startswith("0x"):
        return f"{value} ({text})"
    return text


def _same(layer: Any, fname: str, expected: Any) -> bool:
    actual = layer.getfieldval(fname)
    fld = layer.get_field(fname)
    try:
        want = fld.any2i(layer, expected)
    except Exception:
        want = expected
    if want == actual:
        return True
    return _show(layer, fname, want) == _show(layer, fname, actual) or \
        str(expected) == _show(layer, fname, actual)


def field_mismatches(data: bytes, expected: Mapping[str, Mapping[str, Any]]) -> list[FieldDiff]:
    """The fields of the packet *data* that differ from *expected* (``{Layer: {field:
    value}}``); a layer the packet lacks is one diff per expected field."""
    pkt = dissect(data)
    out = []
    for name, fields in expected.items():
        layer = _layer(pkt, name)
        for fname, value in fields.items():
            if layer is None:
                out.append(FieldDiff(name, fname, str(value), None))
            elif not _same(layer, fname, value):
                want = value
                try:
                    want = layer.get_field(fname).any2i(layer, value)
                except Exception:
                    pass
                out.append(FieldDiff(name, fname, _show(layer, fname, want),
                                     _show(layer, fname, layer.getfieldval(fname))))
    return out


def _layers_of(pkt: Any) -> list[tuple[str, Any]]:
    """(name as an expectation writes it — ``IP``, ``IP#2`` — , layer) from the outside in."""
    out, seen = [], {}
    layer = pkt
    while type(layer).__name__ != "NoPayload":
        name = type(layer).__name__
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}#{seen[name]}", layer))
        layer = layer.payload
    return out


def packet_diff(expected: bytes, actual: bytes) -> list[FieldDiff]:
    """Every field that differs between two packets, layer by layer; a layer only one
    of them has is one row (``actual`` None: missing; expected "-": unexpected)."""
    if expected == actual:
        return []
    a, b = dict(_layers_of(dissect(expected))), dict(_layers_of(dissect(actual)))
    out = []
    for name, la in a.items():
        lb = b.get(name)
        if lb is None or type(lb) is not type(la):
            out.append(FieldDiff(name, "(layer)", la.summary(), None))
            continue
        for f in la.fields_desc:
            va, vb = la.getfieldval(f.name), lb.getfieldval(f.name)
            if va != vb:
                out.append(FieldDiff(name, f.name, _show(la, f.name, va),
                                     _show(lb, f.name, vb)))
    for name, lb in b.items():
        if name not in a:
            out.append(FieldDiff(name, "(layer)", "-", lb.summary()))
    if not out:           # same fields, different bytes (trailing data, padding)
        out.append(FieldDiff("(bytes)", f"{len(expected)} vs {len(actual)} bytes",
                             expected.hex(), actual.hex()))
    return out


# Transport headers quoted inside an ICMP error may be cut short: their checksums cover
# bytes the error does not carry, so they cannot be recomputed.
_UNCHECKABLE = frozenset({"TCPerror", "UDPerror", "ICMPerror"})


def checksum_mismatches(data: bytes) -> list[FieldDiff]:
    """Every checksum field of the packet that differs from scapy's recomputation (a UDP
    checksum of 0 over IPv4 means "none" and is valid)."""
    pkt = dissect(data)
    again = dissect(data)
    checked = []
    for (name, layer), (_n, copy) in zip(_layers_of(pkt), _layers_of(again)):
        if type(layer).__name__ in _UNCHECKABLE:
            continue
        for fname in ("chksum", "cksum"):
            if fname in field_names(type(layer)):
                if name.startswith("UDP") and layer.getfieldval(fname) == 0:
                    continue
                copy.setfieldval(fname, None)
                checked.append((name, fname, layer))
    if not checked:
        return []
    rebuilt = dict(_layers_of(dissect(bytes(again))))
    out = []
    for name, fname, layer in checked:
        want = rebuilt[name].getfieldval(fname) if name in rebuilt else None
        have = layer.getfieldval(fname)
        if want != have:
            out.append(FieldDiff(name, fname, f"{want:#06x}" if want is not None else "?",
                                 f"{have:#06x}"))
    return out


def format_diff(diffs: list[FieldDiff], indent: str = "    ") -> str:
    """A diff as an aligned text table: layer, field, expected, actual."""
    rows = [("layer", "field", "expected", "actual")] + [
        (d.layer, d.field, d.expected, "(missing)" if d.actual is None else d.actual)
        for d in diffs]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(indent + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3]
                     for r in rows)
