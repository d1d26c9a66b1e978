"""Data flows one way, read from the code: data -> model -> objective -> run -> training |
metrics -> experiments -> cli. Every ``import`` of every module (at module level, inside
functions and under ``TYPE_CHECKING`` alike) is an edge; the layers' rules and the absence of
import circles are checked on that graph, and the special cases the refactor removed stay gone."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import sigmavae

SRC = Path(sigmavae.__file__).parent
PACKAGE = "sigmavae"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The sigmavae modules an import statement names (``from . import x`` names ``pkg.x``
    when ``x`` is a module, else ``pkg``)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == PACKAGE:
                yield alias.name
        return
    if not isinstance(node, ast.ImportFrom):
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != PACKAGE:
        return
    for alias in node.names:
        child = f"{target}.{alias.name}"
        yield child if child in MODULES else target


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Every module's imports of the package's modules, and those made inside a function."""
    edges: dict[str, set[str]] = {}
    local: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        in_functions = {id(n) for fn in ast.walk(tree)
                        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
                        for n in ast.walk(fn)}
        found = [(target, id(node) in in_functions) for node in ast.walk(tree)
                 for target in _imported(node, name, is_package)]
        edges[name] = {t for t, _ in found if t in MODULES and t != name}
        local[name] = {t for t, inside in found if inside and t in MODULES and t != name}
    return edges, local


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}
GRAPH, IN_FUNCTIONS = _graph()


def _imports_of(layer: str) -> dict[str, set[str]]:
    return {m: targets for m, targets in GRAPH.items()
            if m == layer or m.startswith(layer + ".")}


def _in(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


#: layer -> the layers none of its modules may import.
FORBIDDEN = {
    "sigmavae.run": ("sigmavae.training", "sigmavae.metrics", "sigmavae.experiments",
                     "sigmavae.cli"),
    "sigmavae.metrics": ("sigmavae.training", "sigmavae.experiments", "sigmavae.cli"),
    "sigmavae.training": ("sigmavae.metrics", "sigmavae.experiments", "sigmavae.cli"),
    "sigmavae.experiments": ("sigmavae.cli",),
    "sigmavae.objective": ("sigmavae.run", "sigmavae.training", "sigmavae.metrics",
                           "sigmavae.experiments", "sigmavae.cli", "sigmavae.models"),
    "sigmavae.dataset_elbo": ("sigmavae.run", "sigmavae.training", "sigmavae.metrics",
                              "sigmavae.experiments", "sigmavae.cli"),
    "sigmavae.models": ("sigmavae.run", "sigmavae.training", "sigmavae.metrics",
                        "sigmavae.experiments", "sigmavae.cli"),
    "sigmavae.likelihoods": ("sigmavae.models", "sigmavae.objective", "sigmavae.run",
                             "sigmavae.training", "sigmavae.metrics", "sigmavae.experiments",
                             "sigmavae.cli"),
    "sigmavae.data": ("sigmavae.models", "sigmavae.objective", "sigmavae.run",
                      "sigmavae.training", "sigmavae.metrics", "sigmavae.experiments",
                      "sigmavae.cli"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_a_layer_above_it(layer: str) -> None:
    wrong = sorted(f"{m} imports {t}" for m, targets in _imports_of(layer).items()
                   for t in targets if any(_in(t, above) for above in FORBIDDEN[layer]))
    assert not wrong, "\n".join(wrong)


def _cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_the_only_import_circle_is_the_data_registrys() -> None:
    """A package's ``__init__`` importing its modules, which import the package's registry
    back, is the registry pattern; across packages, only ``sigmavae.data`` may have one
    (its registry module loads the built-in data sets, which register themselves)."""
    outside = [c for c in _cycles() if not all(_in(m, "sigmavae.data") for m in c)]
    assert not outside, "\n".join(" <-> ".join(c) for c in outside)


def test_experiments_import_each_other_at_the_top() -> None:
    """Inside ``sigmavae.experiments`` no sibling is imported inside a function (the way an
    import circle is dodged); lazy imports of heavy lower layers are fine."""
    hidden = sorted(f"{m} -> {t}" for m, targets in _imports_of("sigmavae.experiments").items()
                    for t in IN_FUNCTIONS[m] if _in(t, "sigmavae.experiments"))
    assert not hidden, "\n".join(hidden)


def test_the_graph_sees_known_edges() -> None:
    """The parser resolves relative imports (a broken resolver would pass everything)."""
    assert "sigmavae.run.config" in GRAPH["sigmavae.run.build"]
    assert "sigmavae.objective" in GRAPH["sigmavae.dataset_elbo"]
    assert any(_in(t, "sigmavae.run") for t in GRAPH["sigmavae.metrics.report"])


def _grep(pattern: str, paths: list[Path]) -> list[str]:
    regex = re.compile(pattern)
    return [f"{p.relative_to(SRC)}:{n}: {line.strip()}" for p in paths
            for n, line in enumerate(p.read_text().splitlines(), 1) if regex.search(line)]


def test_special_cases_stay_gone() -> None:
    everything = sorted(SRC.rglob("*.py"))
    outside_objective = [p for p in everything if p != SRC / "objective.py"]
    problems = [
        *_grep(r"""[!=]= *["']original["']""", outside_objective),  # objective variants
        *_grep(r"type\(model\)\.forward is", everything),  # the model protocol, not identity
        *_grep(r"type: *ignore", [SRC / "objective.py"]),
        *_grep(r"(from|import) +lightning_fabric(\.\w+)*\._", everything),  # private Fabric
    ]
    assert not problems, "\n".join(problems)
