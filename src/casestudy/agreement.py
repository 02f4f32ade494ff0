"""Inter-coder agreement: Krippendorff's alpha, Cohen's kappa and Fleiss' kappa, on a study's
codings or on any reliability data (``unit,coder,value`` CSV).

Which code computes what:

- **Krippendorff's alpha** is our own short implementation (:func:`alpha_from_counts`) through the
  coincidence matrix, as in Krippendorff (2011), "Computing Krippendorff's alpha-reliability":
  nominal, ordinal, interval and ratio differences, any number of coders, missing values left
  out (a unit with fewer than two values is not pairable). It is tested against the published
  worked examples; the GPL ``krippendorff`` package is used only in the tests, as a cross-check.
- **Cohen's kappa** (two coders) is scikit-learn's ``cohen_kappa_score`` (unweighted).
- **Fleiss' kappa** (a fixed number of ratings per unit) is statsmodels' ``fleiss_kappa``.

A statistic that is not defined (no variation at all: no one applied a code, or everyone
applied it everywhere; or nothing to compare) is ``None`` with a note that says why, never NaN.

On a study (:func:`study_agreement`) the unit of analysis is a sentence or a speaker turn of a
session: a coding counts for every unit it overlaps, and each code is a yes/no decision per
unit. A coder's *sessions* are the sources their file has any ``apply``, ``accept`` or
``reject`` event for (a coding removed later still shows that they coded the session); a unit
in a session a coder did not code is missing for that coder, not a "no". A unit only one coder
saw is not pairable and is left out of every statistic.
"""

from __future__ import annotations

import bisect
import csv
import io
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .coding import (
    CONSENSUS,
    AcceptEvent,
    ApplyEvent,
    Coding,
    RejectEvent,
    coder_path,
    human_coders,
    list_coders,
    load_codings,
    read_events,
)
from .errors import Problem, UsageError, relpath
from .files import check_name, decode_text

if TYPE_CHECKING:
    from .study import Study

log = logging.getLogger("casestudy")

