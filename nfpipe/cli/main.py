"""The ``nfpipe`` command: a thin layer over the library.

Exit codes: 0 success; 1 a runtime failure (kernel refused, compile failed,
verifier rejected); 2 bad input (usage, spec or graph errors); 130 interrupted.
Every failure prints one paragraph on stderr, prefixed ``nfpipe: error:``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from nfpipe.errors import NfpipeError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parse_value(text: str) -> Any:
    """A --set value: an integer (any base), true/false, or else the string itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text, 0)
    except ValueError:
        return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _print_json(obj: Any) -> None:
    json.dump(_jsonable(obj), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


# --- compile -----------------------------------------------------------------------

def cmd_compile(args) -> int:
    from nfpipe.build.toolchain import compile as nf_compile
    defines = dict(d.split("=", 1) if "=" in d else (d, "1") for d in args.define or [])
    out = nf_compile(args.source, args.output, defines=defines or None,
                     include_dirs=args.include or ())
    if args.json:
        _print_json({"object": str(out)})
    else:
        print(out)
    return EXIT_OK


def cmd_doctor(args) -> int:
    from nfpipe.build.toolchain import describe
    info = describe()
    if args.json:
        _print_json(info)
        return EXIT_OK
    width = max(len(k) for k in info)
    for k, v in info.items():
        if isinstance(v, (list, tuple)):
            v = "\n".join([str(v[0]) if v else ""] + [" " * (width + 2) + str(x) for x in v[1:]])
        print(f"{k:<{width}}  {v}")
    return EXIT_OK


# --- object / prog ------------------------------------------------------------------

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
    from nfpipe.load.spec import ObjectSpec
    summary = object_summary(ObjectSpec.from_file(args.object))
    if args.json:
        _print_json(summary)
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
                  f"{_jsonable(v['value'])}")
    return EXIT_OK


def dump_maps(obj) -> dict:
    out = {}
    for name, m in obj.maps.items():
        if not m.dumpable:       # fd arrays, ring buffers, queues: nothing to list
            continue
        out[name] = [{"key": k, "value": v} for k, v in m.items()]
    return out


