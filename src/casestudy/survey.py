"""Implementation surveys: the declaration (``survey.yaml``), the files, validation and scores.

- ``survey.yaml`` declares the response scales (each wording mapped onto the same numeric
  scale), the populations with their constructs and items (some reverse-keyed), the rule for a
  respondent's construct score and the evidence bands a score is read with.
- ``surveys/<DISTRICT>/<population>-<year>.csv`` holds one wave: one row per respondent, a
  value per item given as a number or as a response label. Every file is checked with a
  pandera schema validated *lazily*, so every problem in a file is reported (file, line and
  column), never only the first.
- A construct's score per wave is the mean of its item means (as the reference report gives
  it), or the mean of respondent scores; with it the n range across items, the SD of
  respondent scores, Cronbach's alpha, the change from the previous wave and the band.
  Missing answers are left out of every mean, never read as zero.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .errors import DataError, Problem, UsageError, errors_only, relpath
from .files import LineDict, YamlError, is_valid_name, load_yaml

if TYPE_CHECKING:
    from .study import Study

log = logging.getLogger("casestudy")

SPEC_FILE = "survey.yaml"
SURVEYS_DIR = "surveys"
METHODS = ("item-means", "respondent-means")
FILE_RE = re.compile(r"^(?P<population>[A-Za-z0-9][A-Za-z0-9_]*(?:-[A-Za-z][A-Za-z0-9_]*)*)-(?P<wave>\d{4})\.csv$")
NUMBER_RE = r"[0-9]+(?:\.[0-9]+)?"
DEFAULT_BANDS = (("limited", None), ("moderate to strong", 2.0), ("strong", 3.0))

# --------------------------------------------------------------------------- the declaration


@dataclass(frozen=True)
class Scale:
    id: str
    label: str
    responses: dict[str, int]  # response label -> value

    @property
    def minimum(self) -> int:
        return min(self.responses.values())

    @property
    def maximum(self) -> int:
        return max(self.responses.values())

    def describe(self) -> str:
        return f"{self.id} ({', '.join(self.responses)}; {self.minimum}-{self.maximum})"


@dataclass(frozen=True)
class Item:
    id: str
    text: str
    scale: str
    reverse: bool = False


@dataclass(frozen=True)
class Construct:
    id: str  # "student-agency"
    population: str  # "students"
    label: str
    items: tuple[Item, ...]
    conditions: tuple[str, ...] = ()
    line: int | None = None

    @property
    def key(self) -> str:
        """The id codebooks use: ``students/student-agency``."""
        return f"{self.population}/{self.id}"


@dataclass(frozen=True)
class Population:
    id: str
    label: str
    constructs: tuple[Construct, ...]

    @property
    def items(self) -> tuple[Item, ...]:
        return tuple(item for construct in self.constructs for item in construct.items)


@dataclass(frozen=True)
class Band:
    label: str
    start: float | None  # None: from the bottom of the scale


@dataclass(frozen=True)
class SurveySpec:
    scales: dict[str, Scale] = field(default_factory=dict)
    populations: tuple[Population, ...] = ()
    bands: tuple[Band, ...] = tuple(Band(label, start) for label, start in DEFAULT_BANDS)
    id_column: str = "respondent_id"
    optional_columns: tuple[str, ...] = ("school", "grade_band")
    missing_values: tuple[str, ...] = ("",)
    min_answered: float = 0.5
    method: str = "item-means"
    path: str = SPEC_FILE
    exists: bool = True

    def population(self, population_id: str) -> Population:
        for population in self.populations:
            if population.id == population_id:
                return population
        known = ", ".join(p.id for p in self.populations) or "none"
        raise UsageError(f"unknown population {population_id!r}; survey.yaml declares: {known}")

    def constructs(self) -> list[Construct]:
        return [c for p in self.populations for c in p.constructs]

    def construct(self, key: str) -> Construct | None:
        return next((c for c in self.constructs() if c.key == key), None)

    def band(self, score: float) -> str:
        """The evidence band a score is read as (empty for a missing score)."""
        if score is None or (isinstance(score, float) and math.isnan(score)):
            return ""
        label = self.bands[0].label if self.bands else ""
        for band in self.bands:
            if band.start is None or score >= band.start:
                label = band.label
        return label

    def cutoffs(self) -> list[tuple[float, str]]:
        """``(from, label)`` of every band with a lower bound (the lines a chart draws)."""
        return [(band.start, band.label) for band in self.bands if band.start is not None]

    def bands_sentence(self) -> str:
        """The bands in words: "A score below 2 is read as limited evidence of implementation, ..."."""
        parts = []
        for index, band in enumerate(self.bands):
            upper = self.bands[index + 1].start if index + 1 < len(self.bands) else None
            if band.start is None and upper is not None:
                parts.append(f"below {_num(upper)} as {band.label}")
            elif band.start is not None and upper is not None:
                parts.append(f"{_num(band.start)} to below {_num(upper)} as {band.label}")
            elif band.start is not None:
                parts.append(f"{_num(band.start)} and above as {band.label}")
            else:
                parts.append(f"any score as {band.label}")
        if not parts:
            return ""
        text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"A score {text.replace(' as ', ' is read as ', 1)} evidence of implementation."


def _num(value: float) -> str:
    return f"{value:g}"


def load_survey_spec(study: Study | Path | str) -> SurveySpec:
    """The study's survey declaration; an empty one (``exists`` False) when there is no
    ``survey.yaml``. Raises :class:`DataError` with every problem when it has errors. Given a
    :class:`Study`, the conditions each construct names are checked against its codebook."""
    root, codebook = (Path(study), None) if isinstance(study, (str, Path)) else (study.root, study.codebook)
    spec, problems = read_survey_spec(root, codebook.codes if codebook is not None else None)
    for problem in problems:
        if problem.severity != "error":
            log.info("%s", problem)
    errors = errors_only(problems)
    if errors or spec is None:
        raise DataError(f"{SPEC_FILE} has {len(errors)} problem(s)", errors)
    return spec


def read_survey_spec(root: Path, codes: Iterable[str] | None = None) -> tuple[SurveySpec | None, list[Problem]]:
    """Parse and check ``<root>/survey.yaml``: the spec (None if unusable) and every problem."""
    path = Path(root) / SPEC_FILE
    if not path.exists():
        return SurveySpec(exists=False), []
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return None, [Problem(SPEC_FILE, None, "bad-encoding", f"not UTF-8 text ({exc.reason})")]
    try:
        data = load_yaml(text)
    except YamlError as exc:
        return None, [Problem(SPEC_FILE, exc.line, "bad-yaml", exc.message)]
    problems: list[Problem] = []
    spec = _parse_spec(data, problems, set(codes) if codes is not None else None)
    return spec, problems


def _parse_spec(data: Any, problems: list[Problem], codes: set[str] | None) -> SurveySpec | None:
    rel = SPEC_FILE

    def bad(line: int | None, type_: str, message: str, severity: str = "error") -> None:
        problems.append(Problem(rel, line, type_, message, severity))

    if not isinstance(data, LineDict):
        bad(1, "bad-survey", "survey.yaml must be a mapping with scales and populations")
        return None
    for key, line in data.duplicate_keys:
        bad(line, "duplicate-key", f"key {key!r} appears twice")
    scales: dict[str, Scale] = {}
    raw_scales = data.get("scales")
    if not isinstance(raw_scales, LineDict) or not raw_scales:
        bad(data.line_of("scales"), "bad-survey", "'scales' must map scale ids to their response labels")
        raw_scales = LineDict()
    for scale_id, info in raw_scales.items():
        line = raw_scales.line_of(scale_id)
        responses = info.get("responses") if isinstance(info, dict) else None
        if not isinstance(responses, LineDict) or not responses:
            bad(line, "bad-scale", f"scale {scale_id!r} needs 'responses': label -> number")
            continue
        for key, dup_line in responses.duplicate_keys:
            bad(dup_line, "duplicate-key", f"scale {scale_id!r}: response {key!r} appears twice")
        values = {}
        for label, value in responses.items():
            if not isinstance(value, int) or isinstance(value, bool):
                bad(responses.line_of(label), "bad-scale", f"scale {scale_id!r}: {label!r} must map to a whole number, not {value!r}")
            elif not str(label).strip() or re.fullmatch(NUMBER_RE, str(label)):
                bad(responses.line_of(label), "bad-scale", f"scale {scale_id!r}: {label!r} cannot be a response label")
            else:
                values[str(label)] = value
        if values and sorted(set(values.values())) != list(range(min(values.values()), max(values.values()) + 1)):
            bad(line, "bad-scale", f"scale {scale_id!r}: the values must be consecutive whole numbers ({sorted(set(values.values()))})")
        if values:
            scales[str(scale_id)] = Scale(str(scale_id), str(info.get("label") or scale_id), values)
    ranges = {(s.minimum, s.maximum) for s in scales.values()}
    if len(ranges) > 1:
        bad(data.line_of("scales"), "bad-scale", f"every scale must span the same numbers (found {sorted(ranges)})")

    missing = data.get("missing_values", [""])
    if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
        bad(data.line_of("missing_values"), "bad-survey", "'missing_values' must be a list of strings (\"\" is an empty cell)")
        missing = [""]
    id_column = data.get("id_column", "respondent_id")
    if not isinstance(id_column, str) or not id_column:
        bad(data.line_of("id_column"), "bad-survey", "'id_column' must name the respondent id column")
        id_column = "respondent_id"
    optional = data.get("optional_columns", ["school", "grade_band"]) or []
    if not isinstance(optional, list) or not all(isinstance(c, str) for c in optional):
        bad(data.line_of("optional_columns"), "bad-survey", "'optional_columns' must be a list of column names")
        optional = []
    method = data.get("score", "item-means")
    if method not in METHODS:
        bad(data.line_of("score"), "bad-survey", f"'score' must be one of {', '.join(METHODS)}, not {method!r}")
        method = "item-means"
    rule = data.get("respondent_score") or {}
    min_answered = rule.get("min_answered", 0.5) if isinstance(rule, dict) else 0.5
    if isinstance(min_answered, bool) or not isinstance(min_answered, (int, float)) or not 0 < min_answered <= 1:
        bad(rule.line_of("min_answered") if isinstance(rule, LineDict) else data.line_of("respondent_score"),
            "bad-survey", f"respondent_score.min_answered must be a share above 0 and at most 1, not {min_answered!r}")
        min_answered = 0.5
    bands = _parse_bands(data, bad)

    populations: list[Population] = []
    raw_pops = data.get("populations")
    if not isinstance(raw_pops, LineDict) or not raw_pops:
        bad(data.line_of("populations"), "bad-survey", "'populations' must map population ids (students, staff) to their constructs")
        raw_pops = LineDict()
    reserved = {id_column, *optional}
    for pop_id, info in raw_pops.items():
        line = raw_pops.line_of(pop_id)
        if not is_valid_name(pop_id) or re.search(r"-\d{4}$", str(pop_id)):
            bad(line, "bad-survey", f"population id {pop_id!r} must be letters, digits, '-' or '_' (it names files)")
            continue
        if not isinstance(info, LineDict):
            bad(line, "bad-survey", f"population {pop_id!r} must be a mapping with 'constructs'")
            continue
        default_scale = info.get("scale")
        if default_scale is not None and default_scale not in scales:
            bad(info.line_of("scale"), "unknown-scale", f"population {pop_id!r}: scale {default_scale!r} is not declared ({', '.join(scales)})")
        raw_constructs = info.get("constructs")
        if not isinstance(raw_constructs, LineDict) or not raw_constructs:
            bad(info.line_of("constructs"), "bad-survey", f"population {pop_id!r} has no constructs")
            continue
        for key, dup_line in raw_constructs.duplicate_keys:
            bad(dup_line, "duplicate-key", f"construct {key!r} appears twice in {pop_id!r}")
        seen_items: dict[str, int] = {}
        constructs = []
        for construct_id, cinfo in raw_constructs.items():
            cline = raw_constructs.line_of(construct_id)
            where = f"construct {pop_id}/{construct_id}"
            if not is_valid_name(construct_id):
                bad(cline, "bad-survey", f"{where}: the id must be letters, digits, '-' or '_'")
                continue
            if not isinstance(cinfo, LineDict):
                bad(cline, "bad-survey", f"{where} must be a mapping with label and items")
                continue
            conditions = cinfo.get("conditions") or []
            if not isinstance(conditions, list) or not all(isinstance(c, str) for c in conditions):
                bad(cinfo.line_of("conditions"), "bad-survey", f"{where}: 'conditions' must list codebook code ids")
                conditions = []
            for condition in conditions:
                if codes is not None and condition not in codes:
                    hint = _did_you_mean(condition, codes)
                    bad(cinfo.line_of("conditions"), "unknown-condition",
                        f"{where} names condition {condition!r}, which is not a code in codebook.yaml{hint}")
            items = _parse_items(cinfo, where, default_scale, scales, bad)
            for item in items:
                item_line = cinfo["items"].line_of(item.id)
                if item.id in reserved:
                    bad(item_line, "bad-item", f"{where}: item {item.id!r} has the name of the id or an optional column")
                elif item.id in seen_items:
                    bad(item_line, "duplicate-item", f"{where}: item {item.id!r} is already an item on line {seen_items[item.id]} (one column, one item)")
                seen_items.setdefault(item.id, item_line)
            if not items:
                bad(cinfo.line_of("items"), "bad-survey", f"{where} has no items")
                continue
            if len(items) == 1:
                bad(cinfo.line_of("items"), "single-item-construct",
                    f"{where} has one item: its score is that item's mean, and Cronbach's alpha is undefined", "warning")
            constructs.append(Construct(str(construct_id), str(pop_id), str(cinfo.get("label") or construct_id),
                                        tuple(items), tuple(conditions), cline))
        populations.append(Population(str(pop_id), str(info.get("label") or pop_id), tuple(constructs)))
    return SurveySpec(scales=scales, populations=tuple(populations), bands=bands, id_column=id_column,
                      optional_columns=tuple(optional), missing_values=tuple(missing), min_answered=float(min_answered),
                      method=method)


def _parse_bands(data: LineDict, bad) -> tuple[Band, ...]:
    raw = data.get("evidence_bands")
    default = tuple(Band(label, start) for label, start in DEFAULT_BANDS)
    if raw is None:
        return default
    line = data.line_of("evidence_bands")
    if not isinstance(raw, list) or not raw:
        bad(line, "bad-bands", "'evidence_bands' must be a list of {label, from}")
        return default
    bands: list[Band] = []
    for index, entry in enumerate(raw):
        entry_line = raw.item_lines[index] if hasattr(raw, "item_lines") else line
        if not isinstance(entry, dict) or not str(entry.get("label") or "").strip():
            bad(entry_line, "bad-bands", "each evidence band needs a label")
            return default
        start = entry.get("from")
        if start is None and index > 0:
            bad(entry_line, "bad-bands", f"band {entry['label']!r}: only the first band may leave out 'from'")
            return default
        if start is not None and (isinstance(start, bool) or not isinstance(start, (int, float))):
            bad(entry_line, "bad-bands", f"band {entry['label']!r}: 'from' must be a number")
            return default
        if start is not None and bands and bands[-1].start is not None and start <= bands[-1].start:
            bad(entry_line, "bad-bands", f"band {entry['label']!r}: 'from' must rise from band to band")
            return default
        bands.append(Band(str(entry["label"]).strip(), float(start) if start is not None else None))
    return tuple(bands)


def _parse_items(cinfo: LineDict, where: str, default_scale: Any, scales: dict[str, Scale], bad) -> list[Item]:
    raw = cinfo.get("items")
    if not isinstance(raw, LineDict):
        if raw is not None:
            bad(cinfo.line_of("items"), "bad-item", f"{where}: 'items' must map item ids (the column names) to their text")
        return []
    for key, dup_line in raw.duplicate_keys:
        bad(dup_line, "duplicate-item", f"{where}: item {key!r} appears twice")
    items = []
    for item_id, value in raw.items():
        line = raw.line_of(item_id)
        if not isinstance(item_id, str) or not item_id.strip() or item_id != item_id.strip() or "," in item_id:
            bad(line, "bad-item", f"{where}: {item_id!r} cannot be an item id (a column name without commas or outer spaces)")
            continue
        if isinstance(value, dict):
            text, scale, reverse = value.get("text"), value.get("scale", default_scale), value.get("reverse", False)
        else:
            text, scale, reverse = value, default_scale, False
        if scale is None:
            bad(line, "unknown-scale", f"{where}: item {item_id!r} has no scale (give the population or the item a 'scale')")
            continue
        if scale not in scales:
            bad(line, "unknown-scale", f"{where}: item {item_id!r} uses scale {scale!r}, which 'scales' does not declare")
            continue
        if not isinstance(reverse, bool):
            bad(line, "bad-item", f"{where}: item {item_id!r}: 'reverse' must be true or false")
            reverse = False
        items.append(Item(item_id, str(text or ""), str(scale), reverse))
    return items


def _did_you_mean(value: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'agree'?)"`` for a near miss: a stray space, other case, a typo."""
    choices = [c for c in choices if isinstance(c, str)]
    folded = {" ".join(c.split()).casefold(): c for c in choices}
    exact = folded.get(" ".join(str(value).split()).casefold())
    if exact is not None:
        return f" (did you mean {exact!r}?)"
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.75)
    if not close:
        close = [folded[c] for c in difflib.get_close_matches(str(value).strip().casefold(), list(folded), n=1, cutoff=0.75)]
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- files and waves