LEVELS = ("nominal", "ordinal", "interval", "ratio")
UNITS = ("sentence", "turn")
RARE_UNITS = 10  # a code applied to fewer units than this (by anyone) is flagged as rare
MISSING_VALUES = ("", "*", "NA", "NaN")  # a cell with one of these is a missing value in a CSV


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha and what it was computed from.

    ``units`` and ``pairable_values`` count only pairable units (two or more values);
    ``observed`` and ``expected`` are the disagreements D_o and D_e; ``alpha`` is ``None`` when
    it is not defined, and ``note`` then says why."""

    alpha: float | None
    level: str
    units: int
    pairable_values: int
    observed: float | None = None
    expected: float | None = None
    note: str | None = None


def _check_level(level: str) -> str:
    if level not in LEVELS:
        raise UsageError(f"unknown level of measurement {level!r}; choose one of {', '.join(LEVELS)}")
    return level


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if _is_number(value) else (1, str(value))


def _differences(level: str, values: Sequence[Any], totals: np.ndarray) -> np.ndarray:
    """The squared difference delta^2(c, k) between every two values, for the level."""
    size = len(values)
    if level == "nominal":
        return 1.0 - np.eye(size)
    if not all(_is_number(v) for v in values):
        bad = next(v for v in values if not _is_number(v))
        raise ValueError(f"the {level} level needs numbers; {bad!r} is not one")
    x = np.asarray(values, dtype=float)
    if level == "interval":
        return (x[:, None] - x[None, :]) ** 2
    if level == "ratio":
        if (x < 0).any():
            raise ValueError("the ratio level needs values of 0 or more")
        total = x[:, None] + x[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = np.where(total > 0, (x[:, None] - x[None, :]) / np.where(total > 0, total, 1), 0.0)
        return delta ** 2
    # ordinal: (sum of n_g for g from c to k, minus (n_c + n_k) / 2), squared; values in rank order
    cumulative = np.concatenate([[0.0], np.cumsum(totals)])
    i, k = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    low, high = np.minimum(i, k), np.maximum(i, k)
    between = cumulative[high + 1] - cumulative[low]
    return (between - (totals[i] + totals[k]) / 2.0) ** 2


def alpha_from_counts(counts: np.ndarray, values: Sequence[Any], level: str = "nominal") -> AlphaResult:
    """Krippendorff's alpha from a units-by-values matrix of counts (``counts[u, v]``: how many
    coders gave unit ``u`` the value ``values[v]``); ``values`` in rank order for ``ordinal``.

    Units with fewer than two values are not pairable and are left out. Through the
    coincidence matrix ``o[c, k] = sum_u n_uc * (n_uk - [c == k]) / (m_u - 1)``:
    ``alpha = 1 - (n - 1) * sum(o * delta^2) / sum(n_c * n_k * delta^2)``."""
    _check_level(level)
    nothing = "no unit has values from two or more coders, so nothing can be compared"
    if not len(values):
        return AlphaResult(None, level, 0, 0, note=nothing)
    counts = np.asarray(counts, dtype=float).reshape(-1, len(values))
    m = counts.sum(axis=1)
    pairable, m = counts[m >= 2], m[m >= 2]
    if len(pairable) == 0:
        return AlphaResult(None, level, 0, 0, note=nothing)
    weighted = pairable / (m - 1)[:, None]
    coincidence = pairable.T @ weighted - np.diag(weighted.sum(axis=0))
    totals = coincidence.sum(axis=1)
    n = float(totals.sum())
    delta = _differences(level, values, totals)
    observed = float((coincidence * delta).sum())
    expected = float((np.outer(totals, totals) * delta).sum())
    pairable_values = int(round(n))
    used = [values[i] for i in np.flatnonzero(totals > 0)]
    if len(used) < 2:
        return AlphaResult(None, level, len(pairable), pairable_values, 0.0, 0.0,
                           note=f"alpha is undefined: every pairable value is {used[0]!r} (no variation, so agreement "
                                "cannot be told from chance)")
    alpha = 1.0 - (n - 1.0) * observed / expected
    return AlphaResult(float(alpha), level, len(pairable), pairable_values, observed / n, expected / (n * (n - 1.0)))


def alpha_from_units(units: Iterable[Iterable[Any]], level: str = "nominal") -> AlphaResult:
    """Krippendorff's alpha from each unit's list of values (one per coder who coded it;
    ``None``/NaN are missing and dropped)."""
    _check_level(level)
    rows = [[v for v in unit if not _is_missing(v)] for unit in units]
    values = sorted({v for row in rows for v in row}, key=_sort_key)
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(rows), len(values)))
    for u, row in enumerate(rows):
        for v in row:
            counts[u, index[v]] += 1
    return alpha_from_counts(counts, values, level)


def krippendorff_alpha(matrix: Sequence[Sequence[Any]], level: str = "nominal") -> AlphaResult:
    """Krippendorff's alpha from reliability data in the literature's layout: one row per coder,
    one column per unit, ``None`` (or NaN) where a coder gave no value."""
    rows = [list(r) for r in matrix]
    width = max((len(r) for r in rows), default=0)
    if any(len(r) != width for r in rows):
        raise ValueError("every coder's row must have one entry per unit (None where missing)")
    return alpha_from_units(([r[u] for r in rows] for u in range(width)), level)


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's (unweighted) kappa of two coders' values for the same units, by scikit-learn;
    ``None`` when it is undefined (both coders gave every unit one and the same value)."""
    if len(a) != len(b):
        raise ValueError("both coders need a value for every unit")
    if len(a) == 0:
        return None
    labels = sorted(set(a) | set(b), key=_sort_key)
    if len(labels) < 2:
        return None
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(list(a), list(b), labels=labels))


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' kappa from a units-by-categories table of counts (every row the same number of
    ratings, at least two), by statsmodels; ``None`` when it is undefined (one category only)."""
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return None
    ratings = table.sum(axis=1)
    if ratings[0] < 2 or not np.all(ratings == ratings[0]):
        raise ValueError("Fleiss' kappa needs the same number (two or more) of ratings for every unit")
    shares = table.sum(axis=0) / table.sum()
    if (shares ** 2).sum() >= 1.0 - 1e-12:
        return None
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    return float(_fleiss(table, method="fleiss"))


def percent_agreement(units: Iterable[Sequence[Any]]) -> float | None:
    """The share (0-100) of pairable units on which every coder gave the same value."""
    rows = [[v for v in u if not _is_missing(v)] for u in units]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        return None
    return 100.0 * sum(1 for r in rows if all(v == r[0] for v in r)) / len(rows)


# --------------------------------------------------------------------------- reliability data from a CSV


@dataclass
class ReliabilityData:
    """Values by unit and coder, read from a ``unit,coder,value`` CSV (missing values absent)."""

    path: str
    values: dict[str, dict[str, Any]]  # unit -> coder -> value, in file order
    coders: list[str]
    numeric: bool

    def units_values(self) -> list[list[Any]]:
        return [list(by_coder.values()) for by_coder in self.values.values()]


def _usage(message: str, problems: list[Problem]) -> UsageError:
    error = UsageError(message)
    error.problems = problems  # type: ignore[attr-defined]  # printed one a line by the CLI
    return error


def read_reliability_csv(path: Path | str, level: str = "nominal", root: Path | None = None) -> ReliabilityData:
    """Read ``unit,coder,value`` rows (other columns are ignored; a header is required).

    A missing value is a row left out, or a value cell that is empty, ``*``, ``NA`` or ``NaN``.
    Refused with every problem named by file and line (UsageError, exit 2): a header without the
    three columns, a row without unit or coder, two different values for the same unit and
    coder, a value that is not a number at the ordinal, interval or ratio level, a negative value
    at the ratio level. Identical repeated rows are read once."""
    _check_level(level)
    path = Path(path)
    rel = relpath(path, root) if root is not None else str(path)
    if not path.is_file():
        raise UsageError(f"{rel}: no such file")
    text, _encoding = decode_text(path.read_bytes())
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    names = [h.strip().lower() for h in header] if header else []
    missing = [c for c in ("unit", "coder", "value") if c not in names]
    if missing:
        found = ", ".join(repr(h) for h in (header or [])) or "nothing"
        raise _usage(f"{rel} is not reliability data: it needs the columns unit, coder and value",
                     [Problem(rel, 1, "bad-columns", f"the header needs columns unit, coder and value; "
                                                     f"missing {', '.join(missing)} (found {found})")])
    col = {name: names.index(name) for name in ("unit", "coder", "value")}
    problems: list[Problem] = []
    raw: dict[str, dict[str, tuple[str, int]]] = {}
    coders: dict[str, None] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        cell = lambda name: row[col[name]].strip() if col[name] < len(row) else ""  # noqa: E731
        unit, coder, value = cell("unit"), cell("coder"), cell("value")
        if not unit or not coder:
            problems.append(Problem(rel, line, "missing-field", f"the row has no {'unit' if not unit else 'coder'}"))
            continue
        coders.setdefault(coder, None)
        if value in MISSING_VALUES:
            continue
        seen = raw.setdefault(unit, {})
        if coder in seen and seen[coder][0] != value:
            problems.append(Problem(rel, line, "duplicate-value",
                                    f"coder {coder!r} has two values for unit {unit!r}: {seen[coder][0]!r} "
                                    f"(line {seen[coder][1]}) and {value!r}"))
            continue
        seen.setdefault(coder, (value, line))
    numbers: dict[tuple[str, str], float] = {}
    not_numbers: list[tuple[int, str]] = []
    for unit, by_coder in raw.items():
        for coder, (value, line) in by_coder.items():
            try:
                number = float(value)
            except ValueError:
                not_numbers.append((line, value))
                continue
            if not math.isfinite(number):
                not_numbers.append((line, value))
                continue
            numbers[(unit, coder)] = number
    numeric = not not_numbers
    if level != "nominal":
        problems += [Problem(rel, line, "not-a-number", f"value {value!r} is not a number; the {level} level needs numbers"
                                                       + (" (give ordered categories as ranks 1, 2, 3, ...)" if level == "ordinal" else ""))
                     for line, value in not_numbers]
        if level == "ratio":
            problems += [Problem(rel, raw[u][c][1], "negative-value", f"value {raw[u][c][0]!r} is below 0; the ratio level needs values of 0 or more")
                         for (u, c), number in numbers.items() if number < 0]
    if problems:
        problems.sort(key=lambda p: (p.line or 0))
        raise _usage(f"{rel}: {len(problems)} problem(s) in the reliability data; nothing computed", problems)
    values = {unit: {coder: (numbers[(unit, coder)] if numeric else value) for coder, (value, _line) in by_coder.items()}
              for unit, by_coder in raw.items()}
    return ReliabilityData(path=rel, values=values, coders=list(coders), numeric=numeric)


@dataclass
class DataAgreement:
    """Agreement statistics of one reliability data set (``casestudy agree --data``)."""

    file: str
    level: str
    alpha: AlphaResult
    units: int
    coders: list[str]
    cohen_kappa: float | None
    fleiss_kappa: float | None
    cohen_note: str | None
    fleiss_note: str | None
    percent_agreement: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": _round(self.alpha.alpha), "level": self.level, "units": self.units, "coders": len(self.coders),
            "pairable_values": self.alpha.pairable_values, "cohen_kappa": _round(self.cohen_kappa),
            "fleiss_kappa": _round(self.fleiss_kappa),
            "pairable_units": self.alpha.units, "coder_names": self.coders,
            "percent_agreement": _round(self.percent_agreement, 2),
            "observed_disagreement": _round(self.alpha.observed), "expected_disagreement": _round(self.alpha.expected),
            "notes": {k: v for k, v in (("alpha", self.alpha.note), ("cohen_kappa", self.cohen_note),
                                        ("fleiss_kappa", self.fleiss_note)) if v},
            "file": self.file,
        }

    def lines(self) -> list[str]:
        """The result as plain sentences (the ``--format table`` output)."""
        a = self.alpha
        alpha = f"{a.alpha:.3f}" if a.alpha is not None else "undefined"
        out = [f"Krippendorff's alpha ({self.level}): {alpha}" + (f"  ({a.note})" if a.note else ""),
               f"units: {self.units} ({a.units} pairable: coded by two or more coders); coders: {len(self.coders)} "
               f"({', '.join(self.coders)}); pairable values: {a.pairable_values}"]
        if a.observed is not None and a.expected:
            out.append(f"observed disagreement D_o = {a.observed:.4f}, expected D_e = {a.expected:.4f}")
        if self.percent_agreement is not None:
            out.append(f"percent agreement (units where every coder gave the same value): {self.percent_agreement:.1f}%")
        out.append("Cohen's kappa (unweighted): " + (f"{self.cohen_kappa:.3f}" if self.cohen_kappa is not None else "n/a")
                   + (f"  ({self.cohen_note})" if self.cohen_note else ""))
        out.append("Fleiss' kappa: " + (f"{self.fleiss_kappa:.3f}" if self.fleiss_kappa is not None else "n/a")
                   + (f"  ({self.fleiss_note})" if self.fleiss_note else ""))
        return out


def data_agreement(data: ReliabilityData, level: str = "nominal") -> DataAgreement:
    """Alpha at ``level``; Cohen's kappa when exactly two coders gave every unit a value; Fleiss'
    kappa when every unit has the same number (two or more) of values."""
    _check_level(level)
    units = data.units_values()
    alpha = alpha_from_units(units, level)
    cohen = fleiss = None
    cohen_note = fleiss_note = None
    if len(data.coders) != 2:
        cohen_note = f"does not apply: it needs exactly two coders, the data has {len(data.coders)}"
    elif any(len(by_coder) != 2 for by_coder in data.values.values()) or not data.values:
        cohen_note = "does not apply: a coder has no value for some unit (use alpha, which allows missing values)"
    else:
        first, second = data.coders
        cohen = cohen_kappa([v[first] for v in data.values.values()], [v[second] for v in data.values.values()])
        if cohen is None:
            cohen_note = "undefined: both coders gave every unit the same value"
    sizes = {len(u) for u in units}
    if len(sizes) != 1 or min(sizes, default=0) < 2:
        fleiss_note = ("does not apply: units have " + (f"{min(sizes)} to {max(sizes)}" if sizes else "no")
                       + " values; it needs the same number, two or more, for every unit")
    else:
        categories = sorted({v for u in units for v in u}, key=_sort_key)
        index = {v: i for i, v in enumerate(categories)}
        table = np.zeros((len(units), len(categories)))
        for row, unit in enumerate(units):
            for v in unit:
                table[row, index[v]] += 1
        fleiss = fleiss_kappa(table)
        if fleiss is None:
            fleiss_note = "undefined: every value is the same"
    return DataAgreement(file=data.path, level=level, alpha=alpha, units=len(data.values), coders=list(data.coders),
                         cohen_kappa=cohen, fleiss_kappa=fleiss, cohen_note=cohen_note, fleiss_note=fleiss_note,
                         percent_agreement=percent_agreement(units))


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


# --------------------------------------------------------------------------- a study's codings as reliability data


@dataclass(frozen=True)
class Unit:
    """A unit of analysis: one sentence or one speaker turn of a session."""

    id: str
    kind: str
    source: str
    path: str
    start: int
    end: int
    line: int
    turn: str
    speaker: str
    role: str | None
    text: str


@dataclass
class CodeAgreement:
    """Agreement on one code (or pooled over codes: ``code`` is ``None``)."""

    code: str | None
    label: str
    units: int  # pairable units (pooled: unit x code decisions)
    applied: dict[str, int]  # coder -> pairable units (decisions) the coder applied the code to
    coded_by_anyone: int
    percent_agreement: float | None
    kappa: dict[tuple[str, str], float | None]
    alpha: AlphaResult
    flags: list[str] = field(default_factory=list)

    def kappa_mean(self) -> float | None:
        defined = [k for k in self.kappa.values() if k is not None]
        return sum(defined) / len(defined) if defined else None


@dataclass(frozen=True)
class Disagreement:
    """One unit on which the coders differ about one code."""

    code: str
    unit: Unit
    applied_by: tuple[str, ...]
    not_applied_by: tuple[str, ...]
    codings: tuple[Coding, ...]  # the codings of ``applied_by`` that overlap the unit

    @property
    def id(self) -> str:
        """Stable while the source is unchanged: ``<code>@<unit id>``."""
        return f"{self.code}@{self.unit.id}"


@dataclass
class StudyAgreement:
    """How far the coders agree on a study's sessions, code by code and pooled."""

    unit: str
    district: str | None
    coders: list[str]
    sessions: dict[str, list[str]]  # coder -> source ids, in study order
    units: list[Unit]  # every unit of the sessions any of the coders coded
    seen: np.ndarray  # units x coders: the coder coded the unit's session
    applied: dict[str, np.ndarray]  # code -> units x coders: the coder's codings overlap the unit
    evidence: dict[tuple[str, int, str], list[Coding]]  # (code, unit index, coder) -> codings
    codes: list[CodeAgreement]
    pooled: CodeAgreement
    pooled_codes: list[str]
    labels: dict[str, str]

    @property
    def pairable(self) -> np.ndarray:
        return self.seen.sum(axis=1) >= 2

    @property
    def compared(self) -> int:
        return int(self.pairable.sum())

    @property
    def single_coder_units(self) -> int:
        return int((self.seen.sum(axis=1) == 1).sum())

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(combinations(self.coders, 2))

    def shared_sessions(self) -> list[str]:
        sets = [set(s) for s in self.sessions.values()]
        common = set.intersection(*sets) if sets else set()
        order = [s for ss in self.sessions.values() for s in ss]
        return sorted(common, key=order.index)

    def mean_kappa(self) -> float | None:
        """The mean of the per-code kappas (each code's mean over coder pairs) over the pooled codes."""
        values = [c.kappa_mean() for c in self.codes if c.code in self.pooled_codes]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    def disagreements(self, codes: Iterable[str] | None = None) -> list[Disagreement]:
        """Every (unit, code) where the coders who coded the unit's session differ, in text order."""
        wanted = set(codes) if codes is not None else None
        order = {code: i for i, code in enumerate(self.labels)}
        found = []
        pairable = self.pairable
        for code in sorted(self.applied, key=lambda c: order.get(c, len(order))):
            if wanted is not None and code not in wanted:
                continue
            applied = self.applied[code] & self.seen
            n1 = applied.sum(axis=1)
            m = self.seen.sum(axis=1)
            for index in np.flatnonzero(pairable & (n1 > 0) & (n1 < m)):
                yes = tuple(c for j, c in enumerate(self.coders) if applied[index, j])
                no = tuple(c for j, c in enumerate(self.coders) if self.seen[index, j] and not applied[index, j])
                codings = tuple(x for c in yes for x in self.evidence.get((code, int(index), c), []))
                found.append((int(index), order.get(code, len(order)), Disagreement(code, self.units[index], yes, no, codings)))
        return [d for _i, _o, d in sorted(found, key=lambda t: (t[0], t[1]))]

    def agreements(self) -> list[tuple[str, int, tuple[Coding, ...]]]:
        """(code, unit index, the codings) for every pairable unit every coder who saw it coded with the code."""
        found = []
        pairable = self.pairable
        m = self.seen.sum(axis=1)
        for code, matrix in self.applied.items():
            applied = matrix & self.seen
            for index in np.flatnonzero(pairable & (applied.sum(axis=1) == m)):
                codings = tuple(x for c in self.coders for x in self.evidence.get((code, int(index), c), []))
                found.append((code, int(index), codings))
        order = {code: i for i, code in enumerate(self.labels)}
        return sorted(found, key=lambda t: (t[1], order.get(t[0], len(order))))

    # ------------------------------------------------------------------ output

    def title(self) -> str:
        where = f"district {self.district}" if self.district else "all districts"
        return f"Agreement of {_join(self.coders)} ({where}); unit of analysis: the {self.unit}"

    def header_lines(self) -> list[str]:
        unit = self.unit
        lines = [self.title() + f" (a coding counts for every {unit} it overlaps; each code is a yes/no decision per {unit})"]
        counts = "; ".join(f"{c}: {_plural(len(s), 'session')}" for c, s in self.sessions.items())
        shared = self.shared_sessions()
        everyone = "both" if len(self.coders) == 2 else f"all {len(self.coders)}"
        lines.append(f"Sessions: {counts}; coded by {everyone}: {len(shared)}")
        for coder, sessions in self.sessions.items():
            others = [s for s in sessions if s not in shared]
            if others:
                lines.append(f"  only {coder} coded: {', '.join(others)}")
        if shared:
            lines.append(f"  coded by {everyone}: {_sessions_text(shared)}")
        lines.append(f"Units compared: {_plural(self.compared, unit)} coded by two or more coders"
                     + (f" ({_plural(self.single_coder_units, unit)} of sessions only one coder coded are left out)"
                        if self.single_coder_units else ""))
        return lines

    def footer_lines(self) -> list[str]:
        unit = self.unit
        pooled = self.pooled
        lines = [f"Pooled: over the {_plural(len(self.pooled_codes), 'code')} any coder applied, each {unit} x code a decision "
                 f"({_plural(pooled.units, 'decision')})."]
        lines.append(f"Columns: units = {unit}s compared; {', '.join(self.coders)} = {unit}s each coder applied the code to; "
                     f"agree % = {unit}s on which the coders agree.")
        lines.append(f"Flags: rare (n) = applied to only n {unit}s by anyone, fewer than {RARE_UNITS} (one {unit} more or less "
                     "moves kappa and alpha a lot); undefined = no variation (no one applied the code, or everyone applied "
                     "it everywhere), so agreement cannot be told from chance.")
        lines.append("Cohen's kappa: scikit-learn (unweighted, per pair of coders); Krippendorff's alpha: our own "
                     "(nominal; a coder's missing sessions are missing values).")
        return lines

    def rows(self, formatted: bool = False) -> list[dict[str, Any]]:
        """One row per code and a last pooled row. ``formatted``: strings for a table (alpha
        ``undefined`` rather than empty); otherwise numbers (``None`` when undefined) for CSV."""
        rows = []
        for item in [*self.codes, self.pooled]:
            row: dict[str, Any] = {"unit": self.unit, "code": item.code if item.code else "(pooled)", "label": item.label,
                                   "units": item.units}
            for coder in self.coders:
                row[f"applied_{coder}"] = item.applied.get(coder, 0)
            row["agreement"] = (_fmt_pct(item.percent_agreement) if formatted else _round(item.percent_agreement, 2))
            for a, b in self.pairs:
                value = item.kappa.get((a, b))
                row[f"kappa_{a}_{b}"] = _fmt(value) if formatted else _round(value)
            row["alpha"] = _fmt(item.alpha.alpha) if formatted else _round(item.alpha.alpha)
            row["flags"] = "; ".join(item.flags)
            rows.append(row)
        return rows

    def table_rows(self) -> list[dict[str, Any]]:
        """Compact rows for a terminal table or a notebook: applied counts under each coder's name,
        ``undefined`` where a statistic is not defined, short flags (``rare (6)``)."""
        rows = []
        for item in [*self.codes, self.pooled]:
            row: dict[str, Any] = {"code": item.code or "(pooled)", "units": f"{item.units:,}"}
            row.update({coder: item.applied.get(coder, 0) for coder in self.coders})
            row["agree %"] = "undefined" if item.percent_agreement is None else f"{item.percent_agreement:.1f}"
            row.update({f"kappa {a}-{b}": _fmt(item.kappa.get((a, b))) for a, b in self.pairs})
            row["alpha"] = _fmt(item.alpha.alpha)
            row["flag"] = "; ".join(f"rare ({item.coded_by_anyone})" if f.startswith("rare") else f for f in item.flags)
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        def code_dict(item: CodeAgreement) -> dict[str, Any]:
            return {"code": item.code, "label": item.label, "units": item.units, "applied": item.applied,
                    "coded_by_anyone": item.coded_by_anyone, "percent_agreement": _round(item.percent_agreement, 2),
                    "cohen_kappa": {f"{a}/{b}": _round(v) for (a, b), v in item.kappa.items()},
                    "alpha": _round(item.alpha.alpha), "alpha_note": item.alpha.note,
                    "pairable_values": item.alpha.pairable_values, "flags": item.flags}

        return {
            "unit": self.unit, "district": self.district, "coders": self.coders, "sessions": self.sessions,
            "units": {"total": len(self.units), "compared": self.compared, "single_coder": self.single_coder_units},
            "rare_threshold": RARE_UNITS, "level": "nominal",
            "codes": [code_dict(c) for c in self.codes],
            "pooled": {**code_dict(self.pooled), "codes": self.pooled_codes},
            "mean_kappa": _round(self.mean_kappa()),
        }


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _sessions_text(sessions: Sequence[str]) -> str:
    by_district: dict[str, list[str]] = {}
    for s in sessions:
        district, _, slug = s.partition("/")
        by_district.setdefault(district, []).append(slug)
    return "; ".join(f"{d} ({len(v)}): {', '.join(v)}" for d, v in by_district.items())


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _fmt_pct(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.1f}%"


