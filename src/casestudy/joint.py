"""The joint display: each condition's qualitative and survey evidence side by side.

One row per condition (per district): how many coded passages and distinct sessions of each
source type speak to it (a child code counts for its condition), one representative quote per
source type, and the latest score, change and evidence band of every survey construct linked
to it. Links come from the codebook (``survey_constructs``), from ``survey.yaml`` (a
construct's ``conditions``) and from findings that cite survey constructs.

Quotes come from the findings when a finding under the condition quotes a session of that
source type; otherwise from the coded passages: the passage most like the others (highest
mean rapidfuzz token-sort similarity to them), leaving out facilitators' turns, passages that
name a participant, and fragments, so the pick is reproducible and not the coder's whim.
"""

from __future__ import annotations

import html
import logging
import math
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .coding import CONSENSUS, Coding, human_coders

if TYPE_CHECKING:
    import pandas as pd

    from .study import Study

log = logging.getLogger("casestudy")

QUOTE_WORDS = (6, 60)  # a representative coded passage has this many words


@dataclass(frozen=True)
class Passages:
    passages: int = 0
    sessions: int = 0


@dataclass(frozen=True)
class Quote:
    text: str
    source: str  # session id
    source_label: str  # "SCV Teacher Focus Group"
    origin: str  # "finding" or "coding"
    start: int | None = None  # offsets in the source's text (coded passages)
    end: int | None = None


@dataclass(frozen=True)
class ConstructEvidence:
    key: str  # "students/student-agency"
    population: str
    label: str
    wave: int
    score: float
    change: float | None
    previous_wave: int | None
    band: str
    n_range: str

    def text(self) -> str:
        """``Student agency 2023: 2.45 (+0.07 since 2022), moderate to strong, n=1485-1682``."""
        change = f" ({self.change:+.2f} since {self.previous_wave})" if self.change is not None else ""
        return f"{self.label} {self.wave}: {self.score:.2f}{change}, {self.band}, n={self.n_range}"


@dataclass(frozen=True)
class JointRow:
    district: str
    condition: str
    label: str
    counts: dict[str, Passages] = field(default_factory=dict)  # source type -> counts
    quotes: dict[str, Quote] = field(default_factory=dict)  # source type -> quote
    constructs: tuple[ConstructEvidence, ...] = ()

    @property
    def passages(self) -> int:
        return sum(c.passages for c in self.counts.values())


@dataclass(frozen=True)
class JointTable:
    coder: str | None
    source_types: dict[str, str]  # id -> label, in study.yaml order
    populations: dict[str, str]  # id -> label, in survey.yaml order
    rows: tuple[JointRow, ...]
    sessions: dict[tuple[str, str], int] = field(default_factory=dict)  # (district, source type) -> sessions held

    def records(self) -> list[dict[str, Any]]:
        """Flat records (CSV): counts, quote and its source per source type, survey per population."""
        out = []
        for row in self.rows:
            record: dict[str, Any] = {"district": row.district, "condition": row.condition, "condition_label": row.label,
                                      "passages": row.passages,
                                      "sessions": sum(c.sessions for c in row.counts.values())}
            for st in self.source_types:
                counts = row.counts.get(st, Passages())
                quote = row.quotes.get(st)
                record[f"passages_{st}"] = counts.passages
                record[f"sessions_{st}"] = counts.sessions
                record[f"quote_{st}"] = quote.text if quote else ""
                record[f"quote_source_{st}"] = quote.source if quote else ""
            for pop in self.populations:
                record[f"survey_{pop}"] = "; ".join(c.text() for c in row.constructs if c.population == pop)
            out.append(record)
        return out

    def to_json(self) -> list[dict[str, Any]]:
        """Nested records (JSON): per source type its counts and quote; per population its constructs."""
        out = []
        for row in self.rows:
            out.append({
                "district": row.district, "condition": row.condition, "label": row.label,
                "source_types": {st: {**asdict(row.counts.get(st, Passages())),
                                      "quote": asdict(row.quotes[st]) if st in row.quotes else None}
                                 for st in self.source_types},
                "survey": {pop: [_construct_json(c) for c in row.constructs if c.population == pop] for pop in self.populations},
            })
        return out

    def table_rows(self) -> list[dict[str, str]]:
        """Rows for a terminal table: counts as ``passages/sessions`` per source type, quotes and
        survey constructs one per line."""
        rows = []
        for row in self.rows:
            record = {"district": row.district, "condition": row.label}
            for st, label in self.source_types.items():
                counts = row.counts.get(st, Passages())
                record[label] = f"{counts.passages}/{counts.sessions}" if counts.passages else "-"
            record["quotes"] = "\n".join(f"{self.source_types.get(st, st)}: \u201c{q.text}\u201d"
                                         for st, q in sorted(row.quotes.items(), key=lambda kv: list(self.source_types).index(kv[0])
                                                             if kv[0] in self.source_types else 99))
            for pop, label in self.populations.items():
                record[label] = "\n".join(c.text() for c in row.constructs if c.population == pop)
            rows.append(record)
        return rows