@dataclass(frozen=True)
class SurveyFile:
    district: str
    population: str
    wave: int
    path: Path
    rel: str


@dataclass(frozen=True, eq=False)
class Wave:
    """One validated survey file: answers as numbers (as given, not yet reversed; NaN when
    missing), indexed by the respondent's line in the CSV."""

    district: str
    population: str
    wave: int
    path: str
    answers: pd.DataFrame
    respondent_ids: pd.Series

    @property
    def respondents(self) -> int:
        return len(self.answers)


def survey_files(study: Study, spec: SurveySpec | None = None, district: str | None = None,
                 problems: list[Problem] | None = None) -> list[SurveyFile]:
    """The survey files under ``surveys/<DISTRICT>/`` (of one district or all), sorted; files
    that are misnamed or misplaced are added to ``problems``."""
    folder = study.root / SURVEYS_DIR
    found: list[SurveyFile] = []
    if not folder.is_dir():
        return found
    problems = problems if problems is not None else []
    populations = {p.id for p in spec.populations} if spec is not None else None
    for district_dir in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        rel_dir = relpath(district_dir, study.root)
        if not district_dir.is_dir():
            problems.append(Problem(rel_dir, None, "bad-survey-file", "survey files go in surveys/<DISTRICT>/<population>-<year>.csv"))
            continue
        if district is not None and district_dir.name != district:
            continue
        if district_dir.name not in study.districts:
            problems.append(Problem(rel_dir, None, "unknown-district",
                                    f"folder {district_dir.name!r} is not a district in study.yaml ({', '.join(study.districts) or 'none'})"))
            continue
        for path in sorted(p for p in district_dir.iterdir() if not p.name.startswith(".")):
            rel = relpath(path, study.root)
            match = FILE_RE.match(path.name)
            if not path.is_file() or not match:
                problems.append(Problem(rel, None, "bad-survey-file",
                                        "a survey file is named <population>-<year>.csv (students-2023.csv)"))
                continue
            population = match["population"]
            if populations is not None and population not in populations:
                hint = _did_you_mean(population, populations)
                problems.append(Problem(rel, None, "unknown-population",
                                        f"population {population!r} is not declared in survey.yaml{hint}"))
                continue
            found.append(SurveyFile(district_dir.name, population, int(match["wave"]), path, rel))
    return found


