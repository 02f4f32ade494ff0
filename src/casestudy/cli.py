"""The ``casestudy`` command: a thin layer that parses options and calls the library.

Exit codes everywhere: 0 success, 1 the data has problems, 2 unusable input or arguments.
Errors print one line each, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .errors import EXIT_DATA, EXIT_USAGE, CasestudyError, DataError, Problem, UsageError, errors_only

app = typer.Typer(
    name="casestudy",
    help="An offline workbench for qualitative case-study research: validate a study, code transcripts, "
    "check agreement, audit quotes, score surveys and render a report per district.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

StudyOpt = Annotated[Path, typer.Option("--study", help="The study folder (the one with codebook.yaml).", show_default="current folder")]
DistrictOpt = Annotated[str | None, typer.Option("--district", help="Only this district (an id from study.yaml).")]


class TextFormat(str, Enum):
    text = "text"
    json = "json"


class RowFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


class TableFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


def print_problems(problems: list[Problem]) -> None:
    for problem in sorted(problems, key=lambda p: (p.path, p.line or 0, p.type)):
        out.print(str(problem), markup=False)


def write_rows(rows: list[dict], fmt: str) -> None:
    """Print records as CSV, JSON Lines or JSON on stdout."""
    if fmt == "jsonl":
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "json":
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    else:
        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())


def print_table(rows: list[dict], title: str | None = None, columns: list[str] | None = None) -> None:
    columns = columns or (list(rows[0]) if rows else [])
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        # Text(), not a string: cells hold transcript text such as "[laughter]", which Rich would read as markup.
        table.add_row(*[Text("" if row.get(c) is None else str(row.get(c))) for c in columns])
    out.print(table)


def _load(study_dir: Path, progress: bool = False):
    from .study import load_study

    return load_study(study_dir, progress=progress)


def load_valid_study(study_dir: Path):
    """Load a study for a command that needs clean data: data problems abort with exit 1."""
    study = _load(study_dir, progress=sys.stderr.isatty())
    problems = errors_only(study.problems)
    if problems:
        raise DataError(f"the study has {len(problems)} problem(s); run 'casestudy validate' to see them all", problems[:20])
    return study


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what the library does.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    if version:
        out.print(f"casestudy {__version__}")
        raise typer.Exit(0)


@app.command()
def validate(
    study_dir: StudyOpt = Path("."),
    fmt: Annotated[TextFormat, typer.Option("--format", help="text: one line per problem; json: problems and summary.")] = TextFormat.text,
) -> None:
    """Check the whole study (config, codebook, transcripts, codings, surveys, findings) and
    report every problem, one line each naming file and line (exit 1 if any)."""
    from .checks import study_problems
    from .study import summarize

    study = _load(study_dir, progress=fmt is TextFormat.text and sys.stderr.isatty())
    problems = study_problems(study)
    errors = errors_only(problems)
    summary = summarize(study)
    if fmt is TextFormat.json:
        sys.stdout.write(json.dumps({"valid": not errors, "problems": [p.to_dict() for p in problems],
                                     "summary": summary.to_dict()}, indent=2, ensure_ascii=False) + "\n")
    else:
        print_problems(problems)
        if errors:
            out.print(f"{len(errors)} problem(s) found in {study.root}", markup=False)
        else:
            synthetic = study.config.synthetic and "synthetic" not in study.config.name.lower()
            out.print(f"Study: {study.config.name}" + (" (synthetic data)" if synthetic else ""), markup=False)
            out.print(f"{summary.districts} districts, {summary.sources} sources, {summary.speakers} speakers, "
                      f"{summary.words:,} words, {summary.turns:,} turns, {summary.sentences:,} sentences, {summary.codes} codes",
                      markup=False)
            print_table([{"district": d, **v} for d, v in summary.by_district.items()])
    raise typer.Exit(EXIT_DATA if errors else 0)


@app.command()
def segments(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source (id such as SCV35/teacher-focus-group).")] = None,
    fmt: Annotated[RowFormat, typer.Option("--format", help="csv or jsonl (one sentence per line).")] = RowFormat.csv,
) -> None:
    """List every sentence with its stable ids, location, speaker and text."""
    from .study import segments as list_segments

    study = load_valid_study(study_dir)
    if source is not None and not any(t.id == source or t.id.split("/", 1)[-1] == source for t in study.sources(district)):
        raise UsageError(f"unknown source {source!r}; see 'casestudy validate' for the sources of the study")
    write_rows(list_segments(study, district, source), fmt.value)


@app.command()
def report(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    all_districts: Annotated[bool, typer.Option("--all", help="Render every district in study.yaml.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=16, help="Districts rendered in parallel (one process each).")] = 2,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder.", show_default="<study>/reports")] = None,
    coder: Annotated[str | None, typer.Option("--coder", help="Coder whose codings the report counts.", show_default="consensus if it coded the district, else the first coder who did")] = None,
    allow_unverified: Annotated[bool, typer.Option("--allow-unverified", help="Publish even if a quote fails the audit (each such quote carries a visible warning).")] = False,
    static_charts: Annotated[bool, typer.Option("--static-charts", help="Charts as inline SVG instead of interactive Vega.")] = False,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also print report.pdf with headless Chromium.")] = False,
    template: Annotated[Path | None, typer.Option("--template", help="Report notebook to run.", show_default="notebooks/report.ipynb")] = None,
    fmt: Annotated[TextFormat, typer.Option("--format", help="text: progress and a results table; json: results only.")] = TextFormat.text,
) -> None:
    """Render the case-study report of one district (--district) or all (--all) with papermill."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .files import check_name
    from .report import RenderOptions, find_chromium, render, result_rows, results_json, template_path

    if bool(district) == all_districts:
        raise UsageError("give exactly one of --district D or --all")
    if district is not None:
        check_name(district, "district")
    study = load_valid_study(study_dir)
    districts = list(study.districts) if all_districts else [study.district(district).id]
    if coder is not None:
        from .coding import list_coders

        check_name(coder, "coder")
        if coder not in list_coders(study):
            raise UsageError(f"no coder {coder!r} in codings/ (coders: {', '.join(list_coders(study)) or 'none yet'})")
    if pdf and find_chromium() is None:
        raise UsageError("--pdf needs headless Chromium, which is not installed (Debian: apt-get install chromium)")
    options = RenderOptions(coder=coder, allow_unverified=allow_unverified, static_charts=static_charts, pdf=pdf,
                            template=template_path(study.root, template) if template else None)
    out = (out_dir or study.root / "reports").resolve()
    show = fmt is TextFormat.text
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not show, transient=False) as bar:
        task = bar.add_task("Rendering reports", total=len(districts))

        def done(result):
            bar.advance(task)
            if show:
                err.print(f"  {result.district}: {result.status} ({result.seconds:.1f} s) {result.message}", markup=False)

        results = render(study.root, districts, out, options, jobs=jobs, on_done=done, study=study)
    if show:
        print_table(result_rows(results), title=f"Reports in {out}")
        for result in results:
            if result.status == "unverified":
                err.print(f"WARNING: {result.district}: published with unverified quotes: {result.message}", markup=False)
    else:
        sys.stdout.write(results_json(results) + "\n")
    raise typer.Exit(EXIT_DATA if any(not r.ok for r in results) else 0)


