"""Every check of a study in one place, for ``casestudy validate``.

Loading a study checks its configuration, codebook and transcripts. The other plain-text
files (coder files, survey waves, findings) are checked by their own modules; this module
asks each of them in turn, so ``validate`` reports every problem of the study in one run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .errors import Problem
from .study import Study


def _checkers() -> list[tuple[str, Callable[[Study], Iterable[Problem]]]]:
    from .coding import validate_codings
    from .findings import validate_findings
    from .survey import validate_surveys

    return [("codings", validate_codings), ("surveys", validate_surveys), ("findings", validate_findings)]


def study_problems(study: Study) -> list[Problem]:
    """The study's own load problems plus those of its codings, surveys and findings."""
    problems = list(study.problems)
    for _name, check in _checkers():
        problems.extend(check(study))
    return sorted(set(problems), key=lambda p: (p.path, p.line or 0, p.type, p.message))