def _decode(data: bytes, rel: str) -> tuple[str | None, list[Problem]]:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, [Problem(rel, None, "bad-encoding", "the file is UTF-16; save it as UTF-8 (in Excel: 'CSV UTF-8')")]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return None, [Problem(rel, line, "bad-encoding",
                              f"not UTF-8: byte 0x{data[exc.start]:02x} (Windows-1252 or Latin-1?); "
                              "save the file as UTF-8 (in Excel: 'CSV UTF-8')")]


def _read_rows(text: str, rel: str) -> tuple[list[str], pd.DataFrame, list[Problem]]:
    """Header and rows as strings, indexed by each row's 1-based line (header = line 1)."""
    problems: list[Problem] = []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    rows: list[list[str]] = []
    lines: list[int] = []
    last = 0
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not row or (len(row) == 1 and row[0] == ""):
                continue  # an empty line holds no respondent
            if not header:
                header = row
                continue
            if len(row) != len(header):
                problems.append(Problem(rel, start, "ragged-row",
                                        f"the row has {len(row)} values but the header has {len(header)} columns"))
                row = (row + [""] * len(header))[:len(header)]
            rows.append(row)
            lines.append(start)
    except csv.Error as exc:
        problems.append(Problem(rel, last + 1, "bad-csv", f"not readable as CSV: {exc}"))
    frame = pd.DataFrame(rows, columns=range(len(header)), index=pd.Index(lines, name="line"), dtype=object)
    return header, frame, problems


