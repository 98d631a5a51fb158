"""Every envs/*.yaml holds what its rules import, and the Snakemake env parses the public config.

1. A static import graph (``ast``, no network, no import of the code): for each rule, the
   third-party modules its script imports, directly or through the ``cd8exo`` modules it
   imports (relative imports, sub-packages and their ``__init__`` resolved), must come from a
   package its env lists, or from a dependency of one (installed metadata). The Snakemake
   env must hold what ``Snakefile`` and ``workflow/rules/*.smk`` import. An import inside a
   function counts when that function can run: when its name is referenced by code that
   runs (the script, the ``.smk`` files, module-level code and other such functions); so
   ``cd8exo.log`` importing ``cd8exo.download`` for ``DownloadError`` does not make every env
   need the Census client that one download function imports. Modules are found from the
   files under ``workflow/scripts``, so moving them keeps the check valid.
   Imports under ``if TYPE_CHECKING:`` never run and do not count.
2. ``snakemake -n`` (demo config, and ``--configfile config/public.yaml``) in a fresh
   interpreter of the venv where every distribution ``envs/snakemake.yaml`` does not bring is
   hidden (from ``import``, ``importlib.util.find_spec`` and ``importlib.metadata``), and
   sockets are disabled.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import textwrap
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from test_envs import CONDA_TO_PYPI, ENV_FILES, ROOT

SCRIPTS = ROOT / "workflow" / "scripts"
RULES = ROOT / "workflow" / "rules"
SNAKEMAKE_ENV = ROOT / "envs" / "snakemake.yaml"
STDLIB = frozenset(sys.stdlib_module_names)


def normalise(name: str) -> str:
    """PEP 503 form of a distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------
# The code: modules, what they import, and which of their functions can run


@dataclass(frozen=True)
class Import:
    module: str | None  # as written; None for `from . import x`
    names: tuple[str, ...]  # the names of a `from` import
    level: int  # leading dots
    line: int
    unit: str | None  # the top-level function or class holding it; None: runs on import


@dataclass
class Source:
    """One file: its imports and the identifiers each of its units references."""

    path: Path
    module: str  # dotted name ("" for a .smk file)
    is_package: bool
    imports: list[Import] = field(default_factory=list)
    references: dict[str | None, set[str]] = field(default_factory=dict)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _is_identifier(value: object) -> bool:
    return isinstance(value, str) and value.isidentifier()


def _assigns_all(node: ast.AST) -> bool:
    targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
    return isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in targets
    )


def _scan(nodes: list[ast.stmt], unit: str | None, source: Source) -> None:
    """Imports and referenced identifiers of ``nodes`` (``if TYPE_CHECKING:`` bodies skipped)."""
    refs = source.references.setdefault(unit, set())
    todo: list[ast.AST] = list(nodes)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        if _assigns_all(node):
            continue  # names exported, not called
        if isinstance(node, ast.Import):
            for alias in node.names:
                source.imports.append(Import(alias.name, (), 0, node.lineno, unit))
        elif isinstance(node, ast.ImportFrom):
            names = tuple(a.name for a in node.names)
            source.imports.append(Import(node.module, names, node.level, node.lineno, unit))
        elif isinstance(node, ast.Name):
            refs.add(node.id)
        elif isinstance(node, ast.Attribute):
            refs.add(node.attr)
        elif isinstance(node, ast.Constant) and _is_identifier(node.value):
            refs.add(node.value)  # getattr(module, "name")
        todo.extend(ast.iter_child_nodes(node))


def parse_python(path: Path, module: str, is_package: bool) -> Source:
    source = Source(path, module, is_package)
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            # decorators and base classes run on import, the body when it is called
            _scan([*node.decorator_list, *getattr(node, "bases", [])], None, source)
            _scan(node.body, node.name, source)
        else:
            _scan([node], None, source)
    return source


_IMPORT_LINE = re.compile(r"^[ \t]*(?:import|from)[ \t]+\S")


