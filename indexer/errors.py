"""Domain errors. Each says what went wrong *and* what to do about it.

The serving layer maps these to HTTP status codes in one place; the CLI prints them.
"""

from dataclasses import dataclass


class ShoprankError(Exception):
    """Base class of every error shoprank raises on purpose."""


class BadInputError(ShoprankError, ValueError):
    """The caller gave us something we cannot use (HTTP 422)."""


class CatalogError(BadInputError):
    """A catalog file is missing, unreadable or in an unknown format."""


class NotFoundError(ShoprankError, KeyError):
    """An id or index that does not exist (HTTP 404)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "not found"


class IndexMismatchError(ShoprankError):
    """A stored index or model does not match what the code expects (manifest check)."""


class BackendUnavailableError(ShoprankError):
    """The search backend cannot be reached (HTTP 503)."""


class FeatureUnavailableError(ShoprankError):
    """The service runs without what this call needs (a model it was not given): HTTP 503."""


class OverloadedError(ShoprankError):
    """Too much work queued (HTTP 429)."""


@dataclass(frozen=True)
class RowError:
    """One input row skipped while reading (catalogs, reviews): where it is and why."""

    source: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.reason}"
