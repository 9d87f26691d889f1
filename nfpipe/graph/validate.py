"""Validate a PipelineSpec as a graph, before anything touches the kernel.

The graph (a networkx MultiDiGraph) has one vertex per node plus one per final
verdict, and one edge per wired port (key = port name).  ``problems_of(spec)``
returns every problem found, each with the position of the part of the file
it concerns:

* edges from unknown nodes or ports, to unknown nodes; a port wired twice;
* output ports left unwired;
* nodes not reachable from the entry;
* cycles (named by their nodes);
* paths needing more tail calls than the kernel allows (tail-call linking);
* what the target mode cannot do (hardware offload has no tail calls).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from nfpipe.errors import GraphError
from nfpipe.spec.pipeline import PipelineSpec, Problem

if TYPE_CHECKING:
    import networkx as nx

# The kernel's MAX_TAIL_CALL_CNT: a chain may make at most this many tail calls.
TAIL_CALL_LIMIT = 33


def verdict_vertex(edge) -> str:
    return f"<{edge.verdict}:{edge.redirect_iface}>" if edge.redirect_iface else \
        f"<{edge.verdict}>"


def build_graph(spec: PipelineSpec) -> nx.MultiDiGraph:
    """Nodes and verdicts as vertices, wired ports as edges (only valid edges)."""
    import networkx as nx  # where it is used: ~90 ms to import, and only a deploy needs it

    g = nx.MultiDiGraph(name=spec.name)
    for nid, node in spec.nodes.items():
        g.add_node(nid, kind="node", spec=node)
    for edge in spec.edges:
        src = spec.nodes.get(edge.src)
        if src is None or src.port_index(edge.port) is None:
            continue
        if edge.is_verdict:
            v = verdict_vertex(edge)
            g.add_node(v, kind="verdict", verdict=edge.verdict, iface=edge.redirect_iface)
            g.add_edge(edge.src, v, key=edge.port, spec=edge)
        elif edge.target in spec.nodes:
            g.add_edge(edge.src, edge.target, key=edge.port, spec=edge)
    return g


def linking_for(spec: PipelineSpec, linking: str | None = None,
                mode: str | None = None) -> str:
    """The linking a pipeline builds with: *linking* when given (the command line's),
    else the file's; "auto" is fused for hardware offload (*mode*, the command line's
    forced mode, else the file's), else tail calls."""
    if linking not in (None, "auto"):
        return linking
    if spec.linking != "auto":
        return spec.linking
    return "fused" if (mode or spec.mode) == "offload" else "tailcall"


def problems_of(spec: PipelineSpec, linking: str | None = None) -> list[Problem]:
    """Every problem of *spec* as a graph, built with *linking* (default: the file's)."""
    import networkx as nx

    out: list[Problem] = []
    wired: dict[tuple[str, str], object] = {}
    for edge in spec.edges:
        src = spec.nodes.get(edge.src)
        if src is None:
            out.append(Problem(edge.pos, f"edge '{edge}' starts at unknown node '{edge.src}' "
                                         f"(nodes: {', '.join(spec.nodes) or 'none'})"))
            continue
        idx = src.port_index(edge.port)
        if idx is None:
            out.append(Problem(edge.pos, f"edge '{edge}': node '{src.id}' ({src.nf}) has no port "
                                         f"'{edge.port}' (its ports: {', '.join(src.ports)})",
                               node=src.id))
            continue
        port_name = src.ports[idx]
        if (src.id, port_name) in wired:
            first = wired[(src.id, port_name)]
            out.append(Problem(edge.pos, f"port '{src.id}.{port_name}' is wired twice (first "
                                         f"at line {first.pos.line}): a port leads to exactly "
                                         f"one place", node=src.id))
            continue
        wired[(src.id, port_name)] = edge
        if not edge.is_verdict and edge.target not in spec.nodes:
            out.append(Problem(edge.pos, f"edge '{edge}' leads to unknown node '{edge.target}' "
                                         f"(nodes: {', '.join(spec.nodes)}; verdicts: pass, "
                                         f"drop, tx, aborted, redirect:IFACE)", node=src.id))
    for nid, node in spec.nodes.items():
        for port in node.required_ports:
            if (nid, port) not in wired:
                out.append(Problem(node.pos, f"port '{nid}.{port}' is not wired: connect it "
                                             f"to a node or a verdict (e.g. '{nid}.{port} -> "
                                             f"pass')", node=nid))
    g = build_graph(spec)
    if spec.entry in spec.nodes:
        reach = nx.descendants(g, spec.entry) | {spec.entry}
        for nid, node in spec.nodes.items():
            if nid not in reach:
                out.append(Problem(node.pos, f"node '{nid}' is not reachable from the entry "
                                             f"node '{spec.entry}'", node=nid))
    only_nodes = g.subgraph(spec.nodes)
    for cycle in sorted(nx.simple_cycles(nx.DiGraph(only_nodes)), key=lambda c: (len(c), c)):
        start = min(cycle, key=lambda n: list(spec.nodes).index(n))
        i = cycle.index(start)
        ordered = cycle[i:] + cycle[:i]
        path = " -> ".join(ordered + [start])
        out.append(Problem(spec.nodes[start].pos, f"cycle: {path} (a packet could loop "
                                                  f"forever; pipelines must be acyclic)",
                           node=start))
    linking = linking_for(spec, linking)
    if spec.mode == "offload" and linking == "tailcall":
        pos = spec.doc.at(("linking",)) if spec.doc else spec.nodes[spec.entry].pos
        out.append(Problem(pos, "hardware offload cannot run tail calls: use linking: fused "
                                "(or auto)"))
    if linking == "tailcall" and spec.entry in spec.nodes and nx.is_directed_acyclic_graph(
            only_nodes):
        longest = _longest_chain(only_nodes, spec.entry)
        if len(longest) - 1 > TAIL_CALL_LIMIT:
            out.append(Problem(spec.nodes[spec.entry].pos,
                               f"the path {' -> '.join(longest)} needs {len(longest) - 1} tail "
                               f"calls; the kernel allows {TAIL_CALL_LIMIT}: shorten it or use "
                               f"linking: fused"))
    return out


def _longest_chain(g, entry: str) -> list[str]:
    """The longest node path starting at *entry* in a DAG."""
    import networkx as nx

    best: dict[str, list[str]] = {}
    for n in reversed(list(nx.topological_sort(g))):
        succ = [best[s] for s in g.successors(n)]
        best[n] = [n] + (max(succ, key=len) if succ else [])
    return best.get(entry, [entry])


def check(spec: PipelineSpec, linking: str | None = None) -> nx.MultiDiGraph:
    """Raise GraphError listing every problem; return the graph when there are none."""
    problems = problems_of(spec, linking)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        head = (problems[0].__str__() if len(problems) == 1 else
                f"{len(problems)} problems in {spec.file}:\n{lines}")
        raise GraphError(head, node=problems[0].node, problems=problems)
    return build_graph(spec)
