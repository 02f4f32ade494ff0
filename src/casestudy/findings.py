"""Findings: ``findings/<DISTRICT>.yaml``, each finding a statement in the author's words with
the quotes (and survey constructs) that support it.

The format (one file per district; the file name, ``district`` and ``study.yaml`` agree)::

    district: AUSD
    findings:
      - id: ausd-vision-portrait        # lowercase letters, digits, hyphens; unique in the study
        section: key-findings           # one of SECTIONS
        conditions: [shared-vision]     # codebook ids
        statement: >
          Markdown, the author's words.
        quotes:
          - source: AUSD/teacher-focus-group
            text: "The vision is shared. The -- the how is where it gets uneven."
            role: teacher                        # optional: the speaker role the author claims
            turn: AUSD/teacher-focus-group#t012  # optional: turn or sentence id it came from
            sha256: 0a1b...                      # optional: the source's SHA-256 when quoted
        constructs: [students/agency]   # optional: survey construct keys from survey.yaml

Reading never stops at the first problem: :func:`read_findings` returns every problem with
file and line. Problems whose type is in :data:`UNUSABLE` make a file (or a quote) unusable
(YAML errors, malformed quotes): the audit exits 2 for them; the others are failed checks.

Quote syntax (the matching itself is in :mod:`casestudy.provenance`): ``[...]`` marks words
the author inserted or replaced, ``...`` or ``…`` (also ``[...]``) words left out.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import DataError, Problem, errors_only
from .files import LineDict, YamlError, decode_text, is_valid_name, load_yaml
from .study import Study

FINDINGS_DIR = "findings"

SECTIONS = (
    "key-findings",
    "district-systems",
    "on-the-ground",
    "school-perspectives",
    "successes",
    "challenges",
    "lessons",
)
# sections whose findings the report groups by their first condition: a condition is required
SECTIONS_BY_CONDITION = ("key-findings", "district-systems")

ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
CONSTRUCT_RE = re.compile(r"^[A-Za-z0-9][\w-]*/[A-Za-z0-9][\w-]*$")

FILE_KEYS = ("district", "findings")
FINDING_KEYS = ("id", "section", "conditions", "statement", "quotes", "constructs")
QUOTE_KEYS = ("source", "text", "role", "turn", "sha256")

# problem types that make a file or a quote unusable (exit 2); every other error is a failed check
UNUSABLE = frozenset({
    "bad-yaml", "bad-findings", "bad-finding", "bad-quote", "unbalanced-brackets", "nested-brackets",
    "empty-brackets", "ellipsis-only-quote", "no-source-words", "empty-quote",
})


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Quote:
    source: str
    text: str
    role: str | None = None
    turn: str | None = None
    sha256: str | None = None
    line: int | None = None  # line of the quote in the findings file


@dataclass(frozen=True)
class Finding:
    id: str
    district: str
    section: str
    conditions: tuple[str, ...]
    statement: str
    quotes: tuple[Quote, ...] = ()
    constructs: tuple[str, ...] = ()
    path: str = ""  # findings file, relative to the study
    line: int | None = None
    statement_line: int | None = None

    @property
    def survey_constructs(self) -> tuple[str, ...]:
        """Alias of :attr:`constructs` (the name the codebook uses)."""
        return self.constructs


# --------------------------------------------------------------------------- quote syntax


ELLIPSIS_RE = re.compile(r"\[\s*(?:\.\s*){3,}\]|\[\s*…\s*\]|\.{3,}|…|\.(?: \.){2,}")


class QuoteSyntaxError(ValueError):
    """A quote the matcher cannot use: unbalanced brackets, nothing but an ellipsis."""

    def __init__(self, type_: str, message: str):
        super().__init__(message)
        self.type = type_
        self.message = message


@dataclass(frozen=True)
class Piece:
    kind: str  # "text" (source words), "bracket" (author's words), "gap" (words left out)
    text: str = ""


@dataclass(frozen=True)
class ParsedQuote:
    text: str
    pieces: tuple[Piece, ...]

    @property
    def edited(self) -> bool:
        """True when the quote marks an insertion, replacement or omission."""
        return any(p.kind != "text" for p in self.pieces)

    @property
    def source_words(self) -> str:
        """The words the quote takes from its source (bracketed words and ellipses left out)."""
        return " ".join(" ".join(p.text.split()) for p in self.pieces if p.kind == "text").strip()


_SPECIAL_RE = re.compile(ELLIPSIS_RE.pattern + r"|[\[\]]")


@lru_cache(maxsize=65536)
def parse_quote(text: str) -> ParsedQuote:
    """Split a quote into source words, bracketed words and omissions; raise
    :class:`QuoteSyntaxError` for a quote that cannot be matched."""
    if not isinstance(text, str) or not text.strip():
        raise QuoteSyntaxError("empty-quote", "the quote has no text")
    pieces: list[Piece] = []
    pos = 0
    while True:
        m = _SPECIAL_RE.search(text, pos)
        if m is None:
            break
        if m.start() > pos:
            pieces.append(Piece("text", text[pos:m.start()]))
        i = m.start()
        token = m.group()
        if token == "]":
            raise QuoteSyntaxError("unbalanced-brackets", f"the ']' at character {i + 1} closes no '['")
        if token == "[":
            close = text.find("]", i + 1)
            if close < 0:
                raise QuoteSyntaxError("unbalanced-brackets",
                                       f"the '[' at character {i + 1} is never closed with ']' (brackets mark the author's words)")
            nested = text.find("[", i + 1, close)
            if nested >= 0:
                raise QuoteSyntaxError("nested-brackets", f"a '[' at character {nested + 1} opens inside the '[' at character {i + 1}")
            inner = text[i + 1:close]
            if not inner.strip():
                raise QuoteSyntaxError("empty-brackets", f"empty brackets '[]' at character {i + 1}")
            pieces.append(Piece("bracket", inner))
            pos = close + 1
        else:
            if not pieces or pieces[-1].kind != "gap":
                pieces.append(Piece("gap"))
            pos = m.end()
    if pos < len(text):
        pieces.append(Piece("text", text[pos:]))
    # a gap swallows the white space around it; two gaps in a row are one
    merged: list[Piece] = []
    for index, piece in enumerate(pieces):
        if piece.kind == "text" and not piece.text.strip() and (
                (index > 0 and pieces[index - 1].kind == "gap") or (index + 1 < len(pieces) and pieces[index + 1].kind == "gap")):
            continue
        if piece.kind == "gap" and merged and merged[-1].kind == "gap":
            continue
        merged.append(piece)
    parsed = ParsedQuote(text, tuple(merged))
    if not any(_WORD.search(p.text) for p in merged if p.kind == "text"):
        if all(p.kind == "gap" or (p.kind == "text" and not p.text.strip()) for p in merged):
            raise QuoteSyntaxError("ellipsis-only-quote", "the quote is only an ellipsis: give the words it quotes")
        raise QuoteSyntaxError("no-source-words",
                               "the quote has no words from its source: everything is in brackets (the author's words) or left out")
    return parsed


_WORD = re.compile(r"\w")


# --------------------------------------------------------------------------- reading


def findings_path(study: Study, district: str) -> Path:
    return study.root / FINDINGS_DIR / f"{district}.yaml"


def findings_files(study: Study) -> list[Path]:
    folder = study.root / FINDINGS_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml") and not p.name.startswith("."))


def did_you_mean(value: str, known: Any) -> str:
    close = difflib.get_close_matches(str(value), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass
class _Reader:
    study: Study
    path: str
    district: str
    problems: list[Problem] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)
    constructs: set[str] | None = None
    survey_exists: bool = False

    def bad(self, line: int | None, type_: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(self.path, line, type_, message, severity))

    def unknown_keys(self, data: LineDict, allowed: tuple[str, ...], what: str) -> None:
        for key in data:
            if key not in allowed:
                self.bad(data.line_of(key), "unknown-key",
                         f"{what} has an unknown key {key!r}{did_you_mean(key, allowed)}; keys: {', '.join(allowed)}")
        for key, line in getattr(data, "duplicate_keys", []):
            self.bad(line, "duplicate-key", f"key {key!r} appears twice in {what}")


def _survey_constructs(study: Study) -> tuple[set[str] | None, bool]:
    """Construct keys declared in survey.yaml (None when it cannot be read), and whether it exists."""
    try:
        from .survey import read_survey_spec
    except ImportError:  # pragma: no cover - survey support is part of the package
        return None, False
    spec, _ = read_survey_spec(study.root, study.codebook.codes)
    if spec is None:
        return None, True
    return {c.key for c in spec.constructs()}, spec.exists


def read_findings_file(study: Study, path: Path, seen_ids: dict[str, str] | None = None) -> tuple[list[Finding], list[Problem]]:
    """Read one findings file; every problem is returned, never raised."""
    path = Path(path)
    rel = path.relative_to(study.root).as_posix() if path.is_relative_to(study.root) else str(path)
    district = path.stem
    reader = _Reader(study, rel, district)
    reader.sources = {t.id: t for t in study.transcripts}
    seen_ids = {} if seen_ids is None else seen_ids
    if not is_valid_name(district) or district not in study.config.districts:
        reader.bad(None, "unknown-district",
                   f"findings file for {district!r}, which is not a district in study.yaml "
                   f"({', '.join(study.config.districts) or 'none'}){did_you_mean(district, study.config.districts)}")
    try:
        text, encoding = decode_text(path.read_bytes())
    except OSError as exc:
        reader.bad(None, "bad-findings", f"cannot be read ({exc.strerror or exc})")
        return [], reader.problems
    if encoding == "cp1252":
        reader.bad(None, "not-utf8", "read as Windows-1252; save it as UTF-8", "warning")
    try:
        data = load_yaml(text)
    except YamlError as exc:
        reader.bad(exc.line, "bad-yaml", exc.message)
        return [], reader.problems
    if data is None:
        reader.bad(None, "bad-findings", "the file is empty: it needs 'district' and a list of 'findings'")
        return [], reader.problems
    if not isinstance(data, LineDict):
        reader.bad(1, "bad-findings", "the file must be a mapping with 'district' and 'findings'")
        return [], reader.problems
    reader.unknown_keys(data, FILE_KEYS, "the file")
    declared = data.get("district")
    if declared is None:
        reader.bad(data.line, "missing-field", f"no 'district' (it must be {district!r}, as the file is named)")
    elif str(declared) != district:
        reader.bad(data.line_of("district"), "district-mismatch",
                   f"district {declared!r} does not match the file name {path.name!r}")
    items = data.get("findings")
    if items is None:
        reader.bad(data.line, "bad-findings", "no 'findings' list")
        return [], reader.problems
    if not isinstance(items, list):
        reader.bad(data.line_of("findings"), "bad-findings", "'findings' must be a list of findings")
        return [], reader.problems
    lines = getattr(items, "item_lines", [data.line_of("findings")] * len(items))
    findings = []
    for index, item in enumerate(items):
        finding = _read_finding(reader, item, lines[index] if index < len(lines) else None, index, seen_ids)
        if finding is not None:
            findings.append(finding)
    return findings, reader.problems


def _read_finding(reader: _Reader, item: Any, line: int | None, index: int, seen_ids: dict[str, str]) -> Finding | None:
    study = reader.study
    if not isinstance(item, LineDict):
        reader.bad(line, "bad-finding", f"finding {index + 1} must be a mapping with id, section, conditions, statement and quotes")
        return None
    reader.unknown_keys(item, FINDING_KEYS, f"finding {index + 1}")
    fid = item.get("id")
    label = f"finding {fid!r}" if isinstance(fid, str) else f"finding {index + 1}"
    if fid is None:
        reader.bad(item.line, "missing-field", f"{label} has no 'id'")
        fid = f"{reader.district.lower()}-{index + 1}"
    elif not isinstance(fid, str) or not ID_RE.match(fid):
        reader.bad(item.line_of("id"), "bad-finding-id",
                   f"finding id {fid!r} must be lowercase letters, digits and single hyphens (ausd-vision-portrait)")
        fid = str(fid)
    elif fid in seen_ids:
        reader.bad(item.line_of("id"), "duplicate-finding", f"finding id {fid!r} is already used in {seen_ids[fid]}")
    else:
        seen_ids[fid] = reader.path
    section = item.get("section")
    if section is None:
        reader.bad(item.line, "missing-field", f"{label} has no 'section' ({', '.join(SECTIONS)})")
        section = ""
    elif section not in SECTIONS:
        reader.bad(item.line_of("section"), "unknown-section",
                   f"{label}: section {section!r} is not one of {', '.join(SECTIONS)}{did_you_mean(section, SECTIONS)}")
    conditions = _string_list(reader, item, "conditions", label)
    for condition in conditions:
        if condition not in study.codebook.codes:
            reader.bad(item.line_of("conditions"), "unknown-condition",
                       f"{label}: condition {condition!r} is not a code in codebook.yaml{did_you_mean(condition, study.codebook.codes)}")
    if not conditions and section in SECTIONS_BY_CONDITION:
        reader.bad(item.line_of("conditions"), "missing-field",
                   f"{label} is in section {section!r}, which groups findings by condition: give 'conditions'")
    statement = item.get("statement")
    if not isinstance(statement, str) or not statement.strip():
        reader.bad(item.line_of("statement"), "missing-field", f"{label} has no 'statement' (Markdown, the author's words)")
        statement = "" if not isinstance(statement, str) else statement
    quotes = _read_quotes(reader, item, label)
    constructs = _string_list(reader, item, "constructs", label)
    if constructs:
        if reader.constructs is None and not reader.survey_exists:
            reader.constructs, reader.survey_exists = _survey_constructs(study)
        for key in constructs:
            if not CONSTRUCT_RE.match(key):
                reader.bad(item.line_of("constructs"), "unknown-construct",
                           f"{label}: construct {key!r} must be 'population/construct' (students/agency)")
            elif not reader.survey_exists:
                reader.bad(item.line_of("constructs"), "unknown-construct",
                           f"{label}: construct {key!r}, but the study has no survey.yaml")
            elif reader.constructs is not None and key not in reader.constructs:
                reader.bad(item.line_of("constructs"), "unknown-construct",
                           f"{label}: construct {key!r} is not declared in survey.yaml{did_you_mean(key, reader.constructs)}")
    if not quotes and not constructs and "quotes" not in item:
        reader.bad(item.line, "no-evidence", f"{label} has no quotes and no survey constructs", "warning")
    return Finding(id=fid, district=reader.district, section=str(section), conditions=tuple(conditions),
                   statement=statement, quotes=tuple(quotes), constructs=tuple(constructs), path=reader.path, line=item.line,
                   statement_line=item.line_of("statement"))


def _string_list(reader: _Reader, item: LineDict, key: str, label: str) -> list[str]:
    value = item.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        reader.bad(item.line_of(key), "bad-finding", f"{label}: '{key}' must be a list of ids")
        return []
    return [v.strip() for v in value]


def _read_quotes(reader: _Reader, item: LineDict, label: str) -> list[Quote]:
    raw = item.get("quotes")
    if raw is None:
        return []
    if not isinstance(raw, list):
        reader.bad(item.line_of("quotes"), "bad-finding", f"{label}: 'quotes' must be a list of quotes (source, text)")
        return []
    lines = getattr(raw, "item_lines", [item.line_of("quotes")] * len(raw))
    quotes = []
    study = reader.study
    for number, entry in enumerate(raw, start=1):
        where = f"{label}, quote {number}"
        line = lines[number - 1] if number - 1 < len(lines) else item.line_of("quotes")
        if not isinstance(entry, LineDict):
            reader.bad(line, "bad-quote", f"{where} must be a mapping with 'source' and 'text'")
            continue
        reader.unknown_keys(entry, QUOTE_KEYS, where)
        source, text = entry.get("source"), entry.get("text")
        text_line = entry.line_of("text")
        if not isinstance(text, str) or not text.strip():
            reader.bad(text_line, "empty-quote", f"{where} has no 'text'")
            text = ""
        else:
            try:
                parse_quote(text)
            except QuoteSyntaxError as exc:
                reader.bad(text_line, exc.type, f"{where}: {exc.message}")
        if not isinstance(source, str) or not source.strip():
            reader.bad(entry.line, "missing-field", f"{where} has no 'source' (a source id such as {reader.district}/teacher-focus-group)")
            source = ""
        elif source not in reader.sources:
            reader.bad(entry.line_of("source"), "unknown-source",
                       f"{where}: source {source!r} is not a transcript of the study{did_you_mean(source, reader.sources)}")
        elif reader.sources[source].district != reader.district:
            reader.bad(entry.line_of("source"), "other-district-source",
                       f"{where} quotes {source!r}, a source of district {reader.sources[source].district}", "warning")
        role = entry.get("role")
        if role is not None:
            role = str(role)
            if study.config.roles and role not in study.config.roles:
                reader.bad(entry.line_of("role"), "unknown-role",
                           f"{where}: role {role!r} is not in study.yaml ({', '.join(study.config.roles)}){did_you_mean(role, study.config.roles)}")
        turn = entry.get("turn")
        if turn is not None:
            turn = str(turn)
            transcript = reader.sources.get(source)
            if not turn.startswith(f"{source}#t"):
                reader.bad(entry.line_of("turn"), "unknown-turn", f"{where}: turn {turn!r} is not a turn of {source!r} ({source}#t012)")
            elif transcript is not None and not _has_turn(transcript, turn):
                reader.bad(entry.line_of("turn"), "unknown-turn", f"{where}: {source!r} has no turn or sentence {turn!r}")
        sha = entry.get("sha256")
        if sha is not None:
            sha = str(sha).lower()
            if not SHA_RE.match(sha):
                reader.bad(entry.line_of("sha256"), "bad-sha256", f"{where}: sha256 must be 64 hexadecimal digits")
        quotes.append(Quote(source=str(source), text=text, role=role, turn=turn, sha256=sha, line=text_line))
    return quotes


def turn_of(turn_or_sentence: str) -> str:
    """The turn id of a turn or sentence id: ``S#t012.s03`` -> ``S#t012``."""
    head, sep, tail = turn_or_sentence.rpartition("#")
    return f"{head}{sep}{tail.split('.', 1)[0]}" if sep else turn_or_sentence


