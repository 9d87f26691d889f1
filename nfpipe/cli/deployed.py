"""``nfpipe deploy | status | stats | map | rules | backends | destroy``: pipelines that
run, read and changed through what bpffs and the kernel hold."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from nfpipe import deploy as D
from nfpipe.attach import Target
from nfpipe.btf.present import from_display, to_display
from nfpipe.catalog.filter import action_text
from nfpipe.cli import ui
from nfpipe.cli.output import EXIT_FAILURE, EXIT_OK, json_arg, jsonable, print_json, usage
from nfpipe.yamldoc import load_file


def _where(i: dict) -> str:
    return str(Target(i["iface"], i.get("netns")))


def cmd_deploy(args) -> int:
    targets = [Target.parse(t) for t in args.iface or []]
    with ui.progress("deploying") as say:
        m = D.deploy(args.file, targets=targets or None, mode=args.mode,
                     linking=args.linking, force=args.force, progress=say)
    if args.json:
        print_json(m.report())
        return EXIT_OK
    upd = m.update
    if upd is None:
        print(f"deployed {m.pipeline} ({m.hook}, {m.linking} linking, "
              f"{len(m.nodes)} nodes), revision {m.revision}")
    elif upd["how"] == "unchanged":
        print(f"{m.pipeline}: unchanged (revision {m.revision} already runs this file)")
    else:
        print(f"updated {m.pipeline} to revision {m.revision} — {upd['lines'][0]}")
        for line in upd["lines"][1:]:
            print(line)
    ui.show(ui.table(["interface", "mode", "via", "entry program"],
                     [(str(Target(i.iface, i.netns)), i.mode, i.kind, i.prog_id)
                      for i in m.interfaces]))
    print(f"state pinned in {D.state_dir(m.pipeline)}")
    return EXIT_OK


def cmd_status(args) -> int:
    rows = D.status(args.name)
    if args.json:
        print_json(rows)
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
    if args.prometheus:
        sys.stdout.write(D.prometheus([args.name] if args.name else None))
        return EXIT_OK
    if not args.name:
        raise usage("stats needs a pipeline name (or --prometheus for all)")
    if args.json:
        print_json(D.stats(args.name))
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


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def cmd_map(args) -> int:
    """A deployed map's entries; addresses and ports shown (and taken) as people write
    them where the BTF type says what a field is (nfpipe.btf.present)."""
    with D.open_map(args.pipeline, args.map) as m:
        def key_out(k):
            return to_display(m.key_codec, k)

        def value_out(v):
            if m.percpu and isinstance(v, list):
                return [to_display(m.value_codec, x) for x in v]
            return to_display(m.value_codec, v)

        if args.map_command == "dump":
            entries = [{"key": key_out(k), "value": value_out(v)} for k, v in m.items()] \
                if m.dumpable else []
            if args.json:
                print_json(entries)
            else:
                for e in entries:
                    print(f"{jsonable(e['key'])} = {jsonable(e['value'])}")
                print(f"({len(entries)} entries; {m.type_name}, max {m.max_entries}; "
                      f"{_mib(m.memory)} of kernel memory)")
            return EXIT_OK
        key = from_display(m.key_codec, json_arg(args.key, "key"))
        if args.map_command == "get":
            value = m.lookup(key)
            if value is None:
                raise usage(f"map '{args.map}' has no entry for key {args.key}")
            print_json(value_out(value)) if args.json else print(jsonable(value_out(value)))
            return EXIT_OK
        if args.map_command == "set":
            m.update(key, from_display(m.value_codec, json_arg(args.value, "value")))
            if args.json:
                print_json({"key": key_out(key), "value": value_out(m.lookup(key))})
        else:
            if not m.delete(key):
                raise usage(f"map '{args.map}' has no entry for key {args.key}")
            if args.json:
                print_json({"key": key_out(key), "deleted": True})
        return EXIT_OK


def _config_file(path: str, what: str) -> dict:
    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise usage(f"{path}: expected {what}")
    return doc.data


def cmd_rules(args) -> int:
    """Show a filter node's rules with their hit counts, or replace them from a file."""
    if args.file:
        out = D.set_filter_rules(args.pipeline, args.node, _config_file(
            args.file, "a filter config (rules, default, fragments, malformed)"))
        if args.json:
            print_json(out)
        else:
            print(f"{args.pipeline}/{args.node}: {out['rules']} rules active "
                  f"(revision {out['revision']}, no program reloaded)")
        return EXIT_OK
    impl, maps = D.node_view(args.pipeline, args.node)
    try:
        if impl.kind != "filter":
            raise usage(f"node '{args.node}' is a {impl.kind} node, not a filter")
        hits = impl.hits(maps)
        stats = impl.stats(maps)
    finally:
        D.close_node_maps(maps)
    rules = [{"index": i, "name": r.name, "action": action_text(r.action), "hits": h,
              "rule": impl.config["rules"][i]} for i, (r, h) in enumerate(zip(impl.rules, hits))]
    if args.json:
        print_json({"rules": rules, "default": action_text(impl.default),
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
    if args.file:
        cfg = _config_file(args.file, "an lb config with 'vips'")
        if set(cfg) != {"vips"}:
            raise usage(f"{args.file}: expected only 'vips' (the VIPs and their backends); "
                         f"got {', '.join(sorted(cfg))}")
        out = D.configure(args.pipeline, args.node, cfg, kind="lb")
        if args.json:
            print_json(out)
        else:
            print(f"{args.pipeline}/{args.node}: {len(cfg['vips'])} VIP(s) updated "
                  f"(revision {out['revision']}, no program reloaded; established "
                  f"connections keep their backends)")
        return EXIT_OK
    if args.purge:
        names = D.purge_backends(args.pipeline, args.node)
        if args.json:
            print_json({"purged": names})
        else:
            print(f"purged {len(names)} retired backend(s)" +
                  (f": {', '.join(names)}" if names else ""))
        return EXIT_OK
    impl, maps = D.node_view(args.pipeline, args.node)
    try:
        if impl.kind != "lb":
            raise usage(f"node '{args.node}' is a {impl.kind} node, not an lb")
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
        print_json({"backends": rows, "vips": st["vips"], "global": st["global"]})
        return EXIT_OK
    ui.show(ui.table(["vip", "backend", "weight", "state", "packets", "new flows"],
                     [(r["vip"], r["backend"], r["weight"], r["state"],
                       "" if r["packets"] is None else f"{r['packets']:,}",
                       "" if r["new_flows"] is None else f"{r['new_flows']:,}")
                      for r in rows], title=f"{args.pipeline}/{args.node}",
                     right=["weight", "packets", "new flows"]))
    return EXIT_OK


def cmd_destroy(args) -> int:
    lines = D.destroy(args.name)
    if args.json:
        print_json(lines)
        return EXIT_OK
    for line in lines:
        print(line)
    return EXIT_OK


def cmd_pcap(args) -> int:
    """A telemetry node's sampled packets as pcap: into a file, or (-w -) to stdout for
    ``tcpdump -r -``; --follow keeps writing as packets are sampled."""
    impl, maps = D.node_view(args.pipeline, args.node)
    try:
        if impl.kind != "telemetry":
            raise usage(f"node '{args.node}' is a {impl.kind} node, not a telemetry node "
                        f"(pcap samples come from telemetry's sample_rate)")
        if not impl.sample_rate:
            raise usage(f"telemetry node '{args.node}' samples nothing (sample_rate: 0); set "
                        f"sample_rate in its config and deploy")
        target = sys.stdout.buffer if args.write == "-" else args.write
        try:
            n = impl.write_pcap(maps, target, follow=args.follow, limit=args.count)
        except KeyboardInterrupt:
            return EXIT_OK
    finally:
        D.close_node_maps(maps)
    if args.write != "-":
        if args.json:
            print_json({"file": args.write, "packets": n})
        else:
            print(f"{n} packets written to {args.write}")
    return EXIT_OK
