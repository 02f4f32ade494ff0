"""Errors as data: every problem found in a study, and the one root exception.

Validation code *yields* :class:`Problem` objects (frictionless style) so a user sees every
problem in one run; code that cannot go on raises a subclass of :class:`CasestudyError`.
The CLI maps :class:`DataError` to exit 1 and :class:`UsageError` to exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_DATA = 1
EXIT_USAGE = 2


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in the study's files.

    ``type`` is a stable, hyphenated code (``duplicate-code``); ``path`` is relative to the
    study when possible; ``line`` is 1-based (``None`` when the whole file is at fault).
    ``severity`` is ``error`` or ``warning``: warnings are printed but do not fail.
    """

    path: str
    line: int | None
    type: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.type}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def problems_to_json(problems: Iterable[Problem]) -> str:
    return json.dumps([p.to_dict() for p in problems], indent=2, ensure_ascii=False)


class CasestudyError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code = EXIT_DATA


class DataError(CasestudyError):
    """The study's data has problems (exit 1). Carries the problems found."""

    exit_code = EXIT_DATA

    def __init__(self, message: str, problems: Iterable[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


class UsageError(CasestudyError):
    """Unusable input or arguments: a missing study, a bad name, an unreadable file (exit 2)."""

    exit_code = EXIT_USAGE


def relpath(path: Path, root: Path | None) -> str:
    """``path`` relative to ``root`` when it lies below it, else as given (for messages)."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)
