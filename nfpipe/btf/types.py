"""The BTF type model: one small mutable dataclass per BTF kind.

Every type has ``.kind`` (a :class:`Kind`) and ``.name`` (``""`` when the type is
anonymous or the kind has no name).  References to other types are plain type
ids (ints) into the owning :class:`~nfpipe.btf.BTF`'s ``types`` list, exactly as
in the encoded form, so a type can be edited and re-encoded without any
bookkeeping.

The layout facts these classes mirror are those of ``include/uapi/linux/btf.h``
and ``Documentation/bpf/btf.rst``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar


class Kind(enum.IntEnum):
    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


# Int.encoding flags (BTF_INT_SIGNED / BTF_INT_CHAR / BTF_INT_BOOL).
SIGNED = 1
CHAR = 2
BOOL = 4

# Linkage of FUNC (btf_func_linkage) and VAR (BTF_VAR_*).
LINKAGE_STATIC = 0
LINKAGE_GLOBAL = 1
LINKAGE_EXTERN = 2

#: kinds that only qualify or rename another type (skipped by ``BTF.skip_mods``)
MODIFIER_KINDS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT,
                            Kind.TYPE_TAG})


@dataclass(slots=True)
class Void:
    kind: ClassVar[Kind] = Kind.VOID
    name: ClassVar[str] = ""


@dataclass(slots=True)
class Int:
    kind: ClassVar[Kind] = Kind.INT
    name: str
    size: int
    encoding: int = 0       # SIGNED | CHAR | BOOL
    offset: int = 0         # bit offset of the value inside the storage (legacy bitfields)
    bits: int = 0           # number of value bits; 0 means size * 8

    def __post_init__(self):
        if not self.bits:
            self.bits = self.size * 8

    @property
    def signed(self) -> bool:
        return bool(self.encoding & SIGNED)

    @property
    def is_bool(self) -> bool:
        return bool(self.encoding & BOOL)

    @property
    def is_char(self) -> bool:
        return bool(self.encoding & CHAR)


@dataclass(slots=True)
class Ptr:
    kind: ClassVar[Kind] = Kind.PTR
    type: int
    name: str = ""          # always "" in valid BTF; kept so odd input round-trips


@dataclass(slots=True)
class Array:
    kind: ClassVar[Kind] = Kind.ARRAY
    type: int
    index_type: int
    nelems: int
    name: ClassVar[str] = ""


@dataclass(slots=True)
class Member:
    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0  # non-zero only for bitfields of a struct encoded with kind_flag=1


@dataclass(slots=True)
class Struct:
    kind: ClassVar[Kind] = Kind.STRUCT
    name: str
    size: int
    members: list[Member] = field(default_factory=list)


@dataclass(slots=True)
class Union:
    kind: ClassVar[Kind] = Kind.UNION
    name: str
    size: int
    members: list[Member] = field(default_factory=list)


@dataclass(slots=True)
class Enum:
    """ENUM (values up to 32 bit) and ENUM64; ``kind`` says which.

    ``kind`` defaults to ENUM64 when ``size`` is 8, else ENUM.  ``signed`` is the
    kind_flag: values are read as signed (true) or unsigned numbers.
    """
    name: str
    size: int
    values: list[tuple[str, int]] = field(default_factory=list)
    signed: bool = False
    kind: Kind = None  # type: ignore[assignment]

    def __post_init__(self):
        if self.kind is None:
            self.kind = Kind.ENUM64 if self.size == 8 else Kind.ENUM
        elif self.kind not in (Kind.ENUM, Kind.ENUM64):
            raise ValueError(f"Enum.kind must be Kind.ENUM or Kind.ENUM64, not {self.kind!r}")
        else:
            self.kind = Kind(self.kind)


@dataclass(slots=True)
class Fwd:
    kind: ClassVar[Kind] = Kind.FWD
    name: str
    is_union: bool = False


@dataclass(slots=True)
class Typedef:
    kind: ClassVar[Kind] = Kind.TYPEDEF
    name: str
    type: int


@dataclass(slots=True)
class Volatile:
    kind: ClassVar[Kind] = Kind.VOLATILE
    type: int
    name: str = ""


@dataclass(slots=True)
class Const:
    kind: ClassVar[Kind] = Kind.CONST
    type: int
    name: str = ""


@dataclass(slots=True)
class Restrict:
    kind: ClassVar[Kind] = Kind.RESTRICT
    type: int
    name: str = ""


@dataclass(slots=True)
class TypeTag:
    """``__attribute__((btf_type_tag(name)))``; ``attr`` is the kind_flag (tag is a
    verbatim ``__attribute__`` rather than a btf_type_tag)."""
    kind: ClassVar[Kind] = Kind.TYPE_TAG
    name: str
    type: int
    attr: bool = False


@dataclass(slots=True)
class Func:
    kind: ClassVar[Kind] = Kind.FUNC
    name: str
    type: int               # a FUNC_PROTO id
    linkage: int = LINKAGE_STATIC


@dataclass(slots=True)
class Param:
    name: str
    type: int               # 0 (void) as the last param means "..."


@dataclass(slots=True)
class FuncProto:
    kind: ClassVar[Kind] = Kind.FUNC_PROTO
    ret: int
    params: list[Param] = field(default_factory=list)
    name: str = ""


@dataclass(slots=True)
class Var:
    kind: ClassVar[Kind] = Kind.VAR
    name: str
    type: int
    linkage: int = LINKAGE_STATIC


@dataclass(slots=True)
class VarSecinfo:
    type: int               # a VAR (or, for .ksyms, FUNC) id
    offset: int
    size: int


@dataclass(slots=True)
class Datasec:
    kind: ClassVar[Kind] = Kind.DATASEC
    name: str
    size: int
    vars: list[VarSecinfo] = field(default_factory=list)


@dataclass(slots=True)
class Float:
    kind: ClassVar[Kind] = Kind.FLOAT
    name: str
    size: int


@dataclass(slots=True)
class DeclTag:
    """``__attribute__((btf_decl_tag(name)))`` on ``type``; ``component_idx`` is -1
    for the whole type or the member/parameter index.  ``attr`` is the kind_flag."""
    kind: ClassVar[Kind] = Kind.DECL_TAG
    name: str
    type: int
    component_idx: int = -1
    attr: bool = False


Type = (Void | Int | Ptr | Array | Struct | Union | Enum | Fwd | Typedef | Volatile | Const
        | Restrict | TypeTag | Func | FuncProto | Var | Datasec | Float | DeclTag)

__all__ = [
    "Kind", "SIGNED", "CHAR", "BOOL", "LINKAGE_STATIC", "LINKAGE_GLOBAL", "LINKAGE_EXTERN",
    "MODIFIER_KINDS", "Void", "Int", "Ptr", "Array", "Member", "Struct", "Union", "Enum", "Fwd",
    "Typedef", "Volatile", "Const", "Restrict", "TypeTag", "Func", "Param", "FuncProto", "Var",
    "VarSecinfo", "Datasec", "Float", "DeclTag", "Type",
]
