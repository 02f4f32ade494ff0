"""Confidentiality: the private list of real names and identifying terms, the checks that
keep them (and participants' pseudonyms) out of findings and reports, and ``deidentify``,
which replaces listed names in transcripts with their pseudonyms.

``private/identifiers.yaml`` (``private/`` is git-ignored)::

    names:        # real people's names, in every form used (full name, surname, nickname)
      - Maria Lopez
      - Ms. Lopez
    terms:        # other identifying terms: staff names, street names, a unique programme
      - Saguaro Street
    pseudonyms:   # for deidentify: name or term -> what replaces it in transcripts
      Maria Lopez: Dana
      Ms. Lopez: Dana
    allow:        # participant pseudonyms that are ordinary words in this study (not flagged)
      - Will

Names and terms match whole words, ignoring case, the kind of apostrophe and runs of white
space. Participant pseudonyms (speaker labels such as "Dana" or "Mr. Reyes", and the surname
after a title) match whole words with their capitals; generic labels such as "Facilitator",
"Student 2" or a role name are not names.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem, UsageError, relpath
from .files import LineDict, YamlError, atomic_write_bytes, atomic_write_text, decode_text, load_yaml
from .transcripts import META_SUFFIX, iter_transcript_files

IDENTIFIERS_FILE = "private/identifiers.yaml"
KEYS = ("names", "terms", "pseudonyms", "allow")
TITLES = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "coach", "principal", "sr", "sra", "srta", "senor", "señor", "señora", "senora"}
GENERIC_LABELS = {
    "facilitator", "co-facilitator", "cofacilitator", "interviewer", "moderator", "observer", "researcher", "note taker",
    "notetaker", "note-taker", "speaker", "participant", "unknown", "unidentified", "inaudible", "crosstalk", "all",
    "group", "several", "multiple", "various", "voices", "audience", "host", "staff", "teacher", "student", "parent",
    "principal", "coach", "admin", "administrator", "interpreter", "translator", "respondent", "other", "everyone",
}
NAME_PLACEHOLDER = "[name]"
TERM_PLACEHOLDER = "[redacted]"
_APOS = "'‘’`´ʼ"
_DASH = "-‐‑–—"


class IdentifiersError(UsageError):
    """The identifiers file cannot be used (exit 2); carries its problems."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass(frozen=True)
class Identifiers:
    names: tuple[str, ...] = ()
    terms: tuple[str, ...] = ()
    pseudonyms: dict[str, str] = field(default_factory=dict)
    allow: tuple[str, ...] = ()
    path: Path | None = None
    display_path: str = IDENTIFIERS_FILE

    @property
    def forms(self) -> list[str]:
        """Every listed name and term (and every key of ``pseudonyms``)."""
        seen: dict[str, None] = {}
        for form in (*self.names, *self.terms, *self.pseudonyms):
            seen.setdefault(form, None)
        return list(seen)

    def replacement(self, form: str) -> str:
        if form in self.pseudonyms:
            return self.pseudonyms[form]
        return TERM_PLACEHOLDER if form in self.terms and form not in self.names else NAME_PLACEHOLDER


def load_identifiers(path: Path | str, root: Path | None = None) -> Identifiers:
    """Read the identifiers file; raise :class:`IdentifiersError` (exit 2) listing every problem."""
    path = Path(path)
    rel = relpath(path, root)
    try:
        text, _ = decode_text(path.read_bytes())
    except OSError as exc:
        raise IdentifiersError(f"cannot read the identifiers file {rel}: {exc.strerror or exc}") from None
    try:
        data = load_yaml(text)
    except YamlError as exc:
        raise IdentifiersError(f"the identifiers file {rel} is not usable", [Problem(rel, exc.line, "bad-yaml", exc.message)]) from None
    if data is None:
        data = LineDict()
        data.line, data.key_lines, data.duplicate_keys = 1, {}, []
    problems: list[Problem] = []
    if not isinstance(data, LineDict):
        raise IdentifiersError(f"the identifiers file {rel} is not usable",
                               [Problem(rel, 1, "bad-identifiers", "it must be a mapping with names, terms, pseudonyms and allow")])
    for key in data:
        if key not in KEYS:
            problems.append(Problem(rel, data.line_of(key), "unknown-key", f"unknown key {key!r}; keys: {', '.join(KEYS)}"))

    def strings(key: str) -> tuple[str, ...]:
        value = data.get(key) or []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            problems.append(Problem(rel, data.line_of(key), "bad-identifiers", f"'{key}' must be a list of words or phrases"))
            return ()
        out = tuple(" ".join(str(v).split()) for v in value)
        if any(not v for v in out):
            problems.append(Problem(rel, data.line_of(key), "bad-identifiers", f"'{key}' has an empty entry"))
        return tuple(v for v in out if v)

    names, terms, allow = strings("names"), strings("terms"), strings("allow")
    raw = data.get("pseudonyms") or {}
    pseudonyms: dict[str, str] = {}
    if not isinstance(raw, dict):
        problems.append(Problem(rel, data.line_of("pseudonyms"), "bad-identifiers", "'pseudonyms' must map each real name to its pseudonym"))
    else:
        for key, value in raw.items():
            if not isinstance(value, (str, int)) or not str(value).strip():
                problems.append(Problem(rel, raw.line_of(key), "bad-identifiers", f"pseudonym of {key!r} must be a word or phrase"))
                continue
            pseudonyms[" ".join(str(key).split())] = " ".join(str(value).split())
    if problems:
        raise IdentifiersError(f"the identifiers file {rel} is not usable", problems)
    return Identifiers(names, terms, pseudonyms, allow, path, rel)