def read_wave(study_root: Path, spec: SurveySpec, file: SurveyFile) -> tuple[Wave | None, list[Problem]]:
    """Read and check one survey file: the wave (None if it has errors) and every problem."""
    import pandera.pandas as pa

    rel = file.rel
    text, problems = _decode(file.path.read_bytes(), rel)
    if text is None:
        return None, problems
    header, frame, found = _read_rows(text, rel)
    problems += found
    if not header:
        return None, problems + [Problem(rel, None, "empty-wave", "the file is empty: no header and no respondents")]
    population = spec.population(file.population)
    items = {item.id: item for item in population.items}
    columns: dict[str, int] = {}
    for index, name in enumerate(header):
        if name in columns:
            problems.append(Problem(rel, 1, "duplicate-column", f"column {name!r} appears twice (columns {columns[name] + 1} and {index + 1})"))
        else:
            columns[name] = index
    frame = frame[list(columns.values())]
    frame.columns = list(columns)
    if frame.empty:
        problems.append(Problem(rel, None, "empty-wave", "the wave has no respondents: the file has a header and no rows"))

    schema_columns = {spec.id_column: pa.Column(checks=pa.Check(lambda s: s.str.strip() != "", name="respondent-id"), unique=True)}
    for name in spec.optional_columns:
        schema_columns[name] = pa.Column(required=False)
    for item in items.values():
        schema_columns[item.id] = pa.Column(checks=_response_check(spec, spec.scales[item.scale]))
    schema = pa.DataFrameSchema(schema_columns, strict=True)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems += _failures_to_problems(exc.failure_cases, rel, spec, population.id, items)
    problems.sort(key=lambda p: (p.line or 0, p.message))
    if errors_only(problems):
        return None, problems
    answers = pd.DataFrame({item_id: _to_numbers(frame[item_id], spec, spec.scales[item.scale])
                            for item_id, item in items.items()}, index=frame.index)
    for item_id in items:
        if answers[item_id].notna().sum() == 0 and len(answers):
            problems.append(Problem(rel, 1, "no-answers", f"column {item_id!r}: no respondent answered this item", "warning"))
    wave = Wave(file.district, file.population, file.wave, rel, answers, frame[spec.id_column])
    return wave, problems


