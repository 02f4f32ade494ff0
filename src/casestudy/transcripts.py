"""Transcripts: read a session file in any supported format, split it into speaker turns and
sentences with stable ids, character offsets and line numbers.

Every format is turned into one *canonical text* (newlines ``\\n``, no BOM): for ``.md`` and
``.txt`` that is the file itself, for captions and Word files a ``Label: text`` script built
from them. All offsets (code points, from 0) point into the canonical text, so
``source.text[s.start:s.end] == s.text`` for every turn and sentence. Line numbers point into
the original file.

Readers are registered by file extension (:func:`register_reader`); an unknown extension
fails with a message listing the known ones.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem, UsageError
from .files import LineDict, YamlError, decode_text, load_yaml, sha256_bytes
from .nlp import blank_nlp, sentence_spans

META_SUFFIX = ".meta.yaml"
TURN_RE = re.compile(r"^(?P<label>[A-Za-z][A-Za-z0-9 .'\u2019-]{0,39}):[ \t]+(?=\S)", re.MULTILINE)
META_KEYS = ("district", "school", "source_type", "date", "facilitator", "participants")


# --------------------------------------------------------------------------- data classes


@dataclass(frozen=True)
class Sentence:
    id: str
    turn_id: str
    start: int
    end: int
    line: int
    text: str


@dataclass(frozen=True)
class Turn:
    id: str
    index: int
    speaker: str
    role: str | None
    start: int
    end: int
    line: int
    text: str
    sentences: tuple[Sentence, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """One session: its metadata, canonical text, turns and sentences."""

    id: str  # "<DISTRICT>/<slug>"
    path: str  # relative to the study
    format: str
    district: str
    school: str
    source_type: str
    date: str
    facilitator: str
    participants: dict[str, str]
    synthetic: bool
    text: str
    sha256: str
    encoding: str
    turns: tuple[Turn, ...] = ()
    meta_path: str = ""
    meta_lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @property
    def sentences(self) -> Iterator[Sentence]:
        for turn in self.turns:
            yield from turn.sentences

    @property
    def words(self) -> int:
        return sum(len(t.text.split()) for t in self.turns)

    def turn(self, turn_id: str) -> Turn | None:
        return next((t for t in self.turns if t.id == turn_id), None)

    def turn_at(self, offset: int) -> Turn | None:
        """The turn whose text contains character ``offset``."""
        return next((t for t in self.turns if t.start <= offset < t.end), None)

    def line_of(self, offset: int) -> int:
        """Line in the *original file* of a canonical-text offset."""
        turn = next((t for t in self.turns if t.start <= offset <= t.end), None)
        if turn is None:
            return self.text.count("\n", 0, offset) + 1
        return turn.line + (self.text.count("\n", turn.start, offset) if self.format in ("md", "txt") else 0)


# --------------------------------------------------------------------------- readers


@dataclass
class RawDocument:
    """What a reader returns: the canonical text, its metadata and where the body starts."""

    text: str
    meta: Any
    meta_path: Path
    meta_line_offset: int = 0
    body_start: int = 0
    encoding: str = "utf-8"
    line_map: list[int] | None = None  # canonical line index -> original file line
    problems: list[Problem] = field(default_factory=list)


Reader = Callable[[Path, bytes, str], RawDocument]
_READERS: dict[str, Reader] = {}


def register_reader(extension: str, reader: Reader) -> None:
    _READERS[extension.lower().lstrip(".")] = reader


def get_reader(extension: str) -> Reader:
    key = extension.lower().lstrip(".")
    if key not in _READERS:
        raise UsageError(f"no reader for '.{key}' files; known: {', '.join('.' + k for k in sorted(_READERS))}")
    return _READERS[key]


def known_extensions() -> list[str]:
    return sorted(_READERS)


def _read_sidecar(path: Path, rel: str) -> tuple[Any, Path, list[Problem]]:
    meta_path = path.with_name(path.name[: -len(path.suffix)] + META_SUFFIX)
    meta_rel = str(Path(rel).with_name(meta_path.name))
    if not meta_path.exists():
        return None, meta_path, [Problem(rel, None, "missing-metadata", f"no sidecar {meta_path.name} with the session's metadata")]
    text, _ = decode_text(meta_path.read_bytes())
    try:
        return load_yaml(text), meta_path, []
    except YamlError as exc:
        return None, meta_path, [Problem(meta_rel, exc.line, "bad-yaml", exc.message)]


def read_front_matter(path: Path, data: bytes, rel: str) -> RawDocument:
    """``.md``/``.txt``: YAML front matter between ``---`` lines, then speaker turns."""
    text, encoding = decode_text(data)
    doc = RawDocument(text=text, meta=None, meta_path=path, encoding=encoding)
    if not text.startswith("---\n"):
        doc.problems.append(Problem(rel, 1, "missing-metadata", "the file must start with YAML front matter between '---' lines"))
        return doc
    end = text.find("\n---\n", 3)
    if end < 0:
        end = text.find("\n---", 3) if text.endswith("\n---") else -1
    if end < 0:
        doc.problems.append(Problem(rel, 1, "bad-yaml", "the front matter opened on line 1 is never closed with '---'"))
        return doc
    try:
        doc.meta = load_yaml(text[4 : end + 1], line_offset=1)
    except YamlError as exc:
        doc.problems.append(Problem(rel, exc.line, "bad-yaml", exc.message))
    doc.meta_line_offset = 1
    doc.body_start = min(len(text), end + 5)
    return doc


def _script(turns: list[tuple[str | None, str, int]], path: Path, rel: str, encoding: str = "utf-8") -> RawDocument:
    """Build canonical text from (label or None for continuation, text, original line) items."""
    lines: list[str] = []
    line_map: list[int] = []
    for label, utterance, line in turns:
        utterance = " ".join(utterance.split())
        if not utterance:
            continue
        if label is None and lines:
            lines[-1] += " " + utterance
            continue
        lines.append(f"{label}: {utterance}" if label else utterance)
        line_map.append(line)
    meta, meta_path, problems = _read_sidecar(path, rel)
    return RawDocument(text="\n".join(lines) + ("\n" if lines else ""), meta=meta, meta_path=meta_path,
                       encoding=encoding, line_map=line_map, problems=problems)


VOICE_RE = re.compile(r"<v(?:\.[\w.-]+)?\s+([^>]+)>")
TAG_RE = re.compile(r"</?[a-z][^>]*>", re.IGNORECASE)


def read_vtt(path: Path, data: bytes, rel: str) -> RawDocument:
    """WebVTT captions: a ``<v Label>`` voice tag or a ``Label:`` prefix names the speaker;
    consecutive cues from one speaker join into one turn."""
    import webvtt

    text, encoding = decode_text(data)
    try:
        captions = webvtt.from_buffer(io.StringIO(text))
    except Exception as exc:  # webvtt raises MalformedFileError/MalformedCaptionError
        raise _FileProblem(Problem(rel, None, "bad-captions", f"not a readable WebVTT file ({exc})")) from None
    lines = text.split("\n")
    turns: list[tuple[str | None, str, int]] = []
    previous: str | None = None
    search_from = 0
    for caption in captions:
        line = _find_line(lines, caption.start, search_from)
        search_from = max(search_from, line)
        raw = caption.raw_text if hasattr(caption, "raw_text") else caption.text
        match = VOICE_RE.search(raw)
        body = TAG_RE.sub("", raw).strip()
        label = match.group(1).strip() if match else None
        if label is None:
            prefix = TURN_RE.match(body)
            if prefix:
                label, body = prefix.group("label"), body[prefix.end():]
        same = label is None or label == previous
        turns.append((None if same and turns else label, body, line + 1))
        previous = label or previous
    return _script(turns, path, rel, encoding)


def read_srt(path: Path, data: bytes, rel: str) -> RawDocument:
    """SubRip captions: cue text ``Label: text``; a cue with no label continues the turn."""
    import webvtt

    text, encoding = decode_text(data)
    try:
        captions = webvtt.from_buffer(io.StringIO(text), format="srt")
    except Exception as exc:
        raise _FileProblem(Problem(rel, None, "bad-captions", f"not a readable SRT file ({exc})")) from None
    lines = text.split("\n")
    turns: list[tuple[str | None, str, int]] = []
    search_from = 0
    for caption in captions:
        line = _find_line(lines, caption.start.replace(".", ","), search_from)
        search_from = max(search_from, line)
        body = " ".join(caption.text.split())
        prefix = TURN_RE.match(body)
        if prefix:
            turns.append((prefix.group("label"), body[prefix.end():], line + 1))
        else:
            turns.append((None, body, line + 1))
    return _script(turns, path, rel, encoding)


def _find_line(lines: list[str], timestamp: str, start: int) -> int:
    for index in range(start, len(lines)):
        if lines[index].lstrip().startswith(timestamp):
            return index + 1  # the cue text starts on the line after the timing line
    return start


def read_docx(path: Path, data: bytes, rel: str) -> RawDocument:
    """Word: one paragraph per turn, ``Label: text``; other paragraphs continue the turn.
    Line numbers are paragraph numbers."""
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises PackageNotFoundError, BadZipFile, KeyError
        raise _FileProblem(Problem(rel, None, "bad-docx", f"not a readable Word document ({type(exc).__name__})")) from None
    turns: list[tuple[str | None, str, int]] = []
    for number, paragraph in enumerate(document.paragraphs, start=1):
        body = paragraph.text.strip()
        if not body:
            continue
        prefix = TURN_RE.match(body)
        if prefix:
            turns.append((prefix.group("label"), body[prefix.end():], number))
        else:
            turns.append((None, body, number))
    return _script(turns, path, rel)


class _FileProblem(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


register_reader("md", read_front_matter)
register_reader("txt", read_front_matter)
register_reader("vtt", read_vtt)
register_reader("srt", read_srt)
register_reader("docx", read_docx)


# --------------------------------------------------------------------------- loading


def is_transcript_file(path: Path) -> bool:
    name = path.name
    return not name.startswith(".") and not name.endswith(META_SUFFIX) and path.suffix.lower().lstrip(".") in _READERS


def load_transcript(path: Path, study_root: Path, district_dir: str | None = None) -> tuple[Transcript | None, list[Problem]]:
    """Read, parse and segment one session file. Never raises on bad data: problems are
    returned (with a ``None`` transcript when nothing usable could be read)."""
    path = Path(path)
    rel = path.resolve().relative_to(study_root.resolve()).as_posix() if path.resolve().is_relative_to(study_root.resolve()) else str(path)
    data = path.read_bytes()
    reader = get_reader(path.suffix)
    try:
        doc = reader(path, data, rel)
    except _FileProblem as exc:
        return None, [exc.problem]
    problems = list(doc.problems)
    if doc.encoding == "cp1252":
        problems.append(Problem(rel, None, "not-utf8", "read as Windows-1252 (as Word exports); save it as UTF-8 to silence this", "warning"))
    meta = doc.meta
    meta_rel = rel if doc.meta_path == path else Path(rel).with_name(doc.meta_path.name).as_posix()
    if meta is None:
        return None, problems
    if not isinstance(meta, LineDict):
        problems.append(Problem(meta_rel, 1 + doc.meta_line_offset, "bad-metadata", "the metadata must be a mapping of keys such as district and participants"))
        return None, problems
    for key in META_KEYS:
        if key == "facilitator":
            continue
        if meta.get(key) in (None, "", {}):
            problems.append(Problem(meta_rel, meta.line, "missing-metadata", f"the metadata has no '{key}'"))
    participants_raw = meta.get("participants") or {}
    if not isinstance(participants_raw, dict):
        problems.append(Problem(meta_rel, meta.line_of("participants"), "bad-metadata", "'participants' must map each speaker label to a role"))
        participants_raw = {}
    participants = {str(k): str(v) for k, v in participants_raw.items()}
    slug = path.name[: -len(path.suffix)]
    district = str(meta.get("district") or district_dir or "")
    source_id = f"{district_dir or district}/{slug}"
    text = doc.text
    turns, turn_problems = split_turns(text, doc.body_start, participants, source_id, rel, doc.line_map)
    problems.extend(turn_problems)
    if not turns:
        problems.append(Problem(rel, None, "empty-transcript", "the transcript has no speaker turns (lines 'Label: text')"))
    meta_lines = {str(k): meta.line_of(k) + (doc.meta_line_offset if doc.meta_path == path else 0) for k in meta}
    transcript = Transcript(
        id=source_id,
        path=rel,
        format=path.suffix.lower().lstrip("."),
        district=district,
        school=str(meta.get("school") or ""),
        source_type=str(meta.get("source_type") or ""),
        date=str(meta.get("date") or ""),
        facilitator=str(meta.get("facilitator") or ""),
        participants=participants,
        synthetic=bool(meta.get("synthetic", False)),
        text=text,
        sha256=sha256_bytes(data),
        encoding=doc.encoding,
        turns=tuple(turns),
        meta_path=meta_rel,
        meta_lines=meta_lines,
    )
    return transcript, problems


def split_turns(text: str, body_start: int, participants: dict[str, str], source_id: str, rel: str,
                line_map: list[int] | None = None) -> tuple[list[Turn], list[Problem]]:
    """Split the body into speaker turns and each turn into sentences (spaCy's sentencizer,
    never splitting inside a ``[note]``: :func:`casestudy.nlp.sentence_spans`)."""
    problems: list[Problem] = []
    starts = [m for m in TURN_RE.finditer(text, body_start)]
    spans: list[tuple[str, int, int, int]] = []  # label, text start, text end, original line
    first_line_index = text.count("\n", 0, body_start)
    if starts:
        preamble = text[body_start:starts[0].start()].strip()
        if preamble and not all(line.startswith("#") or not line.strip() for line in preamble.split("\n")):
            line = first_line_index + 1 + len(text[body_start:starts[0].start()]) - len(text[body_start:starts[0].start()].lstrip("\n"))
            problems.append(Problem(rel, line, "text-before-first-turn", "text before the first 'Label: text' line belongs to no speaker"))
    for number, match in enumerate(starts):
        end = starts[number + 1].start() if number + 1 < len(starts) else len(text)
        segment = text[match.end():end]
        stripped_end = match.end() + len(segment.rstrip())
        canonical_line = text.count("\n", 0, match.start())
        line = line_map[canonical_line] if line_map and canonical_line < len(line_map) else canonical_line + 1
        spans.append((match.group("label"), match.end(), stripped_end, line))
    turns: list[Turn] = []
    nlp = blank_nlp()
    docs = nlp.pipe(text[s:e] for _, s, e, _ in spans)
    for index, ((label, start, end, line), doc) in enumerate(zip(spans, docs, strict=True), start=1):
        role = participants.get(label)
        if role is None:
            known = ", ".join(participants) or "none"
            problems.append(Problem(rel, line, "unknown-speaker", f"speaker {label!r} is not among the participants ({known})"))
        turn_id = f"{source_id}#t{index:03d}"
        sentences = []
        turn_text = doc.text
        for number, (a, b) in enumerate(sentence_spans(doc), start=1):
            raw = turn_text[a:b]
            s_text = raw.strip()
            if not s_text:
                continue
            s_start = start + a + (len(raw) - len(raw.lstrip()))
            s_end = s_start + len(s_text)
            s_line = line + (text.count("\n", start, s_start) if line_map is None else 0)
            sentences.append(Sentence(f"{turn_id}.s{number:02d}", turn_id, s_start, s_end, s_line, s_text))
        turns.append(Turn(turn_id, index, label, role, start, end, line, text[start:end], tuple(sentences)))
    return turns, problems


def iter_transcript_files(transcripts_dir: Path) -> Iterator[tuple[str, Path]]:
    """(district folder name, file) for every session file, in a stable order."""
    if not transcripts_dir.is_dir():
        return
    for district_dir in sorted(p for p in transcripts_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(district_dir.rglob("*")):
            if path.is_file() and is_transcript_file(path):
                yield district_dir.name, path
