"""``nfpipe validate | plan | bench | demo``: pipeline files before they run."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nfpipe import bench, resources
from nfpipe.attach import Target
from nfpipe.cli.output import EXIT_OK, EXIT_USAGE, print_json
from nfpipe.compose import FUSED, build, make_plan
from nfpipe.compose.offload import offload_build, offload_problems
from nfpipe.deploy.placement import place
from nfpipe.graph import problems_of, warnings_of
from nfpipe.runtime.verify import verify
from nfpipe.spec import PipelineSpec
from nfpipe.spec.pipeline import parse_pipeline_collect
from nfpipe.yamldoc import Problem, load_file


def cmd_validate(args) -> int:
    """The file, the graph, then (unless --no-build) every node compiled and the pipeline
    loaded through the verifier: "valid" means it deploys."""
    spec, problems = parse_pipeline_collect(load_file(args.file))
    if spec is not None:
        problems = problems + problems_of(spec, args.linking)
    if spec is not None and not problems and spec.mode == "offload":
        problems = _offload_problems(spec)
    checked = None
    if spec is not None and not problems and not args.no_build:
        checked = verify(spec, linking=args.linking)
        problems = checked.problems
    warnings = spec.warnings + warnings_of(spec) if spec is not None else []
    if not args.json:
        for w in warnings:
            print(f"{w.pos}: warning: {w.message}", file=sys.stderr)
    if args.json:
        print_json({"file": args.file, "valid": not problems,
                    "warnings": [{"file": w.pos.file, "line": w.pos.line, "column": w.pos.column,
                                  "node": w.node, "message": w.message} for w in warnings],
                    "compiled": bool(checked and checked.compiled),
                    "verified": bool(checked and checked.verified),
                    "not_verified": checked.not_verified if checked else "--no-build",
                    "problems": [{"file": p.pos.file, "line": p.pos.line,
                                  "column": p.pos.column, "node": p.node,
                                  "message": p.message} for p in problems]})
    elif problems:
        for p in problems:
            print(str(p), file=sys.stderr)
        print(f"{args.file}: {len(problems)} problem{'s' if len(problems) > 1 else ''}",
              file=sys.stderr)
    else:
        how = ("not compiled (--no-build)" if checked is None else
               f"{checked.linking} linking compiled and verified by the kernel"
               if checked.verified else f"compiled; not verified: {checked.not_verified}")
        print(f"{args.file}: valid ({spec.name}: {len(spec.nodes)} nodes, "
              f"{len(spec.edges)} edges, hook {spec.hook}; {how})")
    return EXIT_OK if not problems else EXIT_USAGE


def _offload_problems(spec):
    """Compile the fused pipeline and check it against the offload profile."""
    texts = offload_problems(build(make_plan(spec)))
    pos = spec.doc.at(("mode",)) if spec.doc else spec.nodes[spec.entry].pos
    return [Problem(pos, f"mode offload: {t}") for t in texts]


def cmd_plan(args) -> int:
    spec = PipelineSpec.from_file(args.file)
    mode = args.mode or spec.mode
    plan = make_plan(spec, linking=args.linking, mode=mode)
    if args.iface:
        built = build(plan) if mode == "offload" or plan.linking == "fused" else None
        rows = []
        for text in args.iface:
            t = Target.parse(text)
            rows.append(place(spec.hook, t.ifname, t.netns, mode=mode, build=built))
        if args.json:
            print_json([{"iface": r.iface, "netns": r.netns, "mode": r.mode,
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
        built = build(plan)
        for node in info["nodes"]:
            ospec = built.objects.get(node["id"]) or built.objects[FUSED]
            prefix = f"{node['id']}__"
            node["maps"] = [{"name": m.name[len(prefix):], "type": m.type_name,
                             "max_entries": m.max_entries}
                            for m in ospec.maps.values() if m.name.startswith(prefix)]
    ob = None
    if mode == "offload":
        # what deploy --mode offload checks, against nfp's profile (with --iface: the
        # device's driver's)
        ob = offload_build(build(plan))
        info["offload"] = {"profile": ob.profile, "ok": ob.ok, "problems": ob.problems,
                           "decisions": ob.decisions}
    if args.json:
        print_json(info)
        return EXIT_OK
    how = ("tail calls through the program array nfp_jmp" if plan.linking == "tailcall"
           else "one fused program")
    print(f"pipeline {info['pipeline']}: hook {info['hook']}, linking {plan.linking} ({how})")
    print(f"entry {info['entry']}" + (f"; a missed tail call counts and ends in "
                                      f"'{info['miss_verdict']}'"
                                      if plan.linking == "tailcall" else ""))
    for node in info["nodes"]:
        slot = f"slot {node['slot']:<2}" if plan.linking == "tailcall" else f"#{node['slot']:<6}"
        nf = Path(node["nf"]).name if node["nf"].endswith(".c") else node["nf"]
        print(f"  {slot} {node['id']:<16} {nf}")
        for port, target in node["ports"].items():
            print(f"           {port:<10} -> {target}")
        if node.get("constants"):
            consts = ", ".join(f"{k}={v}" for k, v in node["constants"].items())
            print(f"           constants: {consts}")
        for m in node.get("maps", []):
            print(f"           map {m['name']:<18} {m['type']:<14} {m['max_entries']} entries")
    if ob is not None:
        print(ob.explain())
    return EXIT_OK


def cmd_bench(args) -> int:
    if args.png:                            # refuse before measuring, not after
        from nfpipe.bench import figure
        figure.require_matplotlib()
    if args.control:
        from nfpipe.bench.control import as_json, run_control
        data = as_json(run_control(args.rounds or 3, json_output=args.json))
    elif args.scale:
        from nfpipe.bench.scale import as_json, run_scale
        data = as_json(run_scale(args.cases or None, frames=args.frames or 1_000_000,
                                 rounds=args.rounds or 3,
                                 json_output=args.json))
    elif args.live:
        from nfpipe.bench.live import as_json
        data = as_json(bench.run_live(args.cases or None, frames=args.frames or 2_000_000,
                                      rounds=args.rounds or 5, json_output=args.json))
    else:
        rounds = args.rounds or 5
        if not args.json:
            print(f"ns per packet in the kernel (BPF_PROG_TEST_RUN, {args.repeat} repeats, "
                  f"median of {rounds} rounds in each of {args.loads} loads); compare the "
                  f"ratios, not the times")
        results = bench.run(args.cases or None, repeat=args.repeat, rounds=rounds,
                            loads=args.loads, json_output=args.json)
        base = results[0].ns
        cases = [{"case": r.name, "ns_per_packet": r.ns, "ratio_to_baseline": r.ns / base,
                  "samples": r.samples, **({"note": r.note} if r.note else {})}
                 for r in results]
        rows, edge = bench.compare(results), bench.compare_edge(results)
        hops = bench.compare_hops(results)
        data: Any = cases
        if rows or edge or hops:
            data = {"cases": cases}
            if rows:
                data["firewall_vs_handwritten"] = rows
            if hops:
                data["tailcall_hops"] = hops
            if edge:
                data["edge_vs_handwritten"] = edge
    if args.png:
        drawn = figure.write_png(data, args.png)
        if not args.json:
            print(f"figure ({', '.join(drawn)}) written to {args.png}")
    if args.json:
        print_json(data)
    return EXIT_OK


def cmd_demo(args) -> int:
    from nfpipe.demo import run_demo, run_pipeline_demo  # brings up topologies: only here
    if args.loader:
        return run_demo(json_output=args.json)
    return run_pipeline_demo(json_output=args.json)


def cmd_examples(args) -> int:
    """List the example pipelines nfpipe ships, or copy them out to start from."""
    if args.copy:
        written = resources.copy_examples(args.copy, args.names or None)
        if args.json:
            print_json([str(p) for p in written])
        else:
            for p in written:
                print(p)
            first = next(p for p in written if not p.name.endswith(".test.yaml"))
            print(f"try: nfpipe validate {Path(args.copy) / first.name}")
        return EXIT_OK
    rows = []
    for p in resources.examples():
        if args.names and p.stem not in {n.removesuffix(".yaml") for n in args.names}:
            continue
        spec = PipelineSpec.from_file(p)
        rows.append({"name": p.stem, "file": str(p), "hook": spec.hook,
                     "nodes": [n.nf if n.kind != "c" else Path(n.nf).name
                               for n in spec.nodes.values()],
                     "description": spec.description or _first_comment(p)})
    if args.json:
        print_json(rows)
        return EXIT_OK
    for r in rows:
        print(f"{r['name']:<12} {r['hook']:<10} {' -> '.join(r['nodes'])}")
        if r["description"]:
            print(f"{'':<12} {r['description']}")
    print("copy them out with: nfpipe examples --copy DIR")
    return EXIT_OK


def _first_comment(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").rstrip()
        if line.strip():
            break
    return ""
