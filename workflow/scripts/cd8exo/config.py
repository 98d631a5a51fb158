"""Validation of ``config/config.yaml``, ``config/datasets.tsv`` and the gene sets and targets they name.

The schemas in ``workflow/schemas/`` describe every key; this module turns jsonschema's
errors into one readable message per problem (which key or row, what is allowed, how to
fix it) and fills in the schema defaults, so the rules only ever see a complete config.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import yaml

from cd8exo._utils import file_name_problem
from cd8exo.errors import ConfigError, InputError
from cd8exo.io.cargo import cargo_target_sets, read_cargo_table
from cd8exo.io.registry import load_registry, registry_entry
from cd8exo.io.sniff import folder_10x_problems, h5ad_problem, separator_problem, text_problem
from cd8exo.io.tables import merge_gene_sets, read_gmt, read_targets, select_signatures

__all__ = [
    "ConfigError",
    "fill_defaults",
    "load_schema",
    "read_datasets",
    "validate_config",
    "validate_datasets",
    "validate_inputs",
]


def load_schema(path: str | Path) -> dict[str, Any]:
    """Read a JSON schema written as YAML."""
    with open(path) as fh:
        return yaml.safe_load(fh)


def fill_defaults(instance: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``instance`` with the schema's ``default`` values filled in.

    Nested objects that are absent are created when any of their properties has a
    default, so ``config["qc"]["min_genes"]`` exists even when the user wrote no ``qc:``.
    """
    out = copy.deepcopy(instance)
    for key, sub in schema.get("properties", {}).items():
        if key not in out:
            if "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object" and _has_defaults(sub):
                out[key] = {}
        if isinstance(out.get(key), dict) and sub.get("type") == "object":
            out[key] = fill_defaults(out[key], sub)
    return out


def _has_defaults(schema: Mapping[str, Any]) -> bool:
    return any(
        "default" in sub or (sub.get("type") == "object" and _has_defaults(sub))
        for sub in schema.get("properties", {}).values()
    )


