"""``nfpipe agent``: the per-host daemon (``nfpipe.agent``), run in the foreground."""
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
    Reconciler,
    parse_labels,
    parse_listen,
)
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
    rec = Reconciler(host, labels, args.state_dir, root=args.root, backoff=args.backoff)
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