def _response_check(spec: SurveySpec, scale: Scale):
    import pandera.pandas as pa

    allowed = set(scale.responses) | set(spec.missing_values)

    def check(series: pd.Series) -> pd.Series:
        numbers = pd.to_numeric(series.where(series.str.fullmatch(NUMBER_RE).fillna(False)), errors="coerce")
        return series.isin(allowed) | ((numbers % 1 == 0) & numbers.between(scale.minimum, scale.maximum))

    return pa.Check(check, name=f"response:{scale.id}")


def _to_numbers(column: pd.Series, spec: SurveySpec, scale: Scale) -> pd.Series:
    labels = column.map(scale.responses)
    numbers = pd.to_numeric(column.where(~column.isin(spec.missing_values) & ~column.isin(list(scale.responses))), errors="coerce")
    return labels.astype(float).fillna(numbers).astype(float)


def _failures_to_problems(failures: pd.DataFrame, rel: str, spec: SurveySpec, population: str,
                          items: dict[str, Item]) -> list[Problem]:
    problems: list[Problem] = []
    declared = [spec.id_column, *spec.optional_columns, *items]
    unknown = [str(f) for f in failures.loc[failures["check"] == "column_in_schema", "failure_case"]]
    missing = [str(f) for f in failures.loc[failures["check"] == "column_in_dataframe", "failure_case"]]
    for name in unknown:
        hint = _did_you_mean(name, [m for m in missing] or declared)
        problems.append(Problem(rel, 1, "unknown-column",
                                f"column {name!r} is not declared for population {population!r} in survey.yaml "
                                f"(not the id, an optional column or an item){hint}"))
    for name in missing:
        if name == spec.id_column:
            problems.append(Problem(rel, 1, "missing-id-column", f"there is no respondent id column {name!r}"))
        else:
            problems.append(Problem(rel, 1, "missing-item", f"declared item {name!r} has no column"))
    duplicates = failures[failures["check"] == "field_uniqueness"]
    for value, group in duplicates.groupby("failure_case", sort=True):
        lines = sorted(int(i) for i in group["index"])
        for line in lines[1:]:
            problems.append(Problem(rel, line, "duplicate-respondent",
                                    f"column {spec.id_column!r}: respondent id {value!r} is already used on line {lines[0]}"))
    for _, failure in failures[failures["check"] == "respondent-id"].iterrows():
        problems.append(Problem(rel, int(failure["index"]), "missing-respondent-id", f"column {spec.id_column!r}: the respondent id is empty"))
    values = failures[failures["check"].astype(str).str.startswith("response:")]
    for _, failure in values.iterrows():
        item = items[str(failure["column"])]
        problems.append(_value_problem(rel, int(failure["index"]), item, str(failure["failure_case"]), spec))
    known = {"column_in_schema", "column_in_dataframe", "field_uniqueness", "respondent-id"}
    for _, failure in failures.iterrows():  # anything else pandera found is still reported
        check = str(failure["check"])
        if check not in known and not check.startswith("response:"):
            index = failure["index"]
            problems.append(Problem(rel, int(index) if pd.notna(index) else None, "bad-value",
                                    f"column {failure['column']!r}: {failure['failure_case']!r} fails {check}"))
    return problems


