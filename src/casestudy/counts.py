"""Code counts and co-occurrence, as pandas DataFrames, and Altair charts of them.

- :func:`code_frequencies`: per code, the number of codings and of distinct sessions
  (sources), optionally broken down by source type, district or speaker role, and optionally
  with child codes rolled up into their condition.
- :func:`cooccurrence`: a code-by-code matrix of units (sentences or turns) that one coder
  coded with both codes; a coding counts for every unit it overlaps. With several coders a
  unit counts once per coder (ana's data wall and ben's data tracking on one sentence are a
  disagreement, not two codes that go together). The diagonal is the number of units coded
  with the code at all.

Stale codings (their text is no longer in the source) and codings of codes that are not in
the codebook are left out, with a log message; ``casestudy validate`` lists them.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

import altair as alt
import pandas as pd

from .coding import Coding, coder_path, human_coders, list_coders, load_codings, suggestions_as_codings, suggestions_path
from .errors import UsageError

if TYPE_CHECKING:
    from .study import Study
    from .transcripts import Transcript

log = logging.getLogger("casestudy")

BREAKDOWNS = {"source-type": "source_type", "district": "district", "speaker-role": "speaker_role"}
UNITS = ("sentence", "turn")


def gather_codings(study: Study, coders: Iterable[str] | None = None, district: str | None = None) -> list[Coding]:
    """The current codings of the given coders (by default every coder in ``codings/`` except
    ``consensus``, whose codings restate the others'), of one district or all. A name with no
    coder file but a ``suggestions/<name>.jsonl`` counts the suggestions (``--coder auto`` after
    ``casestudy autocode``)."""
    if district is not None:
        study.district(district)
    names = list(coders) if coders is not None else human_coders(study)
    codings: list[Coding] = []
    for name in names:
        if coder_path(study, name).exists():
            codings += load_codings(study, name)
        elif suggestions_path(study, name).exists():
            codings += suggestions_as_codings(study, name)
        else:
            known = ", ".join(list_coders(study)) or "none yet"
            raise UsageError(f"no coder {name!r}: there is no codings/{name}.jsonl or suggestions/{name}.jsonl (coders: {known})")
    districts = {t.id: t.district for t in study.transcripts}
    kept = []
    stale = unknown = 0
    for coding in codings:
        if coding.status == "stale":
            stale += 1
        elif coding.code not in study.codebook.codes:
            unknown += 1
        elif district is None or districts.get(coding.source) == district:
            kept.append(coding)
    if stale or unknown:
        log.warning("left out %d stale coding(s) and %d coding(s) of unknown codes; 'casestudy validate' lists them", stale, unknown)
    return kept


def _code_key(study: Study, code: str, rollup: bool) -> str:
    return study.codebook.condition_of(code) if rollup else code


def _code_order(study: Study, rollup: bool) -> list[str]:
    return [c.id for c in study.codebook.codes.values() if not rollup or c.parent is None]


def _breakdown_value(coding: Coding, transcript: Transcript | None, column: str) -> str:
    if transcript is None:
        return "unknown"
    if column == "source_type":
        return transcript.source_type
    if column == "district":
        return transcript.district
    turn = transcript.turn(coding.turn) if coding.turn else transcript.turn_at(coding.start)
    return (turn.role if turn is not None else None) or "unknown"


def code_frequencies(study: Study, codings: list[Coding] | None = None, by: str | None = None, rollup: bool = False,
                     *, coder: str | None = None, district: str | None = None) -> pd.DataFrame:
    """One row per code (per code and breakdown value with ``by``): ``code``, ``label``, ``group``,
    [the breakdown], ``codings``, ``sessions``. Without ``by`` every code is listed, unused ones
    with 0; with ``rollup`` child codes count under their top-level condition.

    ``codings`` defaults to :func:`gather_codings` of ``coder`` (all coders) in ``district``
    (all districts); given codings are narrowed to ``coder`` and ``district`` when those are given."""
    if codings is None:
        codings = gather_codings(study, [coder] if coder is not None else None, district)
    elif coder is not None or district is not None:
        districts = {t.id: t.district for t in study.transcripts}
        codings = [c for c in codings if (coder is None or c.coder == coder)
                   and (district is None or districts.get(c.source) == district)]
    if by is not None and by not in BREAKDOWNS:
        raise UsageError(f"cannot break counts down by {by!r}; choose one of {', '.join(BREAKDOWNS)}")
    column = BREAKDOWNS.get(by) if by else None
    sources = {t.id: t for t in study.transcripts}
    counts: Counter[tuple[str, str | None]] = Counter()
    sessions: defaultdict[tuple[str, str | None], set[str]] = defaultdict(set)
    for coding in codings:
        key = (_code_key(study, coding.code, rollup),
               _breakdown_value(coding, sources.get(coding.source), column) if column else None)
        counts[key] += 1
        sessions[key].add(coding.source)
    order = {code: index for index, code in enumerate(_code_order(study, rollup))}
    keys = [(code, None) for code in order] if column is None else sorted(counts, key=lambda k: (order.get(k[0], len(order)), k[1]))
    rows = []
    for code, value in keys:
        info = study.codebook.codes[code]
        row = {"code": code, "label": info.label, "group": info.group}
        if column:
            row[column] = value
        row.update(codings=counts[(code, value)], sessions=len(sessions[(code, value)]))
        rows.append(row)
    columns = ["code", "label", "group", *([column] if column else []), "codings", "sessions"]
    return pd.DataFrame(rows, columns=columns).astype({"codings": "int64", "sessions": "int64"})


def _units(transcript: Transcript, unit: str) -> tuple[list[int], list[int], list[str]]:
    spans = list(transcript.sentences) if unit == "sentence" else list(transcript.turns)
    return [s.start for s in spans], [s.end for s in spans], [s.id for s in spans]


def cooccurrence(study: Study, codings: list[Coding], unit: str = "sentence", rollup: bool = False) -> pd.DataFrame:
    """Square DataFrame (index and columns: code ids in codebook order, only codes that occur):
    the number of units one coder coded with both codes (summed over coders); the diagonal is
    the number coded with each."""
    if unit not in UNITS:
        raise UsageError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    sources = {t.id: t for t in study.transcripts}
    cache: dict[str, tuple[list[int], list[int], list[str]]] = {}
    codes_by_unit: defaultdict[tuple[str, str], set[str]] = defaultdict(set)  # (coder, unit id) -> codes
    for coding in codings:
        transcript = sources.get(coding.source)
        if transcript is None:
            continue
        if coding.source not in cache:
            cache[coding.source] = _units(transcript, unit)
        starts, ends, ids = cache[coding.source]
        # units overlapping [start, end): unit.end > start and unit.start < end (units are in text order)
        first = bisect.bisect_right(ends, coding.start)
        last = bisect.bisect_left(starts, coding.end)
        for index in range(first, last):
            codes_by_unit[(coding.coder, ids[index])].add(_code_key(study, coding.code, rollup))
    used = {code for codes in codes_by_unit.values() for code in codes}
    order = [code for code in _code_order(study, rollup) if code in used]
    matrix = pd.DataFrame(0, index=pd.Index(order, name="code"), columns=pd.Index(order), dtype="int64")
    pairs: Counter[tuple[str, str]] = Counter()
    for codes in codes_by_unit.values():
        for a in codes:
            for b in codes:
                pairs[(a, b)] += 1
    for (a, b), n in pairs.items():
        matrix.loc[a, b] = n
    return matrix


def cooccurrence_pairs(matrix: pd.DataFrame) -> pd.DataFrame:
    """The matrix as a list of code pairs that occur together, most frequent first: ``code_a``,
    ``code_b``, ``both`` (units coded with both), ``units_a`` and ``units_b`` (units coded with each)."""
    codes = list(matrix.columns)
    rows = [{"code_a": a, "code_b": b, "both": int(matrix.loc[a, b]),
             "units_a": int(matrix.loc[a, a]), "units_b": int(matrix.loc[b, b])}
            for i, a in enumerate(codes) for b in codes[i + 1:] if matrix.loc[a, b] > 0]
    frame = pd.DataFrame(rows, columns=["code_a", "code_b", "both", "units_a", "units_b"])
    return frame.sort_values("both", ascending=False, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- charts


def frequency_chart(frequencies: pd.DataFrame, study: Study | None = None, title: str = "Codings per code") -> alt.Chart:
    """Horizontal bars of codings per code (stacked by the breakdown column if there is one),
    longest first; with ``study``, in codebook order instead (the same order in every district's report)."""
    extra = [c for c in frequencies.columns if c in BREAKDOWNS.values()]
    order: str | list[str] = "-x"
    if study is not None:
        order = [c.label for c in study.codebook.codes.values() if c.label in set(frequencies["label"])]
    encodings = {
        "x": alt.X("sum(codings):Q", title="codings"),
        "y": alt.Y("label:N", sort=order, title=None),
        "tooltip": ["code:N", "label:N", *[f"{c}:N" for c in extra], "codings:Q", "sessions:Q"],
    }
    if extra:
        encodings["color"] = alt.Color(f"{extra[0]}:N", title=extra[0].replace("_", " "))
    return alt.Chart(frequencies, title=title).mark_bar().encode(**encodings)


def cooccurrence_chart(matrix: pd.DataFrame, title: str = "Co-occurring codes") -> alt.LayerChart:
    """A heatmap of a co-occurrence matrix, with the counts written in the cells."""
    order = list(matrix.columns)
    long = (matrix.rename_axis(index="code_a", columns="code_b").stack().rename("units").reset_index())
    base = alt.Chart(long, title=title).encode(
        x=alt.X("code_b:N", sort=order, title=None),
        y=alt.Y("code_a:N", sort=order, title=None),
    )
    cells = base.mark_rect().encode(color=alt.Color("units:Q", scale=alt.Scale(scheme="blues"), title="units"),
                                    tooltip=["code_a:N", "code_b:N", "units:Q"])
    labels = base.mark_text(fontSize=9).encode(text=alt.condition(alt.datum.units > 0, "units:Q", alt.value("")))
    return alt.layer(cells, labels)