def _has_turn(transcript: Any, turn_or_sentence: str) -> bool:
    turn = transcript.turn(turn_of(turn_or_sentence))
    if turn is None:
        return False
    return turn_or_sentence == turn.id or any(s.id == turn_or_sentence for s in turn.sentences)


def read_findings(study: Study, district: str | None = None) -> tuple[list[Finding], list[Problem]]:
    """Every finding of the study (or of one district) and every problem found reading them."""
    seen: dict[str, str] = {}
    findings: list[Finding] = []
    problems: list[Problem] = []
    for path in findings_files(study):
        # ids are unique across the study: read every file for the check, keep one district's findings
        items, found = read_findings_file(study, path, seen)
        if district is None or path.stem == district:
            findings += items
            problems += found
    return findings, problems


def load_findings(study: Study, district: str | None = None) -> list[Finding]:
    """The findings of the study or of one district; ``[]`` when there is no findings file.
    Raises :class:`DataError` carrying every problem when a file has errors."""
    if district is not None:
        study.district(district)
    findings, problems = read_findings(study, district)
    errors = errors_only(problems)
    if errors:
        raise DataError(f"the findings have {len(errors)} problem(s); run 'casestudy validate' to see them all", errors)
    return findings


def validate_findings(study: Study) -> list[Problem]:
    """Every problem in ``findings/*.yaml`` (for ``casestudy validate``). Whether the quotes
    stand in their sources is the audit's job (``casestudy audit``)."""
    _, problems = read_findings(study)
    folder = study.root / FINDINGS_DIR
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix not in (".yaml", ".yml") and not path.name.startswith("."):
                problems.append(Problem(f"{FINDINGS_DIR}/{path.name}", None, "unknown-file",
                                        "findings files are named <DISTRICT>.yaml; this file is not read", "warning"))
    return problems


def is_unusable(problem: Problem) -> bool:
    return problem.severity == "error" and problem.type in UNUSABLE
