"""Map keys and values as people read them, where the BTF type says what a field is.

A ``Codec`` decodes a ``__be32 saddr`` to the integer its bytes make in host order,
which reads as nonsense (``16777226`` for 10.0.0.1).  ``to_display`` turns fields
typed ``__be32`` / ``__be16`` (the kernel's network-order types) into what they
hold: an address when the field's name says address (``addr``, ``saddr``, ``ip``,
``vip``...), else the number in network order (ports, ids); four ``__be32`` words
named as an address are an IPv6 address, or IPv4 in word 0 when a sibling
``family`` field is 4.  ``from_display`` is the way back, so what ``nfpipe map dump``
prints, ``nfpipe map set`` takes.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from nfpipe.btf.codec import ArrayCodec, Codec, IntCodec, StructCodec

_ADDR = re.compile(r"(^|_)(s|d)?(addr|ip|vip|address)(_|$|\d)|^(src|dst)$")


def _is_addr(name: str) -> bool:
    return bool(_ADDR.search(name))


def _be(codec: Codec, bits: int) -> bool:
    return isinstance(codec, IntCodec) and codec.name == f"__be{bits}"


def _be_words(codec: Codec) -> bool:
    return isinstance(codec, ArrayCodec) and codec.n == 4 and _be(codec.elem, 32)


def to_display(codec: Codec, value: Any) -> Any:
    """*value* (as *codec* decoded it) with network-order fields decoded."""
    if isinstance(codec, StructCodec) and isinstance(value, dict):
        family = value.get("family")
        out = dict(value)
        for f in codec.fields:
            if f.name and f.name in value:
                out[f.name] = _field_display(f.name, f.codec, value[f.name], family)
        return out
    return value


def _field_display(name: str, codec: Codec, v: Any, family: Any) -> Any:
    if _be(codec, 32) and isinstance(v, int):
        raw = v.to_bytes(4, "little")
        return str(ipaddress.IPv4Address(raw)) if _is_addr(name) else int.from_bytes(raw, "big")
    if _be(codec, 16) and isinstance(v, int):
        return int.from_bytes(v.to_bytes(2, "little"), "big")
    if _be_words(codec) and _is_addr(name) and isinstance(v, list):
        raw = b"".join(w.to_bytes(4, "little") for w in v)
        if family == 4:
            return str(ipaddress.IPv4Address(raw[:4]))
        return str(ipaddress.IPv6Address(raw))
    if isinstance(codec, StructCodec):
        return to_display(codec, v)
    return v


def from_display(codec: Codec, value: Any) -> Any:
    """The inverse of ``to_display``: addresses and network-order numbers as given by a
    person, back to what *codec* encodes."""
    if isinstance(codec, StructCodec) and isinstance(value, dict):
        out = dict(value)
        for f in codec.fields:
            if f.name and f.name in value:
                out[f.name] = _field_raw(f.name, f.codec, value[f.name])
        return out
    return value


def _field_raw(name: str, codec: Codec, v: Any) -> Any:
    if _be(codec, 32) and _is_addr(name) and isinstance(v, str):
        return int.from_bytes(ipaddress.IPv4Address(v).packed, "little")
    if _be(codec, 32) and isinstance(v, int):
        return int.from_bytes(v.to_bytes(4, "big"), "little")
    if _be(codec, 16) and isinstance(v, int):
        return int.from_bytes(v.to_bytes(2, "big"), "little")
    if _be_words(codec) and isinstance(v, str):
        a = ipaddress.ip_address(v)
        raw = a.packed.ljust(16, b"\0")
        return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)]
    if isinstance(codec, StructCodec):
        return from_display(codec, v)
    return v