def parse_snakemake(path: Path) -> Source:
    """The Python imports of a Snakefile or .smk file (any indentation: input functions and
    ``run:`` blocks run in the Snakemake process too). All of the file counts as running:
    Snakemake calls its functions while it builds the DAG."""
    source = Source(path, "", False)
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        if not _IMPORT_LINE.match(lines[i]):
            i += 1
            continue
        start, statement = i, lines[i]
        while (statement.count("(") > statement.count(")") or statement.endswith("\\")) and (
            i + 1 < len(lines)
        ):
            i += 1
            statement += "\n" + lines[i]
        i += 1
        try:
            tree = ast.parse(textwrap.dedent(statement))
        except SyntaxError:  # prose in a docstring that starts with "from"
            continue
        scanned = Source(path, "", False)
        _scan(tree.body, None, scanned)
        source.imports += [
            Import(imp.module, imp.names, imp.level, imp.line + start, None)
            for imp in scanned.imports
        ]
    source.references[None] = set(re.findall(r"[A-Za-z_]\w*", path.read_text()))
    return source


class CodeGraph:
    """The first-party modules under ``scripts`` (e.g. ``workflow/scripts``) and their imports."""

    def __init__(self, scripts: Path = SCRIPTS) -> None:
        self.scripts = scripts
        self.modules: dict[str, Path] = {}
        for path in scripts.rglob("*.py"):
            parts = path.relative_to(scripts).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            self.modules[".".join(parts)] = path
        self.first_party = {name.split(".")[0] for name in self.modules}
        self._sources: dict[str, Source] = {}

    def source(self, module: str) -> Source:
        if module not in self._sources:
            path = self.modules[module]
            self._sources[module] = parse_python(path, module, path.name == "__init__.py")
        return self._sources[module]

    def resolve(self, imp: Import, source: Source) -> tuple[list[str], str | None]:
        """The first-party modules an import runs (parent packages first) and the
        third-party top-level module it needs (None: first-party or standard library)."""
        if imp.level:
            package = source.module.split(".")[: None if source.is_package else -1]
            if imp.level - 1 >= len(package):
                msg = f"{_rel(source.path)}:{imp.line}: relative import beyond the package"
                raise ValueError(msg)
            base = package[: len(package) - (imp.level - 1)]
            full = ".".join(base + ([imp.module] if imp.module else []))
        else:
            full = imp.module or ""
        top = full.split(".")[0]
        if top not in self.first_party:
            return [], None if top in STDLIB else top
        parts = full.split(".")
        runs = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        runs += [f"{full}.{name}" for name in imp.names]  # `from package import module`
        return [m for m in runs if m in self.modules], None

    def needs(self, roots: list[Source]) -> dict[str, list[str]]:
        """Third-party top-level module -> the import chain that needs it, for code that
        starts at ``roots`` (a rule script, or the Snakefile and .smk files)."""
        chains: dict[int, list[str]] = {id(root): [] for root in roots}
        sources: list[Source] = list(roots)
        reached: set[str] = set()
        live: set[tuple[int, str | None]] = set()
        names: set[str] = set()
        found: dict[str, list[str]] = {}
        queue: deque[tuple[Source, str | None]] = deque((root, None) for root in roots)
        while True:
            while queue:
                source, unit = queue.popleft()
                if (id(source), unit) in live:
                    continue
                live.add((id(source), unit))
                names |= source.references.get(unit, set())
                for imp in source.imports:
                    if imp.unit != unit:
                        continue
                    where = f"{_rel(source.path)}:{imp.line}" + (f" in {unit}()" if unit else "")
                    chain = [*chains[id(source)], where]
                    modules, third_party = self.resolve(imp, source)
                    if third_party and third_party not in found:
                        found[third_party] = [*chain, third_party]
                    for module in modules:
                        if module not in reached:
                            reached.add(module)
                            target = self.source(module)
                            chains[id(target)] = chain
                            sources.append(target)
                            queue.append((target, None))
            # functions and classes referenced by code that runs can run
            waiting = [
                (source, unit)
                for source in sources
                for unit in source.references
                if unit is not None and unit in names and (id(source), unit) not in live
            ]
            if not waiting:
                return found
            queue.extend(waiting)


# ---------------------------------------------------------------------------------------
# Rules and their envs


@dataclass(frozen=True)
class Rule:
    name: str
    smk: Path
    env: Path
    script: Path


_RULE = re.compile(r"^(?:rule|checkpoint)[ \t]+(\w+)[ \t]*:", re.MULTILINE)