class CountBy(str, Enum):
    source_type = "source-type"
    district = "district"
    speaker_role = "speaker-role"


class CountUnit(str, Enum):
    sentence = "sentence"
    turn = "turn"


@app.command("codes")
def codes_command(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    coder: Annotated[str | None, typer.Option("--coder", help="Only this coder's codings (default: every coder in codings/; "
                                              "a suggester such as 'auto' counts its suggestions).")] = None,
    by: Annotated[CountBy | None, typer.Option("--by", help="Break the counts down by source type, district or speaker role.")] = None,
    cooccurrence: Annotated[bool, typer.Option("--cooccurrence", help="Co-occurrence instead: code pairs (table) or the code-by-code matrix (csv, json).")] = False,
    unit: Annotated[CountUnit, typer.Option("--unit", help="Co-occurrence unit: codes on the same sentence or turn.")] = CountUnit.sentence,
    rollup: Annotated[bool, typer.Option("--rollup", help="Count child codes under their top-level condition.")] = False,
    fmt: Annotated[TableFormat, typer.Option("--format", help="table, csv or json.")] = TableFormat.table,
) -> None:
    """Code frequencies (codings and distinct sessions per code), or co-occurrence with --cooccurrence."""
    from .counts import code_frequencies, cooccurrence as cooccurrence_matrix, cooccurrence_pairs, gather_codings

    study = load_valid_study(study_dir)
    codings = gather_codings(study, [coder] if coder is not None else None, district)
    table = fmt is TableFormat.table
    if cooccurrence:
        matrix = cooccurrence_matrix(study, codings, unit.value, rollup)
        # a terminal is too narrow for the matrix: the table lists the pairs, csv and json give the matrix
        frame = cooccurrence_pairs(matrix) if table else matrix.reset_index()
        title = f"Codes on the same {unit.value} ({len(codings)} codings; 'both' counts {unit.value}s one coder coded with both)"
        columns = ["code_a", "code_b", "both", "units_a", "units_b"]
    else:
        frame = code_frequencies(study, codings, by.value if by else None, rollup)
        title = f"Codings per code ({len(codings)} codings)"
        columns = [c for c in frame.columns if c not in ("label", "group")]
    rows = frame.to_dict("records")
    if table:
        if not codings:
            err.print("no codings to count yet: code sessions with 'casestudy lab' (or pick another --coder)", markup=False)
        print_table(rows, title=title, columns=columns)
    else:
        write_rows(rows, fmt.value)


