"""Logging for rule scripts: everything to the rule's log file, user errors without a traceback."""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cd8exo.errors import DownloadError, InputError

__all__ = ["USER_ERRORS", "log_to"]

#: Exceptions that are a problem with the user's input, configuration or connection, not a
#: bug: :class:`~cd8exo.errors.InputError` (and its :class:`~cd8exo.errors.ConfigError`),
#: :class:`~cd8exo.errors.DownloadError` and ``FileNotFoundError`` (a missing input file).
#: Anything else, a plain ``ValueError`` included, is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, DownloadError, FileNotFoundError)


@contextmanager
def log_to(path: str | Path, *, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send the package's logging (and warnings) to ``path`` for the duration of a rule.

    Warnings of the ``cd8exo`` loggers also go to standard error (Snakemake shows them
    while the run goes on), prefixed ``cd8exo warning (<log path>):``.

    One of :data:`USER_ERRORS` raised inside is a problem with the user's data,
    configuration or connection, not a bug: its message (which names the file, column
    or key and what to do) goes to the log and to standard error, **without a
    traceback** (Snakemake shows the rule's log when a job fails), and the process exits
    with status 1 so Snakemake stops the job and removes its incomplete outputs. Any
    other exception is a bug: its traceback goes to the log and it propagates.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    echo = logging.StreamHandler(sys.stderr)
    echo.setLevel(logging.WARNING)
    where = str(path).replace("%", "%%")  # the log's path names the rule and dataset
    echo.setFormatter(logging.Formatter(f"cd8exo warning ({where}): %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logger = logging.getLogger("cd8exo")
    logger.addHandler(echo)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:
        yield logger
    except USER_ERRORS as error:
        logger.removeHandler(echo)  # the error is written once, below
        logger.error("%s", error)
        handler.flush()
        sys.stderr.write(f"cd8exo error: {error}\n(log: {path})\n")
        sys.exit(1)
    except Exception:
        # a bug, not a user error: keep the traceback in the log too, then let it surface
        handler.stream.write(traceback.format_exc())
        handler.flush()
        raise
    finally:
        logger.removeHandler(echo)
        root.removeHandler(handler)
        handler.close()
