"""CELLxGENE Census queries: cells chosen by dataset id or an obs filter, written as an h5ad.

A registry entry with a ``census`` block (``census_version``, ``organism``,
``obs_value_filter``) is fetched by :func:`query_census` instead of an HTTP download. The
query goes through the ``cellxgene-census`` package (TileDB-SOMA), reading the Census
release either from its public location (resolved from the Census release directory,
:data:`RELEASE_DIRECTORY_URL`) or from ``uri``: a mirror or a copy of the release you made
yourself (a local folder, or ``s3://...`` with ``tiledb_config`` for its endpoint), which is
how the workflow runs without internet.

What a user can rely on:

- **Progress**: the number of matching cells, datasets and donors is logged before the
  counts are read, then the time the read took.
- **Whole or nothing**: the cells are written to ``<dest>.part`` and renamed when whole.
- **Checksums**: the h5ad's sha256 is recorded in the lock file on the first query
  (a pinned Census version and the pinned package versions give the same bytes); a later
  query that gives other bytes stops, keeping its result aside as ``<dest>.bad-<sha8>``.
- **Offline**: when the Census cannot be reached the run stops at once, naming what was
  tried, the S3 location of the release and the two ways out (``download.census.uri``, or
  the h5ad placed by hand into the download folder or ``local_dir``).
- **Duplicates**: a filter without ``is_primary_data == True`` can return the same cell
  from several datasets; a warning says so.

Reference: CZI Cell Science Program et al. CZ CELLxGENE Discover. Nucleic Acids Res 2025;
53(D1):D886-D900. doi:10.1093/nar/gkae1142.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import anndata as ad

from cd8exo._utils import sha256sum
from cd8exo.errors import DownloadError, OfflineError
from cd8exo.io.verify import _commit_part, lookup_checksum

logger = logging.getLogger(__name__)

__all__ = ["PUBLIC_RELEASE_URI", "RELEASE_DIRECTORY_URL", "census_tiledb_config", "query_census"]

#: Where ``cellxgene_census.open_soma`` looks up the location of a Census version.
RELEASE_DIRECTORY_URL = "https://census.cellxgene.cziscience.com/cellxgene-census/v1/release.json"


#: The public S3 location of a Census release (bucket in us-west-2, no credentials needed).
PUBLIC_RELEASE_URI = "s3://cellxgene-census-public-us-west-2/cell-census/{version}/soma/"


def census_tiledb_config(
    tiledb_config: Mapping[str, Any] | None = None, *, retries: int = 5, timeout: float = 60
) -> dict[str, str]:
    """TileDB settings of a query: the workflow's retries and time-out, then the user's.

    Parameters
    ----------
    tiledb_config
        ``download.census.tiledb_config`` (e.g. ``vfs.s3.endpoint_override`` for a mirror);
        its keys win over the defaults set here.
    retries, timeout
        ``download.retries`` and ``download.timeout`` (seconds): the S3 connection is tried
        ``retries + 1`` times, each connection and request may take ``timeout`` seconds.

    Returns
    -------
    Settings as strings, as TileDB takes them.
    """
    settings = {
        "vfs.s3.connect_max_tries": str(int(retries) + 1),
        "vfs.s3.connect_timeout_ms": str(int(timeout * 1000)),
        "vfs.s3.request_timeout_ms": str(int(timeout * 1000)),
    }
    settings.update({str(key): str(value) for key, value in (tiledb_config or {}).items()})
    return settings


def _where_to_put(dest: Path, local_dir: str | Path | None) -> str:
    folder = Path(local_dir) if local_dir else dest.parent
    return f"{folder}/ as '{dest.name}'"


def _check_release_directory(
    version: str, *, dest: Path, local_dir: str | Path | None, timeout: float
) -> None:
    """Stop at once, with the ways out, when the Census release directory is unreachable."""
    request = urllib.request.Request(RELEASE_DIRECTORY_URL, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=min(timeout, 30)):
            return
    except urllib.error.HTTPError:
        return  # the server answered: the network is there; open_soma reports the rest
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        msg = (
            f"cannot reach the CELLxGENE Census release directory {RELEASE_DIRECTORY_URL} "
            f"({reason}); is this machine offline? Either copy Census {version} "
            f"({PUBLIC_RELEASE_URI.format(version=version)}, e.g. `aws s3 sync "
            f"--no-sign-request {PUBLIC_RELEASE_URI.format(version=version)} <folder>`) and "
            "set `download: census: uri:` in the workflow config to that folder, or save the "
            "query's cells (an h5ad in the CELLxGENE schema, raw counts) into "
            f"{_where_to_put(dest, local_dir)}."
        )
        raise OfflineError(msg) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class _Query(NamedTuple):
    """What a Census query asks for, and where it is read (``where``, for messages)."""

    version: str
    organism: str
    value_filter: str
    where: str


def _query(census: Mapping[str, Any], *, uri: str | None) -> _Query:
    """The query of a registry entry's ``census`` block; warns about possible duplicates."""
    version = str(census.get("census_version") or "stable")
    organism = census.get("organism", "Homo sapiens")
    value_filter = census["obs_value_filter"]
    if "is_primary_data" not in value_filter:
        logger.warning(
            "the Census filter %r does not select is_primary_data == True: a cell present in "
            "several datasets is returned once per dataset",
            value_filter,
        )
    return _Query(version, organism, value_filter, uri or f"Census {version}")


