"""``nfpipe topo up | down | status | exec``: the topology commands."""
from __future__ import annotations

import os

from nfpipe import resources
from nfpipe.cli.output import EXIT_OK, print_json, usage
from nfpipe.errors import NfpipeError
from nfpipe.topo.schema import NAME_RE, TopologySpec
from nfpipe.topo.topology import Topology, down_all, down_run, find_runs


def _pick_run(topology: str, run_id: str | None, *, for_what: str) -> str:
    if run_id is not None:
        return run_id
    runs = find_runs(topology)
    if len(runs) == 1:
        return runs[0]["run_id"]
    if not runs:
        raise usage(f"no run of topology '{topology}' is up; start one with "
                         f"'nfpipe topo up FILE'")
    raise usage(f"topology '{topology}' has {len(runs)} runs up "
                     f"({', '.join(r['run_id'] for r in runs)}); say which one to {for_what} "
                     f"with --run-id")


def cmd_up(args) -> int:
    topo = Topology.from_file(topology_file(args.file), run_id=args.run_id).up()
    status = topo.status()
    if args.json:
        print_json(status)
        return EXIT_OK
    print(f"topology {topo.name} run {topo.run_id}: up")
    for host, entry in list(status["hosts"].items()) + list(status["bridges"].items()):
        kind = "host" if host in status["hosts"] else "bridge"
        print(f"  {kind} {host:<10} netns {entry['netns']}")
        for ifn, i in entry["interfaces"].items():
            addrs = " ".join(i["addresses"])
            print(f"    {ifn:<6} ifindex {i['ifindex']:<3} mtu {i['mtu']:<5} {addrs}")
    if status["dut"]:
        print(f"  dut: {', '.join(status['dut'])}")
    print(f"take it down with: nfpipe topo down {args.file} --run-id {topo.run_id}")
    return EXIT_OK


def _topology_name(target: str) -> str:
    """A topology file's name, or the argument itself when it is a bare topology name."""
    if os.path.exists(target) or not NAME_RE.match(target):
        return TopologySpec.from_file(topology_file(target)).name
    return target


def cmd_down(args) -> int:
    if args.all:
        if args.target:
            raise usage("give either a topology FILE or --all, not both")
        removed = down_all()
    else:
        if not args.target:
            raise usage("say what to take down: a topology FILE (or name), or --all")
        name = _topology_name(args.target)
        if args.run_id is None and not find_runs(name):
            print(f"nothing of topology '{name}' is up")
            return EXIT_OK
        removed = down_run(name, _pick_run(name, args.run_id, for_what="take down"))
    for n in removed:
        print(f"removed netns {n}")
    if not removed:
        print("no namespace to remove (state cleared)")
    return EXIT_OK


def cmd_status(args) -> int:
    runs = find_runs()
    if args.json:
        print_json(runs)
        return EXIT_OK
    if not runs:
        print("no topology is up")
        return EXIT_OK
    for r in runs:
        flags = []
        if r["orphan"]:
            flags.append("no state file (leftover)")
        elif not r["complete"]:
            flags.append("incomplete (up failed or is running)")
        if r["missing"]:
            flags.append(f"{len(r['missing'])} namespace(s) missing")
        print(f"{r['topology']} run {r['run_id']}: {len(r['namespaces'])} namespaces"
              + (f"  [{'; '.join(flags)}]" if flags else "")
              + (f"  file {r['file']}" if r["file"] else ""))
        for n in r["namespaces"]:
            print(f"  {n}")
        if r["dut"]:
            print(f"  dut: {', '.join(r['dut'])}")
    return EXIT_OK


def cmd_exec(args) -> int:
    cmd = list(args.cmd)
    # argparse's REMAINDER also swallows options given after HOST: take ours back
    while cmd and cmd[0] != "--" and cmd[0].startswith("--run-id"):
        if cmd[0] == "--run-id" and len(cmd) > 1:
            args.run_id, cmd = cmd[1], cmd[2:]
        elif cmd[0].startswith("--run-id="):
            args.run_id, cmd = cmd[0].split("=", 1)[1], cmd[1:]
        else:
            raise usage("--run-id needs a value")
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise usage("no command given: nfpipe topo exec FILE HOST -- CMD [ARG...]")
    spec = TopologySpec.from_file(topology_file(args.file))
    topo = Topology(spec, _pick_run(spec.name, args.run_id, for_what="run in"))
    if not os.path.exists(topo.nspath(args.host)):
        raise usage(f"namespace {topo.netns(args.host)} does not exist: is run "
                         f"{topo.run_id} of '{spec.name}' up?")
    try:
        return topo.run(args.host, cmd).returncode
    except FileNotFoundError:
        raise usage(f"command not found: {cmd[0]}") from None
    except PermissionError as exc:
        raise NfpipeError(f"cannot run {cmd[0]} in {topo.netns(args.host)}: {exc}") from None


def topology_file(arg: str) -> str:
    """A topology file as given, or the name of one nfpipe ships (``two-hosts``)."""
    if os.path.exists(arg) or os.sep in arg:
        return arg
    shipped = resources.topologies_dir() / f"{arg.removesuffix('.yaml')}.yaml"
    return str(shipped) if shipped.is_file() else arg
