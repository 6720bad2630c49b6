"""The import graph of ``kickstart/``: no circle, and the core never imports a method.

The graph is read from the ``ast`` of every module: top-level and function-level imports alike (a
lazy import that closes a circle is still a circle), ``import x`` and ``from x import y``, relative
imports resolved. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``. Importing ``a.b.c`` runs ``a/b/__init__.py`` first, so it is also an edge to every package on
the way that does not contain the importing module (a module inside ``a.b`` is imported while its
package is, so an edge back to it would turn every re-export into a false circle).

The layers (see :mod:`kickstart.method`): the core below, the interface :mod:`kickstart.method`,
the method packages, the registry :mod:`kickstart.methods` that imports them; the entry points
(``train``, ``pbt``, ``cli``, ``evaluate``) reach the methods through the registry only.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kickstart"
REGISTRY = "kickstart.methods"
INTERFACE = "kickstart.method"


# -- building the graph ------------------------------------------------------------------------------

def modules_under(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's ``__init__``) for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports (see the module docstring)."""
    mods = modules_under(root)
    top = root.name

    def known(target: str) -> str | None:
        """The longest prefix of ``target`` that is a module of the tree."""
        parts = target.split(".")
        for i in range(len(parts), 0, -1):
            cand = ".".join(parts[:i])
            if cand in mods:
                return cand
        return None

    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.split(".")[0] == top)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")
                    base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] != top:
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.add(sub if sub in mods else base)
        edges = set()
        own = set(_ancestors(name)) | ({name} if is_pkg else set())
        for t in targets:
            m = known(t)
            if m is None or m == name:
                continue
            edges.add(m)
            edges.update(p for p in _ancestors(m) if p in mods and p not in own)   # __init__ runs first
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle ``[a, b, ..., a]`` of ``graph`` (node -> successors), or None (depth-first search)."""
    state: dict[str, int] = {}            # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def method_packages(registry: Path) -> set[str]:
    """The packages of the methods the registry lists: ``METHODS = (pkg.METHOD, ...)`` with each
    ``pkg`` imported as ``from kickstart import pkg``."""
    tree = ast.parse(registry.read_text())
    imported = {a.asname or a.name: f"{n.module}.{a.name}" for n in ast.walk(tree)
                if isinstance(n, ast.ImportFrom) and n.module == "kickstart" for a in n.names}
    listed = next(n.value for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))
                  and "METHODS" in [t.id for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                                    if isinstance(t, ast.Name)])
    return {imported[e.value.id] for e in listed.elts}


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def core_violations(graph: dict[str, set[str]], methods: set[str]) -> list[str]:
    """``core imports method`` for each edge from a module outside the method packages and the
    registry into a method package."""
    return [f"{m} imports {t}" for m, ts in sorted(graph.items()) for t in sorted(ts)
            if m != REGISTRY and not any(inside(m, p) for p in methods) and any(inside(t, p) for p in methods)]


GRAPH = import_graph(ROOT)
METHOD_PACKAGES = method_packages(ROOT / "methods.py")


# -- the checks on kickstart/ ------------------------------------------------------------------------

def test_the_graph_sees_the_whole_package():
    """So that the checks below cannot pass on an empty or partial graph."""
    assert {"kickstart.train", "kickstart.learner", "kickstart.nets.agent", "kickstart.mixmatch.net",
            "kickstart.kickstarting.teachers", "kickstart.pbt.member", "kickstart.config", "kickstart.configio",
            "kickstart.pbt.config", REGISTRY, INTERFACE} <= set(GRAPH)
    assert {"kickstart.kickstarting", "kickstart.mixmatch"} <= METHOD_PACKAGES
    assert "kickstart.nets.agent" in GRAPH["kickstart.mixmatch.net"]
    assert "kickstart.nets" in GRAPH["kickstart.mixmatch.net"]              # nets/__init__ runs first
    assert "kickstart.policy" in GRAPH["kickstart.kickstarting.teachers"]   # a function-level import


def test_no_import_circle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_core_never_imports_a_method():
    """Every module outside the method packages and the registry is core: it may reach the methods
    through the registry (``kickstart.methods``) or the registered ones (``kickstart.method``) only."""
    bad = core_violations(GRAPH, METHOD_PACKAGES)
    assert not bad, "; ".join(bad)


def test_methods_do_not_import_each_other_or_the_registry():
    """A method is its folder: it builds on the core and the interface, not on another method, and
    never on the registry that lists it (or on the entry points above the registry)."""
    above = {REGISTRY} | {m for m, ts in GRAPH.items() if REGISTRY in ts}
    bad = []
    for p in sorted(METHOD_PACKAGES):
        for m in (m for m in GRAPH if inside(m, p)):
            bad += [f"{m} imports {t}" for t in sorted(GRAPH[m])
                    if t in above or any(inside(t, q) for q in METHOD_PACKAGES - {p})]
    assert not bad, "; ".join(bad)


def test_the_interface_imports_nothing_of_kickstart():
    """So that any module, the lowest of the core included, may import it without a circle."""
    assert GRAPH[INTERFACE] == set()


def test_the_config_core_and_engine_name_no_method():
    """Config by owner: the engine (``configio``) knows no section at all, the core sections and
    ``make_config`` (``config``) and PBT's section know the methods only as a config class's
    ``methods``, and a method's section imports no other module of its own package (so that reading
    the section never needs the method's machinery)."""
    assert GRAPH["kickstart.configio"] <= {"kickstart.errors"}
    for core in ("kickstart.config", "kickstart.pbt.config", "kickstart.configio"):
        bad = sorted(t for t in GRAPH[core] if t == REGISTRY or any(inside(t, p) for p in METHOD_PACKAGES))
        assert not bad, f"{core} imports {bad}"
    assert GRAPH["kickstart.pbt"] == set()          # its __init__ re-exports nothing: config -> pbt.config
    for p in sorted(METHOD_PACKAGES):
        section = f"{p}.config"
        assert section in GRAPH, f"{p} keeps its config section beside it, in {section}"
        own = sorted(t for t in GRAPH[section] if inside(t, p))
        assert not own, f"{section} imports {own}"


