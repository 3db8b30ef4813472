"""The package's layering, read from its import statements (``ast``; nothing is imported).

Which imports count: every import the interpreter can execute, at module level or inside a
function (a lazy import from a lower layer back up is still a dependency back up). Imports
under ``if TYPE_CHECKING:`` never run and are left out. So are a module's imports of its own
parent packages, implicit or written (``from autocompress import methods`` inside
``autocompress.methods.base``): Python has run the parent before the module, so they add no
dependency. Any other module that imports *from* a package depends on that package's
``__init__`` and on everything the ``__init__`` imports.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autocompress"
ROOT = PACKAGE.name


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for other in node.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _import_nodes(node)


def _targets(module: str, node: ast.Import | ast.ImportFrom, is_package: bool) -> set[str]:
    """The modules of this package that an import statement loads (the deepest it names)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join([*base, *([node.module] if node.module else [])])
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix
                 for a in node.names]
    found = set()
    for name in names:
        while name and name not in modules:  # `import a.b.c` of a name inside a module
            name = name.rpartition(".")[0]
        if name.split(".")[0] == ROOT and name:
            found.add(name)
    return found


@cache
def imports() -> dict[str, frozenset[tuple[str, int]]]:
    """Module -> the (module, line) pairs it imports from this package (itself excluded)."""
    graph = {}
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        pairs = {(target, node.lineno) for node in _import_nodes(tree)
                 for target in _targets(module, node, path.name == "__init__.py")}
        graph[module] = frozenset(
            (target, line) for target, line in pairs
            if target != module and not module.startswith(f"{target}."))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _violations(sources: tuple[str, ...], forbidden) -> list[str]:
    """``module:line imports target`` for each import of a forbidden target by a source."""
    return sorted(f"{module}:{line} imports {target}"
                  for module, pairs in imports().items()
                  if any(module == s or module.startswith(f"{s}.") for s in sources)
                  for target, line in pairs if forbidden(target))


def _in(*packages: str):
    names = tuple(f"{ROOT}.{p}" for p in packages)
    return lambda target: any(target == n or target.startswith(f"{n}.") for n in names)


def test_the_parser_sees_lazy_and_relative_imports_but_not_type_checking_ones():
    sample = ast.parse("from typing import TYPE_CHECKING\n"
                       "import autocompress.errors\n"
                       "if TYPE_CHECKING:\n    from autocompress.recipe import Recipe\n"
                       "def f():\n    from autocompress.config import build\n"
                       "    from . import placement\n")
    found = set().union(*(_targets(f"{ROOT}.metrics.state", n, False)
                          for n in _import_nodes(sample)))
    assert found == {f"{ROOT}.errors", f"{ROOT}.config", f"{ROOT}.metrics"}
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(cyclic) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_the_package():
    graph = {module: {target for target, _ in pairs} for module, pairs in imports().items()}
    assert _cycles(graph) == []


def _layer(module: str) -> str:
    """A subpackage or top-level module; a layer's ``config`` module is a node of its own."""
    parts = module.split(".")
    if len(parts) > 2 and parts[-1] == "config":
        return ".".join(parts[1:])
    return parts[1] if len(parts) > 1 else module


def test_no_cycle_between_layers():
    """Subpackages and top-level modules, as nodes: dependencies point one way only.

    A layer's config module is plain data that the recipe composes, so it is a node of its own
    (``recipe -> search.config`` and ``search -> recipe`` is no cycle). It depends on its layer
    when it imports from it; the layer's own use of its config is inside the layer.
    """
    graph: dict[str, set[str]] = {}
    for module, pairs in imports().items():
        if module == ROOT:
            continue  # the package's own __init__ re-exports the public API
        source = _layer(module)
        for target, _ in pairs:
            if target == ROOT:
                continue
            if module.split(".")[1] == target.split(".")[1]:  # inside one package
                if source != _layer(target) and source.endswith(".config"):
                    graph.setdefault(source, set()).add(target.split(".")[1])
                continue
            graph.setdefault(source, set()).add(_layer(target))
    assert _cycles(graph) == []


@pytest.mark.parametrize("layer", ["methods", "space", "export", "hardware"])
def test_compression_layers_know_nothing_of_search_tracking_or_training(layer):
    assert _violations((f"{ROOT}.{layer}",), _in("search", "tracking", "training")) == []


def _third_party(modules: tuple[str, ...], names: tuple[str, ...]) -> list[str]:
    """``module:line imports name`` for each import of a top-level package in ``names``."""
    found = []
    for module, path in _modules().items():
        if not any(module == m or module.startswith(f"{m}.") for m in modules):
            continue
        for node in _import_nodes(ast.parse(path.read_text())):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                node.module or ""]
            relative = isinstance(node, ast.ImportFrom) and node.level > 0
            found += [f"{module}:{node.lineno} imports {n}" for n in imported
                      if not relative and n.split(".")[0] in names]
    return found


HEAVY = ("pytorch_lightning", "lightning", "ray", "mlflow", "optuna", "deepspeed")


def test_methods_space_and_export_import_no_ray_mlflow_or_lightning():
    assert _third_party((f"{ROOT}.methods", f"{ROOT}.space", f"{ROOT}.export"), HEAVY) == []


@pytest.mark.parametrize("layer", ["training", "hardware"])
def test_training_and_hardware_never_import_the_recipe(layer):
    assert _violations((f"{ROOT}.{layer}",), lambda t: t == f"{ROOT}.recipe") == []


def test_the_recipe_imports_only_config_modules():
    def machinery(target: str) -> bool:
        return target not in (f"{ROOT}.config", f"{ROOT}.errors") and (
            target.rpartition(".")[2] != "config")

    assert _violations((f"{ROOT}.recipe",), machinery) == []


def test_every_config_module_is_free_of_lightning_ray_and_mlflow():
    configs = tuple(m for m in _modules() if m.rpartition(".")[2] == "config")
    assert len(configs) >= 7 and _third_party(configs, HEAVY) == []
