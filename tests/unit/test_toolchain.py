"""The C-to-BPF toolchain: compiler discovery, compiling, the object cache, errors.

These compile real programs with the compiler nfpipe finds (the ziglang wheel's
clang on a machine without clang) and with NFPIPE_CC wrapper scripts that log
every invocation, so "the compiler did not run" is counted, not assumed.
"""
from __future__ import annotations

import importlib.util
import os
import stat
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

import nfpipe.toolchain
from nfpipe.errors import CompileError
from nfpipe.toolchain import compiler, compiler as toolchain
from nfpipe.toolchain.compiler import Compiler, compile as nf_compile, describe, find_compiler

EM_BPF = "EM_BPF"

XDP_PROG = """\
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int prog(struct xdp_md *ctx)
{
	return RET;
}

char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """A fresh object cache per test; no NFPIPE_NO_CACHE left over from the caller."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(cache))
    monkeypatch.delenv("NFPIPE_NO_CACHE", raising=False)
    return cache


def _write_wrapper(tmp_path: Path, name: str = "cc-wrapper", extra: str = "") -> tuple[Path, Path]:
    """A shell script that logs its arguments to a counter file, then execs zig cc."""
    log = tmp_path / f"{name}.log"
    script = tmp_path / name
    script.write_text(
        "#!/bin/sh\n"
        f"echo \"$*\" >> '{log}'\n"
        f"{extra}"
        f"exec '{sys.executable}' -m ziglang cc \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script, log


def _compiles(log: Path) -> int:
    """Compile invocations (not --version probes) recorded by a wrapper script."""
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if " -c " in f" {line} ")


@pytest.fixture
def wrapper(tmp_path, monkeypatch):
    script, log = _write_wrapper(tmp_path)
    monkeypatch.setenv("NFPIPE_CC", str(script))
    return script, log


def _insns(obj: Path, section: str) -> list[tuple[int, int, int, int, int]]:
    """(opcode, dst, src, off, imm) of each instruction slot in a section."""
    with open(obj, "rb") as f:
        data = ELFFile(f).get_section_by_name(section).data()
    out = []
    for i in range(0, len(data), 8):
        op, regs, off, imm = struct.unpack("<BBhi", data[i:i + 8])
        out.append((op, regs & 0xF, regs >> 4, off, imm))
    return out


def _returned_constant(obj: Path, section: str = "xdp") -> int:
    """The immediate moved into r0 right before the section's first exit."""
    insns = _insns(obj, section)
    for i, (op, _dst, _src, _off, _imm) in enumerate(insns):
        if op == 0x95:                                   # exit
            prev = insns[i - 1]
            assert prev[0] in (0xB7, 0xB4) and prev[1] == 0, f"unexpected code: {insns}"
            return prev[4]
    raise AssertionError("no exit instruction")


# --------------------------------------------------------------------------- compiling


def test_compiles_xdp_program_to_bpf_elf_with_btf(compile_c):
    obj = compile_c(XDP_PROG, defines={"RET": "XDP_PASS"})
    assert obj.is_file()
    with open(obj, "rb") as f:
        elf = ELFFile(f)
        assert elf["e_machine"] == EM_BPF
        assert elf.little_endian == (sys.byteorder == "little")
        names = {s.name for s in elf.iter_sections()}
        assert {"xdp", ".BTF", ".BTF.ext", "license"} <= names
        # zig cc enables unwind tables; nfpipe turns them off: no .eh_frame in a BPF object
        assert ".eh_frame" not in names
        syms = {s.name: s for s in elf.get_section_by_name(".symtab").iter_symbols()}
        assert syms["prog"]["st_info"]["type"] == "STT_FUNC"
        assert elf.get_section(syms["prog"]["st_shndx"]).name == "xdp"
        assert elf.get_section_by_name("license").data() == b"GPL\0"
    assert _returned_constant(obj) == 2                  # XDP_PASS


def test_compile_is_exported_from_package():
    assert nfpipe.toolchain.compile is nf_compile
    assert nfpipe.toolchain.find_compiler is find_compiler