def _value_problem(rel: str, line: int, item: Item, value: str, spec: SurveySpec) -> Problem:
    scale = spec.scales[item.scale]
    where = f"column {item.id!r}"
    if re.fullmatch(NUMBER_RE, value):
        return Problem(rel, line, "out-of-scale",
                       f"{where}: {value} is outside the scale: answers are whole numbers from {scale.minimum} to {scale.maximum} "
                       f"or the labels of scale {scale.describe()}")
    for other in spec.scales.values():
        if other.id != scale.id and value in other.responses:
            return Problem(rel, line, "wrong-scale-label",
                           f"{where}: {value!r} is a label of scale {other.id!r}, but item {item.id!r} uses scale {scale.describe()}")
    hint = _did_you_mean(value, [*scale.responses, *[m for m in spec.missing_values if m]])
    return Problem(rel, line, "unknown-label", f"{where}: {value!r} is not a response label of scale {scale.describe()}{hint}")


def load_waves(study: Study, spec: SurveySpec | None = None, district: str | None = None,
               population: str | None = None) -> list[Wave]:
    """Every survey wave of the study (or one district / population), validated. Raises
    :class:`DataError` with every problem of every file when any has errors."""
    spec = spec if spec is not None else load_survey_spec(study)
    if district is not None:
        study.district(district)
    if population is not None:
        spec.population(population)
    problems: list[Problem] = []
    waves: list[Wave] = []
    if not spec.exists:
        return waves
    for file in survey_files(study, spec, district, problems):
        if population is not None and file.population != population:
            continue
        wave, found = read_wave(study.root, spec, file)
        problems += found
        if wave is not None:
            waves.append(wave)
    for problem in problems:
        if problem.severity != "error":
            log.warning("%s", problem)
    errors = errors_only(problems)
    if errors:
        raise DataError(f"the survey files have {len(errors)} problem(s)", errors)
    return waves


def validate_surveys(study: Study) -> Iterator[Problem]:
    """Every problem in ``survey.yaml``, in the survey files, and in the links between the
    survey's constructs and the codebook (both directions). Never raises for bad data."""
    spec, problems = read_survey_spec(study.root, study.codebook.codes)
    yield from problems
    yield from _codebook_links(study, spec)
    if spec is None:
        return
    if not spec.exists:
        if (study.root / SURVEYS_DIR).is_dir() and any((study.root / SURVEYS_DIR).rglob("*.csv")):
            yield Problem(SPEC_FILE, None, "missing-file", "there are survey files but no survey.yaml declaring their items")
        return
    found: list[Problem] = []
    files = survey_files(study, spec, None, found)
    yield from found
    for file in files:
        _, file_problems = read_wave(study.root, spec, file)
        yield from file_problems


