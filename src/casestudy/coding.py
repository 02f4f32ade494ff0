"""Coder files: each coder's codings as an append-only log of events (``codings/<coder>.jsonl``).

One JSON object per line (see "Data formats" in README.md): ``apply``, ``remove``, ``memo``,
``accept`` and ``reject`` events. A coder's current codings are derived by :func:`replay`.

- Every event is checked *before* it is written (the code is in the codebook, the source
  exists, the offsets fall inside its text and the copied text is the source's text there),
  so a bad event is refused with a clear message and nothing is written.
- An append is one ``write`` of one line on a file opened for appending, flushed and
  fsynced, under a :class:`filelock.FileLock` on a sibling lock file: two processes writing
  to one coder file cannot interleave, and a crash loses at most the line being written.
- :func:`read_events` reports a torn last line (``torn-line``) and a bad line in the middle
  (``bad-event``) with file and line; it never drops them silently and never lets them spoil
  the events around them.
- A coding anchors to its source by offsets, the source file's SHA-256 and a copy of the
  coded text. When the source has changed, :func:`reanchor` looks for the copied text again
  (exactly, then ignoring differences in whitespace): found once, the coding moves there
  (status ``re-anchored``); not found or found several times, it is ``stale``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from filelock import FileLock, Timeout

from .codebook import Codebook, load_codebook
from .errors import DataError, Problem, UsageError, relpath
from .files import check_name, is_valid_name
from .transcripts import Transcript, iter_transcript_files, load_transcript

if TYPE_CHECKING:  # the study module may come to import this one for validation
    from .study import Study

log = logging.getLogger("casestudy")

FORMAT_VERSION = 1
CODINGS_DIR = "codings"
SUGGESTIONS_DIR = "suggestions"
LOCK_TIMEOUT = 60.0
STATUSES = ("ok", "re-anchored", "stale")

CODING_ID_RE = re.compile(r"^c-[0-9a-f]{12}$")
AT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")
_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
ORIGIN_RE = re.compile(rf"^(human|auto:\S+|consensus:{_NAME},{_NAME})$")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Anchor:
    """Where a coding sits: offsets into the source's canonical text (code points from 0), the
    sentence and turn ids, the source file's SHA-256 and a copy of the coded text."""

    start: int
    end: int
    sentence: str | None
    turn: str | None
    sha256: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "sentence": self.sentence, "turn": self.turn,
                "sha256": self.sha256, "text": self.text}

    @classmethod
    def from_dict(cls, data: Any) -> Anchor:
        if not isinstance(data, dict):
            raise ValueError("'anchor' must be an object with start, end, sentence, turn, sha256 and text")
        for key in ("start", "end"):
            if not _is_int(data.get(key)):
                raise ValueError(f"anchor {key!r} must be a whole number")
        for key in ("sha256", "text"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"anchor {key!r} must be text")
        for key in ("sentence", "turn"):
            if data.get(key) is not None and not isinstance(data.get(key), str):
                raise ValueError(f"anchor {key!r} must be an id or null")
        return cls(start=data["start"], end=data["end"], sentence=data.get("sentence"), turn=data.get("turn"),
                   sha256=data["sha256"], text=data["text"])


@dataclass(frozen=True, kw_only=True)
class Event:
    """Common part of every event. ``line`` is where it was read from (1-based), not stored."""

    kind: ClassVar[str] = ""
    coder: str
    at: str
    line: int | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": FORMAT_VERSION, "event": self.kind, "coder": self.coder, "at": self.at}
        data.update(self._body())
        return data

    def _body(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, kw_only=True)
class ApplyEvent(Event):
    kind: ClassVar[str] = "apply"
    coding: str
    code: str
    source: str
    anchor: Anchor
    origin: str = "human"
    memo: str | None = None
    reason: str | None = None

    def _body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"coding": self.coding, "code": self.code, "source": self.source,
                                "anchor": self.anchor.to_dict(), "origin": self.origin}
        if self.memo is not None:
            data["memo"] = self.memo
        if self.reason is not None:
            data["reason"] = self.reason
        return data