def coder_sessions(study: Study, coder: str, district: str | None = None) -> list[str]:
    """The sessions (source ids, in study order) the coder's file has an apply, accept or reject event for."""
    events, _ = read_events(coder_path(study, coder), study.root)
    touched = {e.source for e in events if isinstance(e, (ApplyEvent, AcceptEvent, RejectEvent))}
    return [t.id for t in study.transcripts if t.id in touched and (district is None or t.district == district)]


def _check_coders(study: Study, coders: Iterable[str] | None) -> list[str]:
    if coders is None:
        names = human_coders(study)
        if len(names) < 2:
            found = ", ".join(list_coders(study)) or "none"
            raise UsageError(f"agreement needs two or more coders; codings/ has {len(names)} coder(s) besides consensus "
                             f"(coders: {found})")
        return names
    names = [c.strip() for c in coders if c.strip()]
    for name in names:
        check_name(name, "coder")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"coder {duplicates[0]!r} is listed twice in --coders")
    if len(names) < 2:
        raise UsageError(f"agreement needs two or more coders; --coders lists {len(names)} ({', '.join(names) or 'none'})")
    known = list_coders(study)
    for name in names:
        path = coder_path(study, name)
        if not path.exists():
            raise UsageError(f"coder {name!r} has no codings: {relpath(path, study.root)} does not exist "
                             f"(coders: {', '.join(known) or 'none yet'})")
    return names


