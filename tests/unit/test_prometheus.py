"""`nfpipe stats --prometheus` parses as the Prometheus text format does for its users:
with prometheus_client's own parser, each family typed and holding its samples."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from nfpipe.deploy.inspection import prometheus_text

COUNTERS = {
    "fw": {"fw": {"out": {"packets": 10, "bytes": 640}, "drop": {"packets": 3, "bytes": 180}},
           "stats": {"out": {"packets": 10, "bytes": 640}}},
    'we"ird\\name': {"n": {"tail_call_miss": {"packets": 1, "bytes": 60}}},
}


def test_families_parse_typed_with_all_their_samples():
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(COUNTERS))}
    # the parser names a counter family without its _total suffix
    assert set(families) == {"nfpipe_packets", "nfpipe_bytes"}
    for name, what in (("nfpipe_packets", "packets"), ("nfpipe_bytes", "bytes")):
        fam = families[name]
        assert fam.type == "counter" and fam.documentation
        got = {(s.labels["pipeline"], s.labels["node"], s.labels["outcome"]): s.value
               for s in fam.samples if s.name == f"{name}_total"}
        want = {(p, n, o): c[what] for p, nodes in COUNTERS.items()
                for n, row in nodes.items() for o, c in row.items()}
        assert got == want


def test_each_family_is_one_block():
    lines = prometheus_text(COUNTERS).splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("# HELP")]
    assert len(starts) == 2
    for i in starts:
        family = lines[i].split()[2]
        block = lines[i + 2:(starts + [len(lines)])[starts.index(i) + 1]]
        assert lines[i + 1] == f"# TYPE {family} counter"
        assert block and all(ln.startswith(family + "{") for ln in block)


def test_nothing_deployed_is_still_valid_text():
    families = list(text_string_to_metric_families(prometheus_text({})))
    assert [f.type for f in families] == ["counter", "counter"]
