"""nfpipe.kernel.abi against the kernel's UAPI headers, checked by a C compiler.

The test generates one C program from the ctypes definitions themselves: for
every struct it prints ``sizeof``, and for every field (walking nested and
anonymous unions/structs) its offset and size; for every bitfield the bytes of
a zeroed struct with only that field set to all ones; for every enum member and
module-level constant its C value.  The program is compiled natively with the
venv's zig (``python -m ziglang cc``, using the linux headers zig ships) and
run, and every number is compared with the ctypes side.  A field nfpipe names
that the header lacks makes the C program fail to compile, which fails the test.
"""
from __future__ import annotations

import ctypes
import enum
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nfpipe.kernel import abi

# ctypes class -> the C type it mirrors
C_TYPES = {
    abi.BpfAttr: "union bpf_attr",
    abi.BpfProgInfo: "struct bpf_prog_info",
    abi.BpfMapInfo: "struct bpf_map_info",
    abi.BpfBtfInfo: "struct bpf_btf_info",
    abi.BpfLinkInfo: "struct bpf_link_info",
    abi.BpfFuncInfo: "struct bpf_func_info",
    abi.BpfLineInfo: "struct bpf_line_info",
    abi.BpfInsn: "struct bpf_insn",
}

_ZIG_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def _is_aggregate(t) -> bool:
    return isinstance(t, type) and issubclass(t, (ctypes.Structure, ctypes.Union))


def walk(cls, prefix: str = "", base: int = 0):
    """Yield (kind, c_path, offset, size_or_bits) for every field of *cls*, recursively.

    kind is "field" (a leaf), "agg" (a named nested struct/union), "anon" (an
    anonymous one: C has no name for it, so only its extent can be checked) or
    "bits" (a bitfield: size_or_bits is its width).  Names starting with "_"
    that are not anonymous members are explicit padding and are skipped.
    """
    anonymous = set(getattr(cls, "_anonymous_", ()))
    for spec in cls._fields_:
        name, ctype = spec[0], spec[1]
        desc = getattr(cls, name)
        off = base + desc.offset
        if len(spec) == 3:
            if not name.startswith("_"):
                yield "bits", prefix + name, off, spec[2]
            continue
        if name in anonymous:
            yield "anon", prefix + name, off, ctypes.sizeof(ctype)
            yield from walk(ctype, prefix, off)
            continue
        if name.startswith("_"):
            continue
        if _is_aggregate(ctype):
            yield "agg", prefix + name, off, ctypes.sizeof(ctype)
            yield from walk(ctype, prefix + name + ".", off)
        else:
            yield "field", prefix + name, off, ctypes.sizeof(ctype)


def anon_members(cls, prefix: str = "", base: int = 0):
    """(ctypes type, offset, C path prefix) of every anonymous member, recursively."""
    anonymous = set(getattr(cls, "_anonymous_", ()))
    for spec in cls._fields_:
        name, ctype = spec[0], spec[1]
        if len(spec) == 3 or not _is_aggregate(ctype):
            continue
        off = base + getattr(cls, name).offset
        if name in anonymous:
            yield ctype, off, prefix
            yield from anon_members(ctype, prefix, off)
        elif not name.startswith("_"):
            yield from anon_members(ctype, prefix + name + ".", off)


def uapi_constants() -> dict[str, int]:
    """C name -> value for every enum member and UAPI module constant of abi."""
    out = {}
    for enum_cls, c_prefix in abi.ENUM_C_PREFIX.items():
        for name, member in enum_cls.__members__.items():
            out[c_prefix + name] = int(member)
    for name, value in vars(abi).items():
        if (name.isupper() and not name.startswith("_") and type(value) is int
                and name not in abi.KERNEL_INTERNAL_CONSTANTS):
            out[name] = value
    return out