def test_syntax_error_raises_compile_error_with_verbatim_diagnostics(compile_c):
    src = ("#include <linux/bpf.h>\n"
           "#include <bpf/bpf_helpers.h>\n"
           "SEC(\"xdp\") int prog(struct xdp_md *ctx) {\n"
           "    return no_such_identifier;\n"
           "}\n")
    with pytest.raises(CompileError) as ei:
        compile_c(src)
    e = ei.value
    # "    return " is 11 columns: the identifier starts in column 12 of line 4
    assert "prog.c:4:12: error" in e.diagnostics
    assert "no_such_identifier" in e.diagnostics
    first_line = str(e).splitlines()[0]
    assert first_line.startswith("compiling prog.c with ") and first_line.endswith(" failed")
    assert e.source is not None and e.source.endswith("prog.c")
    assert any(a.endswith("prog.c") for a in e.command) and "-c" in e.command
    assert e.command[:len(find_compiler().argv)] == find_compiler().argv


def test_missing_source_is_a_clear_compile_error(tmp_path):
    with pytest.raises(CompileError, match="no such source file") as ei:
        nf_compile(tmp_path / "nope.c")
    assert str(tmp_path / "nope.c") in str(ei.value)


def test_output_path_receives_a_copy(compile_c, tmp_path):
    out = tmp_path / "out" / "sub" / "x.o"
    got = compile_c(XDP_PROG, defines={"RET": 1}, output=out)
    assert got == out and out.is_file()
    cached = compile_c(XDP_PROG, defines={"RET": 1})
    assert cached != out and cached.read_bytes() == out.read_bytes()


# --------------------------------------------------------------------------- defines


def test_defines_reach_the_source(compile_c):
    src = ('#include <linux/bpf.h>\n'
           '#include <bpf/bpf_helpers.h>\n'
           '#ifndef FLAG\n#error "FLAG not defined"\n#endif\n'
           '_Static_assert(ANSWER == 42, "ANSWER is not 42");\n'
           'SEC("xdp") int prog(struct xdp_md *ctx) { return XDP_PASS; }\n')
    assert compile_c(src, defines={"ANSWER": 42, "FLAG": None}).is_file()
    with pytest.raises(CompileError) as ei:
        compile_c(src, defines={"ANSWER": 41, "FLAG": None})
    assert "ANSWER is not 42" in ei.value.diagnostics
    with pytest.raises(CompileError) as ei:
        compile_c(src, defines={"ANSWER": 42})
    assert "FLAG not defined" in ei.value.diagnostics
    assert "-DANSWER=41" in ei.value.command or "-DANSWER=42" in ei.value.command


def test_different_defines_give_different_objects(compile_c):
    a = compile_c(XDP_PROG, defines={"RET": 1})
    b = compile_c(XDP_PROG, defines={"RET": 3})
    assert a != b
    assert a.read_bytes() != b.read_bytes()
    assert _returned_constant(a) == 1 and _returned_constant(b) == 3
    assert compile_c(XDP_PROG, defines={"RET": 1}) == a


def test_invalid_define_name_is_rejected(compile_c):
    with pytest.raises(CompileError, match="invalid macro name"):
        compile_c(XDP_PROG, defines={"RET; rm -rf": 1})


# --------------------------------------------------------------------------- the cache


def test_second_compile_does_not_run_the_compiler(wrapper, compile_c, isolated_cache):
    script, log = wrapper
    first = compile_c(XDP_PROG, defines={"RET": 2})
    assert _compiles(log) == 1
    second = compile_c(XDP_PROG, defines={"RET": 2})
    assert second == first
    assert _compiles(log) == 1, log.read_text()
    assert isolated_cache in first.parents
    assert (isolated_cache / "objects") in first.parents
    manifest = first.with_suffix(".json")
    assert manifest.is_file()
    # the manifest lists the headers the compiler read, nfpipe's own among them
    text = manifest.read_text()
    assert "bpf_helpers.h" in text and "bpf_helper_defs.h" in text and "linux/bpf.h" in text


def test_source_change_recompiles(wrapper, compile_c):
    script, log = wrapper
    a = compile_c(XDP_PROG, defines={"RET": 2})
    b = compile_c(XDP_PROG.replace("return RET;", "return RET + 1;"), defines={"RET": 2})
    assert _compiles(log) == 2
    assert a != b and _returned_constant(b) == 3