@dataclass(frozen=True, kw_only=True)
class AcceptEvent(ApplyEvent):
    """An accepted suggestion: an apply that also names the suggestion it came from."""

    kind: ClassVar[str] = "accept"
    suggestion: str | None = None

    def _body(self) -> dict[str, Any]:
        data = super()._body()
        if self.suggestion is not None:
            data["suggestion"] = self.suggestion
        return data


@dataclass(frozen=True, kw_only=True)
class RemoveEvent(Event):
    kind: ClassVar[str] = "remove"
    coding: str

    def _body(self) -> dict[str, Any]:
        return {"coding": self.coding}


@dataclass(frozen=True, kw_only=True)
class MemoEvent(Event):
    kind: ClassVar[str] = "memo"
    coding: str
    memo: str

    def _body(self) -> dict[str, Any]:
        return {"coding": self.coding, "memo": self.memo}


@dataclass(frozen=True, kw_only=True)
class RejectEvent(Event):
    kind: ClassVar[str] = "reject"
    suggestion: str
    code: str
    source: str
    anchor: Anchor
    reason: str | None = None

    def _body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"suggestion": self.suggestion, "code": self.code, "source": self.source,
                                "anchor": self.anchor.to_dict()}
        if self.reason is not None:
            data["reason"] = self.reason
        return data


EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in (ApplyEvent, RemoveEvent, MemoEvent, AcceptEvent, RejectEvent)}


@dataclass(frozen=True)
class Coding:
    """One current coding of one coder, after replaying the coder's events.

    ``status`` is ``ok``, ``re-anchored`` (the source changed and the coded text was found
    again, at the offsets given) or ``stale`` (it could not be found again)."""

    id: str
    coder: str
    code: str
    source: str
    start: int
    end: int
    sentence: str | None
    turn: str | None
    sha256: str
    text: str
    origin: str
    memo: str | None
    at: str
    reason: str | None = None
    status: str = "ok"


# --------------------------------------------------------------------------- ids, times, paths


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def format_time(at: datetime | str | None) -> str:
    """``at`` as ISO 8601 UTC with ``Z``; ``None`` is now. Strings must already be in that form."""
    if at is None:
        return utc_now()
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise UsageError(f"time {at.isoformat()} has no time zone; give UTC times")
        return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not isinstance(at, str) or not AT_RE.match(at):
        raise UsageError(f"time {at!r} is not UTC ISO 8601 with 'Z' (2026-11-24T12:00:00Z)")
    return at


def new_coding_id(coder: str, code: str, source: str, start: int, end: int, at: str, salt: str = "") -> str:
    """``c-`` + 12 hex digits, derived from what the coding is (so re-running a script gives the same ids)."""
    digest = hashlib.sha256("\x1f".join(map(str, (coder, code, source, start, end, at, salt))).encode()).hexdigest()
    return "c-" + digest[:12]


def _root_of(study: Study | Path | str) -> Path:
    return Path(study) if isinstance(study, (str, os.PathLike)) else Path(study.root)


def coder_path(study_root: Study | Path | str, coder: str) -> Path:
    """``<study>/codings/<coder>.jsonl``; a coder name that is not a safe name is a UsageError."""
    check_name(coder, "coder")
    return _root_of(study_root) / CODINGS_DIR / f"{coder}.jsonl"


def lock_path(path: Path) -> Path:
    """The sibling lock file of a coder file (``codings/.ana.jsonl.lock``)."""
    return path.with_name(f".{path.name}.lock")


def list_coders(study: Study | Path | str) -> list[str]:
    """Coders with a file in ``codings/`` (lock, temporary and hidden files are not coders)."""
    folder = _root_of(study) / CODINGS_DIR
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir()
                  if p.is_file() and p.suffix == ".jsonl" and not p.name.startswith(".") and is_valid_name(p.stem))


CONSENSUS = "consensus"  # the coder adjudication writes; its codings restate the others' where they agree


def human_coders(study: Study | Path | str) -> list[str]:
    """The coders in ``codings/`` other than the consensus coder, in alphabetical order."""
    return [c for c in list_coders(study) if c != CONSENSUS]


# --------------------------------------------------------------------------- reading


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text_or_none(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} must be text")
    return value