def generate_c() -> str:
    lines = [
        "#include <stdio.h>", "#include <stddef.h>", "#include <string.h>",
        "#include <asm/unistd.h>", "#include <linux/bpf.h>", "#include <linux/if_link.h>",
        "#include <linux/pkt_cls.h>", "#include <linux/magic.h>",
        "static void dump(const char *k, const void *p, size_t n) {",
        "  const unsigned char *b = p; printf(\"%s=\", k);",
        "  for (size_t i = 0; i < n; i++) printf(\"%02x\", b[i]); printf(\"\\n\"); }",
        "int main(void) {",
        '  printf("nr_bpf=%lld\\n", (long long)__NR_bpf);',
    ]
    for cls, ctype in C_TYPES.items():
        lines.append(f'  printf("size {ctype}=%zu\\n", sizeof({ctype}));')
        lines.append(f'  printf("align {ctype}=%zu\\n", _Alignof({ctype}));')
        for kind, path, _off, width in walk(cls):
            if kind == "anon":
                continue
            if kind == "bits":
                lines.append(f"  {{ {ctype} x; memset(&x, 0, sizeof x); "
                             f"x.{path} = {(1 << width) - 1}u; "
                             f'dump("bits {ctype} {path}", &x, sizeof x); }}')
                continue
            lines.append(f'  printf("off {ctype} {path}=%zu\\n", '
                         f"__builtin_offsetof({ctype}, {path}));")
            lines.append(f'  printf("size {ctype} {path}=%zu\\n", '
                         f"sizeof((({ctype} *)0)->{path}));")
    for name in uapi_constants():
        lines.append(f'  printf("const {name}=%lld\\n", (long long)({name}));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


def _compilers(src: Path, exe: Path) -> list[list[str]]:
    arch = _ZIG_ARCH.get(platform.machine())
    cmds = []
    if arch is not None:
        cmds.append([sys.executable, "-m", "ziglang", "cc", "-target", f"{arch}-linux-musl",
                     "-O0", "-o", str(exe), str(src)])
    if shutil.which("gcc"):
        cmds.append(["gcc", "-O0", "-o", str(exe), str(src)])
    return cmds


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("abi")
    src, exe = work / "layout.c", work / "layout"
    src.write_text(generate_c())
    errors = []
    for cmd in _compilers(src, exe):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            errors.append(f"{cmd[0]}: {exc}")
            continue
        if proc.returncode == 0:
            break
        errors.append(f"{' '.join(cmd)}:\n{proc.stderr[-4000:]}")
        if "ziglang" in cmd and "error:" in proc.stderr:
            # zig ran and the header rejected a field: that is the answer, no fallback
            break
    else:
        pytest.fail("could not compile the layout program:\n" + "\n".join(errors))
    if not exe.exists():
        pytest.fail("could not compile the layout program:\n" + "\n".join(errors))
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.parametrize("cls", list(C_TYPES), ids=lambda c: c.__name__)
def test_struct_size_and_alignment(c_layout, cls):
    ctype = C_TYPES[cls]
    assert ctypes.sizeof(cls) == int(c_layout[f"size {ctype}"])
    assert ctypes.alignment(cls) == int(c_layout[f"align {ctype}"])


@pytest.mark.parametrize("cls", list(C_TYPES), ids=lambda c: c.__name__)
def test_field_offsets_and_sizes(c_layout, cls):
    ctype = C_TYPES[cls]
    checked = 0
    mismatches = []
    for kind, path, off, size in walk(cls):
        if kind not in ("field", "agg"):
            continue
        c_off = int(c_layout[f"off {ctype} {path}"])
        c_size = int(c_layout[f"size {ctype} {path}"])
        if (off, size) != (c_off, c_size):
            mismatches.append(f"{path}: ctypes offset {off} size {size}, C offset {c_off} "
                              f"size {c_size}")
        checked += 1
    assert not mismatches, "\n".join(mismatches)
    assert checked >= 2


@pytest.mark.parametrize("cls", list(C_TYPES), ids=lambda c: c.__name__)
def test_anonymous_members_cover_what_c_has(c_layout, cls):
    """C cannot name an anonymous struct/union, so check its extent: it must end where the
    furthest C field inside it ends (rounded up to its alignment)."""
    ctype = C_TYPES[cls]
    for member, off, prefix in anon_members(cls):
        ends = []
        for kind, path, _o, _s in walk(member, prefix, off):
            if kind in ("field", "agg"):
                ends.append(int(c_layout[f"off {ctype} {path}"])
                            + int(c_layout[f"size {ctype} {path}"]))
        if not ends:
            continue
        align = ctypes.alignment(member)
        c_end = -(-max(ends) // align) * align
        assert off + ctypes.sizeof(member) == c_end, (
            f"{cls.__name__}: anonymous {member.__name__} at {off} has size "
            f"{ctypes.sizeof(member)}, C fields in it end at {max(ends)}")


def test_bitfields(c_layout):
    found = 0
    for cls, ctype in C_TYPES.items():
        for kind, path, _off, width in walk(cls):
            if kind != "bits":
                continue
            obj = cls()
            target = obj
            *parents, leaf = path.split(".")
            for p in parents:
                target = getattr(target, p)
            setattr(target, leaf, (1 << width) - 1)
            assert bytes(obj).hex() == c_layout[f"bits {ctype} {path}"], path
            found += 1
    assert found == 3    # bpf_insn dst_reg/src_reg, bpf_prog_info gpl_compatible


def test_constants(c_layout):
    consts = uapi_constants()
    assert len(consts) > 250
    wrong = {name: (value, int(c_layout[f"const {name}"])) for name, value in consts.items()
             if value != int(c_layout[f"const {name}"])}
    assert not wrong, f"name: (abi, C) {wrong}"


def test_syscall_number(c_layout):
    assert abi.SYS_BPF_BY_MACHINE[platform.machine()] == int(c_layout["nr_bpf"])


def test_every_command_struct_is_a_member_of_bpf_attr():
    member_types = {spec[1] for spec in abi.BpfAttr._fields_}
    for cmd, attr_cls in abi.ATTR_OF_CMD.items():
        assert attr_cls in member_types, cmd
    assert ctypes.sizeof(abi.BpfAttr) == max(ctypes.sizeof(t) for t in member_types)


def test_insn_encoding_of_known_instructions():
    # bytes as llvm-objdump prints them for BPF (little endian)
    assert bytes(abi.BpfInsn(code=0xBF, dst_reg=1, src_reg=10)) == bytes.fromhex(
        "bfa1000000000000")                                             # r1 = r10
    assert bytes(abi.BpfInsn(code=0x07, dst_reg=1, imm=-8)) == bytes.fromhex(
        "07010000f8ffffff")                                             # r1 += -8
    assert bytes(abi.BpfInsn(code=0x18, dst_reg=1, src_reg=abi.BPF_PSEUDO_MAP_FD,
                             imm=5)) == bytes.fromhex("1811000005000000")  # r1 = map fd 5
    assert bytes(abi.BpfInsn(code=0x6B, dst_reg=10, src_reg=1, off=-2)) == bytes.fromhex(
        "6b1afeff00000000")                                             # *(u16*)(r10-2) = r1
    insn = abi.BpfInsn.from_buffer_copy(bytes.fromhex("bfa1000000000000"))
    assert (insn.code, insn.dst_reg, insn.src_reg) == (0xBF, 1, 10)


def test_enum_names_round_trip():
    assert abi.Cmd(10).name == "PROG_TEST_RUN" and abi.Cmd.PROG_RUN is abi.Cmd.PROG_TEST_RUN
    assert abi.AttachType.TCX_INGRESS == 46 and abi.LinkType.TCX == 11
    assert abi.XdpAction.PASS == abi.XDP_PASS == 2
    for enum_cls in abi.ENUM_C_PREFIX:
        assert issubclass(enum_cls, enum.IntEnum)