def _unit_spans(transcript, unit: str) -> list:
    return list(transcript.sentences) if unit == "sentence" else list(transcript.turns)


def study_agreement(study: Study, coders: Iterable[str] | None = None, district: str | None = None,
                    unit: str = "sentence") -> StudyAgreement:
    """Agreement of ``coders`` (default: every coder in ``codings/`` but ``consensus``) on the
    sessions of ``district`` (default: all), with sentences or turns as the units of analysis.

    UsageError: fewer than two coders, a coder without a file or without any codings, an
    unknown district or unit."""
    if unit not in UNITS:
        raise UsageError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    if district is not None:
        study.district(district)
    names = _check_coders(study, coders)
    codebook = study.codebook
    labels = {code.id: code.label for code in codebook.codes.values()}
    by_id = {t.id: t for t in study.transcripts}
    codings: dict[str, list[Coding]] = {}
    stale = unknown = 0
    for name in names:
        current = load_codings(study, name)
        if not current:
            raise UsageError(f"coder {name!r} has no codings in {relpath(coder_path(study, name), study.root)}")
        kept = []
        for c in current:
            if c.status == "stale":
                stale += 1
            elif c.code not in codebook.codes:
                unknown += 1
            elif c.source in by_id and (district is None or by_id[c.source].district == district):
                kept.append(c)
        codings[name] = kept
    if stale or unknown:
        log.warning("left out %d stale coding(s) and %d coding(s) of codes not in the codebook; 'casestudy validate' lists them",
                    stale, unknown)
    sessions = {name: coder_sessions(study, name, district) for name in names}
    in_any = set().union(*map(set, sessions.values()))
    units: list[Unit] = []
    first_unit: dict[str, int] = {}
    for t in study.transcripts:
        if t.id not in in_any:
            continue
        first_unit[t.id] = len(units)
        for span in _unit_spans(t, unit):
            turn = t.turn(span.turn_id) if unit == "sentence" else span
            units.append(Unit(id=span.id, kind=unit, source=t.id, path=t.path, start=span.start, end=span.end,
                              line=span.line, turn=turn.id, speaker=turn.speaker, role=turn.role, text=span.text))
    seen = np.zeros((len(units), len(names)), dtype=bool)
    for j, name in enumerate(names):
        for source in sessions[name]:
            start = first_unit[source]
            size = len(_unit_spans(by_id[source], unit))
            seen[start:start + size, j] = True
    applied: dict[str, np.ndarray] = {}
    evidence: dict[tuple[str, int, str], list[Coding]] = {}
    bounds: dict[str, tuple[list[int], list[int]]] = {}
    for j, name in enumerate(names):
        for c in codings[name]:
            if c.source not in first_unit:
                continue
            if c.source not in bounds:
                spans = _unit_spans(by_id[c.source], unit)
                bounds[c.source] = ([s.start for s in spans], [s.end for s in spans])
            starts, ends = bounds[c.source]
            first = bisect.bisect_right(ends, c.start)
            last = bisect.bisect_left(starts, c.end)
            matrix = applied.setdefault(c.code, np.zeros((len(units), len(names)), dtype=bool))
            for local in range(first, last):
                index = first_unit[c.source] + local
                matrix[index, j] = True
                evidence.setdefault((c.code, index, name), []).append(c)
    pairable = seen.sum(axis=1) >= 2
    empty = np.zeros((len(units), len(names)), dtype=bool)
    results = [_code_agreement(code, labels[code], applied.get(code, empty), seen, pairable, names, unit)
               for code in labels]
    pooled_codes = [code for code in labels if code in applied and (applied[code] & seen)[pairable].any()]
    pooled = _pooled(pooled_codes, applied, seen, pairable, names, unit)
    return StudyAgreement(unit=unit, district=district, coders=names, sessions=sessions, units=units, seen=seen,
                          applied=applied, evidence=evidence, codes=results, pooled=pooled, pooled_codes=pooled_codes,
                          labels=labels)


