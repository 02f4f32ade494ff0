"""The ``casestudy`` command: a thin layer that parses options and calls the library.

Exit codes everywhere: 0 success, 1 the data has problems, 2 unusable input or arguments.
Errors print one line each, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

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
        table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
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
    """Load the whole study and report every problem, one line each (exit 1 if any)."""
    from .study import summarize

    study = _load(study_dir, progress=fmt is TextFormat.text and sys.stderr.isatty())
    errors = errors_only(study.problems)
    summary = summarize(study)
    if fmt is TextFormat.json:
        sys.stdout.write(json.dumps({"valid": not errors, "problems": [p.to_dict() for p in study.problems],
                                     "summary": summary.to_dict()}, indent=2, ensure_ascii=False) + "\n")
    else:
        print_problems(list(study.problems))
        if errors:
            out.print(f"{len(errors)} problem(s) found in {study.root}", markup=False)
        else:
            out.print(f"Study: {study.config.name}" + (" (synthetic data)" if study.config.synthetic else ""), markup=False)
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning our errors into one line and an exit code."""
    try:
        app(args=argv, prog_name="casestudy", standalone_mode=True)
    except SystemExit as exc:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