def test_every_method_is_registered():
    from kickstart.method import Method, registered
    from kickstart.methods import METHODS

    assert {m.name for m in METHODS} <= {m.name for m in registered()}
    assert all(isinstance(m, Method) and type(m) is not Method for m in METHODS)
    assert {type(m).__module__.rsplit(".", 1)[0] for m in METHODS} == METHOD_PACKAGES


# -- the checks can fail -----------------------------------------------------------------------------

def test_find_cycle_on_small_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None     # a diamond
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert find_cycle({"x": {"x"}}) == ["x", "x"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"d"}, "d": {"c"}}) == ["c", "d", "c"]


def test_import_graph_sees_lazy_relative_and_package_imports(tmp_path):
    """A circle closed by a function-level relative import, and one through a package's __init__."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": "import os\nfrom pkg.b import x\n",
        "b.py": "x = 1\ndef f():\n    from . import a\n",
        "c.py": "from pkg.sub.leaf import y\n",
        "sub/__init__.py": "from .. import c\n",
        "sub/leaf.py": "from ..b import x as y\n",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(textwrap.dedent(text))
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    assert graph["pkg.c"] == {"pkg.sub.leaf", "pkg.sub"} and graph["pkg.sub.leaf"] == {"pkg.b"}
    assert graph["pkg.sub"] == {"pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
    del graph["pkg.b"]
    assert find_cycle(graph) == ["pkg.c", "pkg.sub", "pkg.c"]


@pytest.mark.parametrize("module, target", [("kickstart.nets.agent", "kickstart.mixmatch.net"),
                                            ("kickstart.train", "kickstart.kickstarting")])
def test_a_core_module_importing_a_method_is_caught(module, target):
    graph = {m: set(ts) for m, ts in GRAPH.items()}
    graph[module].add(target)
    assert core_violations(graph, METHOD_PACKAGES) == [f"{module} imports {target}"]
    if module == "kickstart.nets.agent":
        assert find_cycle(graph) is not None        # and M&M's network imports nets.agent: a circle
