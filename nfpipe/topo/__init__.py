"""Network-namespace topologies from YAML: hosts, veth links, bridges, addresses, routes.

See docs/topologies.md.  ``Topology.from_file(path, run_id=None)`` is the entry point.
"""
from nfpipe.topo.schema import TopologySpec, TopologySpecError, parse_topology
from nfpipe.topo.topology import Topology, TopologyError, down_all, down_run, find_runs, new_run_id

__all__ = ["Topology", "TopologyError", "TopologySpec", "TopologySpecError", "parse_topology",
           "down_all", "down_run", "find_runs", "new_run_id"]
