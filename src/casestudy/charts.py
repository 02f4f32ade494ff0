"""Altair charts of survey constructs, as the reference report draws them, and SVG output.

- :func:`survey_chart`: one population of one district, construct by wave: grouped bars with
  the score printed on each bar, the n range per wave in the subtitle
  ("n=1229-1455 (2022); n=1415-1723 (2023)") and the evidence-band cut-offs drawn as dashed
  rules labelled with their band.
- :func:`chart_svg`: any chart as SVG, drawn by vl-convert (no browser, no network).

Specs are deterministic: data is inlined under a content-derived name, the charts carry fixed
names and no selection parameters, so the same scores give the same JSON and the same SVG.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from .survey import SurveySpec, n_range_text

WAVE_COLORS = ["#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c"]  # light to dark: the latest wave darkest


def survey_chart(scores: pd.DataFrame, spec: SurveySpec, population: str, district_label: str | None = None,
                 title: str | None = None, width: int | None = None, height: int = 300) -> alt.Chart:
    """Grouped bars of construct scores by wave for one population of one district.

    ``scores`` is :func:`casestudy.survey.score_waves` output; rows of other populations are
    ignored. Bars are ordered as ``survey.yaml`` declares the constructs; the y axis spans the
    response scale."""
    pop = spec.population(population)
    data = scores[scores["population"] == population]
    if data["district"].nunique() > 1:
        raise ValueError("survey_chart draws one district; filter the scores first")
    order = [c.label for c in pop.constructs]
    width = width or max(420, 76 * len(order))
    waves = sorted(int(w) for w in data["wave"].unique())
    frame = pd.DataFrame({
        "construct": data["construct_label"].astype(str).to_list(),
        "wave": [str(int(w)) for w in data["wave"]],
        "score": [round(float(s), 4) for s in data["score"]],
        "label": [f"{float(s):.2f}" for s in data["score"]],
        "n": [f"n={n}" for n in data["n_range"]],
        "band": data["band"].astype(str).to_list(),
    })
    low = min((s.minimum for s in spec.scales.values()), default=1)
    high = max((s.maximum for s in spec.scales.values()), default=4)
    heading = title or ": ".join(part for part in (district_label, f"{pop.label} survey, implementation by construct") if part)
    subtitle = n_range_text(data) if not data.empty else "no survey data"
    palette = ["#9ecae1", "#08519c"][-len(waves):] if len(waves) <= 2 else WAVE_COLORS[-len(waves):]
    colors = alt.Scale(domain=[str(w) for w in waves], range=palette or WAVE_COLORS[-1:])
    x = alt.X("construct:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, labelLimit=120, labelExpr="split(replace(datum.label, '-', '- '), ' ')"))
    y = alt.Y("score:Q", scale=alt.Scale(domain=[0, high]), title=f"average score ({low} to {high})")
    base = alt.Chart(frame).encode(x=x, xOffset=alt.XOffset("wave:N", sort=[str(w) for w in waves]))
    bars = base.mark_bar().encode(
        y=y, color=alt.Color("wave:N", scale=colors, title="wave", legend=alt.Legend(orient="top")),
        tooltip=[alt.Tooltip("construct:N"), alt.Tooltip("wave:N"), alt.Tooltip("label:N", title="score"),
                 alt.Tooltip("n:N"), alt.Tooltip("band:N", title="evidence")],
    )
    labels = base.mark_text(dy=-6, fontSize=10).encode(y=y, text="label:N")
    layers = [bars, labels]
    cutoffs = pd.DataFrame([{"at": start, "band": f"{label} \u2265 {start:g}"} for start, label in spec.cutoffs()])
    if not cutoffs.empty:
        rules = alt.Chart(cutoffs).mark_rule(strokeDash=[5, 4], color="#636363").encode(y=alt.Y("at:Q"))
        rule_labels = alt.Chart(cutoffs).mark_text(align="left", baseline="middle", dx=4, fontSize=10,
                                                   color="#636363").encode(y=alt.Y("at:Q"), x=alt.value(width), text="band:N")
        layers += [rules, rule_labels]
    return alt.layer(*layers).properties(
        title=alt.TitleParams(heading, subtitle=subtitle, anchor="start"), width=width, height=height,
        name=f"survey-{population}",
    ).configure_view(stroke=None)


def chart_svg(chart: alt.TopLevelMixin) -> str:
    """The chart as an SVG document, drawn offline by vl-convert."""
    import vl_convert

    return vl_convert.vegalite_to_svg(chart.to_dict())