def event_from_dict(data: Any, expected_coder: str | None = None) -> Event:
    """Build an event from one parsed line; raise ValueError with a message on a bad one."""
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    if data.get("v") != FORMAT_VERSION:
        raise ValueError(f"unknown format version {data.get('v')!r} (this version reads v={FORMAT_VERSION})")
    kind = data.get("event")
    if kind not in EVENT_TYPES:
        raise ValueError(f"'event' is {kind!r}; expected one of {', '.join(EVENT_TYPES)}")
    coder = data.get("coder")
    if not is_valid_name(coder):
        raise ValueError(f"'coder' {coder!r} is not a valid coder name")
    if expected_coder is not None and coder != expected_coder:
        raise ValueError(f"an event of coder {coder!r} in the file of coder {expected_coder!r}")
    at = data.get("at")
    if not isinstance(at, str) or not AT_RE.match(at):
        raise ValueError(f"'at' {at!r} is not a UTC time in ISO 8601 with 'Z'")
    common = {"coder": coder, "at": at}
    if kind in ("apply", "accept", "remove", "memo"):
        coding = data.get("coding")
        if not isinstance(coding, str) or not CODING_ID_RE.match(coding):
            raise ValueError(f"'coding' {coding!r} is not a coding id ('c-' and 12 hex digits)")
        common["coding"] = coding
    if kind in ("apply", "accept", "reject"):
        for key in ("code", "source"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"missing {key!r}")
        common.update(code=data["code"], source=data["source"], anchor=Anchor.from_dict(data.get("anchor")))
    if kind in ("apply", "accept"):
        origin = data.get("origin", "human")
        if not isinstance(origin, str) or not ORIGIN_RE.match(origin):
            raise ValueError(f"'origin' {origin!r} must be human, auto:<pattern id> or consensus:<coder>,<coder>")
        common.update(origin=origin, memo=_text_or_none(data, "memo"), reason=_text_or_none(data, "reason"))
        if kind == "accept":
            common["suggestion"] = _text_or_none(data, "suggestion")
    elif kind == "memo":
        if not isinstance(data.get("memo"), str):
            raise ValueError("a memo event needs 'memo' text")
        common["memo"] = data["memo"]
    elif kind == "reject":
        if not isinstance(data.get("suggestion"), str) or not data["suggestion"]:
            raise ValueError("a reject event needs the 'suggestion' id")
        common.update(suggestion=data["suggestion"], reason=_text_or_none(data, "reason"))
    return EVENT_TYPES[kind](**common)


def read_events(path: Path, root: Path | None = None) -> tuple[list[Event], list[Problem]]:
    """Every event of a coder file, and a problem for each line that is not one.

    A last line that is not complete JSON (a write cut off by a crash) is ``torn-line``; any
    other unreadable line is ``bad-event``. The events around them are returned intact."""
    path = Path(path)
    rel = relpath(path, root)
    if not path.exists():
        return [], []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if data.endswith(b"\n") or not data:
        lines = lines[:-1]
    events: list[Event] = []
    problems: list[Problem] = []
    expected = path.stem if is_valid_name(path.stem) else None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        last = number == len(lines)
        try:
            parsed = json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))  # an editor's BOM is harmless
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if last:
                problems.append(Problem(rel, number, "torn-line",
                                        f"the last line is not a complete event (a write cut off by a crash?): {_reason(exc)}; "
                                        f"the {len(events)} event(s) before it are intact"))
            else:
                problems.append(Problem(rel, number, "bad-event", f"not a JSON event: {_reason(exc)}"))
            continue
        try:
            event = event_from_dict(parsed, expected)
        except (ValueError, TypeError) as exc:
            problems.append(Problem(rel, number, "bad-event", str(exc)))
            continue
        events.append(replace(event, line=number))
    return events, problems


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at column {exc.colno}"
    return str(exc)


# --------------------------------------------------------------------------- replay


def _coding_of(event: ApplyEvent) -> Coding:
    a = event.anchor
    return Coding(id=event.coding, coder=event.coder, code=event.code, source=event.source, start=a.start, end=a.end,
                  sentence=a.sentence, turn=a.turn, sha256=a.sha256, text=a.text, origin=event.origin,
                  memo=event.memo or None, at=event.at, reason=event.reason)


