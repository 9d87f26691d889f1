"""``nfpipe probe [IFACE] [--netns NS] [--json]``: what this kernel and an interface can do.

Registered into the main parser by ``register(subparsers)`` (see nfpipe/cli/main.py).
"""
from __future__ import annotations

import json
import sys
from typing import Any


def register(sub) -> None:
    p = sub.add_parser("probe", help="what this kernel and an interface can do for nfpipe "
                                     "(program/map types, helpers, links, XDP features)")
    p.add_argument("iface", nargs="?", help="interface to probe (trial attach only here, and "
                                            "only when nothing is attached)")
    p.add_argument("--netns", metavar="NS", help="network namespace of IFACE (a name under "
                                                 "/var/run/netns, or a path)")
    p.add_argument("--no-trial", action="store_true",
                   help="do not try native XDP attach or an offload load on IFACE")
    p.add_argument("--no-kernel", action="store_true", help="skip the kernel-wide probe")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_probe)


def cmd_probe(args) -> int:
    from nfpipe.attach.probe import probe
    if args.netns and not args.iface:
        from nfpipe.errors import NfpipeError

        class _Usage(NfpipeError):
            exit_code = 2
        raise _Usage("--netns needs an interface to probe")
    result = probe(args.iface, args.netns, kernel=not args.no_kernel, trial=not args.no_trial)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(result)
    return 0


def _yn(v: Any) -> str:
    if v is True:
        return "yes"
    if v is False or v is None:
        return "no"
    return str(v)


def _grid(items: dict[str, Any]) -> list[str]:
    ok = [k for k, v in items.items() if v is True]
    bad = [(k, v) for k, v in items.items() if v is not True]
    lines = []
    line = "    yes:"
    for k in ok:
        if len(line) + len(k) + 1 > 92:
            lines.append(line)
            line = "        "
        line += " " + k
    lines.append(line)
    for k, v in bad:
        lines.append(f"    no:  {k:<24} {v}")
    return lines


def print_report(r: dict[str, Any]) -> None:
    k = r.get("kernel")
    if k:
        jit = k["jit"]
        print(f"kernel {k['release']} ({k['machine']})")
        print(f"  JIT {'on' if jit.get('jit_enable') else 'off'} (bpf_jit_enable="
              f"{jit.get('jit_enable')}, harden={jit.get('jit_harden')}), BTF load "
              f"{_yn(k['btf'])}, vmlinux BTF {_yn(k['btf_vmlinux'])}, XDP frags "
              f"{_yn(k['xdp_frags'])}")
        links = k["links"]
        print(f"  bpf_link for XDP {_yn(links['xdp_link'])}, tcx {_yn(links['tcx'])}, "
              f"native XDP on veth {_yn(links['veth_native_xdp'])}")
        print("  helpers:")
        print("\n".join(_grid(k["helpers"])))
        print("  program types:")
        print("\n".join(_grid(k["program_types"])))
        print("  map types:")
        print("\n".join(_grid(k["map_types"])))
    i = r.get("interface")
    if i:
        where = f" in netns {i['netns']}" if i.get("netns") else ""
        print(f"interface {i['iface']} (ifindex {i['ifindex']}){where}")
        print(f"  driver {i.get('driver') or 'unknown'}"
              + (f" {i['driver_version']}" if i.get("driver_version") else "")
              + (f", bus {i['bus_info']}" if i.get("bus_info") else ""))
        x = i.get("xdp") or {}
        if x.get("source"):
            zc = x.get("xdp_zc_max_segs")
            print(f"  XDP features (netdev genetlink): {', '.join(x['xdp_features']) or 'none'}"
                  + (f"; zero-copy max segs {zc}" if zc is not None else ""))
            if x.get("xdp_rx_metadata") is not None:
                print(f"  XDP rx metadata: {', '.join(x['xdp_rx_metadata']) or 'none'}")
        else:
            print(f"  XDP features unknown: {x.get('error')}")
        print(f"  native XDP: {_yn(i.get('native_xdp'))}")
        print(f"  offload:    {_yn(i.get('offload'))}")
        att = i.get("attached") or {}
        if not att.get("xdp") and not any(att.get("tc", {}).values()):
            print("  attached:   nothing")
        for e in att.get("xdp", []):
            via = f"link {e['link_id']}" if e.get("link_id") else e.get("via")
            print(f"  attached:   XDP {e['mode']}: program {e['prog_id']} "
                  f"'{e.get('prog_name')}' via {via}")
        for d, entries in (att.get("tc") or {}).items():
            for e in entries:
                how = (f"tcx link {e['link_id']}" if e.get("via") == "tcx" and e.get("link_id")
                       else e.get("via"))
                if e.get("via") == "clsact":
                    how = f"clsact filter prio {e.get('priority')} handle {e.get('handle'):#x}"
                print(f"  attached:   tc {d}: program {e.get('prog_id')} "
                      f"'{e.get('prog_name')}' via {how}")
        if i.get("profile"):
            dis = i.get("profile_disagreements") or []
            print(f"  profile {i['profile']}: " + ("agrees with the probe" if not dis else
                                                   f"{len(dis)} disagreement(s), probe wins"))
            for d in dis:
                print(f"    {d['what']}: profile {d['profile']}, probe {d['probe']} "
                      f"({d['note']})")
        else:
            print("  profile: none for this driver")
