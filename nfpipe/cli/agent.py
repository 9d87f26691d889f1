"""``nfpipe agent``: the per-host daemon (``nfpipe.agent``), run in the foreground; and
``nfpipe fleet status|rollout|rollback`` (``nfpipe.agent.fleet``)."""
from __future__ import annotations

import logging
import signal
import socket
import sys

from nfpipe.agent import (
    Agent,
    DirectorySource,
    Endpoint,
    EtcdSource,
    Fleet,
    Gate,
    Reconciler,
    parse_labels,
    parse_listen,
)
from nfpipe.cli import ui
from nfpipe.cli.output import EXIT_OK, print_json
from nfpipe.errors import UsageError


def cmd_agent(args) -> int:
    if bool(args.dir) == bool(args.etcd):
        raise UsageError("nfpipe agent: give exactly one desired-state source: --dir DIR or "
                         "--etcd URL")
    host = args.host or socket.gethostname()
    labels = parse_labels(args.label)
    if args.dir:
        source = DirectorySource(args.dir, report_dir=f"{args.state_dir}/reports")
    else:
        source = EtcdSource(args.etcd, prefix=args.prefix, host=host)
    rec = Reconciler(host, labels, args.state_dir, root=args.root, backoff=args.backoff,
                     dry_run=args.dry_run)
    agent = Agent(source, rec, resync=args.resync)
    if args.once:
        agent.run_once()
        rep = agent.report()
        if args.json:
            print_json(rep)
        else:
            for name, p in rep["pipelines"].items():
                print(f"{name}: {p['state']}, {p['health']}, revision "
                      f"{p['applied_revision']}" + (f" -- {p['error']}" if p["error"] else ""))
        return 1 if rec.failures or not rep["agent"]["store_up"] else EXIT_OK
    if not logging.getLogger().handlers:
        logging.basicConfig(format="nfpipe agent: %(message)s", stream=sys.stderr)
        logging.getLogger("nfpipe").setLevel(logging.INFO)
    endpoint = None
    if args.listen != "off":
        endpoint = Endpoint(agent, parse_listen(args.listen))
        logging.getLogger("nfpipe.agent").info("%s: serving /metrics and /healthz on port %d",
                                               host, endpoint.port)

    def stop(_sig, _frame):
        agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        agent.run()
    finally:
        if endpoint is not None:
            endpoint.close()
        source.close()
    return EXIT_OK


def _fleet(args, say=None) -> Fleet:
    return Fleet(EtcdSource(args.etcd, prefix=args.prefix), say=say)


def cmd_fleet_status(args) -> int:
    st = _fleet(args).status(args.name)
    if args.json:
        print_json(st)
        return EXIT_OK
    rows = []
    for host, h in st["hosts"].items():
        if not h["pipelines"]:
            rows.append((host, "-", "-", "-", "-", "store down" if h["store_up"] is False
                         else ""))
        for name, p in h["pipelines"].items():
            why = p.get("error") or p.get("health_reason") or ""
            rows.append((host, name, f"{p.get('applied_revision')}/{p.get('desired_revision')}",
                         p.get("state"), p.get("health"), why[:80]))
    ui.show(ui.table(["host", "pipeline", "applied/desired", "state", "health", "error"], rows))
    for name, r in st["rollouts"].items():
        print(f"rollout of {name} to revision {r['to_revision']}: {r['state']}"
              + (f" ({r['failed_host']}: {r['reason']})" if r.get("reason") else ""))
    return EXIT_OK


def cmd_fleet_rollout(args) -> int:
    with open(args.file) as f:
        text = f.read()
    fleet = _fleet(args, say=None if args.json else print)
    res = fleet.rollout(text, max_unavailable=args.max_unavailable,
                        gate=Gate(settle=args.settle, max_drop_ratio=args.max_drop_ratio,
                                  timeout=args.timeout), dry_run=args.dry_run)
    if args.json:
        print_json(res.to_json())
    elif res.state == "planned":
        for i, b in enumerate(res.batches, 1):
            print(f"batch {i}: {', '.join(b)}")
    else:
        print(f"rollout of {res.pipeline} to revision {res.revision}: {res.state}"
              + (f" -- {res.failed_host}: {res.reason}" if res.reason else ""))
    return 1 if res.state == "rolled_back" else EXIT_OK


def cmd_fleet_rollback(args) -> int:
    out = _fleet(args).rollback(args.name)
    if args.json:
        print_json(out)
    elif out["removed"]:
        print(f"{args.name}: removed from the fleet (it had no revision before the rollout)")
    else:
        print(f"{args.name}: back to revision {out['revision']} on every host")
    return EXIT_OK
