"""Keyword-in-context search over the study's sentences, backed by SQLite FTS5.

The index is ``<study>/.casestudy/index.sqlite``: derived, rebuildable, never committed (the
folder carries its own ``.gitignore``). It records every source's SHA-256 and the metadata it
indexed (district, source type, speakers' roles, sentence boundaries); when any of that
differs from the study as loaded now, when a source is added or removed, or when the file is
missing or not a readable index, it is rebuilt before searching. A build happens in memory and replaces the file
atomically, so a reader never sees half an index.

Queries are never handed to FTS5 as typed. :func:`parse_query` turns the user's text into
quoted terms: text between matched double quotes is a phrase (``"help stick"``), a word
ending in ``*`` is a prefix (``assess*``), and everything else (``NEAR``, ``AND``,
parentheses, a lone ``"``) is a literal word, so no input can raise an FTS syntax error. All
terms must occur in the sentence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import coding
from .errors import UsageError, relpath
from .files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from .study import Study

log = logging.getLogger("casestudy")

INDEX_DIR = ".casestudy"
INDEX_NAME = "index.sqlite"
SCHEMA_VERSION = "1"
TOKENIZER = "unicode61 remove_diacritics 2"
DEFAULT_LIMIT = 50
DEFAULT_WIDTH = 40
_OPEN, _CLOSE = "\x02", "\x03"  # highlight markers: control characters never found in a transcript's text
_WORD = re.compile(r"[^\W_]")  # a term FTS5's unicode61 tokenizer keeps a token of


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class Term:
    """One part of a query: a ``word``, a ``prefix`` (``assess*``) or a ``phrase``."""

    kind: str
    text: str

    def fts(self) -> str:
        quoted = '"' + self.text.replace('"', '""') + '"'
        return quoted + "*" if self.kind == "prefix" else quoted


_QUERY_PART = re.compile(r'"(?P<phrase>[^"]*)"(?P<star>\*?)|(?P<word>[^\s"]+)')
_LONE_QUOTE = "\uffff"  # stands for an unbalanced quote while the query is split


def parse_query(query: str) -> list[Term]:
    """The user's query as safe terms (see the module docstring); terms with no letter or
    digit (a lone ``*``, ``(``, ``-``) are dropped because FTS5 would find no word in them."""
    terms: list[Term] = []
    text = query.replace("\u201c", '"').replace("\u201d", '"')  # smart quotes typed or pasted from Word
    if text.count('"') % 2:  # the last quote has no partner: it is a literal character of its word
        cut = text.rfind('"')
        text = text[:cut] + _LONE_QUOTE + text[cut + 1:]
    for match in _QUERY_PART.finditer(text):
        if match.group("phrase") is not None:
            phrase = " ".join(match.group("phrase").split())
            kind = "prefix" if match.group("star") else "phrase"
            if _WORD.search(phrase):
                terms.append(Term(kind if " " in phrase or kind == "prefix" else "word", phrase))
        elif match.group("word") is not None:
            word = match.group("word").replace(_LONE_QUOTE, '"')
            if word.endswith("*") and _WORD.search(word.rstrip("*")):
                terms.append(Term("prefix", word.rstrip("*")))
            elif _WORD.search(word):
                terms.append(Term("word", word))
    return terms


def fts_expression(terms: Iterable[Term]) -> str:
    return " ".join(term.fts() for term in terms)


# --------------------------------------------------------------------------- the index


def index_path(study: Study) -> Path:
    return Path(study.root) / INDEX_DIR / INDEX_NAME


def _fingerprints(study: Study) -> dict[str, str]:
    """Per source: its file's SHA-256 and a hash of the metadata the index stores and of the
    sentence boundaries (so a change in segmentation rebuilds the index too)."""
    out = {}
    for t in study.transcripts:
        roles = sorted({(turn.speaker, turn.role or "") for turn in t.turns})
        spans = [(s.start, s.end) for s in t.sentences]
        meta = json.dumps([t.path, t.district, t.source_type, t.format, roles, spans], ensure_ascii=False)
        out[t.id] = t.sha256 + ":" + hashlib.sha256(meta.encode()).hexdigest()[:16]
    return out


def _connect_ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def stale_reason(study: Study) -> str | None:
    """Why the index must be rebuilt before searching, or None when it is current."""
    path = index_path(study)
    if not path.exists():
        return "there is no index yet"
    try:
        with closing(_connect_ro(path)) as db:
            version = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            recorded = dict(db.execute("SELECT id, fingerprint FROM sources"))
            db.execute("SELECT count(*) FROM sentences").fetchone()
    except sqlite3.Error as exc:
        return f"the index cannot be read ({exc})"
    if version is None or version[0] != SCHEMA_VERSION:
        return "the index was built by another version"
    expected = _fingerprints(study)
    changed = sorted(k for k in expected if k in recorded and recorded[k] != expected[k])
    added = sorted(set(expected) - set(recorded))
    removed = sorted(set(recorded) - set(expected))
    if changed or added or removed:
        parts = [f"{label}: {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}"
                 for label, ids in (("changed", changed), ("new", added), ("removed", removed)) if ids]
        return "sources changed since the index was built (" + "; ".join(parts) + ")"
    return None


def build_index(study: Study) -> Path:
    """Build the index of every sentence of the study and put it in place atomically."""
    path = index_path(study)
    with closing(sqlite3.connect(":memory:")) as db:
        db.executescript(f"""
            CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE sources(id TEXT PRIMARY KEY, ord INTEGER, path TEXT, fingerprint TEXT,
                                 district TEXT, source_type TEXT, format TEXT);
            CREATE TABLE turns(id TEXT PRIMARY KEY, source TEXT, start INTEGER, text TEXT);
            CREATE VIRTUAL TABLE sentences USING fts5(
                text, sentence UNINDEXED, turn UNINDEXED, source UNINDEXED, ord UNINDEXED,
                district UNINDEXED, source_type UNINDEXED, speaker UNINDEXED, role UNINDEXED,
                line UNINDEXED, start UNINDEXED, "end" UNINDEXED, tokenize = '{TOKENIZER}');
        """)
        db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        fingerprints = _fingerprints(study)
        for order, t in enumerate(study.transcripts):
            db.execute("INSERT INTO sources VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (t.id, order, t.path, fingerprints[t.id], t.district, t.source_type, t.format))
            db.executemany("INSERT INTO turns VALUES (?, ?, ?, ?)", ((turn.id, t.id, turn.start, turn.text) for turn in t.turns))
            db.executemany("INSERT INTO sentences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (
                (s.text, s.id, turn.id, t.id, order, t.district, t.source_type, turn.speaker, turn.role, s.line, s.start, s.end)
                for turn in t.turns for s in turn.sentences))
        db.execute("INSERT INTO sentences(sentences) VALUES ('optimize')")
        db.commit()
        data = db.serialize()
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / ".gitignore").exists():
        atomic_write_text(folder / ".gitignore", "# derived files of casestudy: rebuilt when needed, never committed\n*\n")
    atomic_write_bytes(path, data)
    log.info("%s: indexed %d sources", relpath(path, study.root), len(study.transcripts))
    return path


def ensure_index(study: Study) -> Path:
    """The index path, after rebuilding the index if it is missing, unreadable or stale."""
    reason = stale_reason(study)
    if reason is not None:
        log.info("rebuilding the search index: %s", reason)
        build_index(study)
    return index_path(study)


# --------------------------------------------------------------------------- searching


@dataclass(frozen=True)
class Hit:
    """One sentence that matches, as a keyword-in-context line. ``start``/``end`` are the
    first match's offsets in the source's text; ``line`` is its line in the source file."""

    source: str
    source_type: str
    district: str
    speaker: str
    role: str | None
    line: int
    sentence: str
    start: int
    end: int
    left: str
    match: str
    right: str

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "source_type": self.source_type, "district": self.district, "speaker": self.speaker,
                "role": self.role, "line": self.line, "left": self.left, "match": self.match, "right": self.right,
                "sentence": self.sentence, "start": self.start, "end": self.end}


@dataclass(frozen=True)
class SearchResult:
    query: str
    expression: str  # what was handed to FTS5
    total: int  # matching sentences, before the limit
    hits: tuple[Hit, ...]


def coded_sentences(study: Study, code: str, coder: str | None = None) -> set[str]:
    """Ids of the sentences that a coding of ``code`` overlaps, by one coder or by any coder
    with a file in ``codings/``. Codings that cannot be re-anchored (``stale``) are left out."""
    if code not in study.codebook.codes:
        known = ", ".join(list(study.codebook.codes)[:15])
        raise UsageError(f"code {code!r} is not in the codebook (codes: {known}{', ...' if len(study.codebook.codes) > 15 else ''})")
    coders = [coder] if coder is not None else coding.list_coders(study)
    if not coders:
        log.warning("no coder has a file in codings/ yet: no sentence is coded %s", code)
    by_id = {t.id: t for t in study.transcripts}
    starts: dict[str, list[int]] = {}
    found: set[str] = set()
    for name in coders:
        for c in coding.load_codings(study, name):
            if c.code != code or c.status == "stale" or c.source not in by_id:
                continue
            sentences = list(by_id[c.source].sentences)
            keys = starts.setdefault(c.source, [s.start for s in sentences])
            index = max(0, bisect_right(keys, c.start) - 1)
            while index < len(sentences) and sentences[index].start < c.end:
                if sentences[index].end > c.start:
                    found.add(sentences[index].id)
                index += 1
    return found


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def search(study: Study, query: str, *, district: str | None = None, source_type: str | None = None,
           code: str | None = None, coder: str | None = None, limit: int | None = DEFAULT_LIMIT,
           width: int = DEFAULT_WIDTH) -> SearchResult:
    """Sentences matching ``query``, in text order (sessions in study order), as KWIC lines
    with ``width`` characters of context on each side taken from the speaker's turn."""
    terms = parse_query(query)
    if not terms:
        raise UsageError(f"nothing to search for in {query!r}: give at least one word (letters or digits)")
    if district is not None:
        study.district(district)
    if source_type is not None and source_type not in study.config.source_types:
        raise UsageError(f"unknown source type {source_type!r}; study.yaml lists: {', '.join(study.config.source_types)}")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    if coder is not None and code is None:
        raise UsageError("--coder only narrows --code; give the code too")
    allowed = coded_sentences(study, code, coder) if code is not None else None
    expression = fts_expression(terms)
    ensure_index(study)
    try:
        return _query(study, query, expression, district, source_type, allowed, limit, width)
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:  # only a damaged file ("not a database", "malformed")
            raise
        # damaged after the check (another process, a disk error): rebuild once
        log.warning("the search index could not be read (%s); rebuilding it", exc)
        build_index(study)
        return _query(study, query, expression, district, source_type, allowed, limit, width)


def _query(study: Study, query: str, expression: str, district: str | None, source_type: str | None,
           allowed: set[str] | None, limit: int | None, width: int) -> SearchResult:
    where = ["sentences MATCH ?"]
    params: list[Any] = [expression]
    if district is not None:
        where.append("sentences.district = ?")
        params.append(district)
    if source_type is not None:
        where.append("sentences.source_type = ?")
        params.append(source_type)
    with closing(_connect_ro(index_path(study))) as db:
        if allowed is not None:
            db.execute("CREATE TEMP TABLE allowed(id TEXT PRIMARY KEY)")
            db.executemany("INSERT OR IGNORE INTO allowed VALUES (?)", ((sid,) for sid in allowed))
            where.append("sentences.sentence IN (SELECT id FROM temp.allowed)")
        condition = " AND ".join(where)
        total = db.execute(f"SELECT count(*) FROM sentences WHERE {condition}", params).fetchone()[0]
        rows = db.execute(
            f"""SELECT sentences.source, sentences.source_type, sentences.district, sentences.speaker, sentences.role,
                       sentences.line, sentences.sentence, sentences.start, sentences.text,
                       highlight(sentences, 0, '{_OPEN}', '{_CLOSE}'), turns.start, turns.text
                FROM sentences JOIN turns ON turns.id = sentences.turn
                WHERE {condition} ORDER BY sentences.ord, sentences.start LIMIT ?""",
            [*params, -1 if limit is None else limit]).fetchall()
    hits = []
    for source, stype, dist, speaker, role, line, sentence, s_start, s_text, marked, t_start, t_text in rows:
        first = marked.find(_OPEN)
        if first < 0:  # cannot happen for a row FTS5 matched; show the whole sentence
            first, last = 0, len(s_text)
        else:
            last = marked.find(_CLOSE, first) - 1
        in_turn = s_start - t_start
        hits.append(Hit(
            source=source, source_type=stype, district=dist, speaker=speaker, role=role,
            line=line + s_text.count("\n", 0, first), sentence=sentence, start=s_start + first, end=s_start + last,
            left=_flat(t_text[max(0, in_turn + first - width): in_turn + first]).lstrip(),
            match=_flat(s_text[first:last]),
            right=_flat(t_text[in_turn + last: in_turn + last + width]).rstrip(),
        ))
    return SearchResult(query=query, expression=expression, total=total, hits=tuple(hits))


def hit_rows(result: SearchResult) -> list[dict[str, Any]]:
    return [hit.to_dict() for hit in result.hits]
