"""nfpipe.btf.Codec: C values <-> Python values, checked against struct.pack and
against what clang lays out for C initializers."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import given, settings, strategies as st

from nfpipe.btf import (
    BTF,
    Array,
    Codec,
    CodecError,
    Const,
    Datasec,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Member,
    Ptr,
    Struct,
    Typedef,
    Union,
    Var,
    VarSecinfo,
    Volatile,
)
from nfpipe.btf.types import BOOL, CHAR, SIGNED, TypeTag
from nfpipe.errors import NfpipeError, SpecError
from nfpipe.toolchain.compiler import compile as nf_compile, wheel_clang

# --- a hand-built BTF -----------------------------------------------------------------


class T:
    """Type ids of a small BTF built by hand (what clang would emit for the C in comments)."""


def make_btf():
    b = BTF()
    t = T()
    add = b.add_type
    t.u8 = add(Int("unsigned char", 1))
    t.s8 = add(Int("signed char", 1, SIGNED))
    t.char = add(Int("char", 1, SIGNED | CHAR))
    t.u16 = add(Int("unsigned short", 2))
    t.s16 = add(Int("short", 2, SIGNED))
    t.u32 = add(Int("unsigned int", 4))
    t.s32 = add(Int("int", 4, SIGNED))
    t.u64 = add(Int("unsigned long long", 8))
    t.s64 = add(Int("long long", 8, SIGNED))
    t.u128 = add(Int("unsigned __int128", 16))
    t.bool = add(Int("_Bool", 1, BOOL))
    t.idx = add(Int("__ARRAY_SIZE_TYPE__", 4))
    t.__u8 = add(Typedef("__u8", t.u8))
    t.__u16 = add(Typedef("__u16", t.u16))
    t.__u32 = add(Typedef("__u32", t.u32))
    t.__be32 = add(Typedef("__be32", t.__u32))
    t.float = add(Float("float", 4))
    t.double = add(Float("double", 8))
    t.ldouble = add(Float("long double", 16))
    t.color = add(Enum("color", 4, [("RED", 0), ("GREEN", 1), ("BLUE", 7)]))
    t.sign = add(Enum("sign", 4, [("NEG", -1), ("POS", 1)], signed=True))
    t.wide = add(Enum("wide", 8, [("BIG", 1 << 40)]))
    t.small_enum = add(Enum("tiny", 1, [("A", 3)]))
    # struct flow_key { __u32 saddr, daddr; __u16 sport, dport; __u8 proto; __u8 pad[3]; }
    t.u8x3 = add(Array(t.__u8, t.idx, 3))
    t.flow_key = add(Struct("flow_key", 16, [
        Member("saddr", t.__u32, 0), Member("daddr", t.__u32, 32), Member("sport", t.__u16, 64),
        Member("dport", t.__u16, 80), Member("proto", t.__u8, 96), Member("pad", t.u8x3, 104)]))
    # struct padded { __u8 a; /* 3 pad */ __u32 b; __u16 c; /* 6 pad */ __u64 d; }
    t.padded = add(Struct("padded", 24, [
        Member("a", t.u8, 0), Member("b", t.u32, 32), Member("c", t.u16, 64),
        Member("d", t.u64, 128)]))
    # struct bits { unsigned a:3; unsigned b:5; int c:7; _Bool f:1; enum color col:4; __u32 rest; }
    t.bits = add(Struct("bits", 8, [
        Member("a", t.u32, 0, 3), Member("b", t.u32, 3, 5), Member("c", t.s32, 8, 7),
        Member("f", t.bool, 15, 1), Member("col", t.color, 16, 4), Member("rest", t.u32, 32)]))
    # the same bitfields in the legacy (kind_flag=0) encoding: the INT carries the width
    t.u32_3 = add(Int("unsigned int", 4, 0, 0, 3))
    t.u32_5 = add(Int("unsigned int", 4, 0, 0, 5))
    t.s32_7 = add(Int("int", 4, SIGNED, 0, 7))
    t.legacy = add(Struct("legacy", 8, [
        Member("a", t.u32_3, 0), Member("b", t.u32_5, 3), Member("c", t.s32_7, 8),
        Member("rest", t.u32, 32)]))
    # union val { __u64 v; __u32 w[2]; __u8 b[8]; }
    t.u32x2 = add(Array(t.u32, t.idx, 2))
    t.u8x8 = add(Array(t.u8, t.idx, 8))
    t.val = add(Union("val", 8, [Member("v", t.u64, 0), Member("w", t.u32x2, 0),
                                 Member("b", t.u8x8, 0)]))
    # struct outer { __u16 tag; struct { __u16 x; __u16 y; }; union { __u32 u; float f; };
    #                struct flow_key key; }
    t.anon_s = add(Struct("", 4, [Member("x", t.u16, 0), Member("y", t.u16, 16)]))
    t.anon_u = add(Union("", 4, [Member("u", t.u32, 0), Member("f", t.float, 0)]))
    t.outer = add(Struct("outer", 28, [
        Member("tag", t.u16, 0), Member("", t.anon_s, 16), Member("", t.anon_u, 64),
        Member("key", t.flow_key, 96)]))
    t.char16 = add(Array(t.char, t.idx, 16))
    t.s8x2 = add(Array(t.s8, t.idx, 2))
    t.u16x4 = add(Array(t.u16, t.idx, 4))
    t.keyx2 = add(Array(t.flow_key, t.idx, 2))
    t.u8x2x3 = add(Array(t.u8x3, t.idx, 2))          # __u8 [2][3]
    t.boolx3 = add(Array(t.bool, t.idx, 3))
    t.empty = add(Array(t.u32, t.idx, 0))
    t.ptr = add(Ptr(t.flow_key))
    t.const_key = add(Const(t.flow_key))
    t.vol_u32 = add(Volatile(t.__u32))
    t.tag_u32 = add(TypeTag("user", t.u32))
    t.fwd = add(Fwd("opaque"))
    t.proto = add(FuncProto(t.s32, []))
    t.func = add(Func("f", t.proto, 1))
    # SEC(".data"): __u32 counter at 0; /* 4 pad */ __u64 total at 8; char name[16] at 16
    t.v_counter = add(Var("counter", t.__u32, 1))
    t.v_total = add(Var("total", t.u64, 1))
    t.v_name = add(Var("name", t.char16, 1))
    t.data = add(Datasec(".data", 32, [VarSecinfo(t.v_counter, 0, 4),
                                       VarSecinfo(t.v_total, 8, 8),
                                       VarSecinfo(t.v_name, 16, 16)]))
    # round-trip the hand-built BTF through the encoder so the codecs see parsed types
    parsed = BTF.parse(b.encode())
    assert parsed.types == b.types
    return parsed, t


BTF_, TY = make_btf()


def codec(tid):
    return Codec.for_type(BTF_, tid)


# --- integers ------------------------------------------------------------------------------


INTS = [("u8", "<B"), ("s8", "<b"), ("char", "<b"), ("u16", "<H"), ("s16", "<h"),
        ("u32", "<I"), ("s32", "<i"), ("u64", "<Q"), ("s64", "<q")]


@pytest.mark.parametrize("attr,fmt", INTS)
def test_int_bounds_match_struct_pack(attr, fmt):
    c = codec(getattr(TY, attr))
    size = struct.calcsize(fmt)
    assert c.size == size
    signed = fmt[1].islower()
    lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed else \
        (0, (1 << 8 * size) - 1)
    for v in (lo, hi, 0, 1, hi // 3):
        raw = c.encode(v)
        assert raw == struct.pack(fmt, v)
        assert c.decode(raw) == v and type(c.decode(raw)) is int
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ValueError, match=rf"value {bad} is out of range for "
                                             rf"{BTF_.type_name(getattr(TY, attr))} "
                                             rf"\({lo}\.\.{hi}\)"):
            c.encode(bad)


@pytest.mark.parametrize("attr,fmt", INTS)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_int_round_trip_property(attr, fmt, data):
    c = codec(getattr(TY, attr))
    size = struct.calcsize(fmt)
    if fmt[1].islower():
        v = data.draw(st.integers(-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1))
    else:
        v = data.draw(st.integers(0, (1 << 8 * size) - 1))
    assert c.encode(v) == struct.pack(fmt, v)
    assert c.decode(c.encode(v)) == v
    raw = data.draw(st.binary(min_size=size, max_size=size))
    assert c.encode(c.decode(raw)) == raw


def test_int_negative_for_unsigned_names_the_type():
    with pytest.raises(ValueError, match=r"value -1 is out of range for __u32 \(0\.\.4294967295\)"):
        codec(TY.__u32).encode(-1)
    with pytest.raises(ValueError, match=r"__be32: value -1 is out of range for __be32"):
        codec(TY.__be32).encode(-1)


def test_int_wrong_python_types():
    c = codec(TY.__u32)
    for bad in (1.0, "1", None, [1]):
        with pytest.raises(ValueError, match="expected an int for __u32"):
            c.encode(bad)
    with pytest.raises(ValueError, match="raw bytes for __u32 must be exactly 4 bytes, got 3"):
        c.encode(b"abc")
    import enum

    class E(enum.IntEnum):
        X = 9
    assert c.encode(E.X) == struct.pack("<I", 9)      # anything with __index__


def test_int128():
    c = codec(TY.u128)
    v = (1 << 127) + 5
    assert c.encode(v) == v.to_bytes(16, "little")
    assert c.decode(c.encode(v)) == v
    with pytest.raises(ValueError):
        c.encode(1 << 128)


def test_bool():
    c = codec(TY.bool)
    assert c.encode(True) == b"\x01" and c.encode(False) == b"\x00" and c.encode(1) == b"\x01"
    assert c.decode(b"\x01") is True and c.decode(b"\x00") is False
    with pytest.raises(ValueError, match=r"value 2 is not a valid _Bool"):
        c.encode(2)
    assert codec(TY.boolx3).decode(b"\x01\x00\x01") == [True, False, True]


def test_modifiers_are_transparent():
    key = {"saddr": 1, "daddr": 2, "sport": 3, "dport": 4, "proto": 5, "pad": b"\0\0\0"}
    raw = codec(TY.flow_key).encode(key)
    assert codec(TY.const_key).encode(key) == raw
    assert codec(TY.const_key).decode(raw) == key
    assert codec(TY.vol_u32).encode(7) == codec(TY.tag_u32).encode(7) == struct.pack("<I", 7)
    assert codec(TY.__be32).size == 4


# --- enums, floats, pointers ---------------------------------------------------------------


def test_enum():
    c = codec(TY.color)
    assert c.encode("BLUE") == struct.pack("<I", 7) == c.encode(7)
    assert c.decode(struct.pack("<I", 1)) == 1
    assert c.decode(struct.pack("<I", 99)) == 99               # any value of the width
    with pytest.raises(ValueError, match=r"'PINK' is not an enumerator of enum color "
                                         r"\(known: RED, GREEN, BLUE\)"):
        c.encode("PINK")
    with pytest.raises(ValueError, match="out of range for enum color"):
        c.encode(-1)
    s = codec(TY.sign)
    assert s.encode("NEG") == struct.pack("<i", -1) and s.decode(s.encode("NEG")) == -1
    w = codec(TY.wide)
    assert w.size == 8 and w.encode("BIG") == struct.pack("<Q", 1 << 40)
    assert codec(TY.small_enum).encode("A") == b"\x03"


def test_float():
    f = codec(TY.float)
    assert f.encode(1.5) == struct.pack("<f", 1.5) and f.decode(f.encode(1.5)) == 1.5
    assert f.encode(2) == struct.pack("<f", 2.0)
    d = codec(TY.double)
    assert d.encode(0.1) == struct.pack("<d", 0.1) and d.decode(d.encode(0.1)) == 0.1
    with pytest.raises(ValueError, match="out of range for float"):
        f.encode(1e300)
    with pytest.raises(ValueError, match="expected a float for double"):
        d.encode("1.0")
    ld = codec(TY.ldouble)
    assert ld.size == 16 and ld.decode(bytes(range(16))) == bytes(range(16))


def test_pointer():
    c = codec(TY.ptr)
    assert c.size == 8 and c.encode(0xFFFF888000001000) == struct.pack("<Q", 0xFFFF888000001000)
    assert c.decode(struct.pack("<Q", 42)) == 42
    with pytest.raises(ValueError, match=r"struct flow_key \*"):
        c.encode(-5)


# --- structs ---------------------------------------------------------------------------------


def test_struct_matches_struct_pack():
    c = codec(TY.flow_key)
    v = {"saddr": 0x0A000001, "daddr": 0x0A000002, "sport": 1000, "dport": 53, "proto": 17,
         "pad": b"\1\2\3"}
    raw = c.encode(v)
    assert raw == struct.pack("<IIHHB3s", 0x0A000001, 0x0A000002, 1000, 53, 17, b"\1\2\3")
    assert c.decode(raw) == v
    assert list(c.decode(raw)) == ["saddr", "daddr", "sport", "dport", "proto", "pad"]


def test_struct_padding_and_missing_members():
    c = codec(TY.padded)
    assert c.size == 24
    raw = c.encode({"a": 1, "b": 2, "c": 3, "d": 4})
    assert raw == struct.pack("<B3xIH6xQ", 1, 2, 3, 4)
    assert c.encode({"b": 9}) == struct.pack("<B3xIH6xQ", 0, 9, 0, 0)
    assert c.encode({}) == bytes(24)
    assert c.decode(bytes([1]) + b"\xff" * 3 + bytes(20)) == {"a": 1, "b": 0, "c": 0, "d": 0}


def test_struct_unknown_keys_are_named():
    with pytest.raises(ValueError, match=r"struct padded: unknown members 'x', 'zz' "
                                         r"\(members: a, b, c, d\)"):
        codec(TY.padded).encode({"a": 1, "x": 2, "zz": 3})


def test_struct_member_errors_name_the_path():
    c = codec(TY.outer)
    with pytest.raises(ValueError, match=r"struct outer\.key\.sport: value 70000 is out of "
                                         r"range for __u16 \(0\.\.65535\)"):
        c.encode({"key": {"sport": 70000}})
    with pytest.raises(ValueError, match=r"struct outer\.key\.pad: 4 bytes do not fit"):
        c.encode({"key": {"pad": b"1234"}})
    with pytest.raises(ValueError, match=r"expected a dict .* for struct flow_key, got 5"):
        c.encode({"key": 5})
    err = None
    try:
        c.encode({"key": {"proto": -1}})
    except CodecError as exc:
        err = exc
    assert isinstance(err, NfpipeError) and err.path == ["key", "proto"]
    assert err.type_name == "struct outer"


def test_struct_from_objects():
    @dataclass
    class Key:
        saddr: int
        daddr: int
        sport: int = 0
        dport: int = 0
        proto: int = 6
        pad: bytes = b""

    c = codec(TY.flow_key)
    assert c.encode(Key(1, 2, 3, 4)) == c.encode({"saddr": 1, "daddr": 2, "sport": 3,
                                                 "dport": 4, "proto": 6})
    assert c.encode(SimpleNamespace(dport=80)) == c.encode({"dport": 80})


def test_struct_raw_bytes():
    c = codec(TY.flow_key)
    raw = bytes(range(16))
    assert c.encode(raw) == raw and c.encode(bytearray(raw)) == raw
    assert c.encode(memoryview(raw)) == raw
    with pytest.raises(ValueError, match="must be exactly 16 bytes, got 15"):
        c.encode(raw[:15])
    # raw bytes work for a member too
    o = codec(TY.outer)
    assert o.decode(o.encode({"key": raw}))["key"] == c.decode(raw)


def test_anonymous_members_are_flattened():
    c = codec(TY.outer)
    assert c.size == 28
    v = c.decode(c.encode({"tag": 1, "x": 2, "y": 3, "u": 0x3FC00000}))
    assert list(v) == ["tag", "x", "y", "u", "f", "key"]
    assert (v["tag"], v["x"], v["y"], v["u"], v["f"]) == (1, 2, 3, 0x3FC00000, 1.5)
    raw = c.encode({"tag": 1, "x": 2, "y": 3, "f": 1.5})
    assert raw[:12] == struct.pack("<HHHxxf", 1, 2, 3, 1.5)
    with pytest.raises(ValueError, match="unknown member 'z'"):
        c.encode({"z": 1})


@settings(max_examples=100, deadline=None)
@given(st.fixed_dictionaries({
    "saddr": st.integers(0, 2**32 - 1), "daddr": st.integers(0, 2**32 - 1),
    "sport": st.integers(0, 65535), "dport": st.integers(0, 65535),
    "proto": st.integers(0, 255), "pad": st.binary(min_size=3, max_size=3)}))
def test_struct_round_trip_property(v):
    c = codec(TY.flow_key)
    raw = c.encode(v)
    assert raw == struct.pack("<IIHHB3s", v["saddr"], v["daddr"], v["sport"], v["dport"],
                              v["proto"], v["pad"])
    assert c.decode(raw) == v


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=16, max_size=16))
def test_struct_without_padding_round_trips_any_bytes(raw):
    c = codec(TY.flow_key)
    assert c.encode(c.decode(raw)) == raw


# --- bitfields ------------------------------------------------------------------------------


def _bits_word(a, b, c, f, col):
    return (a & 7) | (b & 31) << 3 | (c & 127) << 8 | (f & 1) << 15 | (col & 15) << 16


def test_bitfields_encode_like_c():
    c = codec(TY.bits)
    raw = c.encode({"a": 5, "b": 17, "c": -3, "f": True, "col": "BLUE", "rest": 0xAABBCCDD})
    assert raw == struct.pack("<II", _bits_word(5, 17, -3, 1, 7), 0xAABBCCDD)
    assert c.decode(raw) == {"a": 5, "b": 17, "c": -3, "f": True, "col": 7,
                             "rest": 0xAABBCCDD}


def test_bitfield_ranges():
    c = codec(TY.bits)
    with pytest.raises(ValueError, match=r"struct bits\.a: value 8 is out of range for a "
                                         r"3-bit unsigned int bitfield \(0\.\.7\)"):
        c.encode({"a": 8})
    with pytest.raises(ValueError, match=r"-64\.\.63"):
        c.encode({"c": 64})
    assert c.decode(c.encode({"c": -64}))["c"] == -64
    with pytest.raises(ValueError, match=r"4-bit enum color bitfield \(0\.\.15\)"):
        c.encode({"col": 16})


@settings(max_examples=100, deadline=None)
@given(a=st.integers(0, 7), b=st.integers(0, 31), c=st.integers(-64, 63), f=st.booleans(),
       col=st.integers(0, 15), rest=st.integers(0, 2**32 - 1))
def test_bitfield_round_trip_property(a, b, c, f, col, rest):
    v = {"a": a, "b": b, "c": c, "f": f, "col": col, "rest": rest}
    k = codec(TY.bits)
    raw = k.encode(v)
    assert raw == struct.pack("<II", _bits_word(a, b, c, f, col), rest)
    assert k.decode(raw) == v
    # the legacy kind_flag=0 encoding lays out the same bits
    lg = codec(TY.legacy)
    lv = {"a": a, "b": b, "c": c, "rest": rest}
    assert lg.encode(lv) == struct.pack("<II", _bits_word(a, b, c, 0, 0), rest)
    assert lg.decode(lg.encode(lv)) == lv


def test_bitfields_leave_their_neighbours_alone():
    c = codec(TY.bits)
    raw = c.encode({"a": 7, "b": 0, "c": -1})
    assert raw[:2] == bytes([0x07, 0x7F])


# --- unions -------------------------------------------------------------------------------


def test_union_decode_gives_every_member():
    c = codec(TY.val)
    raw = struct.pack("<Q", 0x0102030405060708)
    assert c.decode(raw) == {"v": 0x0102030405060708, "w": [0x05060708, 0x01020304],
                             "b": raw}


def test_union_encode_one_member():
    c = codec(TY.val)
    assert c.encode({"v": 5}) == struct.pack("<Q", 5)
    assert c.encode({"w": [1]}) == struct.pack("<II", 1, 0)
    assert c.encode({"b": b"\xff"}) == b"\xff" + bytes(7)
    assert c.encode({}) == bytes(8)


def test_union_several_members_must_agree():
    c = codec(TY.val)
    raw = struct.pack("<Q", 0x0102030405060708)
    assert c.encode(c.decode(raw)) == raw
    assert c.encode({"v": 1, "w": [1, 0]}) == struct.pack("<Q", 1)
    with pytest.raises(ValueError, match=r"union val: members v, w of union val overlap with "
                                         r"different values; give one member"):
        c.encode({"v": 1, "w": [2, 0]})


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=8, max_size=8))
def test_union_round_trip_property(raw):
    c = codec(TY.val)
    assert c.encode(c.decode(raw)) == raw


# --- arrays -------------------------------------------------------------------------------


def test_byte_arrays():
    c = codec(TY.u8x8)
    assert c.decode(bytes(range(8))) == bytes(range(8))
    assert c.encode(b"ab") == b"ab" + bytes(6)
    assert c.encode(bytearray(b"abc")) == b"abc" + bytes(5)
    assert c.encode("é") == "é".encode() + bytes(6)
    assert c.encode([1, 2, 255]) == bytes([1, 2, 255]) + bytes(5)
    with pytest.raises(ValueError, match=r"9 bytes do not fit in unsigned char\[8\] "
                                         r"\(8 bytes\)"):
        c.encode(b"123456789")
    with pytest.raises(ValueError, match=r"\[1\]: value 256 is out of range"):
        c.encode([1, 256])
    ch = codec(TY.char16)
    assert ch.encode("eth0") == b"eth0" + bytes(12)
    assert ch.decode(b"lo" + bytes(14)) == b"lo" + bytes(14)
    s8 = codec(TY.s8x2)
    assert s8.encode([-1, 2]) == b"\xff\x02" and s8.decode(b"\xff\x02") == b"\xff\x02"


def test_other_arrays():
    c = codec(TY.u16x4)
    assert c.encode([1, 2, 3, 4]) == struct.pack("<4H", 1, 2, 3, 4)
    assert c.encode([1]) == struct.pack("<4H", 1, 0, 0, 0)
    assert c.encode((5, 6)) == struct.pack("<4H", 5, 6, 0, 0)
    assert c.decode(struct.pack("<4H", 9, 8, 7, 6)) == [9, 8, 7, 6]
    with pytest.raises(ValueError, match=r"5 elements do not fit in unsigned short\[4\]"):
        c.encode([1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match=r"unsigned short\[4\]\[2\]: value -1 is out of range"):
        c.encode([0, 0, -1])
    with pytest.raises(ValueError, match=r"expected a list of up to 4 elements"):
        c.encode(7)
    assert c.encode(bytes(8)) == bytes(8)                       # raw
    keys = codec(TY.keyx2)
    v = keys.decode(keys.encode([{"sport": 1}, {"dport": 2}]))
    assert v[0]["sport"] == 1 and v[1]["dport"] == 2
    nested = codec(TY.u8x2x3)
    assert nested.size == 6
    assert nested.encode([b"ab", [1, 2, 3]]) == b"ab\0\x01\x02\x03"
    assert nested.decode(b"abcdef") == [b"abc", b"def"]
    assert codec(TY.empty).size == 0 and codec(TY.empty).decode(b"") == []


# --- DATASEC, raw, errors --------------------------------------------------------------------


def test_datasec():
    c = codec(TY.data)
    assert c.size == 32
    raw = c.encode({"counter": 3, "total": 10, "name": "nfpipe"})
    assert raw == struct.pack("<I4xQ16s", 3, 10, b"nfpipe")
    assert c.decode(raw) == {"counter": 3, "total": 10, "name": b"nfpipe" + bytes(10)}
    assert c.encode({"total": 1}) == struct.pack("<I4xQ16s", 0, 1, b"")
    with pytest.raises(ValueError, match=r"unknown variable 'nope' \(variables: counter, "
                                         r"total, name\)"):
        c.encode({"nope": 1})
    with pytest.raises(ValueError, match=r'SEC\("\.data"\)\.counter: value -1'):
        c.encode({"counter": -1})


def test_raw_codec():
    c = Codec.raw(4)
    assert c.size == 4 and c.encode(b"abcd") == b"abcd" and c.decode(b"abcd") == b"abcd"
    assert c.encode(0x01020304) == bytes([4, 3, 2, 1])
    with pytest.raises(ValueError, match="expected exactly 4 bytes, got 3"):
        c.encode(b"abc")
    with pytest.raises(ValueError, match="does not fit in 4 bytes"):
        c.encode(1 << 32)
    with pytest.raises(ValueError):
        c.encode(-1)
    with pytest.raises(ValueError):
        c.encode("abcd")


def test_decode_checks_length():
    c = codec(TY.flow_key)
    with pytest.raises(ValueError, match=r"struct flow_key: expected 16 bytes, got 15"):
        c.decode(bytes(15))
    with pytest.raises(ValueError, match="decode needs bytes"):
        c.decode("x" * 16)
    assert c.decode(memoryview(bytes(16)))["proto"] == 0
    assert c.decode(bytearray(16))["proto"] == 0


@pytest.mark.parametrize("attr", ["fwd", "proto", "func"])
def test_types_without_values(attr):
    with pytest.raises(SpecError, match="cannot build a codec"):
        codec(getattr(TY, attr))
    with pytest.raises(SpecError, match="has no value"):
        codec(0)


def test_var_codec_is_its_type():
    c = codec(TY.v_total)
    assert c.size == 8 and c.encode(3) == struct.pack("<Q", 3)


# --- what clang lays out ---------------------------------------------------------------------




C_VALUES = r"""
#include <linux/types.h>
#include <stdbool.h>
enum mode { OFF, ON = 5, AUTO = -2 };
struct cfg {
	__u8 version;
	bool enabled;
	__u16 port;
	unsigned int lo : 4, hi : 4;
	int neg : 6;
	enum mode mode : 3;
	__u64 big;
	union { __u32 word; __u8 bytes[4]; };
	struct { __s16 x, y; } pt[2];
	char name[6];
	float weight;
	double ratio;
	enum mode m2;
	__u32 *ptr;
};
struct cfg settings = {
	.version = 3, .enabled = true, .port = 8080, .lo = 9, .hi = 15, .neg = -20,
	.mode = AUTO, .big = 0x1122334455667788ULL, .word = 0xdeadbeef,
	.pt = { { -1, 2 }, { 3, -4 } }, .name = "abc", .weight = 0.25, .ratio = -3.5, .m2 = ON,
};
"""


def test_codec_matches_clang_layout(tmp_path):
    src = tmp_path / "values.c"
    src.write_text(C_VALUES)
    obj = nf_compile(src, compiler=wheel_clang())     # ENUM64 needs clang >= 15
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        btf = BTF.parse(elf.get_section_by_name(".BTF").data())
        data = elf.get_section_by_name(".data").data()
    c = Codec.for_type(btf, btf.find("struct cfg"))
    assert c.size == btf.size_of(btf.find("struct cfg")) == len(data)
    want = {"version": 3, "enabled": True, "port": 8080, "lo": 9, "hi": 15, "neg": -20,
            "mode": -2, "big": 0x1122334455667788, "word": 0xDEADBEEF,
            "bytes": bytes.fromhex("efbeadde"),
            "pt": [{"x": -1, "y": 2}, {"x": 3, "y": -4}], "name": b"abc\0\0\0",
            "weight": 0.25, "ratio": -3.5, "m2": 5, "ptr": 0}
    assert c.decode(data) == want
    assert c.encode(want) == data
    enc = dict(want, mode="AUTO", m2="ON", name="abc")
    del enc["bytes"]
    assert c.encode(enc) == data