@app.command("lab")
def lab_command(
    study_dir: StudyOpt = Path("."),
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser; print the address instead.")] = False,
    port: Annotated[int | None, typer.Option("--port", help="Port on localhost (default: JupyterLab's, 8888 or the next free one).")] = None,
) -> None:
    """Open JupyterLab on the study, with the coding notebook in notebooks/ (local only, no network)."""
    from .study import find_study_root
    from .widgets import launch_lab

    root = find_study_root(study_dir)
    raise typer.Exit(launch_lab(root, port, browser=not no_browser))


@app.command("autocode")
def autocode_command(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    coder: Annotated[str, typer.Option("--coder", help="Name the suggestions are written under: suggestions/<coder>.jsonl (never a human coder's file).")] = "auto",
    evaluate: Annotated[bool, typer.Option("--evaluate", help="Then score the suggestions against --against CODER: precision, recall and F1 per code, by sentence.")] = False,
    against: Annotated[str | None, typer.Option("--against", help="The human coder --evaluate compares the suggestions with.")] = None,
    include_facilitator: Annotated[bool, typer.Option("--include-facilitator", help="Also code the facilitator's turns (left out by default).")] = False,
    fmt: Annotated[TableFormat, typer.Option("--format", help="table, csv or json.")] = TableFormat.table,
) -> None:
    """Suggest codes for sentences from the codebook's patterns, each with the words that matched."""
    from . import autocode
    from .errors import relpath

    if evaluate != (against is not None):
        raise UsageError("--evaluate and --against CODER go together")
    try:
        study = load_valid_study(study_dir)
    except DataError as exc:
        bad = [p for p in exc.problems if p.type == "bad-pattern"]
        if bad:
            raise DataError(f"auto-coding refused: {len(bad)} pattern(s) in codebook.yaml cannot be compiled; fix them and run again", bad) from None
        raise
    result = autocode.run(study, coder, district, include_facilitator)
    if evaluate:
        scores = autocode.evaluate(study, coder, against, district)
        title = (f"Suggestions of {coder!r} against coder {against!r}, by sentence "
                 f"({len(scores.sources)} sources coded by {against}, {scores.sentences:,} sentences)")
        rows = scores.rows()
    else:
        title = f"{result.count:,} suggestions written to {relpath(result.path, study.root)}"
        if district is not None:
            title = f"{result.count:,} suggestions for {district} written to {relpath(result.path, study.root)} ({result.kept:,} of other districts kept)"
        rows = autocode.summary_rows(study, result)
    if fmt is TableFormat.table:
        columns = ["code", "tp", "fp", "fn", "precision", "recall", "f1"] if evaluate else ["code", "suggestions", "sources", "top_patterns"]
        print_table(rows, title=title, columns=columns)
    else:
        write_rows(rows, fmt.value)