def default_identifiers_path(root: Path) -> Path:
    return Path(root) / IDENTIFIERS_FILE


def resolve_identifiers(study: Any, identifiers: Any) -> tuple[Identifiers | None, list[str]]:
    """``(identifiers or None, messages about a skipped check)`` for the audit."""
    if identifiers is False:
        return None, ["identifier check skipped: turned off"]
    if isinstance(identifiers, Identifiers):
        return identifiers, []
    if identifiers is None:
        path = default_identifiers_path(study.root)
        if not path.is_file():
            return None, [f"identifier check skipped: there is no {IDENTIFIERS_FILE} listing real names and identifying "
                          "terms (participant pseudonyms are still checked)"]
        return load_identifiers(path, study.root), []
    path = Path(identifiers)
    if not path.is_file():
        raise UsageError(f"the identifiers file {str(path)!r} does not exist")
    return load_identifiers(path, study.root), []


# --------------------------------------------------------------------------- matching


def _form_regex(form: str) -> str:
    words = form.split()
    out = []
    for word in words:
        chars = []
        for ch in word:
            if ch in _APOS:
                chars.append(f"[{_APOS}]")
            elif ch in _DASH:
                chars.append(f"[{_DASH}]")
            else:
                chars.append(re.escape(ch))
        out.append("".join(chars))
    return r"\s+".join(out)


def compile_forms(forms: Iterable[str], ignore_case: bool) -> re.Pattern[str] | None:
    unique = sorted({f for f in forms if f.strip()}, key=lambda f: (-len(f), f))
    if not unique:
        return None
    alternation = "|".join(_form_regex(f) for f in unique)
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE if ignore_case else 0)


def form_key(text: str) -> str:
    """Match text -> the listed form it stands for (white space and apostrophes folded)."""
    text = " ".join(text.split())
    for ch in _APOS:
        text = text.replace(ch, "'")
    for ch in _DASH:
        text = text.replace(ch, "-")
    return text.lower()


def _is_generic(label: str, roles: dict[str, str]) -> bool:
    base = re.sub(r"[\s#._-]*(?:\d+|[A-Z])$", "", label.strip()).strip().lower()
    generic = GENERIC_LABELS | {r.lower().replace("_", " ") for r in roles} | {v.lower() for v in roles.values()}
    return not base or base in generic or bool(re.search(r"\d", label))


def name_forms(label: str) -> list[str]:
    """The forms a pseudonym can take in prose: "Mr. Reyes" -> Mr. Reyes, Mr Reyes, Reyes."""
    words = label.split()
    forms = [label]
    if len(words) > 1 and words[0].rstrip(".").lower() in TITLES:
        rest = " ".join(words[1:])
        forms += [f"{words[0].rstrip('.')} {rest}", rest]
    elif len(words) > 1:
        forms += [w for w in words if len(w) > 1 and w[:1].isupper()]
    return [f for f in dict.fromkeys(forms) if len(f) > 1]


def participant_names(study: Any, allow: Iterable[str] = ()) -> dict[str, list[str]]:
    """Every participant pseudonym used as a name, in each form -> the sources it comes from."""
    allowed = {a.lower() for a in allow}
    forms: dict[str, list[str]] = {}
    for transcript in study.transcripts:
        for label in transcript.participants:
            if _is_generic(label, study.config.roles) or label.lower() in allowed:
                continue
            for form in name_forms(label):
                if form.lower() in allowed or form.lower() in TITLES:
                    continue
                forms.setdefault(form, [])
                if transcript.id not in forms[form]:
                    forms[form].append(transcript.id)
    return forms