def _read_cells(handle: Any, query: _Query) -> ad.AnnData:
    """The matching cells and their counts, from an open Census; stops when none match."""
    import cellxgene_census

    species = query.organism.lower().replace(" ", "_")
    cells = (
        handle["census_data"][species]
        .obs.read(
            value_filter=query.value_filter,
            column_names=["soma_joinid", "dataset_id", "donor_id"],
        )
        .concat()
        .to_pandas()
    )
    if cells.empty:
        msg = (
            f"the CELLxGENE query {query.value_filter!r} ({query.where}, {query.organism}) "
            "matched no cells; check the dataset id or the filter's column names and values "
            "(the Census schema: https://chanzuckerberg.github.io/cellxgene-census/)."
        )
        raise DownloadError(msg)
    logger.info(
        "%d cells match (%d dataset(s), %d donor(s)); reading their counts",
        len(cells),
        cells["dataset_id"].nunique(),
        cells.groupby(["dataset_id", "donor_id"], observed=True).ngroups,
    )
    with warnings.catch_warnings():
        # the query's obs has a RangeIndex, which anndata turns into strings
        warnings.simplefilter("ignore", ad.ImplicitModificationWarning)
        return cellxgene_census.get_anndata(
            handle, organism=query.organism, obs_coords=cells["soma_joinid"].to_numpy()
        )


def _query_failed(
    error: BaseException,
    query: _Query,
    *,
    uri: str | None,
    dest: Path,
    local_dir: str | Path | None,
) -> DownloadError:
    """The error to raise for a failed query: OfflineError when the Census was not reached."""
    text = _first_line(error)
    offline = uri is None or any(
        word in text for word in ("Failed to connect", "Couldn't connect", "Connection")
    )
    kind = OfflineError if offline else DownloadError
    msg = (
        f"the CELLxGENE query {query.value_filter!r} failed on {query.where}: {text}. Check "
        "`download: census: uri:` and `tiledb_config:` in the workflow config and the "
        "filter's column names; or save the cells (an h5ad in the CELLxGENE schema, raw "
        f"counts) into {_where_to_put(dest, local_dir)}."
    )
    return kind(msg)


def _write_result(
    adata: ad.AnnData, dest: Path, *, query: _Query, lock_file: str | Path | None
) -> None:
    """Write the cells to ``<dest>.part``, check or record its checksum, rename it to ``dest``."""
    # what was asked, not where it was read: a mirror gives the same bytes as the original
    adata.uns["census_query"] = {
        "census_version": query.version,
        "organism": query.organism,
        "obs_value_filter": query.value_filter,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    adata.write_h5ad(part)
    digest = sha256sum(part)
    _commit_part(
        part,
        dest,
        digest,
        expected=lookup_checksum(dest.name, lock_file=lock_file),
        source=f"first query, recorded in {lock_file}",
        lock_file=lock_file,
        origin=query.where,
        what="The query result",
        hint="A different Census version, mirror or package version gives other bytes. ",
    )
    logger.info("%s: %d cells written (sha256 %s)", dest, adata.n_obs, digest[:12])


def query_census(
    census: Mapping[str, Any],
    dest: str | Path,
    *,
    uri: str | None = None,
    tiledb_config: Mapping[str, Any] | None = None,
    lock_file: str | Path | None = None,
    local_dir: str | Path | None = None,
    retries: int = 5,
    timeout: float = 60,
) -> Path:
    """Query CELLxGENE Census and write the matching cells (raw counts) as an h5ad at ``dest``.

    Parameters
    ----------
    census
        The registry entry's ``census`` block: ``census_version``, ``organism`` (default
        ``"Homo sapiens"``) and ``obs_value_filter`` (SOMA value-filter syntax, e.g.
        ``"dataset_id == '...' and is_primary_data == True"``).
    dest
        Output h5ad; written as ``<dest>.part`` and renamed when whole.
    uri
        The Census release to read (``download.census.uri``): a folder or an ``s3://``
        URI. ``None`` = the public release of ``census_version``.
    tiledb_config
        Extra TileDB settings (``download.census.tiledb_config``).
    lock_file
        Checksum lock file (see :mod:`cd8exo.download`); ``None`` = no checksum kept.
    local_dir
        Only for messages: where a user may put the h5ad by hand.
    retries, timeout
        As in :func:`census_tiledb_config`.

    Returns
    -------
    ``dest``.

    Raises
    ------
    OfflineError
        The Census cannot be reached.
    DownloadError
        The filter is not valid, or matches no cells.
    ChecksumError
        The result's sha256 differs from the one recorded in the lock file.
    """
    import cellxgene_census
    import tiledbsoma

    dest = Path(dest)
    query = _query(census, uri=uri)
    if uri is None:
        _check_release_directory(query.version, dest=dest, local_dir=local_dir, timeout=timeout)
    settings = census_tiledb_config(tiledb_config, retries=retries, timeout=timeout)
    logger.info("querying CELLxGENE %s (%s): %s", query.where, query.organism, query.value_filter)
    started = time.monotonic()
    try:
        with cellxgene_census.open_soma(
            census_version=None if uri else query.version, uri=uri, tiledb_config=settings
        ) as handle:
            adata = _read_cells(handle, query)
    except DownloadError:
        raise
    except (tiledbsoma.SOMAError, OSError, KeyError, ValueError) as error:
        raise _query_failed(error, query, uri=uri, dest=dest, local_dir=local_dir) from error
    logger.info(
        "read %d cells x %d genes in %.1f s", adata.n_obs, adata.n_vars, time.monotonic() - started
    )
    _write_result(adata, dest, query=query, lock_file=lock_file)
    return dest