def _print_kwic(result) -> None:
    """Keyword-in-context lines, grouped by source: line, role, left context, the match, right context."""
    from rich.text import Text

    if not result.hits:
        out.print(f"no sentence matches {result.query!r}", markup=False)
        return
    widest = max(len(hit.match) for hit in result.hits)
    roles = min(22, max(len(hit.role or "") for hit in result.hits))
    side = max(12, (out.width - 5 - roles - widest - 4) // 2)
    source = None
    for hit in result.hits:
        if hit.source != source:
            source = hit.source
            out.print(Text(f"{hit.source} ({hit.source_type}, {hit.district})", style="bold"))
        left = hit.left[-side:].rjust(side)
        right = hit.right[:side]
        line = Text(f"{hit.line:>5} {(hit.role or '')[:roles]:<{roles}} ", style="dim")
        line.append(left)
        line.append(hit.match, style="bold reverse")
        line.append(" " * (widest - len(hit.match)) + right)
        out.print(line)
    out.print(f"{len(result.hits)} of {result.total} matching sentence(s)", markup=False)


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="Words that must all occur; '\"help stick\"' (quoted) for a phrase, assess* for a prefix.")],
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    source_type: Annotated[str | None, typer.Option("--source-type", help="Only this source type (an id from study.yaml).")] = None,
    code: Annotated[str | None, typer.Option("--code", help="Only sentences coded with this code.")] = None,
    coder: Annotated[str | None, typer.Option("--coder", help="With --code: only this coder's codings.", show_default="all coders")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many sentences.")] = 50,
    fmt: Annotated[TableFormat, typer.Option("--format", help="table (keyword in context), csv or json.")] = TableFormat.table,
) -> None:
    """Keyword-in-context search of the transcripts (SQLite FTS5 index in .casestudy/, rebuilt when a transcript changes)."""
    from .search import hit_rows, search

    study = load_valid_study(study_dir)
    result = search(study, query, district=district, source_type=source_type, code=code, coder=coder, limit=limit)
    if fmt is TableFormat.table:
        _print_kwic(result)
    else:
        write_rows(hit_rows(result), fmt.value)


class ScoreMethod(str, Enum):
    item_means = "item-means"
    respondent_means = "respondent-means"