@dataclass(frozen=True)
class Hit:
    kind: str  # "identifier" or "pseudonym"
    text: str
    start: int
    end: int
    detail: str


class Scanner:
    """Finds listed identifiers (ignoring case) and participant pseudonyms (with capitals)."""

    def __init__(self, study: Any, identifiers: Identifiers | None):
        self.identifiers = identifiers
        self.pseudonyms = participant_names(study, identifiers.allow if identifiers else ())
        self._ids = compile_forms(identifiers.forms, ignore_case=True) if identifiers else None
        self._names = compile_forms(self.pseudonyms, ignore_case=False)
        self._by_key = {form_key(f): f for f in self.pseudonyms}

    def scan(self, text: str) -> list[Hit]:
        hits: list[Hit] = []
        taken: list[tuple[int, int]] = []
        if self._ids is not None and self.identifiers is not None:
            for m in self._ids.finditer(text):
                hits.append(Hit("identifier", m.group(), m.start(), m.end(), f"listed in {self.identifiers.display_path}"))
                taken.append(m.span())
        if self._names is not None:
            for m in self._names.finditer(text):
                if any(s < m.end() and m.start() < e for s, e in taken):
                    continue
                form = self._by_key.get(form_key(m.group()), m.group())
                sources = self.pseudonyms.get(form, [])
                where = ", ".join(sources[:3]) + (f" and {len(sources) - 3} more" if len(sources) > 3 else "")
                hits.append(Hit("pseudonym", m.group(), m.start(), m.end(), f"a participant's pseudonym in {where}"))
        return sorted(hits, key=lambda h: h.start)


def _context(text: str, hit: Hit, width: int = 30) -> str:
    left = " ".join(text[max(0, hit.start - width):hit.start].split())
    right = " ".join(text[hit.end:hit.end + width].split())
    return f"…{left} [{hit.text}] {right}…"


def _message(hit: Hit, what: str) -> str:
    if hit.kind == "identifier":
        return f"{what} contains {hit.text!r}, {hit.detail}: remove it or replace it with a role"
    return f"{what} names {hit.text!r}, {hit.detail}: name participants by role only"


def check_findings_identifiers(study: Any, findings: Iterable[Any], identifiers: Identifiers | None) -> list[Problem]:
    """Identifiers and pseudonyms in finding statements and quotes (one problem each, with line)."""
    scanner = Scanner(study, identifiers)
    problems: list[Problem] = []
    for finding in findings:
        for hit in scanner.scan(finding.statement or ""):
            problems.append(Problem(finding.path, getattr(finding, "statement_line", None) or finding.line, hit.kind,
                                    _message(hit, f"finding {finding.id!r}: the statement")))
        for number, quote in enumerate(finding.quotes, start=1):
            for hit in scanner.scan(quote.text or ""):
                problems.append(Problem(finding.path, quote.line, hit.kind,
                                        _message(hit, f"finding {finding.id!r}, quote {number} ({_context(quote.text, hit)})")))
    problems += gitignore_problems(study.root, identifiers)
    return problems


def check_text_identifiers(study: Any, texts: Iterable[tuple[int, str]], identifiers: Identifiers | None, name: str) -> list[Problem]:
    """Identifiers and pseudonyms in text nodes ``(line, text)`` of a rendered report."""
    scanner = Scanner(study, identifiers)
    problems = []
    for line, text in texts:
        for hit in scanner.scan(text):
            problems.append(Problem(name, line, hit.kind, _message(hit, f"the report ({_context(text, hit)})")))
    return problems


def check_transcripts(study: Any, identifiers: Identifiers, district: str | None = None) -> list[Problem]:
    """Warnings for listed identifiers still in transcripts (run ``casestudy deidentify``)."""
    pattern = compile_forms(identifiers.forms, ignore_case=True)
    if pattern is None:
        return []
    problems = []
    for transcript in study.sources(district):
        found = {m.group() for m in pattern.finditer(transcript.text)}
        first = pattern.search(transcript.text)
        if found and first is not None:
            problems.append(Problem(transcript.path, transcript.line_of(first.start()), "identifier-in-transcript",
                                    f"{len(found)} listed identifier(s) appear in this transcript: run 'casestudy deidentify'",
                                    "warning"))
    return problems