def _replay(events: list[Event]) -> tuple[dict[str, Coding], list[tuple[Event, str, str]]]:
    codings: dict[str, Coding] = {}
    issues: list[tuple[Event, str, str]] = []
    for event in events:
        if isinstance(event, ApplyEvent):
            if event.coding in codings:
                issues.append((event, "duplicate-coding", f"coding {event.coding} is applied again; the later one wins"))
            codings[event.coding] = _coding_of(event)
        elif isinstance(event, RemoveEvent):
            if codings.pop(event.coding, None) is None:
                issues.append((event, "unknown-coding", f"removes coding {event.coding}, which is not applied at that point"))
        elif isinstance(event, MemoEvent):
            if event.coding not in codings:
                issues.append((event, "unknown-coding", f"a memo for coding {event.coding}, which is not applied at that point"))
            else:
                codings[event.coding] = replace(codings[event.coding], memo=event.memo or None)
    return codings, issues


def replay(events: list[Event]) -> dict[str, Coding]:
    """The current codings after the events, in the order they were applied, by id."""
    return _replay(events)[0]


# --------------------------------------------------------------------------- anchoring


def locate(transcript: Transcript, start: int, end: int) -> tuple[str | None, str | None]:
    """(sentence id, turn id) of a span: the turn that holds its start, and the sentence that
    holds the whole span (``None`` when it spans sentences or lies outside any)."""
    turn = transcript.turn_at(start)
    if turn is None:
        return None, None
    sentence = next((s.id for s in turn.sentences if s.start <= start and end <= s.end), None)
    return sentence, turn.id


def _offsets_rule(start: object, end: object, size: int) -> str:
    """Which rule a pair of offsets breaks, in words."""
    if not (_is_int(start) and _is_int(end)):
        return "offsets are whole numbers"
    if start < 0 or end > size:  # type: ignore[operator]
        return f"its text has {size} characters (offsets 0..{size})"
    return "the start must be below the end"


def make_anchor(transcript: Transcript, start: int, end: int) -> Anchor:
    """The anchor of ``transcript.text[start:end]``; offsets outside the text are a UsageError."""
    if not (_is_int(start) and _is_int(end)) or not 0 <= start < end <= len(transcript.text):
        raise UsageError(f"offsets {start}..{end} are not a range of source {transcript.id!r}: "
                         f"{_offsets_rule(start, end, len(transcript.text))}")
    sentence, turn = locate(transcript, start, end)
    if turn is None:
        raise UsageError(f"offsets {start}..{end} of source {transcript.id!r} are not inside a speaker turn")
    return Anchor(start=start, end=end, sentence=sentence, turn=turn, sha256=transcript.sha256, text=transcript.text[start:end])


def _occurrences(text: str, needle: str) -> list[tuple[int, int]]:
    spans = []
    index = text.find(needle)
    while index >= 0 and needle:
        spans.append((index, index + len(needle)))
        index = text.find(needle, index + 1)
    if spans:
        return spans
    words = needle.split()
    if not words:
        return []
    pattern = re.compile(r"\s+".join(re.escape(w) for w in words))
    return [m.span() for m in pattern.finditer(text)]


def reanchor(coding: Coding, transcript: Transcript) -> Coding:
    """The coding against the source as it is now: unchanged if the source is the one it was
    made on; moved to its copied text if that is found exactly once (exactly, else ignoring
    whitespace) in the changed source (``re-anchored``); ``stale`` otherwise."""
    text = transcript.text
    if coding.sha256 == transcript.sha256 and 0 <= coding.start < coding.end <= len(text) \
            and text[coding.start:coding.end] == coding.text:
        return replace(coding, status="ok")
    spans = _occurrences(text, coding.text)
    if len(spans) != 1:
        return replace(coding, status="stale")
    start, end = spans[0]
    sentence, turn = locate(transcript, start, end)
    return replace(coding, start=start, end=end, sentence=sentence, turn=turn, sha256=transcript.sha256,
                   text=text[start:end], status="re-anchored")


# --------------------------------------------------------------------------- validation of new events