@app.command("survey")
def survey_command(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    population: Annotated[str | None, typer.Option("--population", help="Only this population (an id from survey.yaml: students, staff).")] = None,
    score: Annotated[ScoreMethod | None, typer.Option("--score", help="item-means: mean of the construct's item means (as reports give it); "
                                                      "respondent-means: mean of respondent scores.", show_default="score in survey.yaml")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format", help="table, csv or json.")] = TableFormat.table,
) -> None:
    """Survey construct scores per population, construct and wave: score, change, n range, SD, Cronbach's alpha, evidence band."""
    from .survey import load_survey_spec, score_records, score_surveys, score_table_rows

    study = load_valid_study(study_dir)
    spec = load_survey_spec(study)
    if not spec.exists:
        raise UsageError("the study has no survey.yaml declaring its surveys (see the README's survey section)")
    scores = score_surveys(study, spec, district, population, score.value if score else None)
    if fmt is not TableFormat.table:
        write_rows(score_records(scores), fmt.value)
        return
    if scores.empty:
        err.print("no survey files for this selection under surveys/<DISTRICT>/", markup=False)
        return
    method = "mean of item means" if scores["method"].iloc[0] == "item-means" else "mean of respondent scores"
    rows = score_table_rows(scores)
    for (d, p), _ in scores.groupby(["district", "population"], sort=False):
        print_table([r for r in rows if r["district"] == d and r["population"] == p],
                    title=f"{d} {spec.population(p).label.lower()}: construct scores ({method})",
                    columns=["construct", "wave", "score", "change", "n", "sd", "alpha", "evidence"])
    out.print(spec.bands_sentence(), markup=False)


class JointFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    html = "html"


@app.command("joint")
def joint_command(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    coder: Annotated[str | None, typer.Option("--coder", help="Whose codings to count.", show_default="consensus if it coded the district, else the first coder who did")] = None,
    fmt: Annotated[JointFormat, typer.Option("--format", help="table, csv, json or html (a self-contained page).")] = JointFormat.table,
) -> None:
    """Joint display: per condition, coded passages and sessions by source type, a quote per source type, linked survey scores."""
    from .files import check_name
    from .joint import joint_html
    from .joint import joint_display as build_joint

    if coder is not None:
        check_name(coder, "coder")
    study = load_valid_study(study_dir)
    table = build_joint(study, district, coder)
    if fmt is JointFormat.html:
        title = f"Joint display: {study.district(district).name}" if district else f"Joint display: {study.config.name}"
        sys.stdout.write(joint_html(table, standalone=True, title=title))
    elif fmt is JointFormat.json:
        sys.stdout.write(json.dumps({"coder": table.coder, "rows": table.to_json()}, ensure_ascii=False, indent=2) + "\n")
    elif fmt is JointFormat.csv:
        write_rows(table.records(), "csv")
    else:
        rows = table.table_rows()
        columns = [c for c in (rows[0] if rows else {}) if c != "district" or not district]
        print_table(rows, title=f"Joint display (coded passages/sessions by source type; coder: {table.coder or 'none'})", columns=columns)


AgreeUnit = CountUnit  # the same units: a coding counts for every sentence (or turn) it overlaps


class AgreeLevel(str, Enum):
    nominal = "nominal"
    ordinal = "ordinal"
    interval = "interval"
    ratio = "ratio"


@app.command("agree")
def agree_command(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    coders: Annotated[str | None, typer.Option("--coders", metavar="A,B,...", help="The coders to compare, comma-separated.",
                                               show_default="every coder in codings/ but consensus")] = None,
    unit: Annotated[AgreeUnit | None, typer.Option("--unit", help="Unit of analysis: a coding counts for every sentence (or turn) it overlaps.",
                                                   show_default="sentence")] = None,
    disagreements: Annotated[bool, typer.Option("--disagreements", help="List every unit where the coders differ: code, who applied it, "
                                                "who did not, location and text.")] = False,
    data: Annotated[Path | None, typer.Option("--data", metavar="FILE.csv", help="Reliability data from anywhere: a CSV with columns "
                                              "unit,coder,value (a missing value is an absent row); not the study's codings.")] = None,
    level: Annotated[AgreeLevel | None, typer.Option("--level", help="With --data: the values' level of measurement for Krippendorff's alpha.",
                                                     show_default="nominal")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format", help="table, csv or json.")] = TableFormat.table,
) -> None:
    """Inter-coder agreement per code and pooled: Cohen's kappa per pair, Krippendorff's alpha, rare-code flags (or --data FILE.csv)."""
    from . import agreement

    if data is not None:
        if district is not None or coders is not None or unit is not None or disagreements:
            raise UsageError("--data FILE.csv takes only --level and --format (--district, --coders, --unit and --disagreements "
                             "are for the study's codings)")
        chosen = (level or AgreeLevel.nominal).value
        result = agreement.data_agreement(agreement.read_reliability_csv(data, chosen), chosen)
        if fmt is TableFormat.json:
            sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
        elif fmt is TableFormat.csv:
            record = result.to_dict()
            write_rows([{k: record[k] for k in ("file", "level", "alpha", "units", "coders", "pairable_values",
                                                "cohen_kappa", "fleiss_kappa", "percent_agreement")}], "csv")
        else:
            out.print(f"Reliability data: {data}", markup=False)
            for line in result.lines():
                out.print(line, markup=False)
        return
    if level is not None:
        raise UsageError("--level applies to --data FILE.csv; the study's codings are yes/no decisions per unit (nominal)")
    study = load_valid_study(study_dir)
    names = [c.strip() for c in coders.split(",")] if coders is not None else None
    result = agreement.study_agreement(study, names, district, (unit or AgreeUnit.sentence).value)
    table = fmt is TableFormat.table
    if disagreements:
        rows = agreement.disagreement_rows(result)
        if not table:
            write_rows(rows, fmt.value)
            return
        for line in result.header_lines():
            out.print(line, markup=False)
        from rich.markup import escape

        shown = [{"where": f"{r['path']}:{r['line']}", "unit": "#" + r["unit"].rsplit("#", 1)[-1], "code": r["code"],
                  "applied by": r["applied_by"], "not by": r["not_applied_by"],  # transcript text may hold [laughter]: not markup
                  "text": escape(r["text"] if len(r["text"]) <= 90 else r["text"][:87] + "...")} for r in rows]
        print_table(shown, title=f"{len(rows)} disagreement(s): units where the coders differ about a code")
        return
    if fmt is TableFormat.json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False, indent=2) + "\n")
        return
    if fmt is TableFormat.csv:
        write_rows(result.rows(formatted=False), "csv")
        return
    for line in result.header_lines():
        out.print(line, markup=False)
    if result.compared == 0:
        out.print(f"Nothing to compare: no {result.unit} was coded by two or more of {', '.join(result.coders)} "
                  "(they coded no session in common), so kappa and alpha are undefined.", markup=False)
        return
    print_table(result.table_rows())
    for line in result.footer_lines():
        out.print(line, markup=False)


