"""Generate ``bpf/include/bpf/bpf_helper_defs.h`` from the UAPI ``linux/bpf.h``.

The kernel documents every BPF helper in one big comment of ``linux/bpf.h``
(the block after "Start of BPF helper function descriptions:") and numbers them
in the ``___BPF_FUNC_MAPPER`` macro.  This module reads both and writes one
declaration per helper::

    /* bpf_map_update_elem (2): Add or update the value of the entry ... */
    static long (* const bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *) 2;

A BPF compiler turns a call through such a constant pointer into ``call 2``.

Kernel-internal types in the prototypes are translated to what a BPF program
sees: ``u64`` -> ``__u64``, ``struct bpf_map *`` -> ``void *``, ``struct
sk_buff *`` -> ``struct __sk_buff *`` and so on; every other struct is
forward-declared.  The output is deterministic: the same ``bpf.h`` always
gives the same bytes.

Run it as::

    python bpf/tools/helpergen.py [--uapi PATH/linux/bpf.h] -o bpf/include/bpf/bpf_helper_defs.h
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Helper", "HelperGenError", "parse_bpf_h", "generate", "default_bpf_h", "main"]


class HelperGenError(Exception):
    """``linux/bpf.h`` could not be turned into helper declarations."""


@dataclass(frozen=True)
class Param:
    type: str          # translated C type, e.g. "const void *"
    name: str          # "" for "..."


@dataclass
class Helper:
    name: str                                  # "bpf_map_update_elem"
    id: int                                    # 2
    ret: str = ""                              # translated return type, e.g. "long", "void *"
    params: list[Param] = field(default_factory=list)
    variadic: bool = False
    summary: str = ""                          # first sentence of the Description
    prototypes: list[str] = field(default_factory=list)   # as written in bpf.h

    def declaration(self) -> str:
        args = [_join_decl(p.type, p.name) for p in self.params]
        if self.variadic:
            args.append("...")
        arglist = ", ".join(args) if args else "void"
        ret = self.ret
        sep = "" if ret.endswith("*") else " "
        return f"static {ret}{sep}(* const {self.name})({arglist}) = (void *) {self.id};"


# --------------------------------------------------------------------------- parsing

_MAPPER_DEF = re.compile(r"^#define\s+___BPF_FUNC_MAPPER\(FN,\s*ctx\.\.\.\)", re.M)
_OLD_MAPPER_DEF = re.compile(r"^#define\s+__BPF_FUNC_MAPPER\(FN\)", re.M)
_FN_WITH_ID = re.compile(r"\bFN\(\s*(\w+)\s*,\s*(\d+)\s*(?:,[^)]*)?\)")
_FN_NO_ID = re.compile(r"\bFN\(\s*(\w+)\s*\)")
_DOC_START = "Start of BPF helper function descriptions:"
_PROTO = re.compile(r"^(?P<ret>.*?[\s*])(?P<name>bpf_\w+)\s*\((?P<args>.*)\)\s*$")


def _macro_body(text: str, start: int) -> str:
    """The text of a #define starting at ``start``, with its continuation lines."""
    out = []
    for line in text[start:].splitlines():
        out.append(line)
        if not line.rstrip().endswith("\\"):
            break
    return "\n".join(out)


def _parse_mapper(text: str) -> list[tuple[str, int]]:
    m = _MAPPER_DEF.search(text)
    if m:
        body = _macro_body(text, m.start())
        pairs = [(n, int(i)) for n, i in _FN_WITH_ID.findall(body)]
    else:  # kernels before 6.1: ids are the positions in __BPF_FUNC_MAPPER
        m = _OLD_MAPPER_DEF.search(text)
        if not m:
            raise HelperGenError("no ___BPF_FUNC_MAPPER (or __BPF_FUNC_MAPPER) macro in bpf.h")
        body = _macro_body(text, m.start())
        pairs = [(n, i) for i, n in enumerate(_FN_NO_ID.findall(body))]
    if not pairs:
        raise HelperGenError("the BPF_FUNC_MAPPER macro in bpf.h lists no helpers")
    seen_names: dict[str, int] = {}
    seen_ids: dict[int, str] = {}
    for name, hid in pairs:
        if name in seen_names:
            raise HelperGenError(f"helper '{name}' appears twice in the BPF_FUNC_MAPPER macro")
        if hid in seen_ids:
            raise HelperGenError(f"helper id {hid} is used by both '{seen_ids[hid]}' and '{name}'")
        seen_names[name], seen_ids[hid] = hid, name
    return pairs


def _doc_lines(text: str) -> list[str]:
    """The helper documentation block, each line with its leading ' * ' removed."""
    pos = text.find(_DOC_START)
    if pos < 0:
        raise HelperGenError(f"no '{_DOC_START}' comment block in bpf.h")
    end = text.find("*/", pos)
    if end < 0:
        raise HelperGenError("the helper documentation comment in bpf.h is not closed")
    lines = []
    for raw in text[pos:end].splitlines()[1:]:
        if raw.startswith(" * "):
            lines.append(raw[3:])
        elif raw.rstrip() in (" *", "*", ""):
            lines.append("")
        else:
            lines.append(raw.lstrip(" *"))
    return lines


