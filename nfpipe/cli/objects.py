"""``nfpipe compile | doctor | object show | prog run``: BPF objects, one at a time."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from nfpipe.catalog import KINDS, get as catalog_nf
from nfpipe.cli.output import EXIT_FAILURE, EXIT_OK, jsonable, parse_value, print_json, usage
from nfpipe.compose.nodes import build_nf
from nfpipe.loader import Object, ObjectSpec
from nfpipe.toolchain import compile as nf_compile, describe


def cmd_compile(args) -> int:
    """Compile a C file to a BPF object.  A network function (a catalog name such as
    ``filter``, or a C file written to nfpipe/nf.h) is built as a loadable node: for
    ``--hook``, as ``--instance``, standalone (ports pass) or for a tail-call pipeline."""
    defines = dict(d.split("=", 1) if "=" in d else (d, "1") for d in args.define or [])
    source = nf_source_of(args.source)
    if source is not None:
        if args.include:
            raise usage("-I is for plain programs; an NF finds its headers itself")
        out = build_nf(source, hook=args.hook or "xdp", instance=args.instance,
                       mode=args.mode or "standalone", defines=defines or None)
        if args.output:
            shutil.copyfile(out, args.output)
            out = Path(args.output)
    else:
        if args.hook or args.instance or args.mode:
            raise usage(f"{args.source} is not a network function (it does not include "
                        f"nfpipe/nf.h): --hook, --instance and --mode are for NFs")
        out = nf_compile(args.source, args.output, defines=defines or None,
                         include_dirs=args.include or ())
    if args.json:
        print_json({"object": str(out), "nf": str(source) if source else None})
    else:
        print(out)
    return EXIT_OK


def nf_source_of(arg: str) -> Path | None:
    """The C source of a network function named on the command line (a catalog kind or
    a file that includes nfpipe/nf.h), else None."""
    if arg in KINDS:
        return catalog_nf(arg)().source
    path = Path(arg)
    if path.suffix == ".c" and path.is_file():
        text = path.read_text(errors="replace")
        if re.search(r'#\s*include\s*[<"]nfpipe/nf\.h[>"]', text):
            return path
    return None


def cmd_doctor(args) -> int:
    info = describe()
    if args.json:
        print_json(info)
        return EXIT_OK
    if info["error"] and not info["kind"]:
        print(f"compiler   none: {info['error']}")
    else:
        tested = "tested with nfpipe" if info["tested"] else "NOT TESTED with nfpipe"
        print(f"compiler   {' '.join(info['argv'])}")
        print(f"           {info['version']} ({tested})")
        print(f"why        {info['reason']}")
        if info["warning"]:
            print(f"warning    {info['warning']}", file=sys.stderr)
    print(f"tested     {', '.join(info.get('tested_compilers') or [])}")
    builds = "yes" if info["bpf_target_ok"] else f"NO: {info['bpf_target_error']}"
    print(f"builds BPF {builds}")
    print("headers    " + ("\n" + " " * 11).join(info["include_dirs"]))
    print(f"cache      {info['cache_dir']}" + ("" if info["cache_enabled"] else " (off)"))
    ok = info["bpf_target_ok"] and not info["error"]
    return EXIT_OK if ok else EXIT_FAILURE


def object_summary(spec) -> dict:
    btf = spec.btf
    programs = []
    for p in spec.programs.values():
        programs.append({
            "name": p.name, "section": p.section, "type": p.type_name,
            "instructions": p.insn_count, "subprograms": p.subprograms,
            "maps": sorted({r.map for r in p.relocs}),
        })
    maps = []
    for m in spec.maps.values():
        entry = {
            "name": m.name, "type": m.type_name, "key_size": m.key_size,
            "value_size": m.value_size, "max_entries": m.max_entries, "flags": m.flags,
        }
        if btf is not None and m.key_type_id:
            entry["key_type"] = btf.type_name(m.key_type_id)
        if btf is not None and m.value_type_id:
            entry["value_type"] = btf.type_name(m.value_type_id)
        if m.pinning:
            entry["pinning"] = "by_name"
        if m.inner is not None:
            entry["inner"] = {"type": m.inner.type_name, "key_size": m.inner.key_size,
                              "value_size": m.inner.value_size,
                              "max_entries": m.inner.max_entries}
        if m.contents:
            entry["initial"] = [{"key": k, "value": v} for k, v in m.contents]
        maps.append(entry)
    variables = [{"name": v.name, "section": v.section, "offset": v.offset, "size": v.size,
                  "type": btf.type_name(v.type_id) if btf is not None and v.type_id else None,
                  "value": spec.get_variable(v.name)}
                 for v in spec.variables.values()]
    return {"path": spec.path, "license": spec.license, "btf": btf is not None,
            "programs": programs, "maps": maps, "variables": variables}


def cmd_object_show(args) -> int:
    summary = object_summary(ObjectSpec.from_file(args.object))
    if args.json:
        print_json(summary)
        return EXIT_OK
    print(f"{summary['path']}  license={summary['license']!r}  btf={summary['btf']}")
    print("programs:")
    for p in summary["programs"]:
        subs = f"  calls {', '.join(p['subprograms'])}" if p["subprograms"] else ""
        print(f"  {p['name']:<24} {p['section']:<16} {p['type']:<10} "
              f"{p['instructions']:>5} insns{subs}")
    print("maps:")
    for m in summary["maps"]:
        kt = f" ({m['key_type']} -> {m.get('value_type', '?')})" if "key_type" in m else ""
        print(f"  {m['name']:<24} {m['type']:<16} key {m['key_size']:>3} B  value "
              f"{m['value_size']:>5} B  max {m['max_entries']}{kt}")
    if summary["variables"]:
        print("variables:")
        for v in summary["variables"]:
            print(f"  {v['name']:<24} {v['section']:<10} {v['type'] or '':<12} = "
                  f"{jsonable(v['value'])}")
    return EXIT_OK


def dump_maps(obj) -> dict:
    out = {}
    for name, m in obj.maps.items():
        if not m.dumpable:       # fd arrays, ring buffers, queues: nothing to list
            continue
        out[name] = [{"key": k, "value": v} for k, v in m.items()]
    return out


def cmd_prog_run(args) -> int:
    try:
        packet = bytes.fromhex(args.packet_hex.replace(" ", "").replace(":", ""))
    except ValueError:
        raise usage(f"--packet-hex is not hexadecimal: {args.packet_hex[:40]!r}") from None
    constants = {}
    for item in args.set or []:
        if "=" not in item:
            raise usage(f"--set takes NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        constants[key] = parse_value(value)
    spec = ObjectSpec.from_file(args.object)
    if args.program not in spec.programs:
        raise usage(f"no program '{args.program}' in {args.object} (it has: "
                     f"{', '.join(spec.programs) or 'none'})")
    with Object.load(spec, constants=constants, programs=[args.program]) as obj:
        res = obj.programs[args.program].test_run(packet, repeat=args.repeat)
        result = {"retval": res.retval, "data_hex": res.data.hex(),
                  "duration_ns": res.duration_ns}
        if args.dump_maps:
            result["maps"] = dump_maps(obj)
    if args.json:
        print_json(result)
    else:
        print(f"retval {result['retval']}  duration {result['duration_ns']} ns/run")
        print(f"data   {result['data_hex']}")
        for name, entries in result.get("maps", {}).items():
            print(f"map {name}:")
            for e in entries:
                print(f"  {jsonable(e['key'])} = {jsonable(e['value'])}")
    return EXIT_OK
