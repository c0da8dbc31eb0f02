"""The exception hierarchy of autopeft.

Every error a user can cause by what they pass in (a file, a flag, a URL) is a
:class:`UserInputError`; the CLI prints its message on one line and exits with code 2.
Messages say the rule, the value received and, where there is one, the place
(``file:line: key.path``).
"""

from __future__ import annotations

__all__ = [
    "AutoPeftError",
    "DatasetError",
    "OutputError",
    "SearchSpaceError",
    "StorageError",
    "StudyError",
    "StudySpecError",
    "TrialError",
    "UnsupportedError",
    "UserInputError",
]


class AutoPeftError(Exception):
    """Root of every exception autopeft raises on purpose."""


class UserInputError(AutoPeftError):
    """Something the user supplied is invalid; the CLI exits with code 2."""


class SearchSpaceError(UserInputError):
    """A search-space file, or a point in it, breaks the schema."""


class StudySpecError(UserInputError):
    """A study spec file breaks the schema."""


class DatasetError(UserInputError):
    """A dataset cannot be found or lacks what the study needs (a column, labels)."""


class StorageError(UserInputError):
    """A storage URL cannot be opened, or a study is not (or already) in it."""


class OutputError(UserInputError):
    """A file the user asked for cannot be written there (a full disk, a read-only directory,
    a file where a directory should be); nothing half-written is left behind."""


class StudyError(UserInputError):
    """A study cannot be created, resumed or queried as asked."""


class UnsupportedError(UserInputError):
    """A valid request that this installation cannot serve (a missing optional package)."""


class TrialError(AutoPeftError):
    """A trial failed while running: recorded as FAIL, never raised to the user."""

    def __init__(self, message: str, *, infeasible: bool = False) -> None:
        super().__init__(message)
        self.infeasible = infeasible
