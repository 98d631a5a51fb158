"""The package's layout holds (issue 14): layers, no cycles, short modules and functions.

``ARCHITECTURE``: each layer imports only layers to its left,

    leaves (errors, _utils, vocabulary, genes, log) -> io -> config -> cells -> patients
      -> scoring -> stats -> pl -> stages -> sim

``config`` sits after ``io`` because validating a sheet that names registry ids reads the
(yaml-only) registry; ``stats`` never imports anndata or scanpy, so its rules' env stays
small. Each check reads the code with ``ast`` and names the file and line it objects to.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = ROOT / "workflow" / "scripts"
PACKAGE = SCRIPTS / "cd8exo"
LAYERS = ("leaf", "io", "config", "cells", "patients", "scoring", "stats", "pl", "stages", "sim")
LEAVES = {"errors", "_utils", "vocabulary", "genes", "log", "job_resources", "__init__"}
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
HEAVY = {"anndata", "scanpy", "infercnvpy"}


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(SCRIPTS).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text()) for name, path in MODULES.items()}


def layer(name: str) -> str:
    part = name.split(".")[1] if "." in name else "__init__"
    if part in LEAVES:
        return "leaf"
    return part.removesuffix(".py")


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    ids = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            ids |= {id(sub) for sub in ast.walk(node)}
    return ids


def project_imports(name: str) -> list[tuple[str, int, bool]]:
    """(imported cd8exo module, line, at module level) of a module, TYPE_CHECKING left out."""
    tree = TREES[name]
    skip = _type_checking_nodes(tree)
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.ImportFrom):
            continue
        if not (node.module or "").startswith("cd8exo"):
            continue
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            target = full if full in MODULES else node.module
            out.append((target, node.lineno, id(node) in top))
    return out


def external_imports(name: str) -> set[str]:
    tree = TREES[name]
    skip = _type_checking_nodes(tree)
    names = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_every_module_has_a_layer():
    unknown = sorted(n for n in MODULES if layer(n) not in LAYERS)
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}"


def test_layers_import_only_to_their_left():
    wrong = [
        f"{MODULES[name].relative_to(ROOT)}:{line} imports {target} "
        f"({layer(name)} -> {layer(target)})"
        for name in MODULES
        for target, line, _ in project_imports(name)
        if target in MODULES and LAYERS.index(layer(target)) > LAYERS.index(layer(name))
    ]
    assert not wrong, "\n".join(wrong)


def test_no_project_import_inside_a_function():
    inner = [
        f"{MODULES[name].relative_to(ROOT)}:{line} imports {target} inside a function"
        for name in MODULES
        for target, line, top in project_imports(name)
        if not top
    ]
    assert not inner, "\n".join(inner)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = {
        name: {t for t, _, _ in project_imports(name) if t in MODULES and t != name}
        for name in MODULES
    }
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stats_never_imports_anndata_or_scanpy():
    def reach(name, seen):
        if name in seen:
            return seen
        seen.add(name)
        for target, _, _ in project_imports(name):
            if target in MODULES:
                reach(target, seen)
        return seen

    heavy = {}
    for name in (n for n in MODULES if layer(n) == "stats"):
        for dep in reach(name, set()):
            if external_imports(dep) & HEAVY:
                heavy.setdefault(name, []).append(f"{dep}: {external_imports(dep) & HEAVY}")
    assert not heavy, heavy


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_short(name):
    lines = MODULES[name].read_text().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{MODULES[name].relative_to(ROOT)}: {lines} lines"


def function_lengths(tree: ast.Module, source: list[str]):
    """(name, line, body lines without the docstring, reason comment or None)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        doc = 0
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            doc = body[0].end_lineno - body[0].lineno + 1
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        # the comment block right above the def (or its decorators)
        i, block = first - 2, []
        while i >= 0 and source[i].lstrip().startswith("#"):
            block.append(source[i].strip())
            i -= 1
        reason = next((line for line in block if line.startswith("# long:")), None)
        yield node.name, node.lineno, node.end_lineno - node.lineno + 1 - doc, reason


def test_functions_are_short_or_say_why():
    long = [
        f"{MODULES[name].relative_to(ROOT)}:{line} {fn}: {n} lines"
        for name in MODULES
        for fn, line, n, reason in function_lengths(
            TREES[name], MODULES[name].read_text().splitlines()
        )
        if n > MAX_FUNCTION_LINES and reason is None
    ]
    assert not long, "split these, or write '# long: <why>' above the def:\n" + "\n".join(long)


def test_function_length_counts_the_body_not_the_docstring():
    source = 'def f():\n    """doc\n\n    more\n    """\n    a = 1\n    return a\n'
    assert [n for _, _, n, _ in function_lengths(ast.parse(source), source.splitlines())] == [3]
