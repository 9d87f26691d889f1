"""The ``nfpipe`` command: a thin layer over the library.

This module declares every verb and its options (the whole command line at a
glance) and dispatches to the command's function in ``nfpipe.cli.<group>``,
imported only when that verb runs, so ``nfpipe --help`` or ``nfpipe validate``
never loads what ``nfpipe deploy`` needs.  ``--json``, ``-v`` and ``--version``
are declared once (``nfpipe.cli.output.common``).

Exit codes: 0 success; 1 a runtime failure (kernel refused, compile failed,
verifier rejected); 2 bad input (usage, spec or graph errors); 130 interrupted.
Every failure prints one paragraph on stderr, prefixed ``nfpipe: error:``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from nfpipe import __version__
from nfpipe.cli.output import EXIT_INTERRUPTED, EXIT_OK, common, error_record, print_json
from nfpipe.errors import CompileError, NfpipeError, UsageError, VerifierError

# Commands that print only when done: a spinner on stderr if one takes over a second
# (deploy names its steps itself; bench and demo print as they go).
_SPINNER = frozenset({"compile", "object", "validate", "plan", "probe", "status", "destroy",
                      "rules", "backends", "test"})


def _run(group: str, name: str):
    """The command *name* of module ``nfpipe.cli.<group>``, imported when it runs."""
    def call(args):
        return getattr(importlib.import_module(f"nfpipe.cli.{group}"), name)(args)
    call.__name__ = name
    return call


class _Parser(argparse.ArgumentParser):
    """argparse with its complaints as UsageError, so they are reported like every
    other failure (one paragraph; a JSON error object under --json; exit code 2)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="nfpipe", parents=[common(root=True)],
        description="nfpipe: a declared graph of eBPF network functions as one XDP or TC "
                    "pipeline.",
        epilog="exit codes: 0 success, 1 runtime failure (kernel, compiler or verifier "
               "refused), 2 bad input (usage, spec, graph), 130 interrupted. "
               "Start with: nfpipe demo",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"nfpipe {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    opts = common()

    def verb(parent, name: str, help: str, func, **kw) -> argparse.ArgumentParser:
        a = parent.add_parser(name, help=help, parents=[opts], **kw)
        a.set_defaults(func=func)
        return a

    c = verb(sub, "compile", "compile a C program, or a network function (catalog name or "
                             "C file on nf.h) as a loadable node, to a BPF object",
             _run("objects", "cmd_compile"))
    c.add_argument("source", help="a .c file, or a catalog NF: filter, nat, lb, telemetry")
    c.add_argument("--hook", choices=["xdp", "tc"], help="an NF's hook (default xdp)")
    c.add_argument("--instance", help="an NF's node name: its maps are <instance>__<map> "
                                      "(default: the file's stem)")
    c.add_argument("--mode", choices=["standalone", "tailcall"],
                   help="an NF alone (ports pass; default) or as one tail-call node")
    c.add_argument("-o", "--output", help="where to write the object (default: the cache)")
    c.add_argument("-D", "--define", action="append", metavar="NAME[=VALUE]")
    c.add_argument("-I", "--include", action="append", metavar="DIR")

    verb(sub, "doctor", "show which compiler and headers nfpipe uses, and why",
         _run("objects", "cmd_doctor"))

    o = sub.add_parser("object", help="inspect a BPF object file")
    osub = o.add_subparsers(dest="object_command", metavar="ACTION", required=True)
    show = verb(osub, "show", "programs, maps and variables of an object",
                _run("objects", "cmd_object_show"))
    show.add_argument("object")

    pr = sub.add_parser("prog", help="run programs in the kernel without attaching them")
    psub = pr.add_subparsers(dest="prog_command", metavar="ACTION", required=True)
    run = verb(psub, "run", "load an object and BPF_PROG_TEST_RUN one program",
               _run("objects", "cmd_prog_run"))
    run.add_argument("object")
    run.add_argument("program")
    run.add_argument("--packet-hex", required=True, help="the input packet, as hex")
    run.add_argument("--repeat", type=int, default=1)
    run.add_argument("--set", action="append", metavar="NAME=VALUE",
                     help="set a .rodata constant before load (repeatable)")
    run.add_argument("--dump-maps", action="store_true", help="print every map after the run")

    v = verb(sub, "validate", "check a pipeline file, compile it and load it through the "
                              "verifier; report every problem", _run("pipelines", "cmd_validate"))
    v.add_argument("file")
    v.add_argument("--no-build", action="store_true",
                   help="check the file and the graph only (no compiler, no kernel)")
    v.add_argument("--linking", choices=["tailcall", "fused"],
                   help="verify this linking instead of the file's")

    pl = verb(sub, "plan", "show what a pipeline builds to: order, slots, linking",
              _run("pipelines", "cmd_plan"))
    pl.add_argument("file")
    pl.add_argument("--linking", choices=["tailcall", "fused"],
                    help="override the file's linking")
    pl.add_argument("--maps", action="store_true", help="compile and list each node's maps")
    pl.add_argument("--dot", action="store_true", help="print the graph as Graphviz DOT")
    pl.add_argument("--iface", action="append", metavar="[NETNS:]IFACE",
                    help="explain the attach mode chosen for this interface (probes it)")
    pl.add_argument("--mode", help="a forced mode to check instead of the file's")

    b = verb(sub, "bench", "ns/packet of NFs and pipelines in the kernel, as ratios",
             _run("pipelines", "cmd_bench"))
    b.add_argument("cases", nargs="*", help="case name prefixes (default: all)")
    b.add_argument("--repeat", type=int, default=200_000)
    b.add_argument("--rounds", type=int, default=None,
                   help="measurements per case (default: 5; in the kernel: per load)")
    b.add_argument("--loads", type=int, default=3,
                   help="in the kernel: each case loaded this many times, its median taken "
                        "over all (a program's cost moves with where the JIT puts it)")
    b.add_argument("--live", action="store_true",
                   help="live frames on a veth into a device under test: nfpipe beside a "
                        "hand-written program, nftables, iptables and xdp-filter "
                        "(case names: configurations)")
    b.add_argument("--frames", type=int, default=None,
                   help="frames per measurement with --live (default 2,000,000) and "
                        "--scale (1,000,000)")
    b.add_argument("--control", action="store_true",
                   help="the control path: deploy cold and warm, updates, destroy, and "
                        "filter rule sets of 10 / 1k / 10k rules built, deployed, updated")
    b.add_argument("--scale", action="store_true",
                   help="live frames at 10 / 1k / 10k filter rules: nfpipe beside nftables "
                        "rule for rule and nftables with sets (case names: ways or scales)")
    b.add_argument("--png", metavar="FILE",
                   help="also draw the run as one figure (needs matplotlib: "
                        "pip install 'nfpipe[bench]')")

    dp = verb(sub, "deploy", "build, load, check, attach and pin a pipeline",
              _run("deployed", "cmd_deploy"))
    dp.add_argument("file")
    dp.add_argument("--iface", action="append", metavar="[NETNS:]IFACE",
                    help="interface to attach to (repeatable; default: the file's)")
    dp.add_argument("--mode", help="force a mode: xdp native|generic|offload|auto, "
                                   "tc tcx|clsact|auto")
    dp.add_argument("--linking", choices=["tailcall", "fused"])
    dp.add_argument("--force", action="store_true",
                    help="take over an interface that carries a program nfpipe did not make")

    st = verb(sub, "status", "deployed pipelines, rebuilt from bpffs and the kernel",
              _run("deployed", "cmd_status"))
    st.add_argument("name", nargs="?")

    ss = verb(sub, "stats", "per-node, per-outcome counters of a deployed pipeline",
              _run("deployed", "cmd_stats"))
    ss.add_argument("name", nargs="?")
    ss.add_argument("--watch", action="store_true", help="a live table with rates")
    ss.add_argument("--interval", type=float, default=1.0)
    ss.add_argument("--prometheus", action="store_true",
                    help="all (or NAME's) counters in the Prometheus text format")

    mp = sub.add_parser("map", help="read and edit a deployed pipeline's maps")
    msub = mp.add_subparsers(dest="map_command", metavar="ACTION", required=True)
    for action, helptext in (("dump", "every entry"), ("get", "one entry"),
                             ("set", "write one entry"), ("delete", "remove one entry")):
        a = verb(msub, action, helptext, _run("deployed", "cmd_map"))
        a.add_argument("pipeline")
        a.add_argument("map", help="the map's name, e.g. fw__hits or nfp_stats")
        if action != "dump":
            a.add_argument("key", help="JSON (42, {\"field\": 1}) or 0x-hex")
        if action == "set":
            a.add_argument("value", help="JSON or 0x-hex")

    ru = verb(sub, "rules", "show a deployed filter node's rules and hits, or replace them "
                            "atomically", _run("deployed", "cmd_rules"))
    ru.add_argument("pipeline")
    ru.add_argument("node")
    ru.add_argument("file", nargs="?",
                    help="YAML with the filter config (rules, default, ...): replaces those "
                         "keys; without it, show the rules")

    be = verb(sub, "backends", "show a deployed LB node's VIPs and backends, or change them "
                               "without reloading", _run("deployed", "cmd_backends"))
    be.add_argument("pipeline")
    be.add_argument("node")
    be.add_argument("file", nargs="?",
                    help="YAML with 'vips:' (as in the pipeline file): the new VIPs and "
                         "backends; without it, show them")
    be.add_argument("--purge", action="store_true",
                    help="let retired backends (removed while flows used them) go")

    pc = verb(sub, "pcap", "a deployed telemetry node's sampled packets as pcap (a file, or "
                           "-w - for tcpdump -r -)", _run("deployed", "cmd_pcap"))
    pc.add_argument("pipeline")
    pc.add_argument("node")
    pc.add_argument("-w", "--write", required=True, metavar="FILE",
                    help="the pcap file to write, or - for stdout")
    pc.add_argument("--follow", nargs="?", type=float, const=0.0, metavar="SECONDS",
                    help="keep writing samples as they come (for SECONDS; default: until "
                         "Ctrl-C)")
    pc.add_argument("-c", "--count", type=int, metavar="N", help="stop after N packets")

    ds = verb(sub, "destroy", "detach and unpin everything a deploy made",
              _run("deployed", "cmd_destroy"))
    ds.add_argument("name")

    pb = verb(sub, "probe", "what this kernel and an interface can do for nfpipe (program/"
                            "map types, helpers, links, XDP features)",
              _run("probe", "cmd_probe"))
    pb.add_argument("iface", nargs="?", metavar="[NETNS:]IFACE",
                    help="interface to probe (trial attach only here, and only when nothing "
                         "is attached)")
    pb.add_argument("--netns", metavar="NS", help="network namespace of IFACE (a name under "
                                                  "/var/run/netns, or a path)")
    pb.add_argument("--no-trial", action="store_true",
                    help="do not try native XDP attach or an offload load on IFACE")
    pb.add_argument("--no-kernel", action="store_true", help="skip the kernel-wide probe")

    t = sub.add_parser("topo", help="network-namespace topologies for tests "
                                    "(up/down/status/exec)")
    tsub = t.add_subparsers(dest="topo_command", metavar="ACTION", required=True)
    up = verb(tsub, "up", "create a topology's namespaces, veths, addresses, routes",
              _run("topo", "cmd_up"))
    up.add_argument("file")
    up.add_argument("--run-id", help="name of this run (default: random); up is idempotent "
                                     "for a given run id")
    dn = verb(tsub, "down", "remove everything a topology run made", _run("topo", "cmd_down"))
    dn.add_argument("target", nargs="?", metavar="FILE", help="topology file (or its name)")
    dn.add_argument("--all", action="store_true", help="every nfpipe topology on this machine")
    dn.add_argument("--run-id")
    verb(tsub, "status", "list topology runs, including leftovers of crashes",
         _run("topo", "cmd_status"))
    te = verb(tsub, "exec", "run a command inside a host's namespace", _run("topo", "cmd_exec"))
    te.add_argument("file")
    te.add_argument("host")
    te.add_argument("--run-id")
    te.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")

    tt = verb(sub, "test", "run a pipeline's test cases (PIPELINE.test.yaml) in the kernel, "
                           "tail-called and fused", _run("testcmd", "cmd_test"))
    tt.add_argument("file", metavar="PIPELINE.yaml")
    tt.add_argument("cases", nargs="?", metavar="CASES.yaml",
                    help="the test-case file (default: PIPELINE.test.yaml)")
    tt.add_argument("--linking", choices=["tailcall", "fused", "both"], default="both",
                    help="run the cases with this linking (default: both, each reported)")
    tt.add_argument("--hook", action="append", choices=["xdp", "tc-ingress", "tc-egress"],
                    help="run at this hook instead of the file's (repeatable)")
    tt.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    tt.add_argument("-k", action="append", metavar="NAME",
                    help="only the cases whose name contains NAME (repeatable)")

    ex = verb(sub, "examples", "the example pipelines nfpipe ships; --copy DIR to start "
                               "from one", _run("pipelines", "cmd_examples"))
    ex.add_argument("names", nargs="*", metavar="NAME", help="only these examples")
    ex.add_argument("--copy", metavar="DIR",
                    help="copy them (with the C files they use) into DIR")

    ag = verb(sub, "agent", "per-host daemon: deploy, update and destroy the pipelines a "
                            "desired state (etcd or a directory) gives this host; report back",
              _run("agent", "cmd_agent"))
    ag.add_argument("--host", help="this host's name in the fleet (default: the hostname)")
    ag.add_argument("--label", action="append", metavar="KEY=VALUE",
                    help="a label of this host that pipelines select on (repeatable)")
    ag.add_argument("--dir", metavar="DIR", help="desired pipelines: a directory of documents")
    ag.add_argument("--etcd", metavar="URL[,URL]", help="desired pipelines: etcd endpoints")
    ag.add_argument("--prefix", default="/nfpipe", help="etcd key prefix (default /nfpipe)")
    ag.add_argument("--state-dir", default="/var/lib/nfpipe/agent",
                    help="where the agent records what it owns (default /var/lib/nfpipe/agent)")
    ag.add_argument("--root", default="/sys/fs/bpf/nfpipe", help="the deploy state root")
    ag.add_argument("--listen", default="127.0.0.1:9465", metavar="HOST:PORT",
                    help="/metrics, /healthz, /status (default 127.0.0.1:9465; 'off': none)")
    ag.add_argument("--resync", type=float, default=30.0, metavar="S",
                    help="reconcile at least every S seconds (default 30)")
    ag.add_argument("--backoff", type=float, default=5.0, metavar="S",
                    help="first retry of a failed deploy after S seconds, doubling (default 5)")
    ag.add_argument("--once", action="store_true",
                    help="one pass, print the report, exit (1 if a deploy failed)")
    ag.add_argument("--dry-run", action="store_true",
                    help="a simulated host: deploy nothing, report as if it had")

    fl = sub.add_parser("fleet", help="the fleet through etcd: status, rolling updates gated "
                                      "on health, rollback")
    fsub = fl.add_subparsers(dest="fleet_command", metavar="ACTION", required=True)
    fs = verb(fsub, "status", "every host's pipelines: revision applied, state, health, errors",
              _run("agent", "cmd_fleet_status"))
    fs.add_argument("name", nargs="?")
    fr = verb(fsub, "rollout", "a desired-pipeline document onto the fleet in batches, each "
                               "gated on health; a failing gate rolls back",
              _run("agent", "cmd_fleet_rollout"))
    fr.add_argument("file")
    fr.add_argument("--max-unavailable", default="1", metavar="N|P%",
                    help="hosts per batch (default 1)")
    fr.add_argument("--settle", type=float, default=10.0, metavar="S",
                    help="seconds each batch must stay healthy (default 10)")
    fr.add_argument("--max-drop-ratio", type=float, default=1.0, metavar="R",
                    help="drops / packets allowed during the settle time (default 1: any)")
    fr.add_argument("--timeout", type=float, default=120.0, metavar="S",
                    help="for a batch to report the new revision (default 120)")
    fr.add_argument("--dry-run", action="store_true", help="show the batches, change nothing")
    fb = verb(fsub, "rollback", "the document before the last rollout, on every host at once",
              _run("agent", "cmd_fleet_rollback"))
    fb.add_argument("name")
    for a in (fs, fr, fb):
        a.add_argument("--etcd", required=True, metavar="URL[,URL]", help="etcd endpoints")
        a.add_argument("--prefix", default="/nfpipe", help="etcd key prefix (default /nfpipe)")

    dm = verb(sub, "demo", "topology, deploy, real traffic, stats, teardown",
              _run("pipelines", "cmd_demo"))
    dm.add_argument("--loader", action="store_true",
                    help="the foundation demo: compile, load and test-run one XDP program")
    return p


def _detail(exc: NfpipeError) -> str:
    """What -v adds to a failure: the whole verifier log, the compiler's command."""
    if isinstance(exc, VerifierError) and exc.log:
        return "verifier log:\n" + exc.log.rstrip()
    if isinstance(exc, CompileError) and exc.command:
        return "compiler command: " + " ".join(exc.command)
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        if "--json" in argv:
            print_json(error_record(exc))
        print(f"nfpipe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.cc:
        os.environ["NFPIPE_CC"] = args.cc
    if args.verbose:
        logging.basicConfig(format="nfpipe: %(name)s: %(message)s", stream=sys.stderr)
        logging.getLogger("nfpipe").setLevel(logging.DEBUG if args.verbose > 1
                                             else logging.INFO)
    try:
        if args.command in _SPINNER:
            from nfpipe.cli import ui
            with ui.progress(f"nfpipe {args.command}"):
                return args.func(args)
        return args.func(args)
    except NfpipeError as exc:
        if args.json:
            print_json(error_record(exc, verbose=bool(args.verbose)))
        print(f"nfpipe: error: {exc}", file=sys.stderr)
        if args.verbose and _detail(exc):
            print(_detail(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nfpipe: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