def _stats(applied: np.ndarray, seen: np.ndarray, names: list[str]) -> tuple[AlphaResult, float | None, dict, dict[str, int], int]:
    """Statistics of stacked yes/no decisions: ``applied`` and ``seen`` are decisions x coders
    (pairable decisions only)."""
    yes = applied & seen
    n1 = yes.sum(axis=1)
    m = seen.sum(axis=1)
    counts = np.column_stack([m - n1, n1]) if len(m) else np.zeros((0, 2))
    alpha = alpha_from_counts(counts, [0, 1], "nominal")
    agreement = 100.0 * float(((n1 == 0) | (n1 == m)).mean()) if len(m) else None
    kappa: dict[tuple[str, str], float | None] = {}
    for (i, a), (j, b) in combinations(enumerate(names), 2):
        both = seen[:, i] & seen[:, j]
        kappa[(a, b)] = cohen_kappa(yes[both, i].astype(int).tolist(), yes[both, j].astype(int).tolist()) if both.any() else None
    return alpha, agreement, kappa, {c: int(yes[:, j].sum()) for j, c in enumerate(names)}, int((n1 > 0).sum())


def _code_agreement(code: str, label: str, applied: np.ndarray, seen: np.ndarray, pairable: np.ndarray,
                    names: list[str], unit: str) -> CodeAgreement:
    alpha, agreement, kappa, counts, anyone = _stats(applied[pairable], seen[pairable], names)
    flags = []
    units = int(pairable.sum())
    if units == 0:
        flags.append(f"no {unit} coded by two coders")
    elif anyone == 0:
        flags.append("never applied")
    elif alpha.alpha is None:
        flags.append(f"applied to every {unit}")
    elif anyone < RARE_UNITS:
        flags.append(f"rare: {_plural(anyone, unit)}")
    return CodeAgreement(code=code, label=label, units=units, applied=counts, coded_by_anyone=anyone,
                         percent_agreement=agreement, kappa=kappa, alpha=alpha, flags=flags)