def gitignore_problems(root: Path, identifiers: Identifiers | None) -> list[Problem]:
    """A warning when the identifiers file lies in the study but .gitignore does not cover it."""
    if identifiers is None or identifiers.path is None:
        return []
    try:
        rel = Path(identifiers.path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return []
    ignore = Path(root) / ".gitignore"
    patterns = []
    if ignore.is_file():
        patterns = [line.strip().strip("/") for line in ignore.read_text(encoding="utf-8", errors="replace").splitlines()
                    if line.strip() and not line.startswith("#")]
    parts = rel.split("/")
    covered = any(p in patterns or f"{p}/" in patterns for p in ["/".join(parts[:i]) for i in range(1, len(parts) + 1)])
    if covered:
        return []
    return [Problem(rel, None, "not-ignored", f".gitignore does not cover {rel}: real names could be committed "
                                              f"(add '{parts[0]}/' to .gitignore)", "warning")]


# --------------------------------------------------------------------------- deidentify


@dataclass(frozen=True)
class Change:
    file: str
    line: int
    column: int
    found: str
    replacement: str


@dataclass
class FileResult:
    source: str
    target: str
    changes: list[Change] = field(default_factory=list)
    note: str = ""


@dataclass
class DeidentifyResult:
    files: list[FileResult]
    log: Path
    backup: Path | None
    warnings: list[str]

    @property
    def changes(self) -> int:
        return sum(len(f.changes) for f in self.files)


_LABEL_PATTERNS = (
    r"^[ \t]*{form}[ \t]*:",              # "Maria Lopez: text" and YAML keys under participants
    r"<v(?:\.[\w.-]+)?\s+{form}\s*>",    # WebVTT voice tags
)


def _label_uses(text: str, form: str) -> bool:
    regex = _form_regex(form)
    return any(re.search(p.replace("{form}", regex), text, re.MULTILINE) for p in _LABEL_PATTERNS)


def _replace(text: str, pattern: re.Pattern[str], lookup: dict[str, str], rel: str, line_of) -> tuple[str, list[Change]]:
    changes: list[Change] = []
    parts: list[str] = []
    last = 0
    for m in pattern.finditer(text):
        form = lookup[form_key(m.group())]
        line, column = line_of(m.start())
        changes.append(Change(rel, line, column, m.group(), form))
        parts.append(text[last:m.start()])
        parts.append(form)
        last = m.end()
    parts.append(text[last:])
    return "".join(parts), changes


def _text_line_of(text: str):
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def line_of(offset: int) -> tuple[int, int]:
        from bisect import bisect_right

        i = bisect_right(starts, offset) - 1
        return i + 1, offset - starts[i] + 1

    return line_of


def _docx_replace(data: bytes, pattern: re.Pattern[str], lookup: dict[str, str], rel: str) -> tuple[bytes, list[Change]]:
    import docx

    document = docx.Document(io.BytesIO(data))
    changes: list[Change] = []

    def paragraphs():
        yield from enumerate(document.paragraphs, start=1)
        number = len(document.paragraphs)
        for table in document.tables:
            for row in table.rows:
                for cell in row.cells:
                    for paragraph in cell.paragraphs:
                        number += 1
                        yield number, paragraph
        for section in document.sections:
            for part in (section.header, section.footer):
                for paragraph in part.paragraphs:
                    number += 1
                    yield number, paragraph

    for number, paragraph in paragraphs():
        full = paragraph.text
        if not pattern.search(full):
            continue
        new, found = _replace(full, pattern, lookup, rel, lambda offset, n=number: (n, offset + 1))
        changes += found
        runs = paragraph.runs
        # names inside single runs keep their formatting; a name split across runs collapses the paragraph's runs
        for run in runs:
            run.text = pattern.sub(lambda m: lookup[form_key(m.group())], run.text)
        if paragraph.text != new and runs:
            runs[0].text = new
            for run in runs[1:]:
                run.text = ""
    props = document.core_properties
    for attr in ("author", "last_modified_by", "title", "subject", "keywords", "comments", "category"):
        value = getattr(props, attr, None)
        if isinstance(value, str) and pattern.search(value):
            setattr(props, attr, pattern.sub(lambda m: lookup[form_key(m.group())], value))
            changes.append(Change(rel, 0, 0, f"(document property {attr})", "replaced"))
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue(), changes


def deidentify(root: Path, identifiers: Identifiers, district: str | None = None, out: Path | None = None,
               in_place: bool = False, now: _dt.datetime | None = None) -> DeidentifyResult:
    """Replace listed names and terms in the transcripts (and their metadata sidecars) with
    their pseudonyms (or ``[name]``/``[redacted]``). Writes new files under ``out``
    (``<out>/transcripts/<DISTRICT>/...``), or, with ``in_place``, backs the originals up under
    ``private/backup/`` first. A JSON log of every change is written beside the identifiers
    file (it holds real names: keep it private). Names are matched as written (capitals
    included); other-case leftovers are reported as warnings."""
    root = Path(root).resolve()
    if not identifiers.forms:
        raise UsageError(f"{identifiers.display_path} lists no names or terms to replace")
    if not in_place and out is None:
        raise UsageError("give --out DIR for the de-identified copies (or --in-place, which backs the originals up first)")
    pattern = compile_forms(identifiers.forms, ignore_case=False)
    loose = compile_forms(identifiers.forms, ignore_case=True)
    assert pattern is not None and loose is not None
    lookup = {form_key(f): identifiers.replacement(f) for f in identifiers.forms}
    files: list[Path] = []
    for folder, path in iter_transcript_files(root / "transcripts"):
        if district is not None and folder != district:
            continue
        files.append(path)
        sidecar = path.with_name(path.name[: -len(path.suffix)] + META_SUFFIX)
        if sidecar.is_file():
            files.append(sidecar)
    if district is not None and not files:
        raise UsageError(f"no transcripts under transcripts/{district}/")
    # a speaker label replaced by a placeholder would break the transcript: refuse before writing
    unlabelled = []
    for path in files:
        if path.suffix.lower() == ".docx":
            continue
        text, _ = decode_text(path.read_bytes())
        for form in identifiers.forms:
            if form not in identifiers.pseudonyms and _label_uses(text, form):
                unlabelled.append(f"{relpath(path, root)}: {form!r}")
    if unlabelled:
        raise UsageError("these speaker labels have no pseudonym in the identifiers file (add them under 'pseudonyms'): "
                         + "; ".join(unlabelled))
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    out_root = root if in_place else Path(out).resolve()
    results: list[FileResult] = []
    outputs: list[tuple[Path, Path, bytes]] = []
    warnings: list[str] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        target = out_root / rel
        if not in_place and target.resolve() == path.resolve():
            raise UsageError(f"--out {out} would overwrite {rel}: use --in-place (which backs the originals up) or another folder")
        result = FileResult(rel, relpath(target, root))
        data = path.read_bytes()
        if path.suffix.lower() == ".docx":
            new_bytes, result.changes = _docx_replace(data, pattern, lookup, rel)
            if not result.changes:
                new_bytes = data
        else:
            text, encoding = decode_text(data)
            new_text, result.changes = _replace(text, pattern, lookup, rel, _text_line_of(text))
            leftovers = sorted({m.group() for m in loose.finditer(new_text)} - set(lookup.values()))
            if leftovers:
                warnings.append(f"{rel}: {len(leftovers)} listed name(s) left in other capitals; check by hand")
            rest = pattern.sub(" ", text)  # the text outside the listed names (a pseudonym may be part of one)
            for value in sorted({c.replacement for c in result.changes}):
                if value not in (NAME_PLACEHOLDER, TERM_PLACEHOLDER) and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", rest):
                    warnings.append(f"{rel}: the pseudonym {value!r} was already used in the file: two people may now share it")
            new_bytes = new_text.encode("utf-8") if result.changes or not in_place else data
            if encoding != "utf-8" and (result.changes or not in_place):
                result.note = f"re-encoded from {encoding} to UTF-8"
        results.append(result)
        if in_place and not result.changes:
            continue
        outputs.append((path, target, new_bytes))
    backup = None
    if in_place and outputs:
        backup = root / "private" / "backup" / f"deidentify-{stamp}"
        for path, _, _ in outputs:
            dest = backup / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    for _, target, new_bytes in outputs:
        atomic_write_bytes(target, new_bytes)
    log_dir = identifiers.path.parent if identifiers.path is not None else root / "private"
    log = log_dir / f"deidentify-{stamp}.json"
    number = 1
    while log.exists():  # two runs in one second keep both logs
        number += 1
        log = log_dir / f"deidentify-{stamp}-{number}.json"
    payload = {
        "run": stamp, "study": str(root), "district": district, "in_place": in_place,
        "out": str(out_root), "backup": str(backup) if backup else None,
        "files": [{**{k: v for k, v in asdict(r).items() if k != "changes"}, "changes": [asdict(c) for c in r.changes]}
                  for r in results],
        "warnings": warnings,
    }
    atomic_write_text(log, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    return DeidentifyResult(results, log, backup, warnings)
