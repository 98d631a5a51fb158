"""Every exception type of cd8exo.

``InputError`` (and its subclasses) mark a problem with what the user gave the workflow:
its message says which file or key, what was found and what to do, and a rule script shows
it as is, without a traceback. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DownloadError",
    "InputError",
    "NotDataError",
    "OfflineError",
]


class InputError(ValueError):
    """A problem with the user's input; the message is meant to be shown as is."""


class ConfigError(InputError):
    """A user error in the configuration; its message is meant to be shown as is."""


class DownloadError(RuntimeError):
    """A file could not be brought to its destination (the message says why and what to do)."""


class OfflineError(DownloadError):
    """The server cannot be reached at all (no network, DNS failure, connection refused)."""


class ChecksumError(DownloadError):
    """A file's sha256 differs from the registry or lock file."""


class NotDataError(DownloadError):
    """The server answered with something that is not the file (e.g. an HTML error page)."""