def _codebook_links(study: Study, spec: SurveySpec | None) -> Iterator[Problem]:
    """Codes whose ``survey_constructs`` name a construct survey.yaml does not declare."""
    linked = [(code, key) for code in study.codebook.codes.values() for key in code.survey_constructs]
    if not linked or spec is None:
        return
    keys = {c.key for c in spec.constructs()}
    lines = _construct_ref_lines(study.root / study.codebook.path)
    for code, key in linked:
        if key in keys:
            continue
        where = "which survey.yaml does not declare" if spec.exists else "but the study has no survey.yaml"
        yield Problem(study.codebook.path, lines.get(code.id, code.line), "unknown-construct",
                      f"code {code.id!r} links survey construct {key!r}, {where}{_did_you_mean(key, keys)}")


def _construct_ref_lines(path: Path) -> dict[str, int]:
    try:
        data = load_yaml(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, YamlError):
        return {}
    lines = {}
    for entry in (data.get("codes") or []) if isinstance(data, dict) else []:
        if isinstance(entry, LineDict) and "survey_constructs" in entry:
            lines[str(entry.get("id"))] = entry.line_of("survey_constructs")
    return lines


# --------------------------------------------------------------------------- scores


def cronbach_alpha(items: pd.DataFrame | np.ndarray) -> float:
    """Cronbach's alpha of a respondents x items table, on the respondents who answered every
    item (listwise): k/(k-1) * (1 - sum of item variances / variance of the total score),
    variances with n-1. NaN when it is undefined (fewer than two items or complete respondents,
    or no variance in the total)."""
    x = np.asarray(items, dtype=float)
    if x.ndim != 2:
        raise ValueError("cronbach_alpha needs a two-dimensional respondents x items table")
    x = x[~np.isnan(x).any(axis=1)]
    n, k = x.shape
    if k < 2 or n < 2:
        return float("nan")
    total_variance = x.sum(axis=1).var(ddof=1)
    if total_variance == 0:
        return float("nan")
    return float(k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / total_variance))


def keyed_answers(wave: Wave, construct: Construct, spec: SurveySpec) -> pd.DataFrame:
    """The construct's answers with reverse-keyed items reversed ((min + max) - answer)."""
    columns = {}
    for item in construct.items:
        values = wave.answers[item.id]
        scale = spec.scales[item.scale]
        columns[item.id] = (scale.minimum + scale.maximum) - values if item.reverse else values
    return pd.DataFrame(columns, index=wave.answers.index)


def respondent_scores(answers: pd.DataFrame, min_answered: float) -> pd.Series:
    """Each respondent's construct score: the mean of the items they answered, when they
    answered at least ``min_answered`` of the items (NaN otherwise)."""
    answered = answers.notna().sum(axis=1)
    enough = answered >= min_answered * answers.shape[1] - 1e-9
    return answers.mean(axis=1, skipna=True).where(enough & (answered > 0))


def score_construct(wave: Wave, construct: Construct, spec: SurveySpec, method: str | None = None) -> dict[str, Any]:
    """The scores of one construct in one wave (see :func:`score_waves` for the columns)."""
    method = method or spec.method
    if method not in METHODS:
        raise UsageError(f"unknown scoring {method!r}; choose {' or '.join(METHODS)}")
    answers = keyed_answers(wave, construct, spec)
    counts = answers.notna().sum()
    item_means = answers.mean(skipna=True)
    per_respondent = respondent_scores(answers, spec.min_answered)
    if method == "item-means":
        score = float(item_means.dropna().mean()) if item_means.notna().any() else float("nan")
    else:
        score = float(per_respondent.mean()) if per_respondent.notna().any() else float("nan")
    alpha = cronbach_alpha(answers)
    if len(construct.items) < 2:
        alpha_note = "undefined: one item"
    elif math.isnan(alpha):
        alpha_note = "undefined: too few complete answers or no variance"
    else:
        alpha_note = ""
    n_min, n_max = int(counts.min()), int(counts.max())
    return {
        "district": wave.district, "population": wave.population, "construct": construct.id,
        "construct_label": construct.label, "wave": wave.wave, "method": method, "items": len(construct.items),
        "respondents": wave.respondents, "score": score, "sd": float(per_respondent.std(ddof=1)) if per_respondent.count() > 1 else float("nan"),
        "alpha": alpha, "alpha_note": alpha_note, "n_min": n_min, "n_max": n_max,
        "n_range": f"{n_min}-{n_max}" if n_min != n_max else str(n_min), "n_scored": int(per_respondent.count()),
    }


SCORE_COLUMNS = ["district", "population", "construct", "construct_label", "wave", "method", "items", "respondents",
                 "score", "sd", "alpha", "alpha_note", "n_min", "n_max", "n_range", "n_scored", "previous_wave",
                 "change", "band"]