def cmd_prog_run(args) -> int:
    from nfpipe.load.object import Object
    from nfpipe.load.spec import ObjectSpec
    try:
        packet = bytes.fromhex(args.packet_hex.replace(" ", "").replace(":", ""))
    except ValueError:
        raise _usage(f"--packet-hex is not hexadecimal: {args.packet_hex[:40]!r}") from None
    constants = {}
    for item in args.set or []:
        if "=" not in item:
            raise _usage(f"--set takes NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        constants[key] = _parse_value(value)
    spec = ObjectSpec.from_file(args.object)
    if args.program not in spec.programs:
        raise _usage(f"no program '{args.program}' in {args.object} (it has: "
                     f"{', '.join(spec.programs) or 'none'})")
    with Object.load(spec, constants=constants, programs=[args.program]) as obj:
        res = obj.programs[args.program].test_run(packet, repeat=args.repeat)
        result = {"retval": res.retval, "data_hex": res.data.hex(),
                  "duration_ns": res.duration_ns}
        if args.dump_maps:
            result["maps"] = dump_maps(obj)
    if args.json:
        _print_json(result)
    else:
        print(f"retval {result['retval']}  duration {result['duration_ns']} ns/run")
        print(f"data   {result['data_hex']}")
        for name, entries in result.get("maps", {}).items():
            print(f"map {name}:")
            for e in entries:
                print(f"  {_jsonable(e['key'])} = {_jsonable(e['value'])}")
    return EXIT_OK


def _pipeline_doc(path: str):
    from nfpipe.spec.source import load_file
    return load_file(path)


def cmd_validate(args) -> int:
    from nfpipe.graph import problems_of
    from nfpipe.spec.pipeline import parse_pipeline_collect
    spec, problems = parse_pipeline_collect(_pipeline_doc(args.file))
    if spec is not None:
        problems = problems + problems_of(spec)
    if spec is not None and not problems and spec.mode == "offload":
        problems = _offload_problems(spec)
    if args.json:
        _print_json({"file": args.file, "valid": not problems,
                     "problems": [{"file": p.pos.file, "line": p.pos.line,
                                   "column": p.pos.column, "node": p.node,
                                   "message": p.message} for p in problems]})
    elif problems:
        for p in problems:
            print(str(p), file=sys.stderr)
        print(f"{args.file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}",
              file=sys.stderr)
    else:
        print(f"{args.file}: valid ({spec.name}: {len(spec.nodes)} nodes, "
              f"{len(spec.edges)} edges, hook {spec.hook})")
    return EXIT_OK if not problems else EXIT_USAGE


def _offload_problems(spec):
    """Compile the fused pipeline and check it against the offload profile."""
    from nfpipe.build.offload import offload_problems
    from nfpipe.build.pipeline import build, make_plan
    from nfpipe.spec.pipeline import Problem
    texts = offload_problems(build(make_plan(spec)))
    pos = spec.doc.at(("mode",)) if spec.doc else spec.nodes[spec.entry].pos
    return [Problem(pos, f"mode offload: {t}") for t in texts]


def cmd_plan(args) -> int:
    from nfpipe.build.pipeline import make_plan
    from nfpipe.spec.pipeline import PipelineSpec
    spec = PipelineSpec.from_file(args.file)
    plan = make_plan(spec, linking=args.linking)
    if args.iface:
        from nfpipe.build.pipeline import build
        from nfpipe.deploy import Target
        from nfpipe.deploy.placement import place
        built = build(plan) if spec.mode == "offload" or plan.linking == "fused" else None
        rows = []
        for text in args.iface:
            t = Target.parse(text)
            rows.append(place(spec.hook, t.ifname, t.netns, mode=args.mode or spec.mode,
                              build=built))
        if args.json:
            _print_json([{"iface": r.iface, "netns": r.netns, "mode": r.mode,
                          "decisions": r.lines} for r in rows])
        else:
            for r in rows:
                print(r.explain())
        return EXIT_OK
    if args.dot:
        sys.stdout.write(plan.dot())
        return EXIT_OK
    info = plan.to_dict()
    if args.maps:
        from nfpipe.build.pipeline import FUSED, build
        built = build(plan)
        for node in info["nodes"]:
            ospec = built.objects.get(node["id"]) or built.objects[FUSED]
            prefix = f"{node['id']}__"
            node["maps"] = [{"name": m.name[len(prefix):], "type": m.type_name,
                             "max_entries": m.max_entries}
                            for m in ospec.maps.values() if m.name.startswith(prefix)]
    if args.json:
        _print_json(info)
        return EXIT_OK
    how = ("tail calls through the program array nfp_jmp" if plan.linking == "tailcall"
           else "one fused program")
    print(f"pipeline {info['pipeline']}: hook {info['hook']}, linking {plan.linking} ({how})")
    print(f"entry {info['entry']}; a missed tail call counts and ends in "
          f"'{info['miss_verdict']}'")
    for node in info["nodes"]:
        slot = f"slot {node['slot']:<2}" if plan.linking == "tailcall" else f"#{node['slot']:<6}"
        print(f"  {slot} {node['id']:<16} {Path(node['nf']).name if node['nf'].endswith('.c') else node['nf']}")
        for port, target in node["ports"].items():
            print(f"           {port:<10} -> {target}")
        if node.get("constants"):
            consts = ", ".join(f"{k}={v}" for k, v in node["constants"].items())
            print(f"           constants: {consts}")
        for m in node.get("maps", []):
            print(f"           map {m['name']:<18} {m['type']:<14} {m['max_entries']} entries")
    return EXIT_OK


def cmd_bench(args) -> int:
    from nfpipe import bench
    if not args.json:
        print(f"ns per packet in the kernel (BPF_PROG_TEST_RUN, {args.repeat} repeats, median "
              f"of {args.rounds} rounds); compare the ratios, not the times")
    results = bench.run(args.cases or None, repeat=args.repeat, rounds=args.rounds,
                        json_output=args.json)
    if args.json:
        base = results[0].ns
        _print_json([{"case": r.name, "ns_per_packet": r.ns, "ratio_to_baseline": r.ns / base,
                      "samples": r.samples} for r in results])
    return EXIT_OK


def _where(i: dict) -> str:
    return f"{i['netns']}:{i['iface']}" if i.get("netns") else i["iface"]


def cmd_deploy(args) -> int:
    from nfpipe import deploy as D
    from nfpipe.cli import ui
    targets = [D.Target.parse(t) for t in args.iface or []]
    with ui.progress("deploying") as say:
        m = D.deploy(args.file, targets=targets or None, mode=args.mode,
                     linking=args.linking, force=args.force, progress=say)
    if args.json:
        _print_json(m)
        return EXIT_OK
    upd = m.get("update")
    if upd is None:
        print(f"deployed {m['pipeline']} ({m['hook']}, {m['linking']} linking, "
              f"{len(m['nodes'])} nodes), revision {m['revision']}")
    elif upd["how"] == "unchanged":
        print(f"{m['pipeline']}: unchanged (revision {m['revision']} already runs this file)")
    else:
        print(f"updated {m['pipeline']} to revision {m['revision']} — {upd['lines'][0]}")
        for line in upd["lines"][1:]:
            print(line)
    ui.show(ui.table(["interface", "mode", "via", "entry program"],
                     [(_where(i), i["mode"], i["kind"], i["prog_id"])
                      for i in m["interfaces"]]))
    print(f"state pinned in {D.state_dir(m['pipeline'])}")
    return EXIT_OK


def cmd_status(args) -> int:
    from nfpipe import deploy as D
    from nfpipe.cli import ui
    rows = D.status(args.name)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print("no pipeline is deployed")
    for r in rows:
        for line in r.get("repaired", []):
            print(f"{r['pipeline']}: repaired: {line}")
        if r["state"] in ("incomplete", "removed"):
            print(f"{r['pipeline']}: {r['state']}" + (f" ({r['hint']})" if "hint" in r else ""))
            continue
        last = r.get("last_update") or {}
        print(f"{r['pipeline']}: {r['state']} — {r['hook']}, {r['linking']} linking, "
              f"revision {r['revision']} (last change: {last.get('how', 'deploy')})")
        ui.show(ui.table(["slot", "node", "nf", "program"],
                         [(n["slot"], n["id"], Path(n["nf"]).name, n["prog_id"])
                          for n in r["nodes"]], right=["slot", "program"]),
                ui.table(["interface", "mode", "attached", "programs there now"],
                         [(_where(i), i["mode"], "yes" if i["attached"] else "NO",
                           ", ".join(map(str, i["now"]))) for i in r["interfaces"]]))
    return EXIT_OK if all(r["state"] == "running" for r in rows) else EXIT_FAILURE


def cmd_stats(args) -> int:
    import time
    from nfpipe import deploy as D
    from nfpipe.cli import ui
    if args.prometheus:
        sys.stdout.write(D.prometheus([args.name] if args.name else None))
        return EXIT_OK
    if not args.name:
        raise _usage("stats needs a pipeline name (or --prometheus for all)")
    if args.json:
        _print_json(D.stats(args.name))
        return EXIT_OK

    def render(st, prev, seconds):
        rows = []
        for node, row in st.items():
            for outcome, c in row.items():
                before = None if prev is None else \
                    prev.get(node, {}).get(outcome, {"packets": 0})["packets"]
                rows.append((node, outcome, f"{c['packets']:,}", f"{c['bytes']:,}",
                             ui.rate(c["packets"], before, seconds)))
        title = f"{args.name}" + (f" — every {args.interval:g} s, Ctrl-C to stop"
                                  if args.watch else "")
        return ui.table(["node", "outcome", "packets", "bytes", "pkt/s"], rows, title=title,
                        right=["packets", "bytes", "pkt/s"])

    st = D.stats(args.name)
    if not args.watch:
        ui.show(render(st, None, None))
        return EXIT_OK
    from rich.live import Live
    prev, t_prev = None, None
    with Live(render(st, None, None), console=ui.console(), auto_refresh=False) as live:
        while True:
            st, now = D.stats(args.name), time.monotonic()
            live.update(render(st, prev, now - t_prev if t_prev else None), refresh=True)
            prev, t_prev = st, now
            time.sleep(args.interval)


def cmd_map(args) -> int:
    from nfpipe import deploy as D
    with D.open_map(args.pipeline, args.map) as m:
        if args.map_command == "dump":
            entries = [{"key": k, "value": v} for k, v in m.items()] if m.dumpable else []
            if args.json:
                _print_json(entries)
            else:
                for e in entries:
                    print(f"{_jsonable(e['key'])} = {_jsonable(e['value'])}")
                print(f"({len(entries)} entries; {m.type_name}, max {m.max_entries})")
            return EXIT_OK
        key = _json_arg(args.key, "key")
        if args.map_command == "get":
            value = m.lookup(key)
            if value is None:
                raise _usage(f"map '{args.map}' has no entry for key {args.key}")
            _print_json(value) if args.json else print(_jsonable(value))
            return EXIT_OK
        if args.map_command == "set":
            m.update(key, _json_arg(args.value, "value"))
        else:
            if not m.delete(key):
                raise _usage(f"map '{args.map}' has no entry for key {args.key}")
        return EXIT_OK


def _json_arg(text: str, what: str):
    """A map key or value on the command line: JSON (ints, dicts for structs, lists),
    or 0x... hex for raw bytes."""
    if text.startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise _usage(f"bad hex {what}: {text}") from None
    try:
        return json.loads(text)
    except ValueError:
        raise _usage(f"the {what} must be JSON (e.g. 42, {{\"addr\": 1}}) or 0x-hex bytes; "
                     f"got {text!r}") from None


def _config_file(path: str, what: str) -> dict:
    from nfpipe.spec.source import load_file
    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise _usage(f"{path}: expected {what}")
    return doc.data


def cmd_rules(args) -> int:
    """Show a filter node's rules with their hit counts, or replace them from a file."""
    from nfpipe import deploy as D
    from nfpipe.catalog.filter import action_text
    from nfpipe.cli import ui
    if args.file:
        out = D.set_filter_rules(args.pipeline, args.node, _config_file(
            args.file, "a filter config (rules, default, fragments, malformed)"))
        if args.json:
            _print_json(out)
        else:
            print(f"{args.pipeline}/{args.node}: {out['rules']} rules active "
                  f"(revision {out['revision']}, no program reloaded)")
        return EXIT_OK
    impl, maps = D.node_view(args.pipeline, args.node)
    try:
        if impl.kind != "filter":
            raise _usage(f"node '{args.node}' is a {impl.kind} node, not a filter")
        hits = impl.hits(maps)
        stats = impl.stats(maps)
    finally:
        D.close_node_maps(maps)
    rules = [{"index": i, "name": r.name, "action": action_text(r.action), "hits": h,
              "rule": impl.config["rules"][i]} for i, (r, h) in enumerate(zip(impl.rules, hits))]
    if args.json:
        _print_json({"rules": rules, "default": action_text(impl.default),
                     "counters": stats})
        return EXIT_OK
    ui.show(ui.table(["#", "rule", "action", "hits"],
                     [(r["index"], r["name"] or _rule_text(r["rule"]), r["action"],
                       f"{r['hits']:,}") for r in rules],
                     title=f"{args.pipeline}/{args.node}: {len(rules)} rules, default "
                           f"{action_text(impl.default)}", right=["#", "hits"]))
    print("  " + ", ".join(f"{k} {v:,}" for k, v in stats.items()))
    return EXIT_OK


def _rule_text(rule: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in rule.items() if k not in ("action", "name"))


def cmd_backends(args) -> int:
    """Show an LB node's VIPs and backends with their counters, change them from a file,
    or purge retired backends."""
    from nfpipe import deploy as D
    from nfpipe.cli import ui
    if args.file:
        cfg = _config_file(args.file, "an lb config with 'vips'")
        if set(cfg) != {"vips"}:
            raise _usage(f"{args.file}: expected only 'vips' (the VIPs and their backends); "
                         f"got {', '.join(sorted(cfg))}")
        out = D.configure(args.pipeline, args.node, cfg, kind="lb")
        if args.json:
            _print_json(out)
        else:
            print(f"{args.pipeline}/{args.node}: {len(cfg['vips'])} VIP(s) updated "
                  f"(revision {out['revision']}, no program reloaded; established "
                  f"connections keep their backends)")
        return EXIT_OK
    if args.purge:
        names = D.purge_backends(args.pipeline, args.node)
        if args.json:
            _print_json({"purged": names})
        else:
            print(f"purged {len(names)} retired backend(s)" +
                  (f": {', '.join(names)}" if names else ""))
        return EXIT_OK
    impl, maps = D.node_view(args.pipeline, args.node)
    try:
        if impl.kind != "lb":
            raise _usage(f"node '{args.node}' is a {impl.kind} node, not an lb")
        st = impl.stats(maps)
    finally:
        D.close_node_maps(maps)
    rows = []
    for v in impl.vips:
        for b in v.backends:
            c = st["backends"].get((v.label, b.name), {})
            rows.append({"vip": v.label, "backend": b.name, "weight": b.weight,
                         "state": "draining" if b.draining else "active",
                         "packets": c.get("packets", 0), "new_flows": c.get("new_flows", 0)})
    for (_vip, _name), (_bid, idx, b) in impl.plan.retired.items():
        v = impl.plan.by_index()[idx]
        rows.append({"vip": v.label,
                     "backend": b.name, "weight": b.weight, "state": "retired",
                     "packets": None, "new_flows": None})
    if args.json:
        _print_json({"backends": rows, "vips": st["vips"], "global": st["global"]})
        return EXIT_OK
    ui.show(ui.table(["vip", "backend", "weight", "state", "packets", "new flows"],
                     [(r["vip"], r["backend"], r["weight"], r["state"],
                       "" if r["packets"] is None else f"{r['packets']:,}",
                       "" if r["new_flows"] is None else f"{r['new_flows']:,}")
                      for r in rows], title=f"{args.pipeline}/{args.node}",
                     right=["weight", "packets", "new flows"]))
    return EXIT_OK


def cmd_destroy(args) -> int:
    from nfpipe import deploy as D
    lines = D.destroy(args.name)
    if args.json:
        _print_json(lines)
        return EXIT_OK
    for line in lines:
        print(line)
    return EXIT_OK


def cmd_demo(args) -> int:
    from nfpipe.demo import run_demo, run_pipeline_demo
    if args.loader:
        return run_demo(json_output=args.json)
    return run_pipeline_demo(json_output=args.json)


class _UsageError(NfpipeError):
    exit_code = EXIT_USAGE


def _usage(msg: str) -> _UsageError:
    return _UsageError(msg)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nfpipe",
        description="nfpipe: a declared graph of eBPF network functions as one XDP or TC "
                    "pipeline.",
        epilog="exit codes: 0 success, 1 runtime failure (kernel, compiler or verifier "
               "refused), 2 bad input (usage, spec, graph), 130 interrupted. "
               "Start with: nfpipe demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    c = sub.add_parser("compile", help="compile a C network function to a BPF object")
    c.add_argument("source")
    c.add_argument("-o", "--output", help="where to write the object (default: the cache)")
    c.add_argument("-D", "--define", action="append", metavar="NAME[=VALUE]")
    c.add_argument("-I", "--include", action="append", metavar="DIR")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compile)

    d = sub.add_parser("doctor", help="show which compiler and headers nfpipe uses, and why")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_doctor)

    o = sub.add_parser("object", help="inspect a BPF object file")
    osub = o.add_subparsers(dest="object_command", metavar="ACTION", required=True)
    show = osub.add_parser("show", help="programs, maps and variables of an object")
    show.add_argument("object")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_object_show)

    pr = sub.add_parser("prog", help="run programs in the kernel without attaching them")
    psub = pr.add_subparsers(dest="prog_command", metavar="ACTION", required=True)
    run = psub.add_parser("run", help="load an object and BPF_PROG_TEST_RUN one program")
    run.add_argument("object")
    run.add_argument("program")
    run.add_argument("--packet-hex", required=True, help="the input packet, as hex")
    run.add_argument("--repeat", type=int, default=1)
    run.add_argument("--set", action="append", metavar="NAME=VALUE",
                     help="set a .rodata constant before load (repeatable)")
    run.add_argument("--dump-maps", action="store_true", help="print every map after the run")
    run.add_argument("--json", action="store_true")
    run.set_defaults(func=cmd_prog_run)

    v = sub.add_parser("validate", help="check a pipeline file; report every problem")
    v.add_argument("file")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_validate)

    pl = sub.add_parser("plan", help="show what a pipeline builds to: order, slots, linking")
    pl.add_argument("file")
    pl.add_argument("--linking", choices=["tailcall", "fused"],
                    help="override the file's linking")
    pl.add_argument("--maps", action="store_true", help="compile and list each node's maps")
    pl.add_argument("--dot", action="store_true", help="print the graph as Graphviz DOT")
    pl.add_argument("--iface", action="append", metavar="[NETNS:]IFACE",
                    help="explain the attach mode chosen for this interface (probes it)")
    pl.add_argument("--mode", help="a forced mode to check instead of the file's")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_plan)

    b = sub.add_parser("bench", help="ns/packet of NFs and pipelines in the kernel, as ratios")
    b.add_argument("cases", nargs="*", help="case name prefixes (default: all)")
    b.add_argument("--repeat", type=int, default=200_000)
    b.add_argument("--rounds", type=int, default=5)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)

    dp = sub.add_parser("deploy", help="build, load, check, attach and pin a pipeline")
    dp.add_argument("file")
    dp.add_argument("--iface", action="append", metavar="[NETNS:]IFACE",
                    help="interface to attach to (repeatable; default: the file's)")
    dp.add_argument("--mode", help="force a mode: xdp native|generic|offload|auto, "
                                   "tc tcx|clsact|auto")
    dp.add_argument("--linking", choices=["tailcall", "fused"])
    dp.add_argument("--force", action="store_true",
                    help="take over an interface that carries a program nfpipe did not make")
    dp.add_argument("--json", action="store_true")
    dp.set_defaults(func=cmd_deploy)

    st = sub.add_parser("status", help="deployed pipelines, rebuilt from bpffs and the kernel")
    st.add_argument("name", nargs="?")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    ss = sub.add_parser("stats", help="per-node, per-outcome counters of a deployed pipeline")
    ss.add_argument("name", nargs="?")
    ss.add_argument("--json", action="store_true")
    ss.add_argument("--watch", action="store_true", help="a live table with rates")
    ss.add_argument("--interval", type=float, default=1.0)
    ss.add_argument("--prometheus", action="store_true",
                    help="all (or NAME's) counters in the Prometheus text format")
    ss.set_defaults(func=cmd_stats)

    mp = sub.add_parser("map", help="read and edit a deployed pipeline's maps")
    msub = mp.add_subparsers(dest="map_command", metavar="ACTION", required=True)
    for action, helptext in (("dump", "every entry"), ("get", "one entry"),
                             ("set", "write one entry"), ("delete", "remove one entry")):
        a = msub.add_parser(action, help=helptext)
        a.add_argument("pipeline")
        a.add_argument("map", help="the map's name, e.g. fw__hits or nfp_stats")
        if action != "dump":
            a.add_argument("key", help="JSON (42, {\"field\": 1}) or 0x-hex")
        if action == "set":
            a.add_argument("value", help="JSON or 0x-hex")
        if action in ("dump", "get"):
            a.add_argument("--json", action="store_true")
        a.set_defaults(func=cmd_map)

    ru = sub.add_parser("rules", help="show a deployed filter node's rules and hits, or "
                                      "replace them atomically")
    ru.add_argument("pipeline")
    ru.add_argument("node")
    ru.add_argument("file", nargs="?",
                    help="YAML with the filter config (rules, default, ...): replaces those "
                         "keys; without it, show the rules")
    ru.add_argument("--json", action="store_true")
    ru.set_defaults(func=cmd_rules)

    be = sub.add_parser("backends", help="show a deployed LB node's VIPs and backends, or "
                                         "change them without reloading")
    be.add_argument("pipeline")
    be.add_argument("node")
    be.add_argument("file", nargs="?",
                    help="YAML with 'vips:' (as in the pipeline file): the new VIPs and "
                         "backends; without it, show them")
    be.add_argument("--purge", action="store_true",
                    help="let retired backends (removed while flows used them) go")
    be.add_argument("--json", action="store_true")
    be.set_defaults(func=cmd_backends)

    ds = sub.add_parser("destroy", help="detach and unpin everything a deploy made")
    ds.add_argument("name")
    ds.add_argument("--json", action="store_true")
    ds.set_defaults(func=cmd_destroy)

    dm = sub.add_parser("demo", help="topology, deploy, real traffic, stats, teardown")
    dm.add_argument("--loader", action="store_true",
                    help="the foundation demo: compile, load and test-run one XDP program")
    dm.add_argument("--json", action="store_true")
    dm.set_defaults(func=cmd_demo)
    from nfpipe.topo.cli import register_topo
    register_topo(sub)
    from nfpipe.attach.cli import register as _register_attach
    _register_attach(sub)
    return p


# Commands that print only when done: a spinner on stderr if one takes over a second
# (deploy names its steps itself; bench and demo print as they go).
_SPINNER = frozenset({"compile", "object", "validate", "plan", "probe", "status", "destroy",
                      "rules", "backends"})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in _SPINNER:
            from nfpipe.cli import ui
            with ui.progress(f"nfpipe {args.command}"):
                return args.func(args)
        return args.func(args)
    except NfpipeError as exc:
        print(f"nfpipe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nfpipe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