def _construct_json(c: ConstructEvidence) -> dict[str, Any]:
    data = asdict(c)
    data["score"] = round(c.score, 4)
    data["change"] = round(c.change, 4) if c.change is not None else None
    return data


# --------------------------------------------------------------------------- building


def resolve_coder(study: Study, coder: str | None, district: str | None = None) -> str | None:
    """The coder the display counts: ``coder`` when given, else the report's choice
    (:func:`casestudy.adjudication.report_coder`: ``consensus`` when it has codings, else the
    first human coder with codings); None when nobody has coded yet."""
    if coder:
        return coder
    from .adjudication import report_coder

    chosen = report_coder(study, district=district)
    coders = human_coders(study)
    if chosen and chosen != CONSENSUS and len(coders) > 1:
        log.warning("no consensus codings%s yet: counting %s's codings (coders: %s); choose with --coder",
                    f" for {district}" if district else "", chosen, ", ".join(coders))
    return chosen


def conditions(study: Study) -> list[str]:
    """The rows: the codebook's top-level codes in its 'conditions' group (all top-level
    codes when it has no such group), in codebook order."""
    roots = study.codebook.roots("conditions") or study.codebook.roots()
    return [c.id for c in roots]


def joint_display(study: Study, district: str | None = None, coder: str | None = None, *, spec: Any = None,
                  scores: pd.DataFrame | None = None, findings: dict[str, list[Any]] | None = None) -> JointTable:
    """Build the joint display of one district (every district when ``district`` is None).
    A caller that already holds the survey spec, the scores or the findings (the report does)
    passes them in so nothing is read twice."""
    from .counts import gather_codings
    from .survey import load_survey_spec, score_surveys

    districts = [study.district(district).id] if district is not None else list(study.districts)
    coder = resolve_coder(study, coder, district)
    codings = gather_codings(study, [coder], district) if coder is not None else []
    if coder is None:
        log.info("no codings yet: the joint display shows no coded passages")
    spec = spec if spec is not None else load_survey_spec(study)
    if scores is None and spec.exists:
        scores = score_surveys(study, spec, district)
    findings = findings if findings is not None else {d: _findings(study, d) for d in districts}
    rows_conditions = conditions(study)
    by_id = {t.id: t for t in study.transcripts}
    present = {t.source_type for t in study.transcripts if t.district in districts}
    source_types = {st: label for st, label in study.config.source_types.items() if st in present}
    sessions = defaultdict(int)
    for t in study.transcripts:
        if t.district in districts:
            sessions[(t.district, t.source_type)] += 1

    grouped: dict[tuple[str, str, str], list[Coding]] = defaultdict(list)
    for coding in codings:
        transcript = by_id.get(coding.source)
        if transcript is None:
            continue
        condition = study.codebook.condition_of(coding.code)
        grouped[(transcript.district, condition, transcript.source_type)].append(coding)

    links = _construct_links(study, spec, findings)
    rows = []
    for d in districts:
        for condition in rows_conditions:
            counts, quotes = {}, {}
            for st in source_types:
                found = grouped.get((d, condition, st), [])
                spans = {(c.source, c.start, c.end) for c in found}
                if spans:
                    counts[st] = Passages(len(spans), len({c.source for c in found}))
                quote = _finding_quote(study, findings[d], condition, st, by_id) or _coded_quote(study, found, by_id)
                if quote is not None:
                    quotes[st] = quote
            constructs = _evidence(scores, d, links.get((d, condition), []), spec) if scores is not None else ()
            rows.append(JointRow(d, condition, study.codebook.codes[condition].label, counts, quotes, constructs))
    populations = {p.id: p.label for p in spec.populations}
    return JointTable(coder, source_types, populations, tuple(rows), dict(sessions))


