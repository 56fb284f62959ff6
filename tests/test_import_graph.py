"""avatar_nb's import graph, read from the source with ``ast``, has no cycle.

An edge runs from a module to every avatar_nb module it imports, wherever the import
stands (at the top, inside a function or a method), absolute (``import avatar_nb.x``,
``from avatar_nb.x import y``) or relative (``from .x import y``, ``from .. import x``).
``from P import x`` leads to the submodule ``P.x`` when there is one, else to ``P``.
A package is the node of its ``__init__.py``: what it imports (its re-exports
included) are the package's edges; importing ``P.m`` also leads to ``P`` (its
``__init__`` runs first) unless ``P`` encloses the importing module. Imports under ``if TYPE_CHECKING:`` are left out:
they never run. The compiled modules (``.pyx``) are leaves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import avatar_nb

PACKAGE_DIR = Path(avatar_nb.__file__).parent


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` and ``.pyx`` under ``root``
    (the package ``package``); a package's name maps to its ``__init__.py``."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([package, *parts])] = path
    for path in sorted(root.rglob("*.pyx")):  # compiled modules: leaves
        out[".".join([package, *path.relative_to(root).with_suffix("").parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    name = test.attr if isinstance(test, ast.Attribute) else test.id if isinstance(test, ast.Name) else ""
    return name.lstrip("_") == "TYPE_CHECKING"


class _Imports(ast.NodeVisitor):
    """Every import statement of a module, outside ``if TYPE_CHECKING:`` blocks."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:  # the else branch does run
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append(node)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring)."""
    files = module_files(root, package)
    graph: dict[str, set[str]] = {name: set() for name in files}

    def known(name: str) -> str | None:
        # the module itself, else the closest enclosing package or module we have
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    for name, path in files.items():
        if path.suffix != ".py":
            continue
        is_package = path.name == "__init__.py"
        visitor = _Imports()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for node in visitor.found:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in files else source)
            for target in targets:
                if target == package or target.startswith(package + "."):
                    resolved = known(target)
                    if resolved is None or resolved == name:
                        continue
                    graph[name].add(resolved)
                    # importing P.m runs P's __init__ first, unless P encloses the importer
                    # (then it is being imported already)
                    parent = resolved.rpartition(".")[0]
                    while parent and parent != package:
                        if not name.startswith(parent + ".") and parent != name:
                            graph[name].add(parent)
                        parent = parent.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) for every strongly connected part of ``graph`` that
    has one, each starting at its smallest name; sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    parts: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1 or v in graph.get(v, ()):
                parts.append(part)

    for v in sorted(graph):
        if v not in index:
            connect(v)

    found = []
    for part in parts:
        members = set(part)
        start = min(part)
        # a shortest way from start back to start inside the part (breadth first)
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for v in frontier:
                for w in sorted(graph[v] & members):
                    if w not in previous:
                        previous[w] = v
                        following.append(w)
            frontier = following
        path = [start]
        v = previous[start]
        while v != start:
            path.append(v)
            v = previous[v]
        path.append(start)
        found.append(path[::-1])
    return sorted(found)


def _text(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in found)


# ----------------------------------------------------------------------------- the graph reader


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_reader_follows_every_kind_of_import(tmp_path):
    root = tmp_path / "pkg"
    _write(
        root,
        {
            "__init__.py": "from . import a\nfrom .sub import C\n",
            "a.py": "import pkg.b\nfrom pkg import c as _c\nimport os\n",
            "b.py": "def f():\n    from .sub import leaf\n    from .sub.leaf import X\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\nelse:\n    from . import b\n",
            "d.py": "import typing\nif typing.TYPE_CHECKING:\n    import pkg.a\nfrom .sub import NAME\n",
            "sub/__init__.py": "from .leaf import C\n",
            "sub/leaf.py": "from .. import d\nfrom ..a import thing\nfrom .._core import f\n",
            "_core.pyx": "from pkg import a\n",  # compiled: a leaf
        },
    )
    graph = import_graph(root, "pkg")
    assert graph == {
        "pkg": {"pkg.a", "pkg.sub"},
        "pkg.a": {"pkg.b", "pkg.c"},
        "pkg.b": {"pkg.sub", "pkg.sub.leaf"},
        "pkg.c": {"pkg.b"},  # the TYPE_CHECKING branch left out, its else kept
        "pkg.d": {"pkg.sub"},  # `from .sub import NAME`: a name, so the package
        "pkg.sub": {"pkg.sub.leaf"},
        "pkg.sub.leaf": {"pkg.d", "pkg.a", "pkg._core"},
        "pkg._core": set(),
    }
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.leaf", "pkg.a"]]
    assert cycles({"x": {"x"}, "y": set()}) == [["x", "x"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


# ----------------------------------------------------------------------------- avatar_nb

# the Timeline (first) and the modules that write it out: the timeline calls down only
TIMELINE_MODULES = (
    "avatar_nb.timeline",
    "avatar_nb.timeline_record",
    "avatar_nb.timeline_file",
    "avatar_nb.timeline_text",
    "avatar_nb.tidy",
    "avatar_nb.video",
)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(PACKAGE_DIR, "avatar_nb")


def test_the_graph_sees_the_whole_package(graph):
    assert {"avatar_nb", "avatar_nb.timeline", "avatar_nb.server", "avatar_nb.widgets"} <= set(graph)
    assert {"avatar_nb.tidy", "avatar_nb.timeline_file"} <= graph["avatar_nb.timeline"]


def test_the_timeline_and_what_is_written_from_it_import_down_only(graph):
    for lower in TIMELINE_MODULES[1:]:
        assert "avatar_nb.timeline" not in graph[lower], lower
    involved = [c for c in cycles(graph) if set(c) & set(TIMELINE_MODULES)]
    assert not involved, "import cycles through the timeline's modules:\n" + _text(involved)


def test_avatar_nb_has_no_import_cycle(graph):
    found = cycles(graph)
    assert not found, "import cycles in avatar_nb:\n" + _text(found)
