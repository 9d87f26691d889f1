"""``nfpipe probe [[NETNS:]IFACE] [--json]``: what this kernel and an interface can do."""
from __future__ import annotations

from typing import Any

from nfpipe.attach import Target
from nfpipe.attach.probe import probe
from nfpipe.cli.output import EXIT_OK, print_json, usage


def cmd_probe(args) -> int:
    netns = args.netns
    iface = args.iface
    if iface is not None:
        t = Target.parse(iface)
        if t.netns is not None and netns is not None and t.netns != netns:
            raise usage(f"{iface} names netns '{t.netns}' and --netns says '{netns}': "
                        f"give one")
        iface, netns = t.ifname, t.netns or netns
    elif netns:
        raise usage("--netns needs an interface to probe")
    result = probe(iface, netns, kernel=not args.no_kernel, trial=not args.no_trial)
    if args.json:
        print_json(result)
    else:
        print_report(result)
    return EXIT_OK


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
              f"{_yn(k['xdp_frags'])}, live frames (test runs that send) "
              f"{_yn(k.get('xdp_live_frames', 'not probed'))}")
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