def score_waves(waves: Iterable[Wave], spec: SurveySpec, method: str | None = None) -> pd.DataFrame:
    """One row per district, population, construct and wave: ``score`` (mean of item means, or
    of respondent scores), ``sd`` (of respondent scores), ``alpha`` (with ``alpha_note`` when
    undefined), ``n_min``/``n_max``/``n_range`` (answers per item), ``n_scored`` (respondents
    with a construct score), ``change`` from ``previous_wave`` and the evidence ``band``."""
    rows = [score_construct(wave, construct, spec, method)
            for wave in waves for construct in spec.population(wave.population).constructs]
    frame = pd.DataFrame(rows, columns=[c for c in SCORE_COLUMNS if c not in ("previous_wave", "change", "band")])
    if frame.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    order = {c.key: index for index, c in enumerate(spec.constructs())}
    populations = {p.id: index for index, p in enumerate(spec.populations)}
    frame["_order"] = [order[f"{p}/{c}"] for p, c in zip(frame["population"], frame["construct"], strict=True)]
    frame["_pop"] = frame["population"].map(populations)
    frame = frame.sort_values(["district", "_pop", "_order", "wave"], kind="stable").drop(columns=["_order", "_pop"])
    grouped = frame.groupby(["district", "population", "construct"], sort=False)
    frame["previous_wave"] = grouped["wave"].shift(1).astype("Int64")
    frame["change"] = frame["score"] - grouped["score"].shift(1)
    frame["band"] = [spec.band(score) for score in frame["score"]]
    return frame[SCORE_COLUMNS].reset_index(drop=True)


def score_surveys(study: Study, spec: SurveySpec | None = None, district: str | None = None,
                  population: str | None = None, method: str | None = None) -> pd.DataFrame:
    """Construct scores of the study's survey waves (see :func:`score_waves`)."""
    spec = spec if spec is not None else load_survey_spec(study)
    scores = score_waves(load_waves(study, spec, district, population), spec, method)
    order = {d: index for index, d in enumerate(study.districts)}
    ranks = scores["district"].map(order)
    return scores.iloc[ranks.argsort(kind="stable")].reset_index(drop=True) if len(scores) else scores


def score_district(study: Study, spec: SurveySpec | None = None, district: str = "", method: str | None = None,
                   population: str | None = None) -> pd.DataFrame:
    """Construct scores of one district (empty when it has no survey files)."""
    return score_surveys(study, spec, district, population, method)


def wave_sizes(study: Study, spec: SurveySpec | None, district: str, waves: list[Wave] | None = None) -> dict[tuple[str, int], int]:
    """Respondents per ``(population, wave)`` of one district (of ``waves`` when already loaded)."""
    waves = waves if waves is not None else load_waves(study, spec, district)
    return {(w.population, w.wave): w.respondents for w in waves}


def n_ranges(scores: pd.DataFrame) -> dict[int, tuple[int, int]]:
    """Per wave, the smallest and largest number of answers to any item of the constructs in
    ``scores`` (the reference report's "n=1229-1455 (2022)")."""
    out = {}
    for wave, group in scores.groupby("wave", sort=True):
        out[int(wave)] = (int(group["n_min"].min()), int(group["n_max"].max()))
    return out


def n_range_text(scores: pd.DataFrame) -> str:
    """``n=1229-1455 (2022); n=1415-1723 (2023)``."""
    return "; ".join(f"n={lo}-{hi} ({wave})" if lo != hi else f"n={lo} ({wave})" for wave, (lo, hi) in n_ranges(scores).items())


def _round(value: Any, digits: int) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def score_records(scores: pd.DataFrame) -> list[dict[str, Any]]:
    """Scores as plain records for CSV and JSON (numbers rounded to 4 places, None when missing)."""
    records = []
    for row in scores.to_dict("records"):
        record = dict(row)
        for key in ("score", "sd", "alpha", "change"):
            record[key] = _round(record[key], 4)
        for key in ("wave", "items", "respondents", "n_min", "n_max", "n_scored", "previous_wave"):
            record[key] = None if record[key] is None or record[key] is pd.NA else int(record[key])
        records.append(record)
    return records


def score_table_rows(scores: pd.DataFrame) -> list[dict[str, str]]:
    """Scores formatted for a terminal table: two decimals, a signed change, ``n=lo-hi``."""
    rows = []
    for record in score_records(scores):
        rows.append({
            "district": record["district"], "population": record["population"], "construct": record["construct_label"],
            "wave": str(record["wave"]), "score": _fmt(record["score"], "{:.2f}"),
            "change": _fmt(record["change"], "{:+.2f}"), "n": f"n={record['n_range']}",
            "sd": _fmt(record["sd"], "{:.2f}"),
            "alpha": _fmt(record["alpha"], "{:.2f}") if record["alpha"] is not None else record["alpha_note"],
            "evidence": record["band"],
        })
    return rows


def _fmt(value: Any, pattern: str) -> str:
    return "" if value is None else pattern.format(value)