def _parse_docs(text: str) -> dict[str, dict]:
    """name -> {"protos": [str], "description": [lines]} from the doc block."""
    docs: dict[str, dict] = {}
    current: dict | None = None
    section = None
    for line in _doc_lines(text):
        if line and not line[0].isspace():
            m = _PROTO.match(line.strip())
            if not m:
                raise HelperGenError(f"cannot parse helper prototype in bpf.h: {line.strip()!r}")
            entry = docs.setdefault(m.group("name"), {"protos": [], "description": []})
            entry["protos"].append(line.strip())
            current, section = entry, None
            continue
        stripped = line.strip()
        if current is None:
            continue
        # section headers are indented once: a tab, or spaces in a few entries
        if stripped in ("Description", "Return"):
            section = stripped
            continue
        if section == "Description" and len(current["protos"]) == 1:
            current["description"].append(stripped)
    return docs


# --------------------------------------------------------------------------- types

_INT_TYPES = {
    "u8": "__u8", "u16": "__u16", "u32": "__u32", "u64": "__u64",
    "s8": "__s8", "s16": "__s16", "s32": "__s32", "s64": "__s64",
    "size_t": "unsigned long",
}
_STRUCT_TYPES = {           # kernel struct -> what the BPF program's context is
    "sk_buff": "struct __sk_buff",
    "sk_msg_buff": "struct sk_msg_md",
    "xdp_buff": "struct xdp_md",
}
_PLAIN_TYPES = {
    "void", "char", "int", "long", "unsigned int", "unsigned long", "long long",
    "unsigned long long", "__u8", "__u16", "__u32", "__u64", "__s8", "__s16", "__s32", "__s64",
    "__be16", "__be32", "__be64", "__wsum", "__sum16",
}


def _translate(ctype: str, where: str, fwds: set[str]) -> str:
    """Kernel type text (e.g. ``const struct sk_buff *``) -> UAPI type text."""
    ctype = " ".join(ctype.replace("*", " * ").split())
    stars = ctype.count("*")
    words = ctype.replace("*", " ").split()
    const = "const" in words
    words = [w for w in words if w != "const"]
    base = " ".join(words)
    if base in _INT_TYPES:
        base = _INT_TYPES[base]
    elif base == "struct bpf_map":
        if not stars:
            raise HelperGenError(f"{where}: 'struct bpf_map' passed by value")
        base = "void"
    elif base.startswith("struct ") and len(words) == 2:
        tag = words[1]
        base = _STRUCT_TYPES.get(tag, base)
        fwds.add(base)
    elif base not in _PLAIN_TYPES:
        raise HelperGenError(f"{where}: unknown type '{ctype}' in bpf.h; teach "
                             "bpf/tools/helpergen.py how to translate it")
    out = ("const " if const else "") + base
    if stars:
        out += " " + "*" * stars
    return out


def _split_param(text: str, where: str) -> tuple[str, str]:
    m = re.match(r"^(?P<type>.*?[\s*])(?P<name>\w+)$", text.strip())
    if not m or not m.group("type").strip():
        raise HelperGenError(f"{where}: cannot parse parameter {text.strip()!r}")
    return m.group("type").strip(), m.group("name")


def _join_decl(ctype: str, name: str) -> str:
    if not name:
        return ctype
    return f"{ctype}{name}" if ctype.endswith("*") else f"{ctype} {name}"


def _build_helper(name: str, hid: int, entry: dict, fwds: set[str]) -> Helper:
    variants = []
    for proto in entry["protos"]:
        m = _PROTO.match(proto)
        assert m is not None
        where = f"helper {name}"
        ret = _translate(m.group("ret"), where, fwds)
        args_text = m.group("args").strip()
        params: list[tuple[str, str]] = []
        variadic = False
        if args_text and args_text != "void":
            for part in args_text.split(","):
                part = part.strip()
                if part == "...":
                    variadic = True
                    continue
                t, n = _split_param(part, where)
                params.append((_translate(t, where, fwds), n))
        variants.append((ret, params, variadic))
    ret, params, variadic = variants[0]
    # A helper documented once per program type (bpf_get_socket_cookie, bpf_sk_assign)
    # takes whatever context it is given: parameters whose type differs become void *.
    for other_ret, other_params, other_var in variants[1:]:
        if other_ret != ret or len(other_params) != len(params) or other_var != variadic:
            raise HelperGenError(f"helper {name}: its documented prototypes disagree beyond "
                                 f"parameter types: {entry['protos']}")
    merged = []
    for i, (t, n) in enumerate(params):
        if any(v[1][i][0] != t for v in variants[1:]):
            merged.append(Param("void *", "ctx" if i == 0 else n))
        else:
            merged.append(Param(t, n))
    return Helper(name=name, id=hid, ret=ret, params=merged, variadic=variadic,
                  summary=_summary(entry["description"]), prototypes=list(entry["protos"]))


