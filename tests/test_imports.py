"""No import circle among the packages, counting imports inside functions too: an import
kept inside a function is there to keep start-up light (torch, matplotlib, rich) or to
load a stage on demand, never to dodge a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

from tests.helpers import ROOT

PACKAGES = ("harness", "architectures", "workloads")


def module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def import_graph(files: dict[str, Path]) -> nx.DiGraph:
    """An edge for every first-party module a module names in an import, wherever it is.
    ``from pkg import name`` points at ``pkg.name`` when that is a module, else at ``pkg``;
    a package's own ``__init__`` run on the way is not an edge (children importing
    siblings through their parent is how packages work)."""
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for mod, f in files.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files
                           else node.module for a in node.names]
            else:
                continue
            g.add_edges_from((mod, t) for t in targets if t in files and t != mod)
    return g


def test_the_graph_sees_imports_inside_functions():
    g = import_graph(module_files())
    # harness.selftest imports its stages inside run_selftest (so the CLI can name missing
    # packages before anything needs them): the graph must still see those edges
    assert g.has_edge("harness.selftest", "harness.selftest.sweep")
    assert g.has_edge("harness.run.processes", "harness.run.worker")  # inside a function


def test_no_import_circle():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph(module_files()))
              if len(c) > 1]
    assert cycles == []