def _directive(block: str, name: str) -> str | None:
    match = re.search(rf"^[ \t]+{name}:[ \t]*\n?[ \t]*(\S.*)$", block, re.MULTILINE)
    if match is None:
        return None
    value = match.group(1).split("#")[0].strip().rstrip(",")
    if not re.fullmatch(r"([\"'])[^\"']+\1", value):
        msg = f"{name}: {value} is not a plain string; this test cannot follow it"
        raise ValueError(msg)
    return value[1:-1]


def parse_rules(rules_dir: Path = RULES) -> list[Rule]:
    """Rules with a ``script:``; a rule without ``conda:`` runs it in the Snakemake env."""
    found = []
    for smk in sorted(rules_dir.glob("*.smk")):
        text = smk.read_text()
        for match in _RULE.finditer(text):
            body = text[match.end() :]
            end = re.search(r"^(?=[^\s#])", body, re.MULTILINE)  # the next top-level line
            block = body[: end.start()] if end else body
            script = _directive(block, "script")
            if script is None:
                continue
            conda = _directive(block, "conda")
            env = (smk.parent / conda).resolve() if conda else SNAKEMAKE_ENV
            found.append(Rule(match.group(1), smk, env, (smk.parent / script).resolve()))
    return found


def env_packages(path: Path) -> dict[str, str]:
    """Normalised PyPI name -> how the env lists it (``conda: name`` or ``pip: name``)."""
    packages = {}
    for dep in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(dep, dict):
            for requirement in dep.get("pip", []):
                name = Requirement(requirement).name
                packages[normalise(name)] = f"pip: {name}"
            continue
        name = re.split(r"[=<>! ]", dep, maxsplit=1)[0]
        if name not in {"python", "pip"}:
            packages[normalise(CONDA_TO_PYPI.get(name, name))] = f"conda: {name}"
    return packages


def with_dependencies(distributions: set[str]) -> set[str]:
    """``distributions`` and everything they require (installed metadata; extras-only
    requirements left out unless an extra is asked for)."""
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [(normalise(d), frozenset()) for d in distributions]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in done:
            continue
        done.add((name, extras))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in {"", *extras}):
                todo.append((normalise(requirement.name), frozenset(requirement.extras)))
    return {name for name, _ in done}


@functools.cache
def module_distributions() -> dict[str, tuple[str, ...]]:
    """Top-level import name -> normalised names of the installed distributions giving it."""
    return {
        module: tuple(normalise(d) for d in dists)
        for module, dists in md.packages_distributions().items()
    }


@dataclass(frozen=True)
class Gap:
    module: str
    users: tuple[str, ...]  # rules (or "Snakefile/.smk")
    chain: str

    def __str__(self) -> str:
        dists = module_distributions().get(self.module)
        given = f"distribution {', '.join(dists)}" if dists else "no installed distribution"
        return f"{self.module} ({given}), needed by {', '.join(self.users)}: {self.chain}"


def env_gaps(env: Path, users: dict[str, list[Source]], graph: CodeGraph) -> list[Gap]:
    """Third-party modules ``users`` (name -> root sources) import that ``env`` lacks."""
    allowed = with_dependencies(set(env_packages(env)))
    missing: dict[str, tuple[list[str], str]] = {}
    for user, roots in users.items():
        for module, chain in graph.needs(roots).items():
            if set(module_distributions().get(module, ())) & allowed:
                continue
            missing.setdefault(module, ([], " -> ".join(chain)))[0].append(user)
    return [Gap(m, tuple(u), chain) for m, (u, chain) in sorted(missing.items())]


def users_of_env(env: Path, graph: CodeGraph) -> dict[str, list[Source]]:
    """Who runs in ``env``: its rules' scripts, and for the Snakemake env the workflow files."""
    users: dict[str, list[Source]] = {}
    for rule in parse_rules():
        if rule.env == env.resolve():
            module = ".".join(rule.script.relative_to(graph.scripts).with_suffix("").parts)
            users[f"rule {rule.name}"] = [parse_python(rule.script, module, False)]
    if env.resolve() == SNAKEMAKE_ENV.resolve():
        files = [ROOT / "Snakefile", *sorted(RULES.glob("*.smk"))]
        users["the Snakemake process (Snakefile, workflow/rules/*.smk)"] = [
            parse_snakemake(f) for f in files
        ]
    return users