def _summary(lines: list[str]) -> str:
    para = []
    for line in lines:
        if not line:
            if para:
                break
            continue
        para.append(line)
    text = " ".join(para)
    text = text.replace("\\ ", "").replace("**", "")
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = " ".join(text.split())
    m = re.search(r"^(.*?[.:])(\s|$)", text)
    if m:
        text = m.group(1)
    if len(text) > 160:
        text = text[:157].rstrip() + "..."
    return text.replace("*/", "* /").replace("/*", "/ *")


def parse_bpf_h(text: str) -> tuple[list[Helper], list[str]]:
    """Parse ``linux/bpf.h`` text into (helpers sorted by id, forward-declared structs)."""
    pairs = _parse_mapper(text)
    docs = _parse_docs(text)
    fwds: set[str] = set()
    helpers = []
    missing = []
    mapped = set()
    for short, hid in pairs:
        if hid == 0:        # "unspec" is no helper
            continue
        name = "bpf_" + short
        mapped.add(name)
        if name not in docs:
            missing.append(f"{name} ({hid})")
            continue
        helpers.append(_build_helper(name, hid, docs[name], fwds))
    if missing:
        raise HelperGenError("helpers listed in ___BPF_FUNC_MAPPER have no documented prototype "
                             "in bpf.h: " + ", ".join(missing))
    extra = sorted(set(docs) - mapped)
    if extra:
        raise HelperGenError("helpers documented in bpf.h are missing from ___BPF_FUNC_MAPPER: "
                             + ", ".join(extra))
    helpers.sort(key=lambda h: h.id)
    return helpers, sorted(fwds)


# --------------------------------------------------------------------------- output

def default_bpf_h() -> Path:
    """``linux/bpf.h`` of the ziglang wheel (the UAPI headers nfpipe compiles against)."""
    from nfpipe.toolchain import uapi_include_dirs
    for d in uapi_include_dirs():
        p = Path(d) / "linux" / "bpf.h"
        if p.is_file():
            return p
    raise HelperGenError("no linux/bpf.h in the UAPI include dirs; pass --uapi PATH")


def _describe_source(path: Path) -> str:
    """A machine-independent name for the bpf.h the output came from."""
    path = Path(path).resolve()
    try:
        import ziglang  # type: ignore
        zdir = Path(ziglang.__file__).resolve().parent
        rel = path.relative_to(zdir)
    except (ImportError, ValueError):
        return str(path)
    try:
        from importlib.metadata import version
        zv = " " + version("ziglang")
    except Exception:  # pragma: no cover - metadata missing
        zv = ""
    return f"ziglang{zv} wheel: {rel.as_posix()}"


def generate(bpf_h: str | os.PathLike | None = None, *, source_name: str | None = None) -> str:
    """The text of ``bpf_helper_defs.h`` for the given ``linux/bpf.h`` (default: ziglang's)."""
    path = Path(bpf_h) if bpf_h is not None else default_bpf_h()
    data = path.read_bytes()
    helpers, fwds = parse_bpf_h(data.decode("utf-8"))
    name = source_name or _describe_source(path)
    digest = hashlib.sha256(data).hexdigest()
    out = [
        "/* SPDX-License-Identifier: Apache-2.0 */",
        "/*",
        " * GENERATED FILE, do not edit: regenerate with",
        " *   python bpf/tools/helpergen.py -o bpf/include/bpf/bpf_helper_defs.h",
        f" * from {name}",
        f" * (sha256 {digest}).",
        f" * {len(helpers)} helpers, ids {helpers[0].id}..{helpers[-1].id}.",
        " *",
        " * Each helper is a constant function pointer whose value is the helper id;",
        " * the BPF backend compiles a call through it into 'call <id>'.  Include",
        " * <bpf/bpf_helpers.h> rather than this file.",
        " */",
        "#ifndef __NFPIPE_BPF_HELPER_DEFS_H",
        "#define __NFPIPE_BPF_HELPER_DEFS_H",
        "",
        "/* Structs the helpers take pointers to. */",
    ]
    out += [f"{f};" for f in fwds]
    out.append("")
    for h in helpers:
        out.append(f"/* {h.name} ({h.id}): {h.summary} */")
        out.append(h.declaration())
        out.append("")
    out.append("#endif /* __NFPIPE_BPF_HELPER_DEFS_H */")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python bpf/tools/helpergen.py",
                                 description="Generate bpf_helper_defs.h from the UAPI linux/bpf.h.")
    ap.add_argument("--uapi", metavar="PATH",
                    help="linux/bpf.h to read, or a UAPI include dir holding linux/bpf.h "
                         "(default: the one in the ziglang wheel)")
    ap.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    args = ap.parse_args(argv)
    src = None
    if args.uapi:
        src = Path(args.uapi)
        if src.is_dir():
            src = src / "linux" / "bpf.h"
    try:
        text = generate(src)
    except (HelperGenError, OSError) as e:
        print(f"helpergen: {e}", file=sys.stderr)
        return 1
    if args.output:
        out = Path(args.output)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