def _key(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


def _schema_at(schema: Mapping[str, Any], path: Any) -> Mapping[str, Any]:
    node: Mapping[str, Any] = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return node


def _describe(error: jsonschema.ValidationError, schema: Mapping[str, Any]) -> str:
    """One readable sentence for one jsonschema error."""
    where = _key(error.absolute_path)
    node = _schema_at(schema, error.absolute_path)
    hint = f" ({node['description']})" if "description" in node else ""
    kind = error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = f"under '{where}'" if error.absolute_path else "at the top level"
        return (
            f"unknown key(s) {', '.join(repr(e) for e in extra)} {prefix}; "
            f"allowed keys: {', '.join(allowed)} (check the spelling)"
        )
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        sub = _schema_at(schema, [*error.absolute_path, missing])
        desc = f" ({sub['description']})" if "description" in sub else ""
        where_txt = f" in '{where}'" if error.absolute_path else ""
        return f"required key '{missing}' is missing{where_txt}{desc}{_branch_hint(error)}"
    if kind == "not" and isinstance(error.schema, Mapping) and "description" in error.schema:
        # a key that must stay empty in this kind of entry; the schema says why
        return f"key '{where}' {error.schema['description']}"
    if kind == "type":
        return (
            f"key '{where}' must be of type {error.validator_value}, got {error.instance!r}{hint}"
        )
    if kind == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"key '{where}' must be one of {allowed}, got {error.instance!r}{hint}"
    if kind in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        op = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[
            kind
        ]
        return f"key '{where}' must be {op} {error.validator_value}, got {error.instance!r}{hint}"
    if kind == "pattern":
        return (
            f"key '{where}' must match the pattern {error.validator_value}, "
            f"got {error.instance!r}{hint}"
        )
    if kind in {"minItems", "maxItems", "minLength", "uniqueItems"}:
        return f"key '{where}': {error.message}{hint}"
    return f"key '{where}': {error.message}{hint}"


def _branch_hint(error: jsonschema.ValidationError) -> str:
    """The description of the if/then/else branch an error comes from (``""`` if none)."""
    inside_branch = len(error.absolute_schema_path) > 1
    if inside_branch and isinstance(error.schema, Mapping) and "description" in error.schema:
        return f"; {' '.join(str(error.schema['description']).split())}"
    return ""


def _describe_all(errors: list[jsonschema.ValidationError], schema: Mapping[str, Any]) -> list[str]:
    """One sentence per problem.

    The keys missing from one ``required`` list share a sentence, and so do the keys one
    if/then branch forbids (``not: {}`` with a ``description`` saying why).
    """
    groups: dict[tuple, list[jsonschema.ValidationError]] = {}
    for error in errors:
        if error.validator == "required" and "'" in error.message:
            key = ("required", tuple(error.absolute_path), tuple(error.absolute_schema_path))
        elif error.validator == "not" and "description" in error.schema and error.absolute_path:
            branch = tuple(error.absolute_schema_path)[:-3]  # ... then, properties, <key>, not
            key = ("not", tuple(error.absolute_path)[:-1], branch, error.schema["description"])
        else:
            key = ("single", id(error))
        groups.setdefault(key, []).append(error)
    lines = []
    for key, group in groups.items():
        if len(group) == 1:
            lines.append(_describe(group[0], schema))
            continue
        if key[0] == "not":
            names = ", ".join(repr(str(e.absolute_path[-1])) for e in group)
            lines.append(f"keys {names} {' '.join(str(key[3]).split())}")
            continue
        names = ", ".join(repr(e.message.split("'")[1]) for e in group)
        where_txt = f" in '{_key(group[0].absolute_path)}'" if group[0].absolute_path else ""
        lines.append(f"required keys {names} are missing{where_txt}{_branch_hint(group[0])}")
    return lines


def validate_config(
    config: Mapping[str, Any], schema: Mapping[str, Any], *, source: str = "config"
) -> dict[str, Any]:
    """Validate ``config`` against ``schema`` and return it with defaults filled in.

    Parameters
    ----------
    config
        The configuration as Snakemake parsed it.
    schema
        The JSON schema (``workflow/schemas/config.schema.yaml``).
    source
        Name of the configuration shown in messages (e.g. the config file path).

    Returns
    -------
    A new dictionary: the validated configuration with schema defaults.

    Raises
    ------
    ConfigError
        Listing every problem, one per line, each naming the key and what is allowed.
    """
    filled = fill_defaults(dict(config), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = "\n".join(f"  - {line}" for line in _describe_all(errors, schema))
        msg = f"invalid configuration in {source}:\n{lines}"
        raise ConfigError(msg)
    return filled


def read_datasets(path: str | Path) -> pd.DataFrame:
    """Read the dataset sheet (TSV); empty cells become missing values, everything else text."""
    path = Path(path)
    if not path.is_file():
        msg = f"dataset sheet {str(path)!r} does not exist; set 'datasets' in the config to a TSV file"
        raise ConfigError(msg)
    try:
        table = pd.read_csv(
            path, sep="\t", dtype=str, keep_default_na=False, comment="#", skip_blank_lines=True
        )
    except pd.errors.EmptyDataError:
        msg = (
            f"dataset sheet {str(path)!r} is empty; it needs a header line (dataset, format, "
            "path, ...) and one tab-separated row per dataset"
        )
        raise ConfigError(msg) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        msg = f"dataset sheet {str(path)!r} cannot be read as tab-separated text ({error})"
        raise ConfigError(msg) from None
    table.columns = [c.strip() for c in table.columns]
    if len(table.columns) == 1 and "," in table.columns[0]:
        msg = (
            f"dataset sheet {str(path)!r} looks comma-separated (header {table.columns[0]!r}); "
            "the sheet is tab-separated: save it as TSV"
        )
        raise ConfigError(msg)
    return table.map(lambda v: v.strip() if isinstance(v, str) else v)


def validate_datasets(
    table: pd.DataFrame,
    schema: Mapping[str, Any],
    *,
    source: str = "datasets.tsv",
    base_dir: str | Path = ".",
    registry: str | Path | None = None,
) -> pd.DataFrame:
    """Validate each row of the dataset sheet and check the files it names.

    Every file must exist and be what its column says (an h5ad file is HDF5 and not
    truncated, a 10x folder holds its files, text is text and not a web page; see
    :func:`_check_files`), so that a wrong file stops the run at start-up.

    A row is either a **public dataset** (``registry_id`` naming an entry of the dataset
    registry; ``dataset`` defaults to it, and the local columns must stay empty) or a
    **local dataset** (``path`` and the columns saying how to read it). The files of a
    public dataset are downloaded later, so only its ``truth`` file is checked here.

    Parameters
    ----------
    table
        The sheet as read by :func:`read_datasets`.
    schema
        The JSON schema of one row (``workflow/schemas/datasets.schema.yaml``).
    source
        File name shown in messages.
    base_dir
        Folder relative paths are resolved against (the workflow's working directory).
    registry
        The dataset registry (``resources/datasets/registry.yaml``) every ``registry_id``
        must resolve in (with :func:`cd8exo.readers.registry_entry`); ``None`` skips that check.

    Returns
    -------
    The sheet indexed by ``dataset``; local rows have the schema defaults filled in.

    Raises
    ------
    ConfigError
        Listing every problem as ``row N (dataset 'x'): ...``.
    """
    problems: list[str] = []
    allowed = set(schema.get("properties", {}))
    unknown = [c for c in table.columns if c not in allowed]
    if unknown:
        problems.append(
            f"unknown column(s) {', '.join(repr(c) for c in unknown)}; "
            f"allowed columns: {', '.join(sorted(allowed))}"
        )
    if table.empty:
        problems.append("no dataset rows; add one row per dataset")
    validator = jsonschema.Draft202012Validator(schema)
    rows = []
    public: list[tuple[int, dict[str, Any]]] = []  # valid registry rows, with their row number
    base = Path(base_dir)
    for i, raw in enumerate(table.to_dict("records"), start=2):  # row 1 is the header
        row = {k: v for k, v in raw.items() if v != "" and k in allowed}
        if "registry_id" in row:
            # defaults describe how to read a local file; a registry entry says that itself
            row.setdefault("dataset", row["registry_id"])
        else:
            row = fill_defaults(row, schema)
        where = f"row {i} (dataset {row.get('dataset', '?')!r})"
        errs = list(validator.iter_errors(row))
        for text in _describe_all(errs, schema):
            text = text.replace("key '", "column '").replace("keys '", "columns '")
            if text.startswith("column 'format' must be one of"):
                text += _format_hint(str(row.get("format", "")))
            problems.append(f"{where}: {text}")
        if not errs:
            problems.extend(f"{where}: {p}" for p in _check_files(row, base))
            if "registry_id" in row:
                public.append((i, row))
        rows.append(row)
    if registry is not None and public:
        problems.extend(_check_registry_ids(public, registry))
    ids = [r.get("dataset") for r in rows]
    dups = sorted({d for d in ids if d is not None and ids.count(d) > 1})
    if dups:
        problems.append(f"dataset ids must be unique; repeated: {', '.join(dups)}")
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        msg = f"invalid dataset sheet {source}:\n{lines}"
        raise ConfigError(msg)
    return pd.DataFrame(rows).set_index("dataset", drop=False)


def _check_registry_ids(
    public: list[tuple[int, dict[str, Any]]], registry: str | Path
) -> list[str]:
    """Problems with the ``registry_id`` of (row number, row) pairs: unknown id, bad entry."""
    # imported here: reading the registry needs the scientific stack, a local sheet does not

    try:
        content = load_registry(registry)
    except (FileNotFoundError, ValueError) as error:
        return [f"column 'registry_id': {error} (set `download: registry:` in the config)"]
    problems = []
    for i, row in public:
        try:
            registry_entry(row["registry_id"], registry=content)
        except ValueError as error:
            problems.append(f"row {i} (dataset {row['dataset']!r}): column 'registry_id': {error}")
    return problems


def _check_files(row: Mapping[str, Any], base: Path) -> list[str]:
    """Problems with the files a row names: each exists and is what its column says.

    Only the first kilobytes of each file are read (:mod:`cd8exo.io.sniff`): an h5ad is
    HDF5 and not truncated, a 10x folder holds its files, a text file is text (gzip where
    named ``.gz``) and not an HTML page. A public dataset's files are downloaded and
    verified by the workflow, so only its ``truth`` file is checked here.
    """
    problems = []
    if "registry_id" not in row:
        problems.extend(_data_problems(row, base))
    for column, what in _TEXT_COLUMNS.items():
        if column in row:
            problem = text_problem(base / row[column], what=what)
            if problem is not None:
                problems.append(f"column '{column}': file {row[column]!r} {problem}")
    return problems


#: Columns naming a text file, and what the file should hold.
_TEXT_COLUMNS = {
    "cell_table": "a cell table (TSV or CSV with a header line)",
    "label_map": "a label map (TSV with columns label, cell_type)",
    "truth": "a truth table (TSV)",
}


def _data_problems(row: Mapping[str, Any], base: Path) -> list[str]:
    """Problems with a local row's ``path`` for its ``format``."""
    path, shown = base / row["path"], repr(row["path"])
    if row["format"] == "10x_mtx":
        return [f"column 'path': {shown} {p}" for p in folder_10x_problems(path)]
    if row["format"] == "h5ad":
        problem = h5ad_problem(path)
    else:  # text_matrix
        problem = text_problem(path, what="a genes x cells text matrix (TSV, CSV or .txt)")
        problem = problem or separator_problem(path)
    return [] if problem is None else [f"column 'path': file {shown} {problem}"]


def _format_hint(value: str) -> str:
    """A hint for a ``format`` outside the schema's names (``""`` if none fits)."""
    lower = value.strip().lower().lstrip(".")
    if lower in {"h5ad", "10x_mtx", "text_matrix"}:
        return f"; write it as {lower!r}"
    if lower in {"csv", "tsv", "txt", "text", "csv.gz", "tsv.gz", "txt.gz", "matrix", "dense"}:
        return "; a genes x cells text file is format 'text_matrix'"
    if lower in {"10x", "mtx", "10x_mtx_gz", "mex", "cellranger", "10x_h5", "h5"}:
        return (
            "; a folder with matrix.mtx[.gz], features.tsv[.gz] and barcodes.tsv[.gz] is "
            "format '10x_mtx' (a 10x .h5 file must first be converted to .h5ad)"
        )
    if lower in {"loom", "rds", "seurat", "h5seurat", "zarr"}:
        return "; convert it to .h5ad first (format 'h5ad')"
    return ""


# --------------------------------------------------------------------------- #
# The gene sets and the target table, read once at start-up
# --------------------------------------------------------------------------- #
def _read_gene_sets(
    paths: Sequence[str], *, key: str, allow_empty: bool, problems: list[str]
) -> dict[str, dict[str, list[str]]]:
    """GMT path -> its sets, for the files that read; the others' messages go to ``problems``."""
    collections = {}
    for path in paths:
        try:
            collections[str(path)] = read_gmt(path, allow_empty=allow_empty)
        except InputError as error:
            problems.append(f"{key}: {error}")
    return collections


def _unusable_names(names: Sequence[str], *, what: str, where: str) -> list[str]:
    """Problems of names that figures cannot be named after (``<signature>__<target>.png``)."""
    problems = []
    for name in names:
        reason = file_name_problem(str(name))
        if reason:
            problems.append(
                f"{where}: {what} {name!r} cannot name a figure file ({reason}); rename it"
            )
    return problems


def _signature_problems(config: Mapping[str, Any]) -> list[str]:
    """Problems of ``signatures.gmt`` (with ``signatures.include``) and ``overlap_gmt``."""
    problems: list[str] = []
    signatures = config["signatures"]
    collections = _read_gene_sets(
        signatures["gmt"], key="signatures.gmt", allow_empty=False, problems=problems
    )
    if not problems:
        try:
            chosen = select_signatures(collections, include=signatures.get("include", []))
        except InputError as error:
            problems.append(f"signatures: {error}")
        else:
            problems += _unusable_names(list(chosen), what="signature", where="signatures.gmt")
    _read_gene_sets(
        signatures.get("overlap_gmt", []),
        key="signatures.overlap_gmt",
        allow_empty=True,
        problems=problems,
    )
    return problems


def _target_problems(config: Mapping[str, Any]) -> list[str]:
    """Problems of ``targets.table`` and ``targets.extra``."""
    targets = config["targets"]
    try:
        genes = read_targets(targets["table"])["gene"].tolist()
    except InputError as error:
        return [f"targets.table: {error}"]
    return _unusable_names(
        genes, what="target gene", where=f"targets.table ({targets['table']})"
    ) + _unusable_names(list(targets.get("extra", [])), what="target gene", where="targets.extra")


def _target_set_problems(config: Mapping[str, Any]) -> list[str]:
    """Problems of ``targets.mirna_gmt`` and ``targets.cargo_table`` (none when unset)."""
    targets = config["targets"]
    if not targets.get("mirna_gmt"):
        return []
    problems: list[str] = []
    collections = _read_gene_sets(
        [targets["mirna_gmt"]], key="targets.mirna_gmt", allow_empty=False, problems=problems
    )
    try:
        cargo = read_cargo_table(targets["cargo_table"])
    except InputError as error:
        return [*problems, f"targets.cargo_table: {error}"]
    for path, sets in collections.items():
        try:
            chosen, _ = cargo_target_sets(sets, cargo, gmt=f"targets.mirna_gmt ({path})")
        except InputError as error:
            problems.append(str(error))
        else:
            problems += _unusable_names(
                list(chosen), what="target set", where=f"targets.mirna_gmt ({path})"
            )
    return problems


def validate_inputs(config: Mapping[str, Any], *, screen_gmt: Sequence[str] = ()) -> None:
    """Read every GMT file and the target table the configuration names, before any job runs.

    The files are read with the readers the rules use (:func:`cd8exo.io.tables.read_gmt`,
    :func:`~cd8exo.io.tables.read_targets`), so a file that passes here is read the same
    way later, and a broken one stops the run at start-up instead of after QC and cell
    identity: a missing, empty, non-UTF-8 or damaged file, a GMT line without a name, a
    tab or genes, a set defined twice, ``signatures.include`` naming an unknown set, a
    target table without a ``gene`` column, with an empty or repeated gene, a miRNA
    target-set GMT (``targets.mirna_gmt``) none of whose sets belongs to a miRNA of the
    cargo table (``targets.cargo_table``), and a signature, target or target-set name that
    cannot be part of a figure's file name.

    Parameters
    ----------
    config
        The validated configuration (:func:`validate_config`).
    screen_gmt
        The GMT files of the tumour-side screen as the rules resolve them (a relative path
        missing from the working directory is the workflow's own copy); checked when
        ``screen.enabled``.

    Raises
    ------
    ConfigError
        Listing every problem, one per line, each naming the config key, the file and
        the line where there is one.
    """
    problems = _signature_problems(config) + _target_problems(config) + _target_set_problems(config)
    if config.get("screen", {}).get("enabled") and screen_gmt:
        screen_problems: list[str] = []
        collections = _read_gene_sets(
            screen_gmt, key="screen.gmt", allow_empty=False, problems=screen_problems
        )
        if not screen_problems:
            try:
                merge_gene_sets(collections, config_key="screen.gmt")
            except InputError as error:
                screen_problems.append(f"screen.gmt: {error}")
        problems += screen_problems
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        msg = f"invalid gene sets or target genes in the configuration:\n{lines}"
        raise ConfigError(msg)