class AuditFormat(str, Enum):
    table = "table"
    json = "json"


IdentifiersOpt = Annotated[Path | None, typer.Option("--identifiers", metavar="FILE", help="Private list of real names and identifying terms.",
                                                     show_default="<study>/private/identifiers.yaml")]


@app.command("audit")
def audit_command(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    fmt: Annotated[AuditFormat, typer.Option("--format", help="table: where each quote stands, then the reason and closest passage of each failure; json: every record.")] = AuditFormat.table,
    report_path: Annotated[Path | None, typer.Option("--report", metavar="PATH", help="Audit the quotes of a rendered report (report.html) instead of the findings.")] = None,
    provenance_file: Annotated[Path | None, typer.Option("--write-provenance", metavar="FILE", help="Also write the provenance record of every quote as JSON.")] = None,
    identifiers: IdentifiersOpt = None,
) -> None:
    """Check every quote against its source: status, file, line, turn, speaker role, offsets; for a failure the exact reason and the closest passage (exit 1 if any fails, 2 if a file is unusable)."""
    from .provenance import audit, audit_report, provenance_lines, write_provenance

    if district is not None:
        from .files import check_name

        check_name(district, "district")
    study = load_valid_study(study_dir)
    if report_path is not None:
        if not report_path.is_file():
            raise UsageError(f"the report {str(report_path)!r} does not exist")
        result = audit_report(study, report_path, identifiers)
    else:
        result = audit(study, district, identifiers)
    if provenance_file is not None:
        write_provenance(result, provenance_file)
    unusable = result.unusable
    if fmt is AuditFormat.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        what = f"the report {report_path}" if report_path is not None else (f"findings/{district}.yaml" if district else "findings/*.yaml")
        out.print(f"Quote audit of {what}: {len(result.records)} quote(s)", markup=False)
        for line in provenance_lines(result.records):
            out.print(line, markup=False)
        for record in result.failures:
            out.print(f"FAIL {record.summary()}", markup=False)
        print_problems([p for p in result.problems if p not in unusable])
        for note in result.notes + result.skipped:
            out.print(note, markup=False)
        counts = ", ".join(f"{n} {status}" for status, n in sorted(result.counts().items()))
        failed = len(result.failures)
        verdict = "all verified" if result.ok else f"{failed} quote(s) failed" + (f", {len(result.errors)} problem(s)" if result.errors else "")
        out.print(f"{len(result.records)} quote(s): {counts or 'none'}; {verdict}"
                  + (f"; provenance written to {provenance_file}" if provenance_file is not None else ""), markup=False)
    if unusable:
        exc = UsageError(f"{len(unusable)} problem(s) make the findings unusable; fix them and run the audit again")
        exc.problems = unusable  # type: ignore[attr-defined]
        raise exc
    raise typer.Exit(0 if result.ok else EXIT_DATA)


