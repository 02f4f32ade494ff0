"""The sections of a district's case-study report, as HTML, for ``notebooks/report.ipynb``.

The notebook holds no logic: each cell calls one method of :class:`Report`, which gathers data
through the library and returns HTML. All text that comes from the study's files is escaped
(Markdown in findings is rendered with raw HTML escaped and links shown as text), so a report
can never carry a script or an external resource from the data. Output is deterministic:
sorted orders, chart element ids derived from the chart, no timestamps.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import mistune

from .study import Study, load_study

SECTION_TITLES = {
    "key-findings": "Key findings",
    "district-systems": "District systems",
    "on-the-ground": "Observations on the ground",
    "school-perspectives": "School perspectives",
    "successes": "Successes",
    "challenges": "Challenges",
    "lessons": "Lessons learned",
}


class _PlainLinks(mistune.HTMLRenderer):
    """Markdown renderer for findings: raw HTML escaped, links and images reduced to text."""

    def link(self, text: str, url: str, title: str | None = None) -> str:
        return text

    def image(self, text: str, url: str, title: str | None = None) -> str:
        return html.escape(text)


_markdown = mistune.create_markdown(escape=True, renderer=_PlainLinks(escape=True))


def md(text: str) -> str:
    return _markdown(text or "").strip()


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


class HTMLBlock(str):
    """A string that Jupyter displays as HTML (so cells can simply return it)."""

    def _repr_html_(self) -> str:
        return str(self)


def table_html(rows: list[dict[str, Any]], columns: list[str] | None = None, headers: dict[str, str] | None = None,
               caption: str | None = None, raw: tuple[str, ...] = ()) -> str:
    """An escaped HTML table; ``raw`` names columns whose values are already HTML."""
    columns = columns or (list(rows[0]) if rows else [])
    headers = headers or {}
    head = "".join(f"<th>{esc(headers.get(c, c.replace('_', ' ')))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{row.get(c, '') if c in raw else esc(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def chart_html(chart: Any, static: bool) -> str:
    """An Altair chart as inline SVG (static) or as a Vega-Embed div whose id is derived from
    the chart's spec (so two renders give the same bytes). The Vega bundle is inlined once per
    page by the report exporter."""
    spec = chart.to_dict()
    payload = json.dumps(spec, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]
    if static:
        import vl_convert

        svg = vl_convert.vegalite_to_svg(spec)
        return f'<figure class="cs-chart" id="chart-{digest}">{svg}</figure>'
    safe = payload.replace("</", "<\\/")
    return (
        f'<figure class="cs-chart cs-vega" id="chart-{digest}"></figure>'
        f'<script type="application/json" id="chart-{digest}-spec">{safe}</script>'
        "<script>(function(){var el=document.getElementById('chart-" + digest + "');"
        "var spec=JSON.parse(document.getElementById('chart-" + digest + "-spec').textContent);"
        "if(window.vegaEmbed){vegaEmbed(el,spec,{actions:false,renderer:'svg'}).then(function(){el.setAttribute('data-drawn','1');})"
        ".catch(function(e){el.textContent='Chart could not be drawn: '+e;});}"
        "else{el.textContent='Chart library missing.';}})();</script>"
    )


@dataclass
class Footnotes:
    """Numbered footnotes; consecutive quotes from one source share one note."""

    notes: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (id, label, source ids)

    def note_for(self, label: str, source_id: str, share_with_previous: bool) -> str:
        if share_with_previous and self.notes and self.notes[-1][1] == label and source_id in self.notes[-1][2]:
            return self.notes[-1][0]
        note_id = f"fn-{len(self.notes) + 1}"
        self.notes.append((note_id, label, [source_id]))
        return note_id

    def number(self, note_id: str) -> int:
        return int(note_id.split("-")[1])


class Report:
    """Everything one district's report shows, section by section."""

    def __init__(self, study_dir: str | Path, district: str, coder: str = "", static_charts: bool = False,
                 allow_unverified: bool = False):
        self.study: Study = load_study(study_dir)
        self.district = self.study.district(district)
        self.coder_requested = coder or None
        self.static_charts = static_charts
        self.allow_unverified = allow_unverified
        self.footnotes = Footnotes()

    # ------------------------------------------------------------------ data

    @cached_property
    def sources(self):
        return self.study.sources(self.district.id)

    @cached_property
    def findings(self) -> list[Any]:
        from .findings import load_findings

        return list(load_findings(self.study, self.district.id))

    @cached_property
    def survey_spec(self):
        from .survey import load_survey_spec

        return load_survey_spec(self.study)

    @cached_property
    def survey_waves(self):
        from .survey import load_waves

        return load_waves(self.study, self.survey_spec, self.district.id)  # a broken file fails the district here

    @cached_property
    def survey_scores(self):
        from .survey import score_waves

        return score_waves(self.survey_waves, self.survey_spec)

    @cached_property
    def coder(self) -> str | None:
        from .adjudication import report_coder

        return report_coder(self.study, self.coder_requested, self.district.id)

    # ------------------------------------------------------------------ sections

    def title(self) -> HTMLBlock:
        d = self.district
        synthetic = ""
        if self.study.config.synthetic or any(t.synthetic for t in self.sources):
            synthetic = ('<p class="cs-synthetic">All data in this report are synthetic: the sessions, surveys and '
                         "findings were written to demonstrate the tool and describe no real school or person.</p>")
        return HTMLBlock(
            f"<h1>{esc(d.name)}</h1><p class=\"cs-meta\">Case study of personalized, competency-based learning"
            f" &middot; {esc(d.state)} &middot; {esc(d.network)}</p>{synthetic}"
        )

    def introduction(self) -> HTMLBlock:
        conditions = self.study.codebook.roots("conditions")
        rows = [{"condition": c.label, "what it means": c.definition} for c in conditions]
        intro = md(self.study.config.description) if self.study.config.description else ""
        return HTMLBlock(
            "<h2>Introduction and conditions</h2>" + intro +
            f"<p>This case study of {esc(self.district.name)} is organised by the {len(conditions)} district conditions "
            "below. Findings are supported by quotes from focus groups and interviews; every quote is checked "
            "against its source transcript before the report is published, and participants are never named.</p>"
            + table_html(rows)
        )

    def _finding(self, finding: Any) -> str:
        """A finding: its statement (Markdown, raw HTML escaped) and its quotes, each checked
        against its source, marked up for the audit of the rendered report and footnoted
        (consecutive quotes of the finding from one source share a note). A quote that fails
        the check carries a visible warning (and the report's audit then fails the district
        unless --allow-unverified)."""
        from .provenance import check_quote, quote_html

        parts = [f'<div class="cs-finding" id="finding-{esc(finding.id)}" data-finding="{esc(finding.id)}">',
                 md(finding.statement)]
        for i, quote in enumerate(finding.quotes):
            record = check_quote(self.study, quote, finding)
            note_id = self.footnotes.note_for(record.label or quote.source, quote.source, i > 0)
            warning = None if record.ok else f"this quote was not verified against its source ({record.status})"
            parts.append(quote_html(record, note_id, self.footnotes.number(note_id), warning))
        return "".join(parts) + "</div>"

    def _findings_block(self, section: str, by_condition: bool) -> str:
        items = [f for f in self.findings if f.section == section]
        if not items:
            return "<p><em>No findings recorded for this section.</em></p>"
        if not by_condition:
            return "".join(self._finding(f) for f in items)
        order = {c: i for i, c in enumerate(self.study.codebook.codes)}
        groups: dict[str, list[Any]] = defaultdict(list)
        for finding in items:
            first = finding.conditions[0] if finding.conditions else ""
            groups[first].append(finding)
        out = []
        for condition in sorted(groups, key=lambda c: order.get(c, len(order))):
            code = self.study.codebook.codes.get(condition)
            out.append(f"<h3>{esc(code.label if code else 'Other')}</h3>")
            out += [self._finding(f) for f in groups[condition]]
        return "".join(out)

    def key_findings(self) -> HTMLBlock:
        return HTMLBlock("<h2>Key findings by condition</h2>" + self._findings_block("key-findings", by_condition=True))

    def district_context(self) -> HTMLBlock:
        d = self.district
        facts = [{"": k[:1].upper() + k[1:], "value": v} for k, v in d.context.items()]
        by_type = Counter(self.study.source_label(t) for t in self.sources)
        sessions = ", ".join(f"{label} ({n})" if n > 1 else label for label, n in sorted(by_type.items()))
        schools = sorted({t.school for t in self.sources if t.school})
        return HTMLBlock(
            f"<h2>District context</h2><p>{esc(d.name)} ({esc(d.label)}) is a district in {esc(d.state)}"
            + (f", part of the {esc(d.network)}" if d.network else "") + ".</p>"
            + table_html(facts, ["", "value"])
            + f"<p>The research team held {len(self.sources)} sessions"
            + (f" at {esc(', '.join(schools))}" if schools else "") + f": {esc(sessions)}.</p>"
        )

    def district_systems(self) -> HTMLBlock:
        return HTMLBlock("<h2>District systems by condition</h2>" + self._findings_block("district-systems", by_condition=True))

    def survey_evidence(self) -> HTMLBlock:
        from .charts import survey_chart

        spec = self.survey_spec
        scores = self.survey_scores
        if scores.empty:
            return HTMLBlock("<h2>Survey evidence</h2><p><em>No survey data for this district.</em></p>")
        parts = ["<h2>Survey evidence</h2>",
                 f"<p>Construct scores are the average of item means on a 4-point scale (1 most negative, 4 most "
                 f"positive). {esc(spec.bands_sentence())}</p>"]
        for population in spec.populations:
            subset = scores[scores["population"] == population.id]
            if subset.empty:
                continue
            parts.append(f"<h3>{esc(population.label)}</h3>")
            parts.append(chart_html(survey_chart(subset, spec, population.id, district_label=self.district.label), self.static_charts))
            rows = [
                {"construct": r["construct_label"], "wave": r["wave"], "score": f"{r['score']:.2f}",
                 "change": "" if r["change"] is None or r["change"] != r["change"] else f"{r['change']:+.2f}",
                 "n": r["n_range"], "evidence": r["band"]}
                for r in subset.to_dict("records")  # the survey's construct order, as in the chart
            ]
            parts.append(table_html(rows))
        return HTMLBlock("".join(parts))

    def on_the_ground(self) -> HTMLBlock:
        return HTMLBlock(
            "<h2>Observations and perspectives on the ground</h2>"
            + self._findings_block("on-the-ground", by_condition=False)
            + "<h3>School perspectives</h3>" + self._findings_block("school-perspectives", by_condition=False)
        )

    def successes_challenges_lessons(self) -> HTMLBlock:
        parts = ["<h2>Successes, challenges and lessons</h2>"]
        for section in ("successes", "challenges", "lessons"):
            parts.append(f"<h3>{SECTION_TITLES[section]}</h3>" + self._findings_block(section, by_condition=False))
        return HTMLBlock("".join(parts))

    def joint_display(self) -> HTMLBlock:
        from .joint import joint_display, joint_html

        table = joint_display(self.study, district=self.district.id, coder=self.coder, spec=self.survey_spec,
                              scores=self.survey_scores if self.survey_spec.exists else None,
                              findings={self.district.id: self.findings})
        return HTMLBlock(
            "<h2>Joint display: what people said and what surveys show</h2>"
            "<p>One row per condition: coded passages by source type, a representative quote, and the linked "
            "survey constructs.</p>" + '<div class="cs-wide">' + joint_html(table) + "</div>"
        )

    def code_frequencies(self) -> HTMLBlock:
        from .counts import code_frequencies, frequency_chart

        if not self.coder:
            return HTMLBlock("<h2>Code frequencies</h2><p><em>No codings yet for this district.</em></p>")
        freq = code_frequencies(self.study, coder=self.coder, district=self.district.id, by="source-type", rollup=True)
        if freq.empty:
            return HTMLBlock("<h2>Code frequencies</h2><p><em>No codings yet for this district.</em></p>")
        return HTMLBlock(
            f"<h2>Code frequencies by source type</h2><p>Coded passages per condition (coder: {esc(self.coder)}).</p>"
            + chart_html(frequency_chart(freq, self.study), self.static_charts)
        )

    def methods(self) -> HTMLBlock:
        by_type = Counter(self.study.config.source_types.get(t.source_type, t.source_type) for t in self.sources)
        roles = Counter(role for t in self.sources for label, role in t.participants.items() if role != "facilitator")
        role_labels = self.study.config.roles
        rows_sessions = [{"source type": k, "sessions": v} for k, v in sorted(by_type.items())]
        rows_roles = [{"role": role_labels.get(k, k), "participants": v} for k, v in sorted(roles.items())]
        words = sum(t.words for t in self.sources)
        parts = ["<h2>Methods</h2>",
                 f"<p>{len(self.sources)} sessions ({words:,} words) were transcribed, split into speaker turns and "
                 "sentences, and coded against the codebook of district conditions. Participants appear under "
                 "pseudonyms in transcripts and by role only in this report.</p>",
                 table_html(rows_sessions), table_html(rows_roles)]
        parts.append(self._agreement_note())
        parts.append(self._survey_note())
        return HTMLBlock("".join(parts))

    def _agreement_note(self) -> str:
        from .agreement import study_agreement_summary

        summary = study_agreement_summary(self.study, district=self.district.id)
        if summary is None:
            return "<p>Fewer than two coders coded this district's sessions, so no inter-coder agreement is reported.</p>"
        return f"<p>{esc(summary)}</p>"

    def _survey_note(self) -> str:
        from .survey import wave_sizes

        sizes = wave_sizes(self.study, self.survey_spec, self.district.id, self.survey_waves)
        if not sizes:
            return ""
        text = "; ".join(f"{p} {w}: {n:,} respondents" for (p, w), n in sorted(sizes.items()))
        return f"<p>Survey waves: {esc(text)}.</p>"

    def notes(self) -> HTMLBlock:
        if not self.footnotes.notes:
            return HTMLBlock("")
        items = []
        from .provenance import footnote_html

        for note_id, label, sources in self.footnotes.notes:
            items.append(footnote_html(note_id, label, sources))
        return HTMLBlock('<h2>Notes</h2><ol class="cs-footnotes">' + "".join(items) + "</ol>")
