"""The topology format: shipped files parse, bad files fail with file:line:column."""
from __future__ import annotations

import ipaddress
import textwrap

import pytest
from topo_common import TOPOLOGIES

from nfpipe.errors import SpecError
from nfpipe.topo import Topology, TopologyError, TopologySpec
from nfpipe.topo.schema import TopologySpecError

GOOD = textwrap.dedent("""\
    topology: t
    hosts:
      a:
        interfaces:
          eth0: {addresses: [10.0.0.1/24]}
      b: {}
    links:
      - [a:eth0, b:eth0]
    """)


def parse(text: str) -> TopologySpec:
    return TopologySpec.from_text(textwrap.dedent(text), "topo.yaml")


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize("name", ["two-hosts", "lb", "nat"])
def test_shipped_topologies_parse(name):
    spec = TopologySpec.from_file(TOPOLOGIES / f"{name}.yaml")
    assert spec.name == name
    assert spec.dut and all(h == "dut" for h, _ in spec.dut)
    assert spec.hosts["dut"].sysctls["net.ipv4.ip_forward"] == "1"
    for host in spec.hosts.values():
        for iface in host.interfaces.values():
            for a in iface.addresses:   # only private / documentation ranges
                assert a.ip.is_private, a


def test_minimal_and_defaults():
    spec = parse(GOOD)
    assert spec.hosts["b"].interfaces["eth0"].addresses == []       # made by the link
    link = spec.links[0]
    assert link.endpoints == [("a", "eth0"), ("b", "eth0")]
    assert link.offload.as_dict() == {"tx-checksum": False, "tso": False, "gso": False,
                                      "gro": False}
    assert spec.dut == []
    topo = Topology(spec, "x1")
    assert topo.netns("a") == "nfpt.t.x1.a"
    assert topo.ifname("b", "eth0") == "eth0"
    assert topo.addresses("a", "eth0") == [ipaddress.ip_interface("10.0.0.1/24")]
    assert topo.address("a", "eth0") == "10.0.0.1"


def test_routes_and_offload_forms():
    spec = parse("""\
        topology: t
        hosts:
          a:
            routes:
              - {to: default, via: "2001:db8::1"}
              - {to: default4, dev: eth0}
              - {to: 10.9.0.0/16, via: 10.0.0.2, metric: 7}
          b: {}
        links:
          - {endpoints: [a:eth0, b:eth0], offload: true, mtu: 9000}
          - {endpoints: [a:eth1, b:eth1], offload: {gro: true}}
        dut: a:eth0
        """)
    r = spec.hosts["a"].routes
    assert str(r[0].to) == "::/0" and r[0].family == 6
    assert str(r[1].to) == "0.0.0.0/0" and r[1].dev == "eth0"
    assert r[2].metric == 7
    assert spec.links[0].offload.as_dict() == dict.fromkeys(("tx-checksum", "tso", "gso",
                                                             "gro"), True)
    assert spec.links[1].offload.gro and not spec.links[1].offload.tx_checksum
    assert spec.mtu_of("a", "eth0") == 9000 and spec.mtu_of("a", "eth1") is None
    assert spec.dut == [("a", "eth0")]


@pytest.mark.parametrize("text, line, column, words", [
    ("topology: t\nhosts:\n  a: {}\nlinks:\n  - [a:eth0, b:eth0]\n", 5, 14, "unknown host 'b'"),
    ("topology: t\nhosts:\n  a: {interfaces: {eth0: {addresses: [10.0.0.300/24]}}}\n"
     "links:\n  - [a:eth0, a:eth1]\n", 3, 39, "bad address"),
    ("topology: t\nhosts:\n  a: {}\n  b: {}\nlinks:\n  - [a:abcdefghijklmnop, b:eth0]\n",
     6, 6, "at most 15 bytes"),
    ("topology: t\nhosts:\n  a: {}\n  a: {}\nlinks: []\n", 4, 3, "duplicate key 'a'"),
    ("topology: t\nhosts:\n  a: {mtu: 1500}\nlinks: []\n", 3, 7, "unknown key 'mtu'"),
    ("topology: t\nhosts:\n  a:\n    routes:\n      - {to: default, via: 10.0.0.1, dev: x}\n"
     "links: []\n", 5, 43, "no interface 'x'"),
    ("topology: t\nhosts:\n  a:\n    routes:\n      - {to: 10.0.0.0/8, via: 'fd00::1'}\n"
     "links: []\n", 5, 31, "is IPv6 but"),
    ("topology: t\nhosts:\n  a: {}\n  b: {}\nlinks:\n  - [a:eth0, b:eth0]\ndut: [b:eth9]\n",
     7, 7, "not an interface of the topology"),
    ("topology: t\nhosts:\n  a: {}\n  b: {}\nlinks:\n  - {endpoints: [a:e, b:e], mtu: 20}\n",
     6, 34, "mtu must be"),
    ("topology: T.x\nhosts:\n  a: {}\nlinks: []\n", 1, 11, "bad topology name"),
    ("topology: t\nhosts:\n  a:\n    sysctls: {vm.swappiness: 1}\nlinks: []\n", 4, 15,
     "bad sysctl name"),
    ("topology: t\nhosts:\n  a: {}\n  b: {}\nlinks:\n  - [a:eth0, b:eth0]\n  - [a:eth0, b:eth1]\n",
     7, 6, "already used by link #1"),
    ("topology: t\nhosts: [a\n", 3, 1, "invalid YAML"),
])
def test_errors_name_file_line_column(text, line, column, words):
    err = error_of(text)
    assert err.file == "topo.yaml"
    assert (err.line, err.column) == (line, column), str(err)
    assert words in str(err)
    assert str(err).startswith(f"topo.yaml:{line}:{column}: ")
    assert "\n" not in str(err)


def test_every_problem_is_reported():
    err = error_of("topology: t\nhosts:\n  a: {colour: red}\nlinks:\n  - [a:eth0, z:eth0]\n"
                   "dut: 5\n")
    assert isinstance(err, TopologySpecError)
    assert len(err.problems) == 3
    assert "3 problems in topo.yaml" in str(err)


def test_bad_run_id():
    with pytest.raises(TopologyError, match="bad run id"):
        Topology(parse(GOOD), "Has.Dots")


def test_cli_bad_yaml_is_one_paragraph_with_position(tmp_path, capsys):
    from nfpipe.cli.main import main
    bad = tmp_path / "bad.yaml"
    bad.write_text("topology: t\nhosts:\n  a: {}\nlinks:\n  - [a:eth0, nothere:eth0]\n")
    assert main(["topo", "up", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nfpipe: error: {bad}:5:14: unknown host 'nothere'")
    assert err.count("\n") == 1


def test_cli_usage_errors(capsys):
    from nfpipe.cli.main import main
    assert main(["topo", "down"]) == 2
    assert "--all" in capsys.readouterr().err
    assert main(["topo", "exec", str(TOPOLOGIES / "two-hosts.yaml"), "client"]) == 2
    assert "no command given" in capsys.readouterr().err