@app.command("deidentify")
def deidentify_command(
    study_dir: StudyOpt = Path("."),
    district: DistrictOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", metavar="DIR", help="Write the de-identified copies here, as DIR/transcripts/<DISTRICT>/<file>.",
                                                 show_default="<study>/deidentified")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite the transcripts themselves, after copying the originals to private/backup/.")] = False,
    identifiers: IdentifiersOpt = None,
    fmt: Annotated[TextFormat, typer.Option("--format", help="text: a table of files and changes; json: the result.")] = TextFormat.text,
) -> None:
    """Replace the real names listed in private/identifiers.yaml with their pseudonyms in the transcripts, writing new files and a log of every change."""
    from .deidentify import default_identifiers_path, deidentify, load_identifiers
    from .errors import relpath
    from .files import check_name
    from .study import find_study_root

    root = find_study_root(study_dir)
    if district is not None:
        check_name(district, "district")
    if in_place and out_dir is not None:
        raise UsageError("give either --out DIR or --in-place, not both")
    path = identifiers or default_identifiers_path(root)
    if not path.is_file():
        raise UsageError(f"deidentify needs the identifiers file {str(path)!r}: list the real names under 'names' and their pseudonyms under 'pseudonyms'")
    ids = load_identifiers(path, root)
    result = deidentify(root, ids, district, None if in_place else (out_dir or root / "deidentified"), in_place)
    if fmt is TextFormat.json:
        payload = {"log": str(result.log), "backup": str(result.backup) if result.backup else None, "warnings": result.warnings,
                   "files": [{"source": f.source, "target": f.target, "changes": len(f.changes), "note": f.note} for f in result.files]}
        sys.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    else:
        rows = [{"file": f.source, "replacements": len(f.changes), "note": f.note} for f in result.files]
        where = "rewritten in place" if in_place else f"written under {relpath(out_dir or root / 'deidentified', root)}/"
        print_table(rows, title=f"{result.changes} replacement(s) in {sum(1 for f in result.files if f.changes)} of "
                                f"{len(result.files)} file(s), {where}")
        if result.backup:
            out.print(f"originals backed up to {relpath(result.backup, root)}", markup=False)
        out.print(f"log of every change (holds real names: keep it private): {relpath(result.log, root)}", markup=False)
        for warning in result.warnings:
            err.print(f"warning: {warning}", markup=False)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning our errors into one line and an exit code."""
    interrupted = []

    def on_sigint(signum, frame):  # remember Ctrl-C: click would report it as "Aborted!" with exit 1
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        app(args=argv, prog_name="casestudy", standalone_mode=True)
    except SystemExit as exc:
        if interrupted:
            err.print("interrupted: nothing half-written was left in place", markup=False)
            return 130
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    except CasestudyError as exc:
        for problem in getattr(exc, "problems", []):
            err.print(str(problem), markup=False)
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted: nothing half-written was left in place", markup=False)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        err.print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), markup=False)
        return EXIT_USAGE
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
