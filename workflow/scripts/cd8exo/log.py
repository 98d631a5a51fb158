"""Logging for rule scripts: everything to the rule's log file, user errors without a traceback."""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cd8exo.errors import DownloadError

__all__ = ["log_to"]


@contextmanager
def log_to(path: str | Path, *, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send the package's logging (and warnings) to ``path`` for the duration of a rule.

    A ``ValueError``, ``FileNotFoundError`` or :class:`cd8exo.download.DownloadError` (no
    network, a checksum mismatch, an HTML page instead of data) raised inside is a problem
    with the user's data, configuration or connection, not a bug: its message goes to
    standard error and to the log, the full traceback only to the log, and the process
    exits with status 1 so Snakemake stops the job (and removes its incomplete outputs).
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logger = logging.getLogger("cd8exo")
    try:
        yield logger
    except (ValueError, FileNotFoundError, DownloadError) as error:
        logger.error("%s", error)
        logger.debug("%s", traceback.format_exc())
        handler.stream.write(traceback.format_exc())
        handler.flush()
        sys.stderr.write(f"cd8exo error: {error}\n(full details in {path})\n")
        sys.exit(1)
    except Exception:
        # a bug, not a user error: keep the traceback in the log too, then let it surface
        handler.stream.write(traceback.format_exc())
        handler.flush()
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