def _pooled(codes: list[str], applied: dict[str, np.ndarray], seen: np.ndarray, pairable: np.ndarray,
            names: list[str], unit: str) -> CodeAgreement:
    if codes:
        stacked = np.concatenate([applied[c][pairable] for c in codes])
        seen_stacked = np.concatenate([seen[pairable]] * len(codes))
    else:
        stacked = seen_stacked = np.zeros((0, len(names)), dtype=bool)
    alpha, agreement, kappa, counts, anyone = _stats(stacked, seen_stacked, names)
    flags = [] if codes else ["no code applied"]
    return CodeAgreement(code=None, label=f"all codes applied ({len(codes)})", units=len(stacked), applied=counts,
                         coded_by_anyone=anyone, percent_agreement=agreement, kappa=kappa, alpha=alpha, flags=flags)


def disagreement_rows(result: StudyAgreement, disagreements: list[Disagreement] | None = None) -> list[dict[str, Any]]:
    """One record per disagreement: the code, who applied it, who did not, the unit's location and text."""
    found = result.disagreements() if disagreements is None else disagreements
    return [{"code": d.code, "label": result.labels.get(d.code, d.code), "unit": d.unit.id, "applied_by": ",".join(d.applied_by),
             "not_applied_by": ",".join(d.not_applied_by), "path": d.unit.path, "line": d.unit.line,
             "start": d.unit.start, "end": d.unit.end, "speaker": d.unit.speaker, "role": d.unit.role,
             "text": d.unit.text.strip()} for d in found]