def gap_report(env: Path, gaps: list[Gap]) -> str:
    lines = "\n".join(f"  - {gap}" for gap in gaps)
    return (
        f"{_rel(env)} lacks what its code imports (add the package, pinned as in "
        f"requirements/lock.txt):\n{lines}"
    )


@pytest.fixture(scope="module")
def graph() -> CodeGraph:
    return CodeGraph()


def test_rules_and_their_envs_are_found():
    rules = parse_rules()
    names = {rule.name for rule in rules}
    assert {"download_dataset", "score_signatures", "associate_patients"} <= names
    for rule in rules:
        assert rule.env.is_file(), f"rule {rule.name}: no env file {rule.env}"
        assert rule.script.is_file(), f"rule {rule.name}: no script {rule.script}"


@pytest.mark.parametrize(
    "env",
    [pytest.param(path, id=path.name) for path in ENV_FILES],
)
def test_env_holds_what_its_code_imports(env, graph):
    users = users_of_env(env, graph)
    assert users, f"{_rel(env)} is used by no rule"
    gaps = env_gaps(env, users, graph)
    assert not gaps, gap_report(env, gaps)


# The check fails when it should: a fabricated env that lacks a package (module -> a rule
# that needs it), and does not when a listed package brings the module.
@pytest.mark.parametrize(
    ("env_name", "drop", "missing"),
    [
        # stats rules draw with matplotlib; nothing else in stats.yaml depends on it
        ("stats.yaml", {"matplotlib-base"}, {"matplotlib": "plot_rho_heatmap"}),
        # Census queries: a function-level import two modules down
        ("download.yaml", {"pip"}, {"cellxgene_census": "download_dataset"}),
        # ... while tiledbsoma comes with cellxgene-census
        ("download.yaml", {"tiledbsoma-py"}, {}),
        ("gseapy.yaml", {"gseapy"}, {"gseapy": "screen_tumour_genes"}),
        # imported inside functions the scanpy rules call
        (
            "scanpy.yaml",
            {"infercnvpy", "gseapy"},
            {"infercnvpy": "annotate_cells", "gseapy": "score_signatures"},
        ),
    ],
)
def test_a_missing_package_is_reported(tmp_path, graph, env_name, drop, missing):
    source = ROOT / "envs" / env_name
    env = yaml.safe_load(source.read_text())
    env["dependencies"] = [
        dep
        for dep in env["dependencies"]
        if not (isinstance(dep, dict) and "pip" in drop)
        and not (isinstance(dep, str) and dep.split("=")[0] in drop)
    ]
    fabricated = tmp_path / env_name
    fabricated.write_text(yaml.safe_dump(env))
    gaps = env_gaps(fabricated, users_of_env(source, graph), graph)
    report = gap_report(fabricated, gaps)
    assert {gap.module for gap in gaps} == set(missing), report
    for gap in gaps:  # which rules, and the chain from a rule script to the module
        assert f"rule {missing[gap.module]}" in gap.users, report
        assert gap.chain.startswith("workflow/scripts/"), report
        assert gap.chain.endswith(f" -> {gap.module}"), report
        assert f"{gap.module} (distribution " in report, report


def test_a_dependency_of_a_listed_package_counts(tmp_path, graph):
    """scanpy requires anndata, numpy, scipy, pandas, matplotlib, h5py...: an env listing only
    scanpy lacks only what scanpy does not bring."""
    fabricated = tmp_path / "scanpy.yaml"
    fabricated.write_text("dependencies:\n  - python=3.11\n  - scanpy=1.11.5\n")
    users = users_of_env(ROOT / "envs" / "scanpy.yaml", graph)
    missing = {gap.module for gap in env_gaps(fabricated, users, graph)}
    assert {"anndata", "numpy", "scipy", "pandas", "matplotlib"}.isdisjoint(missing)
    assert {"infercnvpy", "gseapy"} <= missing