def test_header_content_change_triggers_recompile(wrapper, tmp_path):
    script, log = wrapper
    inc = tmp_path / "inc"
    inc.mkdir()
    header = inc / "verdict.h"
    header.write_text("#define VERDICT 1\n")
    src = tmp_path / "prog.c"
    src.write_text(XDP_PROG.replace("return RET;", "return VERDICT;")
                   .replace("#include <bpf/bpf_helpers.h>",
                            "#include <bpf/bpf_helpers.h>\n#include \"verdict.h\""))
    one = nf_compile(src, include_dirs=[inc])
    assert _compiles(log) == 1 and _returned_constant(one) == 1

    # same content, new mtime: still a hit (the key is content, not timestamps)
    os.utime(header, (time.time() + 5, time.time() + 5))
    assert nf_compile(src, include_dirs=[inc]) == one
    assert _compiles(log) == 1

    header.write_text("#define VERDICT 3\n")
    three = nf_compile(src, include_dirs=[inc])
    assert _compiles(log) == 2
    assert three != one and _returned_constant(three) == 3

    # back to the first content: that object is still cached
    header.write_text("#define VERDICT 1\n")
    assert nf_compile(src, include_dirs=[inc]) == one
    assert _compiles(log) == 2


def test_one_look_at_headers_hashes_each_header_once(wrapper, tmp_path, monkeypatch):
    """Inside one_look_at_headers (a pipeline's build) the lookups of several compiles
    hash a header once; a header changed after the block is seen again."""
    from nfpipe.toolchain import compiler as C, one_look_at_headers
    script, log = wrapper
    inc = tmp_path / "inc"
    inc.mkdir()
    header = inc / "verdict.h"
    header.write_text("#define VERDICT 1\n")
    srcs = []
    for i in range(3):
        src = tmp_path / f"prog{i}.c"
        src.write_text(XDP_PROG.replace("return RET;", f"return VERDICT + {i};")
                       .replace("#include <bpf/bpf_helpers.h>",
                                "#include <bpf/bpf_helpers.h>\n#include \"verdict.h\""))
        srcs.append(src)
    objs = [nf_compile(s, include_dirs=[inc]) for s in srcs]
    assert _compiles(log) == 3
    hashed = []
    real = C._sha256_file
    monkeypatch.setattr(C, "_sha256_file", lambda p: hashed.append(str(p)) or real(p))
    with one_look_at_headers():
        assert [nf_compile(s, include_dirs=[inc]) for s in srcs] == objs
    assert hashed.count(str(header)) == 1 and len(hashed) == len(set(hashed))
    assert _compiles(log) == 3
    header.write_text("#define VERDICT 5\n")
    with one_look_at_headers():
        again = nf_compile(srcs[0], include_dirs=[inc])
    assert _compiles(log) == 4 and _returned_constant(again) == 5


def test_nfpipe_headers_are_tracked(tmp_path, wrapper, monkeypatch):
    """Editing nfpipe's own bpf/ headers (a copy, via NFPIPE_BPF_DIR) rebuilds."""
    import shutil
    script, log = wrapper
    bpf = tmp_path / "bpf"
    shutil.copytree(toolchain.bpf_dir() / "include", bpf / "include")
    monkeypatch.setenv("NFPIPE_BPF_DIR", str(bpf))
    src = tmp_path / "p.c"
    src.write_text(XDP_PROG)
    a = nf_compile(src, defines={"RET": 2})
    assert nf_compile(src, defines={"RET": 2}) == a and _compiles(log) == 1
    helpers = bpf / "include" / "bpf" / "bpf_helpers.h"
    helpers.write_text(helpers.read_text() + "\n/* edited */\n")
    nf_compile(src, defines={"RET": 2})
    assert _compiles(log) == 2


def test_no_cache_env_always_compiles(wrapper, compile_c, monkeypatch, isolated_cache):
    script, log = wrapper
    monkeypatch.setenv("NFPIPE_NO_CACHE", "1")
    a = compile_c(XDP_PROG, defines={"RET": 2})
    b = compile_c(XDP_PROG, defines={"RET": 2})
    assert _compiles(log) == 2
    assert a.is_file() and b.is_file()
    assert not (isolated_cache / "objects").exists()