class _Sources:
    """The codebook and sources an event is checked against: from a loaded Study, or read
    from disk one source at a time (so one append does not segment the whole study)."""

    def __init__(self, study: Study | Path | str):
        if not isinstance(study, (str, os.PathLike)):
            self.root = Path(study.root)
            self.codebook: Codebook = study.codebook
            self._by_id: dict[str, Transcript | None] = {t.id: t for t in study.transcripts}
            self._complete = True
            return
        self.root = Path(study)
        if not (self.root / "codebook.yaml").is_file():
            raise UsageError(f"{str(self.root)!r} is not a study: it has no codebook.yaml")
        codebook, problems = load_codebook(self.root / "codebook.yaml")
        if codebook is None:
            raise DataError("the codebook cannot be read", problems)
        self.codebook = codebook
        self._by_id = {}
        self._complete = False

    def source(self, source_id: str) -> Transcript | None:
        if source_id in self._by_id or self._complete:
            return self._by_id.get(source_id)
        district, _, slug = source_id.partition("/")
        found = None
        if is_valid_name(district) and slug:
            for district_dir, path in iter_transcript_files(self.root / "transcripts"):
                if district_dir == district and path.name[: -len(path.suffix)] == slug:
                    found, _problems = load_transcript(path, self.root, district_dir)
                    break
        self._by_id[source_id] = found
        return found