def test_the_graph_follows_relative_imports_sub_packages_and_called_functions(tmp_path):
    files = {
        "rule.py": "import os\nfrom pkg.sub.mod import run\n\nrun()\n",
        "pkg/__init__.py": "import init_dep\n",
        "pkg/other.py": "import other_dep.submodule\n\nthing = 1\n",
        "pkg/sub/__init__.py": "from . import helper\n",
        "pkg/sub/helper.py": "from helper_dep.x import y\n",
        "pkg/sub/lazy.py": "import lazy_dep\n\ndef work():\n    pass\n",
        "pkg/sub/mod.py": textwrap.dedent(
            """\
            from typing import TYPE_CHECKING

            from .. import other
            from ..other import thing

            if TYPE_CHECKING:
                import typing_only_dep

            def run():
                from .lazy import work
                return work()

            def never_called():
                import unused_dep
            """
        ),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = CodeGraph(tmp_path)
    root = parse_python(tmp_path / "rule.py", "rule", False)
    needs = graph.needs([root])
    assert set(needs) == {"init_dep", "other_dep", "helper_dep", "lazy_dep"}
    assert needs["lazy_dep"] == [
        f"{tmp_path}/rule.py:2",
        f"{tmp_path}/pkg/sub/mod.py:10 in run()",
        f"{tmp_path}/pkg/sub/lazy.py:1",
        "lazy_dep",
    ]


def test_smk_imports_are_found(tmp_path):
    smk = tmp_path / "common.smk"
    smk.write_text(
        textwrap.dedent(
            '''\
            import sys
            from pkg.config import (  # noqa: E402
                load,
                validate,
            )

            def entry(wildcards):
                """Reads the registry.

                from here on, prose
                """
                from pkg.registry import read

                return read()
            '''
        )
    )
    source = parse_snakemake(smk)
    assert [(i.module, i.names, i.line) for i in source.imports] == [
        ("sys", (), 1),
        ("pkg.config", ("load", "validate"), 2),
        ("pkg.registry", ("read",), 12),
    ]


# ---------------------------------------------------------------------------------------
# 2. The Snakemake env parses config/public.yaml

HOOK = r"""
import importlib.abc, importlib.machinery, importlib.metadata, json, os, re, socket, sys, traceback

report_path, allowed_path, workflow, code = sys.argv[1:5]
with open(allowed_path) as f:
    allowed, first_party = (set(x) for x in json.load(f))
dists = {
    m: [re.sub(r"[-_.]+", "-", d).lower() for d in ds]
    for m, ds in importlib.metadata.packages_distributions().items()
}
blocked, network = [], []


def frames():
    # the frames of workflow code on the stack, and the frame that imports
    ours, importer = [], None
    for frame in traceback.extract_stack()[:-2]:
        if frame.filename.startswith(workflow):
            where = os.path.relpath(frame.filename, workflow)
            # compiled .smk code has the line numbers of Snakemake's translation
            line = "" if where.endswith((".smk", "Snakefile")) else f":{frame.lineno}"
            ours.append(f"{where}{line} in {frame.name}()")
        if "importlib" not in frame.filename and not frame.filename.startswith("<frozen"):
            importer = frame.filename
    return {"workflow": ours, "by_workflow": bool(importer and importer.startswith(workflow))}


def hidden(top):
    if top in sys.stdlib_module_names or top in first_party:
        return False
    if top in dists:
        return not allowed & set(dists[top])
    # no distribution records it: hidden if installed (not e.g. _sysconfigdata_* of stdlib)
    spec = importlib.machinery.PathFinder.find_spec(top)
    return spec is not None and "-packages" in str(spec.origin or spec.submodule_search_locations)


class Hide(importlib.abc.MetaPathFinder):
    # sys.meta_path's PathFinder, blind to hidden top-level modules: they are absent, for
    # `import` (ModuleNotFoundError) and for importlib.util.find_spec probes (None) alike
    def find_spec(self, fullname, path=None, target=None):
        if path is None and hidden(fullname):
            blocked.append({"module": fullname, **frames()})
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, path, target)

    def invalidate_caches(self):
        importlib.machinery.PathFinder.invalidate_caches()

    def find_distributions(self, *args, **kwargs):  # importlib.metadata sees the env only
        for dist in importlib.machinery.PathFinder.find_distributions(*args, **kwargs):
            if re.sub(r"[-_.]+", "-", dist.name).lower() in allowed:
                yield dist


def no_network(*args, **kwargs):
    network.append({"call": repr(args[:2]), **frames()})
    raise OSError("network disabled by the test")


socket.socket.connect = socket.socket.connect_ex = no_network
socket.create_connection = socket.getaddrinfo = no_network
sys.meta_path[:] = [Hide() if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
status = 1
try:
    exec(compile(code, "<test>", "exec"), {"__name__": "__main__"})
    status = 0
except SystemExit as exit:
    status = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
except BaseException:
    traceback.print_exc()
finally:
    with open(report_path, "w") as f:
        json.dump({"status": status, "blocked": blocked, "network": network}, f)
sys.exit(status)
"""


def run_hidden(code: str, *, workflow: Path, allowed: set[str], tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter of the venv that can import only the standard
    library, ``workflow/scripts`` and the distributions ``allowed``; sockets disabled."""
    report, allowed_file = tmp_path / "report.json", tmp_path / "allowed.json"
    allowed_file.write_text(json.dumps([sorted(allowed), sorted(CodeGraph().first_party)]))
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # no user profile of Snakemake
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "LANG": "C.UTF-8",
    }
    result = subprocess.run(
        [sys.executable, "-c", HOOK, str(report), str(allowed_file), f"{workflow}/", code],
        cwd=workflow,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outcome = json.loads(report.read_text())
    outcome["output"] = result.stdout + result.stderr
    return outcome


def _chains(outcome: dict) -> str:
    lines = [
        " -> ".join([*item["workflow"], item["module"]])
        for item in outcome["blocked"]
        if item["by_workflow"]  # not an optional import inside a library
    ]
    lines += [
        "network: " + " -> ".join([*item["workflow"], item["call"]]) for item in outcome["network"]
    ]
    return "\n".join(f"  - {line}" for line in dict.fromkeys(lines))


def test_the_hook_hides_what_the_env_lacks(tmp_path):
    allowed = with_dependencies(set(env_packages(SNAKEMAKE_ENV)))
    assert "anndata" not in allowed
    assert {"snakemake", "pandas", "numpy", "jsonschema", "pyyaml"} <= allowed
    code = "import yaml, pandas\ntry:\n    import anndata\nexcept ImportError:\n    pass\n"
    outcome = run_hidden(code, workflow=ROOT, allowed=allowed, tmp_path=tmp_path)
    assert outcome["status"] == 0, outcome["output"]
    assert "anndata" in {b["module"] for b in outcome["blocked"]}
    assert "yaml" not in {b["module"] for b in outcome["blocked"]}
    code = "import importlib.util\nassert importlib.util.find_spec('anndata') is None\n"
    outcome = run_hidden(code, workflow=ROOT, allowed=allowed, tmp_path=tmp_path)
    assert outcome["status"] == 0, outcome["output"]


@pytest.mark.parametrize(
    "configfile",
    [
        pytest.param(None, id="demo"),
        pytest.param("config/public.yaml", id="public"),
    ],
)
def test_snakemake_env_parses_the_config_offline(tmp_path, configfile):
    """What the Snakemake process runs before any job (Snakefile, config and sheet
    validation, DAG with its input, params and resources functions) needs only
    envs/snakemake.yaml and no network: public data are downloaded by a job."""
    workflow = tmp_path / "workflow_copy"
    ignore = shutil.ignore_patterns("__pycache__", ".snakemake", "downloads")
    for name in ("workflow", "config", "resources"):
        shutil.copytree(ROOT / name, workflow / name, ignore=ignore)
    shutil.copy2(ROOT / "Snakefile", workflow / "Snakefile")
    allowed = with_dependencies(set(env_packages(SNAKEMAKE_ENV)))
    argv = ["-n", "--cores", "1", "--quiet", "rules"]
    argv += ["--configfile", configfile] if configfile else []
    code = f"from snakemake.cli import main\nmain({argv!r})\n"
    outcome = run_hidden(code, workflow=workflow, allowed=allowed, tmp_path=tmp_path)
    problem = (
        f"with only envs/snakemake.yaml, `snakemake {' '.join(argv)}` fails; imports and "
        f"network calls from the workflow:\n{_chains(outcome)}\n"
        f"output:\n{outcome['output'][-3000:]}"
    )
    assert outcome["status"] == 0, problem
    assert not outcome["network"], problem
    assert not (workflow / "resources" / "datasets" / "downloads").exists(), "a dry run downloads"