def test_no_cache_objects_are_removed_when_the_process_exits(tmp_path, isolated_cache):
    """With the cache off and no output the object lives in a per-process directory,
    which does not outlive the process (it used to stay in /tmp forever)."""
    src = tmp_path / "p.c"
    src.write_text(XDP_PROG)
    code = ("import sys; from nfpipe.toolchain import compile as c; "
            "a = c(sys.argv[1], defines={'RET': 2}); b = c(sys.argv[1], defines={'RET': 1}); "
            "assert a != b and a.is_file() and b.is_file(); print(a.parent)")
    env = {**os.environ, "NFPIPE_NO_CACHE": "1"}
    r = subprocess.run([sys.executable, "-c", code, str(src)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    scratch = Path(r.stdout.strip())
    assert scratch.name.startswith("nfpipe-build-")
    assert not scratch.exists()


def test_cache_dir_falls_back_to_xdg(monkeypatch, tmp_path, compile_c):
    monkeypatch.delenv("NFPIPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert toolchain.cache_dir() == tmp_path / "xdg" / "nfpipe"
    obj = compile_c(XDP_PROG, defines={"RET": 2})
    assert (tmp_path / "xdg" / "nfpipe" / "objects") in obj.parents
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert toolchain.cache_dir() == Path.home() / ".cache" / "nfpipe"


def test_parallel_compiles_of_the_same_source_are_safe(tmp_path, isolated_cache):
    src = tmp_path / "par.c"
    src.write_text(XDP_PROG)
    with ThreadPoolExecutor(max_workers=6) as ex:
        paths = list(ex.map(lambda _: nf_compile(src, defines={"RET": 2}), range(12)))
    blobs = {p.read_bytes() for p in paths}
    assert len(blobs) == 1
    for p in paths:
        with open(p, "rb") as f:
            assert ELFFile(f)["e_machine"] == EM_BPF
    leftovers = [p for p in (isolated_cache / "objects").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


# --------------------------------------------------------------------------- discovery


def test_nfpipe_cc_is_selected_and_reported(wrapper):
    script, log = wrapper
    c = find_compiler()
    assert isinstance(c, Compiler)
    assert c.kind == "env" and c.argv == [str(script)]
    assert c.version.startswith("clang version")
    assert "NFPIPE_CC" in c.reason
    # the wrapper execs zig cc, which spells the target bpfel-freestanding
    assert c.family == "zig"
    assert c.target_flags() == ["-target", "bpfel-freestanding" if sys.byteorder == "little"
                                else "bpfeb-freestanding"]
    info = describe()
    assert info["kind"] == "env" and info["argv"] == [str(script)]
    assert info["version"] == c.version and info["reason"] == c.reason
    assert info["bpf_target_ok"] is True, info
    assert info["bpf_target_error"] is None
    assert info["cache_dir"].startswith(os.environ["NFPIPE_CACHE_DIR"])
    assert info["include_dirs"][0] == str(toolchain.bpf_include_dir())
    assert _compiles(log) == 1          # describe() compiled its probe program with NFPIPE_CC


def test_find_compiler_is_cached_per_process(wrapper):
    script, log = wrapper
    find_compiler(refresh=True)
    probes = log.read_text().count("--version")
    for _ in range(3):
        find_compiler()
    assert log.read_text().count("--version") == probes
    find_compiler(refresh=True)
    assert log.read_text().count("--version") == probes + 1


def test_nfpipe_cc_with_its_own_target_is_left_alone(tmp_path, monkeypatch, compile_c):
    script, log = _write_wrapper(tmp_path, "tgt-wrapper")
    monkeypatch.setenv("NFPIPE_CC", f"{script} -target bpfel-freestanding")
    c = find_compiler()
    assert c.argv == [str(script), "-target", "bpfel-freestanding"]
    assert c.target_flags() == []
    obj = compile_c(XDP_PROG, defines={"RET": 2})
    assert _compiles(log) == 1
    [line] = [ln for ln in log.read_text().splitlines() if " -c " in f" {ln} "]
    assert line.split().count("-target") == 1        # only the user's own
    with open(obj, "rb") as f:
        assert ELFFile(f)["e_machine"] == EM_BPF


def test_broken_nfpipe_cc_is_a_clear_error(monkeypatch, compile_c, tmp_path):
    monkeypatch.setenv("NFPIPE_CC", str(tmp_path / "no-such-cc") + " --flag")
    with pytest.raises(CompileError, match="NFPIPE_CC"):
        find_compiler()
    with pytest.raises(CompileError, match="NFPIPE_CC"):
        compile_c(XDP_PROG)
    info = describe()
    assert info["kind"] is None and "NFPIPE_CC" in info["error"]
    assert info["bpf_target_ok"] is False


def test_falls_back_to_the_ziglang_wheel(monkeypatch, tmp_path):
    monkeypatch.delenv("NFPIPE_CC", raising=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    c = find_compiler()
    assert c.kind == "zig"
    assert c.argv == [sys.executable, "-m", "ziglang", "cc"]
    assert c.version.startswith("clang version")
    assert "ziglang" in c.reason and "NFPIPE_CC is unset" in c.reason
    assert c.display == "zig cc"


def _fake_clang(bindir: Path, name: str, targets: str, version: str = "17.0.6") -> Path:
    p = bindir / name
    p.write_text("#!/bin/sh\n"
                 "case \"$1\" in\n"
                 f"  -print-targets) printf '  Registered Targets:\\n{targets}' ;;\n"
                 f"  --version) echo 'Debian clang version {version}'; echo 'Target: x86_64-pc-linux-gnu' ;;\n"
                 "  *) exit 3 ;;\n"
                 "esac\n")
    p.chmod(0o755)
    return p


BPF_TARGETS = ("    bpf        - BPF (host endian)\\n    bpfeb      - BPF (big endian)\\n"
               "    bpfel      - BPF (little endian)\\n")


def test_the_wheels_clang_is_chosen_over_a_clang_on_path(monkeypatch, tmp_path):
    """What the host happens to have installed does not change the compiler."""
    monkeypatch.delenv("NFPIPE_CC", raising=False)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _fake_clang(bindir, "clang", BPF_TARGETS, "14.0.6")
    monkeypatch.setenv("PATH", str(bindir))
    c = find_compiler()
    assert c.kind == "zig" and c.tested and c.warning is None
    assert "a clang on PATH is not considered" in c.reason


def _without_the_wheel(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ziglang" else real(name, *a))


def test_a_clang_on_path_is_used_only_without_the_wheel(monkeypatch, tmp_path):
    monkeypatch.delenv("NFPIPE_CC", raising=False)
    _without_the_wheel(monkeypatch)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # clang-21 exists but cannot target BPF: skipped; clang-17 can: chosen, and flagged
    _fake_clang(bindir, "clang-21", "    x86-64     - 64-bit X86: EM_X86_64\\n", "21.1.0")
    good = _fake_clang(bindir, "clang-17", BPF_TARGETS)
    monkeypatch.setenv("PATH", str(bindir))
    c = find_compiler()
    assert c.kind == "clang" and c.argv == [str(good)]
    assert c.version == "Debian clang version 17.0.6" and c.major == 17
    assert "ziglang package is not installed" in c.reason
    assert "clang-21" in c.reason and "no bpf target" in c.reason
    assert c.target_flags() == ["-target", "bpfel" if sys.byteorder == "little" else "bpfeb"]
    assert c.display == "clang-17"
    assert not c.tested and "clang 17 (clang-17) is not a compiler nfpipe is tested with" \
        in c.warning
    info = describe()
    assert info["tested"] is False and info["warning"] == c.warning


def test_tested_versions_are_preferred_on_path(monkeypatch, tmp_path):
    monkeypatch.delenv("NFPIPE_CC", raising=False)
    _without_the_wheel(monkeypatch)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _fake_clang(bindir, "clang-17", BPF_TARGETS)
    tested = _fake_clang(bindir, "clang-14", BPF_TARGETS, "14.0.6")
    monkeypatch.setenv("PATH", str(bindir))
    c = find_compiler()
    assert c.argv == [str(tested)] and c.tested and c.warning is None


def test_no_compiler_at_all_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("NFPIPE_CC", raising=False)
    _without_the_wheel(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompileError, match="ziglang package is not installed.*pip install "
                                           "ziglang"):
        find_compiler()


def test_an_untested_nfpipe_cc_is_said_once(tmp_path, monkeypatch, compile_c, caplog):
    """NFPIPE_CC is used as given; a version nobody tested is a warning on stderr the
    first time it compiles (not per object)."""
    script = tmp_path / "clang-99"        # zig cc underneath, claiming to be clang 99
    script.write_text("#!/bin/sh\n"
                      "[ \"$1\" = --version ] && { echo 'clang version 99.1.0'; "
                      "echo 'InstalledDir: /opt/zig'; exit 0; }\n"
                      f"exec '{sys.executable}' -m ziglang cc \"$@\"\n")
    script.chmod(0o755)
    monkeypatch.setenv("NFPIPE_CC", str(script))
    compiler._warned.clear()
    with caplog.at_level("WARNING", logger="nfpipe.toolchain"):
        compile_c(XDP_PROG, defines={"RET": 1})
        compile_c(XDP_PROG, defines={"RET": 2})
    warnings = [r.message for r in caplog.records if "not a compiler nfpipe is tested" in r.message]
    assert len(warnings) == 1 and "clang 99" in warnings[0]
    assert find_compiler().tested is False


def test_compile_timeout_kills_the_compiler(tmp_path, monkeypatch, compile_c):
    script, log = _write_wrapper(
        tmp_path, "slow-cc",
        extra='case " $* " in *" -c "*) exec sleep 30 ;; esac\n')
    monkeypatch.setenv("NFPIPE_CC", str(script))
    t0 = time.monotonic()
    with pytest.raises(CompileError, match="timed out after 1 s"):
        compile_c(XDP_PROG, defines={"RET": 2}, timeout=1)
    assert time.monotonic() - t0 < 15


# --------------------------------------------------------------------------- include dirs


def test_default_uapi_headers_come_from_the_ziglang_wheel(monkeypatch):
    import platform

    import ziglang
    monkeypatch.delenv("NFPIPE_UAPI_INCLUDE", raising=False)
    zdir = Path(ziglang.__file__).resolve().parent
    dirs = toolchain.uapi_include_dirs()
    assert dirs[0] == zdir / "lib" / "libc" / "include" / "any-linux-any"
    assert (dirs[0] / "linux" / "bpf.h").is_file()
    if platform.machine() == "x86_64":
        assert dirs[1].name == "x86-linux-any" and (dirs[1] / "asm" / "byteorder.h").is_file()


def test_uapi_include_override(monkeypatch, tmp_path, compile_c):
    import ziglang
    zinc = Path(ziglang.__file__).resolve().parent / "lib" / "libc" / "include"
    extra = tmp_path / "uapi"
    (extra / "linux").mkdir(parents=True)
    (extra / "linux" / "nfpipe_test_only.h").write_text("#define NFPIPE_TEST_VALUE 7\n")
    monkeypatch.setenv("NFPIPE_UAPI_INCLUDE",
                       os.pathsep.join([str(extra), str(zinc / "any-linux-any"), ""]))
    assert toolchain.uapi_include_dirs() == [extra, zinc / "any-linux-any"]
    src = XDP_PROG.replace("#include <linux/bpf.h>",
                           "#include <linux/bpf.h>\n#include <linux/nfpipe_test_only.h>")
    obj = compile_c(src, defines={"RET": "NFPIPE_TEST_VALUE"})
    assert _returned_constant(obj) == 7
    monkeypatch.setenv("NFPIPE_UAPI_INCLUDE", str(zinc / "any-linux-any"))
    with pytest.raises(CompileError, match="nfpipe_test_only.h"):
        compile_c(src, name="prog2", defines={"RET": "NFPIPE_TEST_VALUE"})


def test_bpf_include_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("NFPIPE_BPF_DIR", raising=False)
    checkout = Path(toolchain.__file__).resolve().parents[2]
    assert (checkout / "nfpipe" / "toolchain" / "compiler.py").is_file()
    assert toolchain.bpf_include_dir() == checkout / "bpf" / "include"
    assert (toolchain.bpf_include_dir() / "bpf" / "bpf_helper_defs.h").is_file()
    monkeypatch.setenv("NFPIPE_BPF_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(CompileError, match="NFPIPE_BPF_DIR"):
        toolchain.bpf_include_dir()


def test_depfile_parser_handles_continuations_and_escapes(tmp_path):
    text = ("/o/x.o: /src/a.c \\\n  /inc/with\\ space.h rel/b.h \\\n"
            "  /inc/c.h\n/inc/c.h:\n")
    deps = toolchain.parse_depfile(text, tmp_path)
    assert deps == [Path("/src/a.c"), Path("/inc/with space.h"), tmp_path / "rel/b.h",
                    Path("/inc/c.h")]