def _unknown_code_message(code: str, codebook: Codebook) -> str:
    close = difflib.get_close_matches(code, list(codebook.codes), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; the codebook has {len(codebook.codes)} codes ({', '.join(list(codebook.codes)[:12])}{', ...' if len(codebook.codes) > 12 else ''})"
    return f"code {code!r} is not in the codebook{hint}"


def _anchor_problem(sources: _Sources, code: str, source_id: str, anchor: Anchor | None) -> tuple[str, str] | None:
    """(problem type, message) if a coding of ``code`` at ``anchor`` cannot be written now
    (with no anchor, only the code and the source are checked)."""
    if code not in sources.codebook.codes:
        return "unknown-code", _unknown_code_message(code, sources.codebook)
    transcript = sources.source(source_id)
    if transcript is None:
        return "unknown-source", f"source {source_id!r} is not in the study (ids look like DISTRICT/slug, e.g. SCV35/teacher-focus-group)"
    if anchor is None:
        return None
    size = len(transcript.text)
    if not 0 <= anchor.start < anchor.end <= size:
        return "offsets-out-of-range", (f"offsets {anchor.start}..{anchor.end} are not a range of source {source_id!r}: "
                                        f"{_offsets_rule(anchor.start, anchor.end, size)}")
    if anchor.sha256 != transcript.sha256:
        return "changed-source", (f"the anchor was made on another version of {source_id!r} (SHA-256 {anchor.sha256[:12]}..., "
                                  f"now {transcript.sha256[:12]}...); reload the source and code it again")
    if transcript.text[anchor.start:anchor.end] != anchor.text:
        return "anchor-mismatch", (f"the copied text {_short(anchor.text)!r} is not what {source_id!r} says at "
                                   f"{anchor.start}..{anchor.end} ({_short(transcript.text[anchor.start:anchor.end])!r})")
    if anchor.turn is not None and transcript.turn(anchor.turn) is None:
        return "anchor-mismatch", f"turn {anchor.turn!r} is not a turn of {source_id!r}"
    if anchor.sentence is not None and not any(s.id == anchor.sentence for s in transcript.sentences):
        return "anchor-mismatch", f"sentence {anchor.sentence!r} is not a sentence of {source_id!r}"
    return None


def _short(text: str, size: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 3] + "..."


def append_event(study: Study | Path | str, event: Event) -> Event:
    """Check ``event`` and append it to its coder's file as one line (one write, fsynced, under
    the file's lock). A bad event raises UsageError and nothing is written."""
    sources = _Sources(study)
    path = coder_path(sources.root, event.coder)
    format_time(event.at)
    if isinstance(event, (ApplyEvent, RejectEvent)):
        found = _anchor_problem(sources, event.code, event.source, event.anchor)
        if found:
            raise UsageError(f"{event.kind} refused, nothing written: {found[1]}")
    if isinstance(event, ApplyEvent) and not ORIGIN_RE.match(event.origin):
        raise UsageError(f"origin {event.origin!r} must be human, auto:<pattern id> or consensus:<coder>,<coder>")
    if isinstance(event, (ApplyEvent, RemoveEvent, MemoEvent)) and not CODING_ID_RE.match(event.coding):
        raise UsageError(f"coding id {event.coding!r} must be 'c-' and 12 hex digits")
    data = (json.dumps(event.to_dict(), ensure_ascii=False) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(lock_path(path)), timeout=LOCK_TIMEOUT):
            if isinstance(event, (RemoveEvent, MemoEvent)):
                events, _ = read_events(path)
                if event.coding not in replay(events):
                    raise UsageError(f"{event.kind} refused, nothing written: coder {event.coder!r} has no coding {event.coding}")
            _append_line(path, data)
    except Timeout:
        raise DataError(f"{relpath(path, sources.root)} is locked by another process ({lock_path(path).name}); "
                        "try again when it has finished") from None
    log.info("%s: %s %s", relpath(path, sources.root), event.kind, getattr(event, "coding", getattr(event, "suggestion", "")))
    return replace(event, line=None)


def _append_line(path: Path, data: bytes) -> None:
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    # keep a torn last line on a line of its own: it stays reported, the new event stays whole
                    log.warning("%s ends with an incomplete line; it is kept for inspection and reported by validate", path)
                    data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- what a coder does


def _current(study: Study | Path | str, coder: str) -> dict[str, Coding]:
    events, _ = read_events(coder_path(study, coder))
    return replay(events)


def apply_code(study: Study, coder: str, code: str, source_id: str, start: int, end: int, memo: str | None = None,
               origin: str = "human", reason: str | None = None, *, at: datetime | str | None = None) -> Coding:
    """Code ``source.text[start:end]``; the sentence and turn ids, SHA-256 and text are filled in
    from the transcript. Coding the same span with the same code again returns the existing coding."""
    check_name(coder, "coder")
    if code not in study.codebook.codes:
        raise UsageError(f"apply refused, nothing written: {_unknown_code_message(code, study.codebook)}")
    transcript = study.source(source_id)
    anchor = make_anchor(transcript, start, end)
    for coding in _current(study, coder).values():
        if (coding.code, coding.source, coding.start, coding.end) == (code, source_id, start, end):
            log.info("coder %s already has %s on %s %d..%d (%s)", coder, code, source_id, start, end, coding.id)
            return coding
    when = format_time(at)
    event = ApplyEvent(coder=coder, at=when, coding=new_coding_id(coder, code, source_id, start, end, when, origin),
                       code=code, source=source_id, anchor=anchor, origin=origin, memo=memo or None, reason=reason)
    append_event(study, event)
    return _coding_of(event)


def _find_sentence(study: Study, sentence_id: str):
    transcript = study.source(sentence_id.split("#", 1)[0])
    for sentence in transcript.sentences:
        if sentence.id == sentence_id:
            return transcript, sentence
    raise UsageError(f"unknown sentence {sentence_id!r} (see 'casestudy segments' for sentence ids)")


def apply_code_to_sentence(study: Study, coder: str, code: str, sentence_id: str, memo: str | None = None,
                           origin: str = "human", reason: str | None = None, *, at: datetime | str | None = None) -> Coding:
    """Code one whole sentence, by its id (``SCV35/teacher-focus-group#t004.s02``)."""
    transcript, sentence = _find_sentence(study, sentence_id)
    return apply_code(study, coder, code, transcript.id, sentence.start, sentence.end, memo, origin, reason, at=at)


def apply_code_to_turn(study: Study, coder: str, code: str, turn_id: str, memo: str | None = None,
                       origin: str = "human", reason: str | None = None, *, at: datetime | str | None = None) -> Coding:
    """Code one whole speaker turn, by its id (``SCV35/teacher-focus-group#t004``)."""
    transcript = study.source(turn_id.split("#", 1)[0])
    turn = transcript.turn(turn_id)
    if turn is None:
        raise UsageError(f"unknown turn {turn_id!r}")
    return apply_code(study, coder, code, transcript.id, turn.start, turn.end, memo, origin, reason, at=at)


def remove_coding(study: Study | Path | str, coder: str, coding_id: str, *, at: datetime | str | None = None) -> RemoveEvent:
    """Remove one of the coder's codings (the apply stays in the log; replay drops the coding)."""
    event = RemoveEvent(coder=check_name(coder, "coder"), at=format_time(at), coding=coding_id)
    return append_event(study, event)  # type: ignore[return-value]


def edit_memo(study: Study | Path | str, coder: str, coding_id: str, memo: str, *, at: datetime | str | None = None) -> MemoEvent:
    """Replace the memo of one of the coder's codings (an empty memo clears it)."""
    if not isinstance(memo, str):
        raise UsageError("a memo must be text")
    event = MemoEvent(coder=check_name(coder, "coder"), at=format_time(at), coding=coding_id, memo=memo)
    return append_event(study, event)  # type: ignore[return-value]


# --------------------------------------------------------------------------- suggestions


def suggestions_path(study: Study | Path | str, suggester: str = "auto") -> Path:
    check_name(suggester, "suggester")
    return _root_of(study) / SUGGESTIONS_DIR / f"{suggester}.jsonl"


def _check_suggestion(suggestion: Any) -> tuple[str, str, str, Anchor, str]:
    if not isinstance(suggestion, dict):
        raise UsageError("a suggestion is a mapping with id, code, source, anchor and pattern")
    missing = [k for k in ("id", "code", "source", "anchor", "pattern") if not suggestion.get(k)]
    if missing:
        raise UsageError(f"not a suggestion: it has no {', '.join(missing)}")
    try:
        anchor = Anchor.from_dict(suggestion["anchor"])
    except ValueError as exc:
        raise UsageError(f"suggestion {suggestion['id']}: {exc}") from None
    return str(suggestion["id"]), str(suggestion["code"]), str(suggestion["source"]), anchor, str(suggestion["pattern"])


def load_suggestions(study: Study | Path | str, suggester: str = "auto", source: str | None = None) -> list[dict[str, Any]]:
    """The suggestions in ``suggestions/<suggester>.jsonl`` (none if it does not exist), optionally
    for one source. Unreadable lines are logged with file and line and skipped (the file is derived:
    re-run ``casestudy autocode`` to rebuild it)."""
    path = suggestions_path(study, suggester)
    if not path.exists():
        return []
    found = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            suggestion = json.loads(raw)
            _check_suggestion(suggestion)
            if suggestion.get("v", FORMAT_VERSION) != FORMAT_VERSION:
                raise UsageError(f"format version {suggestion.get('v')!r}; this version reads v={FORMAT_VERSION}")
        except (json.JSONDecodeError, UsageError) as exc:
            log.warning("%s:%d: skipped a suggestion that cannot be read (%s)", relpath(path, _root_of(study)), number, exc)
            continue
        if source is None or suggestion["source"] == source:
            found.append(suggestion)
    return found


def pending_suggestions(study: Study | Path | str, coder: str, suggester: str = "auto",
                        source: str | None = None) -> list[dict[str, Any]]:
    """Suggestions the coder has neither accepted nor rejected, nor already coded the same way."""
    events, _ = read_events(coder_path(study, coder))
    handled = {e.suggestion for e in events if isinstance(e, (AcceptEvent, RejectEvent))}
    coded = {(c.code, c.source, c.start, c.end) for c in replay(events).values()}
    return [s for s in load_suggestions(study, suggester, source)
            if s["id"] not in handled
            and (s["code"], s["source"], s["anchor"]["start"], s["anchor"]["end"]) not in coded]


def accept_suggestion(study: Study | Path | str, coder: str, suggestion: dict[str, Any], memo: str | None = None,
                      *, at: datetime | str | None = None) -> Coding:
    """Turn a suggestion into one of the coder's codings (origin ``auto:<pattern id>``)."""
    check_name(coder, "coder")
    suggestion_id, code, source, anchor, pattern = _check_suggestion(suggestion)
    when = format_time(at)
    event = AcceptEvent(coder=coder, at=when, coding=new_coding_id(coder, code, source, anchor.start, anchor.end, when, suggestion_id),
                        code=code, source=source, anchor=anchor, origin=f"auto:{pattern}", memo=memo or None,
                        suggestion=suggestion_id)
    append_event(study, event)
    return _coding_of(event)


def reject_suggestion(study: Study | Path | str, coder: str, suggestion: dict[str, Any], reason: str | None = None,
                      *, at: datetime | str | None = None) -> RejectEvent:
    """Record that the coder rejected a suggestion (it stays out of the codings)."""
    check_name(coder, "coder")
    suggestion_id, code, source, anchor, _pattern = _check_suggestion(suggestion)
    event = RejectEvent(coder=coder, at=format_time(at), suggestion=suggestion_id, code=code, source=source,
                        anchor=anchor, reason=reason or None)
    return append_event(study, event)  # type: ignore[return-value]


def suggestions_as_codings(study: Study, suggester: str = "auto") -> list[Coding]:
    """Suggestions read as if they were a coder's codings (for counting what auto-coding proposes)."""
    codings = []
    for s in load_suggestions(study, suggester):
        _sid, code, source, anchor, pattern = _check_suggestion(s)
        coding = Coding(id=str(s["id"]), coder=suggester, code=code, source=source, start=anchor.start, end=anchor.end,
                        sentence=anchor.sentence, turn=anchor.turn, sha256=anchor.sha256, text=anchor.text,
                        origin=f"auto:{pattern}", memo=None, at=str(s.get("at") or ""))
        transcript = next((t for t in study.transcripts if t.id == source), None)
        codings.append(reanchor(coding, transcript) if transcript is not None else replace(coding, status="stale"))
    return codings


# --------------------------------------------------------------------------- loading and validating


def load_codings(study: Study, coder: str) -> list[Coding]:
    """The coder's current codings, re-anchored against the sources as they are now. Lines
    that cannot be read are logged (``casestudy validate`` lists them)."""
    path = coder_path(study, coder)
    if not path.exists():
        known = ", ".join(list_coders(study)) or "none yet"
        raise UsageError(f"no coder {coder!r}: {relpath(path, study.root)} does not exist (coders: {known})")
    events, problems = read_events(path, study.root)
    for problem in problems:
        log.warning("%s", problem)
    by_id = {t.id: t for t in study.transcripts}
    return [reanchor(c, by_id[c.source]) if c.source in by_id else replace(c, status="stale")
            for c in replay(events).values()]


def validate_codings(study: Study) -> Iterator[Problem]:
    """Every problem in every coder file: unreadable lines (``torn-line``, ``bad-event``),
    ``unknown-code``, ``unknown-source``, ``offsets-out-of-range``, ``anchor-mismatch``,
    ``unknown-coding``, and ``stale-coding`` (a warning) for codings that cannot be re-anchored."""
    folder = study.root / CODINGS_DIR
    if folder.is_dir():
        for path in sorted(folder.glob("*.jsonl")):
            if not path.name.startswith(".") and not is_valid_name(path.stem):
                yield Problem(relpath(path, study.root), None, "bad-coder-name",
                              f"{path.name!r}: a coder file is named <coder>.jsonl with letters, digits, '-' and '_'")
    sources = _Sources(study)
    by_id = {t.id: t for t in study.transcripts}
    for coder in list_coders(study):
        path = coder_path(study, coder)
        rel = relpath(path, study.root)
        events, problems = read_events(path, study.root)
        yield from problems
        for event in events:
            if isinstance(event, (ApplyEvent, RejectEvent)):
                transcript = by_id.get(event.source)
                if transcript is not None and transcript.sha256 != event.anchor.sha256:
                    found = _anchor_problem(sources, event.code, event.source, None)  # re-anchored below
                else:
                    found = _anchor_problem(sources, event.code, event.source, event.anchor)
                if found:
                    yield Problem(rel, event.line, found[0], found[1])
        codings, issues = _replay(events)
        for event, kind, message in issues:
            yield Problem(rel, event.line, kind, message, "warning" if kind == "duplicate-coding" else "error")
        lines = {e.coding: e.line for e in events if isinstance(e, ApplyEvent)}
        for coding in codings.values():
            transcript = by_id.get(coding.source)
            if transcript is None or coding.sha256 == transcript.sha256:
                continue  # unknown sources and bad offsets are reported above
            if reanchor(coding, transcript).status == "stale":
                yield Problem(rel, lines.get(coding.id), "stale-coding",
                              f"coding {coding.id} ({coding.code}) of {coding.source}: the source changed and the coded text "
                              f"{_short(coding.text)!r} is not found there exactly once", "warning")
