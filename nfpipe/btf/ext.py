"""``.BTF.ext``: per-section function info, line info and CO-RE relocations.

Layout (libbpf's ``struct btf_ext_header``): magic 0xEB9F, version 1, flags,
``hdr_len``, then offset/length pairs, relative to the end of the header, for
func_info, line_info and (when ``hdr_len`` >= 32) core_relo.  Each of those
blocks is a u32 record size followed by groups of ``{u32 sec_name_off; u32
num_info; record[num_info]}``.  Record sizes may be larger than the structs
nfpipe knows (newer compilers append fields); the known prefix is decoded and
the rest kept verbatim.

``insn_off`` in every record is a BYTE offset from the start of the ELF
section, as in the file; ``pack(insn_index)`` writes the kernel record with an
instruction index instead, which is what BPF_PROG_LOAD takes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from nfpipe.errors import SpecError
from nfpipe.kernel.abi import LineCol

from .btf import MAGIC

_HDR = struct.Struct("<HBBI")
_FUNC = struct.Struct("<II")
_LINE = struct.Struct("<IIII")
_RELO = struct.Struct("<IIII")


def _err(msg: str, offset: int | None = None) -> SpecError:
    return SpecError(f"invalid .BTF.ext: {msg}", section=".BTF.ext", offset=offset)


@dataclass(slots=True)
class FuncInfo:
    insn_off: int            # bytes from the start of the ELF section
    type_id: int             # a BTF FUNC
    extra: bytes = field(default=b"", repr=False)   # record bytes past the known struct

    def pack(self, insn_index: int) -> bytes:
        """``struct bpf_func_info`` (plus any extra record bytes) for BPF_PROG_LOAD."""
        return _FUNC.pack(insn_index, self.type_id) + self.extra


@dataclass(slots=True)
class LineInfo(LineCol):
    insn_off: int            # bytes from the start of the ELF section
    file_name_off: int       # BTF string offsets
    line_off: int
    line_col: int            # line << 10 | column
    extra: bytes = field(default=b"", repr=False)

    def pack(self, insn_index: int) -> bytes:
        """``struct bpf_line_info`` (plus any extra record bytes) for BPF_PROG_LOAD."""
        return _LINE.pack(insn_index, self.file_name_off, self.line_off,
                          self.line_col) + self.extra


# enum bpf_core_relo_kind, for messages
CORE_RELO_KINDS = {
    0: "field_byte_offset", 1: "field_byte_size", 2: "field_exists", 3: "field_signed",
    4: "field_lshift_u64", 5: "field_rshift_u64", 6: "type_id_local", 7: "type_id_target",
    8: "type_exists", 9: "type_size", 10: "enumval_exists", 11: "enumval_value",
    12: "type_matches",
}


@dataclass(slots=True)
class CoreRelo:
    insn_off: int
    type_id: int
    access_str_off: int
    kind: int
    extra: bytes = field(default=b"", repr=False)

    @property
    def kind_name(self) -> str:
        return CORE_RELO_KINDS.get(self.kind, f"kind {self.kind}")


class BTFExt:
    """A parsed ``.BTF.ext`` section; string offsets resolve through ``btf``."""

    def __init__(self, btf):
        self.btf = btf
        self.func_info: dict[str, list[FuncInfo]] = {}
        self.line_info: dict[str, list[LineInfo]] = {}
        self.core_relos: dict[str, list[CoreRelo]] = {}
        self.func_info_rec_size = _FUNC.size
        self.line_info_rec_size = _LINE.size
        self.core_relo_rec_size = _RELO.size

    @classmethod
    def parse(cls, data: bytes, btf) -> BTFExt:
        data = bytes(data)
        if len(data) < _HDR.size:
            raise _err(f"{len(data)} bytes is too short for a header", 0)
        magic, version, _flags, hdr_len = _HDR.unpack_from(data)
        if magic != MAGIC:
            if magic == 0x9FEB:
                raise _err("the data is big-endian; nfpipe only reads little-endian BTF", 0)
            raise _err(f"bad magic 0x{magic:04x} (expected 0x{MAGIC:04x})", 0)
        if version != 1:
            raise _err(f"unsupported version {version}", 2)
        if hdr_len < 24:
            raise _err(f"header length {hdr_len} is less than 24", 4)
        if hdr_len > len(data):
            raise _err(f"truncated: the header is {hdr_len} bytes but the section has "
                       f"only {len(data)}", 4)
        nfields = min(hdr_len - 8, 24) // 4
        offs = struct.unpack_from(f"<{nfields}I", data, 8)
        ext = cls(btf)
        blocks = [("func_info", _FUNC, FuncInfo), ("line_info", _LINE, LineInfo),
                  ("core_relo", _RELO, CoreRelo)]
        for i, (what, st, ctor) in enumerate(blocks):
            if 2 * i + 1 >= len(offs):
                break
            off, length = offs[2 * i], offs[2 * i + 1]
            if not length:
                continue
            start = hdr_len + off
            if start + length > len(data):
                raise _err(f"truncated: {what} [{off}, {off + length}) runs past the "
                           f"{len(data) - hdr_len} bytes after the header", 8 + 8 * i)
            rec_size, groups = ext._parse_block(data, start, length, what, st, ctor)
            if what == "func_info":
                ext.func_info_rec_size, ext.func_info = rec_size, groups
            elif what == "line_info":
                ext.line_info_rec_size, ext.line_info = rec_size, groups
            else:
                ext.core_relo_rec_size, ext.core_relos = rec_size, groups
        return ext

    def _parse_block(self, data, start, length, what, st, ctor):
        end = start + length
        if length < 4:
            raise _err(f"truncated: {what} has no record size", start)
        rec_size = struct.unpack_from("<I", data, start)[0]
        if rec_size < st.size or rec_size % 4:
            raise _err(f"{what} record size {rec_size} is invalid (at least {st.size}, a "
                       f"multiple of 4)", start)
        pos = start + 4
        groups: dict[str, list] = {}
        while pos < end:
            if pos + 8 > end:
                raise _err(f"truncated: {what} group header at offset {pos}", pos)
            name_off, num = struct.unpack_from("<II", data, pos)
            pos += 8
            if pos + num * rec_size > end:
                raise _err(f"truncated: {what} group at offset {pos - 8} declares {num} "
                           f"records of {rec_size} bytes", pos - 8)
            try:
                sec = self.btf.string_at(name_off)
            except SpecError:
                raise _err(f"{what} section name offset {name_off} is out of range of the "
                           f"BTF strings", pos - 8) from None
            recs = groups.setdefault(sec, [])
            unpack = st.unpack_from
            if rec_size == st.size:
                for _ in range(num):
                    recs.append(ctor(*unpack(data, pos)))
                    pos += rec_size
            else:
                for _ in range(num):
                    recs.append(ctor(*unpack(data, pos),
                                     data[pos + st.size:pos + rec_size]))
                    pos += rec_size
        return rec_size, groups

    # --- helpers -----------------------------------------------------------------

    def line_text(self, li: LineInfo) -> str:
        """The C source line *li* points at."""
        return self.btf.string_at(li.line_off)

    def file_name(self, li: LineInfo) -> str:
        return self.btf.string_at(li.file_name_off)

    def access_str(self, relo: CoreRelo) -> str:
        """The CO-RE access string (``"0:1:2"``) of *relo*."""
        return self.btf.string_at(relo.access_str_off)

    def __repr__(self) -> str:
        n = lambda d: sum(map(len, d.values()))
        return (f"<BTFExt func_info={n(self.func_info)} line_info={n(self.line_info)} "
                f"core_relos={n(self.core_relos)}>")


__all__ = ["BTFExt", "FuncInfo", "LineInfo", "CoreRelo", "CORE_RELO_KINDS"]
