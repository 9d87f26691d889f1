"""The ObjectSpec kept beside a compiled object (``<variant>.spec``): used when it holds
that object's spec, ignored and rewritten when it is damaged, another object's, of
another format or of another reader."""
from __future__ import annotations

import pickle
import shutil

import pytest

from nfpipe.compose.build import read_spec
from nfpipe.loader import objspec as O
from nfpipe.loader.objspec import ObjectSpec
from nfpipe.toolchain import spec_memo

SRC = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u64);
         __uint(max_entries, 64); } counts SEC(".maps");
const volatile __u32 limit = RET;
static __attribute__((noinline)) int helper(__u32 k) {
    __u64 *v = bpf_map_lookup_elem(&counts, &k);
    return v ? (int)*v : (int)limit;
}
SEC("xdp") int prog(struct xdp_md *ctx) { return helper(ctx->ingress_ifindex) & 3; }
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(c))
    monkeypatch.delenv("NFPIPE_NO_CACHE", raising=False)
    return c


@pytest.fixture
def obj(compile_c):
    return compile_c(SRC, defines={"RET": 2})


def same(a: ObjectSpec, b: ObjectSpec) -> None:
    assert a == b              # programs, maps, variables, license, path
    assert a.btf is not None and b.btf is not None
    assert a.btf.encode() == b.btf.encode()
    for name, p in a.programs.items():
        assert p.btf is not None and b.programs[name].btf is not None
    assert a.get_variable("limit") == b.get_variable("limit") == 2


def no_elf(monkeypatch):
    """From here on, reading an ELF fails the test: the spec must come from the memo."""
    def refuse(*_a, **_k):
        raise AssertionError("the ELF was read again")
    monkeypatch.setattr(O, "read_elf_bytes", refuse)
    monkeypatch.setattr(O, "read_elf", refuse)


def test_the_memo_beside_a_cached_object_is_written_then_used(obj, monkeypatch):
    memo = spec_memo(obj)
    assert memo == obj.with_suffix(".spec") and not memo.exists()
    first = read_spec(obj)
    assert memo.is_file()
    same(first, ObjectSpec.from_file(obj))          # the same as reading the ELF
    no_elf(monkeypatch)
    again = read_spec(obj)
    same(again, first)
    assert again.path == str(obj)
    again.set_constant("limit", 9)                  # a spec of its own: edits stay in it
    assert read_spec(obj).get_variable("limit") == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not-a-spec",
                                    "unpicklable"])
def test_a_damaged_memo_is_ignored_and_rewritten(obj, monkeypatch, damage):
    want = read_spec(obj)
    memo = spec_memo(obj)
    raw = memo.read_bytes()
    head = len(O._MEMO_MAGIC) + 32
    memo.write_bytes({
        "garbage": b"\x00\xff" * 100,
        "truncated": raw[:head + (len(raw) - head) // 2],
        "empty": b"",
        "not-a-spec": raw[:head] + pickle.dumps({"programs": {}}),
        # a pickle naming a class no module has (as a memo of another nfpipe might)
        "unpicklable": raw[:head] + b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00\x8c"
                       b"\x0bnfpipe.nope\x94\x8c\x04Gone\x94\x93\x94.",
    }[damage])
    got = read_spec(obj)
    same(got, want)
    assert memo.read_bytes() == raw                 # rewritten as it was
    no_elf(monkeypatch)
    same(read_spec(obj), want)


def test_another_objects_memo_is_not_used(compile_c, obj):
    other = compile_c(SRC, name="other", defines={"RET": 3})
    read_spec(other)
    shutil.copy(spec_memo(other), spec_memo(obj))   # the memo of different bytes
    got = read_spec(obj)
    assert got.get_variable("limit") == 2           # its own, read from its ELF
    same(got, ObjectSpec.from_file(obj))


def test_a_memo_of_another_format_or_reader_is_not_used(obj, monkeypatch):
    read_spec(obj)
    calls = []
    real = O.read_elf_bytes

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(O, "read_elf_bytes", counting)
    read_spec(obj)
    assert calls == []
    monkeypatch.setattr(O, "SPEC_FORMAT", O.SPEC_FORMAT + 1)
    read_spec(obj)
    assert calls == [1]
    monkeypatch.setattr(O, "_reader_digest", lambda: b"another nfpipe's loader")
    read_spec(obj)
    assert calls == [1, 1]


def test_objects_outside_the_cache_get_no_memo(obj, tmp_path, monkeypatch):
    mine = tmp_path / "mine.o"
    shutil.copy(obj, mine)
    assert spec_memo(mine) is None
    read_spec(mine)
    assert list(tmp_path.glob("mine*")) == [mine]   # nothing written beside it
    monkeypatch.setenv("NFPIPE_NO_CACHE", "1")
    assert spec_memo(obj) is None


def test_a_memo_that_cannot_be_written_only_costs_time(obj, monkeypatch):
    memo = spec_memo(obj)
    memo.mkdir()                                    # a directory where the file would go
    same(read_spec(obj), ObjectSpec.from_file(obj))
    assert memo.is_dir() and not list(memo.parent.glob(".*.tmp"))