def _findings(study: Study, district: str) -> list[Any]:
    try:
        from .findings import load_findings
    except ImportError:  # the findings module is optional
        return []
    if not (study.root / "findings" / f"{district}.yaml").exists():
        return []
    return list(load_findings(study, district))


def _finding_quotes(finding: Any) -> list[tuple[str, str]]:
    """``(source id, quote text)`` of each quote of a finding."""
    quotes = getattr(finding, "quotes", None)
    if quotes is None:
        quotes = getattr(getattr(finding, "evidence", None), "quotes", None) or []
    out = []
    for quote in quotes:
        source = getattr(quote, "source", None) or getattr(quote, "source_id", None)
        text = getattr(quote, "text", None)
        if source and text:
            out.append((str(source), str(text)))
    return out


def _finding_constructs(finding: Any) -> list[str]:
    constructs = getattr(finding, "survey_constructs", None)
    if constructs is None:
        constructs = getattr(getattr(finding, "evidence", None), "survey_constructs", None) or []
    return [str(c) for c in constructs]


def _finding_quote(study: Study, findings: list[Any], condition: str, source_type: str, by_id: dict) -> Quote | None:
    for finding in findings:
        if condition not in tuple(getattr(finding, "conditions", ()) or ()):
            continue
        for source, text in _finding_quotes(finding):
            transcript = by_id.get(source)
            if transcript is not None and transcript.source_type == source_type:
                return Quote(text, source, study.source_label(transcript), "finding")
    return None


def _coded_quote(study: Study, codings: list[Coding], by_id: dict) -> Quote | None:
    """The coded passage most like the others (see the module docstring)."""
    from rapidfuzz import fuzz, process

    candidates: dict[tuple[str, int, int], str] = {}
    fallback: dict[tuple[str, int, int], str] = {}
    for coding in codings:
        transcript = by_id[coding.source]
        turn = transcript.turn(coding.turn) if coding.turn else transcript.turn_at(coding.start)
        if turn is not None and turn.role == "facilitator":
            continue
        text = " ".join(coding.text.split())
        if any(re.search(rf"\b{re.escape(name)}\b", text) for name in transcript.participants):
            continue
        key = (coding.source, coding.start, coding.end)
        fallback[key] = text
        if QUOTE_WORDS[0] <= len(text.split()) <= QUOTE_WORDS[1]:
            candidates[key] = text
    pool = candidates or fallback
    if not pool:
        return None
    keys = sorted(pool)
    texts = [pool[k] for k in keys]  # white space folded: a passage that spans lines reads as one
    if len(texts) > 2:
        similarity = process.cdist(texts, texts, scorer=fuzz.token_sort_ratio, workers=1)
        means = (similarity.sum(axis=1) - 100.0) / (len(texts) - 1)
        best = int(means.argmax())
    else:
        best = 0
    source, start, end = keys[best]
    return Quote(texts[best], source, study.source_label(by_id[source]), "coding", start, end)


def _construct_links(study: Study, spec: Any, findings: dict[str, list[Any]]) -> dict[tuple[str, str], list[str]]:
    """(district, condition) -> construct keys, from the codebook, survey.yaml and findings."""
    base: dict[str, list[str]] = defaultdict(list)

    def add(target: list[str], key: str) -> None:
        if key not in target:
            target.append(key)

    for code in study.codebook.codes.values():
        for key in code.survey_constructs:
            add(base[study.codebook.condition_of(code.id)], key)
    for construct in spec.constructs():
        for condition in construct.conditions:
            if condition in study.codebook.codes:
                add(base[study.codebook.condition_of(condition)], construct.key)
    links: dict[tuple[str, str], list[str]] = {}
    for district, items in findings.items():
        for condition, keys in base.items():
            links[(district, condition)] = list(keys)
        for finding in items:
            for condition in getattr(finding, "conditions", ()) or ():
                if condition in study.codebook.codes:
                    for key in _finding_constructs(finding):
                        add(links.setdefault((district, study.codebook.condition_of(condition)), []), key)
    order = {c.key: index for index, c in enumerate(spec.constructs())}
    return {k: sorted(v, key=lambda key: order.get(key, len(order))) for k, v in links.items()}