def study_agreement_summary(study: Study, district: str | None = None, unit: str = "sentence") -> str | None:
    """One sentence for a report's methods note: the coders, the unit, the number of units,
    pooled alpha and mean kappa; ``None`` when fewer than two coders coded the district."""
    coders = human_coders(study)
    if len(coders) < 2:
        return None
    try:
        result = study_agreement(study, coders, district, unit)
    except UsageError as exc:  # a coder file with no codings left, say
        log.info("no agreement summary: %s", exc)
        return None
    active = [c for c in coders if result.sessions[c]]
    if result.compared == 0 or len(active) < 2:
        return None
    shared = result.shared_sessions()
    who = f"{len(active)} coders ({_join(active)})" if len(active) > 2 else f"Two coders ({_join(active)})"
    if len(active) > 2:
        who = who[0].upper() + who[1:]
    sessions = (f"the same {_plural(len(shared), 'session')}" if all(len(result.sessions[c]) == len(shared) for c in active)
                else f"{_plural(len(shared), 'session')} in common")
    alpha = result.pooled.alpha.alpha
    kappa = result.mean_kappa()
    codes = len(result.pooled_codes)
    text = (f"{who} coded {sessions} independently; with the {unit} as the unit of analysis (a coding counts for every "
            f"{unit} it overlaps; {_plural(result.compared, unit)} compared), Krippendorff's alpha (nominal) pooled over the "
            f"{_plural(codes, 'code')} applied was {_fmt(alpha)}")
    if kappa is not None:
        text += f" and Cohen's kappa averaged {kappa:.3f} across those codes"
    text += "."
    rare = sum(1 for c in result.codes if c.code in result.pooled_codes and any(f.startswith("rare") for f in c.flags))
    if rare:
        text += (f" {rare} of the codes {'was' if rare == 1 else 'were'} applied to fewer than {RARE_UNITS} {unit}s, "
                 "too few for their own statistics to mean much.")
    if CONSENSUS in list_coders(study):
        try:
            from .adjudication import consensus_progress

            decided, total = consensus_progress(study, active, district, unit, result=result if result.coders == active else None) if len(active) == 2 else (None, None)
        except UsageError:
            decided = total = None
        if total and decided == total:
            text += f" All {_plural(total, 'disagreement')} were then settled by adjudication into a consensus coding."
        elif total and decided:
            text += (f" {decided:,} of the {_plural(total, 'disagreement')} have been settled by adjudication into a consensus "
                     f"coding so far; it leaves the other {total - decided:,} out until they are.")
        elif total:
            text += f" The {_plural(total, 'disagreement')} have not been adjudicated yet."
    return text