def _evidence(scores: pd.DataFrame, district: str, keys: list[str], spec: Any) -> tuple[ConstructEvidence, ...]:
    out = []
    if scores.empty:
        return ()
    mine = scores[scores["district"] == district]
    for key in keys:
        construct = spec.construct(key)
        if construct is None:
            continue
        rows = mine[(mine["population"] == construct.population) & (mine["construct"] == construct.id)]
        if rows.empty:
            continue
        latest = rows.sort_values("wave").iloc[-1]
        change = float(latest["change"])
        previous = latest["previous_wave"]
        out.append(ConstructEvidence(
            key=key, population=construct.population, label=construct.label, wave=int(latest["wave"]),
            score=float(latest["score"]), change=None if math.isnan(change) else change,
            previous_wave=None if previous is None or previous != previous or str(previous) == "<NA>" else int(previous),
            band=str(latest["band"]), n_range=str(latest["n_range"]),
        ))
    return tuple(out)


# --------------------------------------------------------------------------- HTML

STYLE = """
table.cs-joint { border-collapse: collapse; font: 13px/1.4 system-ui, sans-serif; }
table.cs-joint th, table.cs-joint td { border: 1px solid #ccc; padding: 4px 6px; vertical-align: top; text-align: left; }
table.cs-joint th { background: #f3f3f3; }
table.cs-joint .cs-count { white-space: nowrap; color: #444; }
table.cs-joint blockquote { margin: 4px 0 0; font-style: italic; }
table.cs-joint .cs-source { display: block; font-size: 11px; color: #666; font-style: normal; }
table.cs-joint ul { margin: 0; padding-left: 1.1em; }
"""


def joint_html(table: JointTable, standalone: bool = False, title: str = "Joint display") -> str:
    """The joint display as an HTML table, every value escaped; ``standalone`` wraps it in a
    page of its own with its style inline (no external file or script)."""
    e = html.escape
    multi = len({row.district for row in table.rows}) > 1
    head = (["District"] if multi else []) + ["Condition"] + list(table.source_types.values()) + [
        f"{label} survey" for label in table.populations.values()]
    parts = ['<table class="cs-joint"><thead><tr>', "".join(f"<th>{e(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in table.rows:
        cells = ([f"<td>{e(row.district)}</td>"] if multi else []) + [f"<th scope=\"row\">{e(row.label)}</th>"]
        for st in table.source_types:
            counts = row.counts.get(st, Passages())
            held = table.sessions.get((row.district, st), 0)
            text = (f"{counts.passages} passage{'s' * (counts.passages != 1)} in {counts.sessions} of {held} "
                    f"session{'s' * (held != 1)}") if counts.passages else (f"not coded ({held} session{'s' * (held != 1)})"
                                                                             if held else "no session")
            cell = f'<span class="cs-count">{e(text)}</span>'
            quote = row.quotes.get(st)
            if quote is not None:
                offsets = f' data-start="{quote.start}" data-end="{quote.end}"' if quote.start is not None else ""
                cell += (f'<blockquote class="cs-excerpt" data-source="{e(quote.source)}" data-origin="{e(quote.origin)}"{offsets}>\u201c{e(quote.text)}\u201d'
                         f'<span class="cs-source">{e(quote.source_label)}</span></blockquote>')
            cells.append(f"<td>{cell}</td>")
        for pop in table.populations:
            items = [c for c in row.constructs if c.population == pop]
            cells.append("<td>" + ("<ul>" + "".join(f"<li>{e(c.text())}</li>" for c in items) + "</ul>" if items else "") + "</td>")
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</tbody></table>")
    body = "".join(parts)
    if not standalone:
        return f"<style>{STYLE.strip()}</style>{body}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
            f"<style>{STYLE.strip()}</style></head><body><h1>{e(title)}</h1>"
            f"<p>Coded passages and sessions by source type (coder: {e(table.coder or 'none')}), a representative quote "
            f"per source type, and the latest score of each linked survey construct.</p>{body}</body></html>\n")
