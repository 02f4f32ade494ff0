"""Provenance: prove that every quote stands in its source, and say where.

**Matching rules** (as reports use them):

- ``[...]`` square brackets mark words the author inserted or replaced (``[students] have a
  menu``, ``learn[ed]``); they match any short run of source text (at most
  :data:`BRACKET_CHARS` characters), including none. A bracket at the start or end of a quote
  matches the rest of the word it is attached to, or nothing.
- ``...`` or ``…`` (also ``[...]``) marks words left out, within the same turn.
- Matching ignores case at the quote's start, the kind of quotation marks and apostrophes
  (straight or curly), the kind and spacing of dashes (``--``, ``—``, `` – ``), and runs of white
  space; a trailing full stop may be added or dropped. Nothing else may differ: a quote starts
  and ends on word boundaries, and falls within one turn of one speaker.

**How it is fast**: each source is normalised once (per turn, joined by ``\\n`` so no match can
cross a turn), keeping a sparse offset map back to the canonical text. A quote is found with
``str.find`` on its runs of words (brackets and ellipses join the runs, checked by position),
never with a regular expression compiled per quote. Only failing quotes pay for more: other
sessions are searched only if they hold every whole word and every pair of neighbouring words
of the quote (word sets built on the first failure), and the closest passage comes from
rapidfuzz's ``partial_ratio_alignment`` on the few turns of the quote's own source that share
the most words with it, fitted to the quote's words with difflib, which also names the exact
differences. The cyclic garbage collector is paused while the audit runs (it makes many small
objects and no cycles; with a large study loaded, each collection walked all of it).

**Markup**: :func:`quote_html` and :func:`footnote_html` write each quote of a report with its
source id, offsets and SHA-256 as data attributes; :func:`audit_report` reads them back.
"""

from __future__ import annotations

import difflib
import heapq
import html
import json
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from .perf import gc_paused
from .errors import Problem, UsageError, relpath
from .files import atomic_write_text
from .findings import Finding, ParsedQuote, Quote, QuoteSyntaxError, is_unusable, parse_quote, read_findings, turn_of
from .study import Study
from .transcripts import Transcript

BRACKET_CHARS = 40  # the longest run of source text one bracket may stand for
OK_STATUSES = ("verbatim", "verbatim-with-marked-edits")
STATUSES = OK_STATUSES + (
    "not-found", "wrong-source", "speaker-mismatch", "source-changed", "ambiguous", "turn-mismatch",
    "unknown-source", "malformed", "offsets-mismatch", "footnote-mismatch",
)
CANDIDATE_TURNS = 4  # turns of the own source scored with rapidfuzz for a failing quote

# --------------------------------------------------------------------------- normalisation

_QUOTE_CHARS = "\"“”„‟«»〝〞＂"
_APOSTROPHES = "'‘’‚‛′`´"
_DASHES = "‐‑‒–—―−﹘﹣－"
_TRANSLATE = str.maketrans({**{c: '"' for c in _QUOTE_CHARS}, **{c: "'" for c in _APOSTROPHES}, **{c: "-" for c in _DASHES}})
# every run that normalisation changes: dashes with space or repeated, white space that is
# not one plain space. A lone hyphen and a single space are left alone (and cost nothing).
_CHANGE_RE = re.compile(r"\s*-{2,}\s*|\s+-+\s*|-+\s+|\s{2,}|[^\S ]")
_TOKEN_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def normalize(text: str) -> str:
    """The form quotes and sources are compared in (see the module docstring)."""
    return _CHANGE_RE.sub(lambda m: "-" if "-" in m.group() else " ", text.translate(_TRANSLATE))


def _normalize_mapped(text: str, base_n: int, base_o: int, bp_n: list[int], bp_o: list[int]) -> str:
    """Normalise ``text`` (which starts at canonical offset ``base_o`` and will start at
    normalised offset ``base_n``), appending breakpoints of the offset map."""
    text = text.translate(_TRANSLATE)
    bp_n.append(base_n)
    bp_o.append(base_o)
    parts: list[str] = []
    last = 0
    n = base_n
    for m in _CHANGE_RE.finditer(text):
        s, e = m.span()
        parts.append(text[last:s])
        n += s - last
        parts.append("-" if "-" in m.group() else " ")
        bp_n.append(n)
        bp_o.append(base_o + s)
        n += 1
        bp_n.append(n)
        bp_o.append(base_o + e)
        last = e
    parts.append(text[last:])
    return "".join(parts)


class SourceIndex:
    """A source's turns, normalised once, with the map back to canonical offsets."""

    def __init__(self, transcript: Transcript):
        bp_n: list[int] = []
        bp_o: list[int] = []
        chunks: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        n = 0
        text = transcript.text
        for turn in transcript.turns:
            starts.append(n)
            chunk = _normalize_mapped(text[turn.start:turn.end], n, turn.start, bp_n, bp_o)
            chunks.append(chunk)
            n += len(chunk)
            ends.append(n)
            n += 1  # the "\n" between turns: no match crosses it
        self.text = "\n".join(chunks)
        self.turn_starts = starts
        self.turn_ends = ends
        self.turn_orig_ends = [t.end for t in transcript.turns]
        self.bp_n = bp_n
        self.bp_o = bp_o
        self._lower: str | None = None
        self._turn_words: list[frozenset[str]] | None = None
        self._tokens: tuple[frozenset[str], frozenset[tuple[str, str]]] | None = None

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

    @property
    def turn_words(self) -> list[frozenset[str]]:
        """Each turn's words (lowercase), to pick the turns a failing quote resembles."""
        if self._turn_words is None:
            low = self.lower
            self._turn_words = [frozenset(low[s:e].split()) for s, e in zip(self.turn_starts, self.turn_ends, strict=True)]
        return self._turn_words

    def tokens(self) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
        """The source's tokens and pairs of neighbouring tokens (lowercase, split at white space)."""
        if self._tokens is None:
            words = self.lower.split()
            self._tokens = (frozenset(words), frozenset(zip(words, words[1:])))
        return self._tokens

    def turn_index(self, n: int) -> int:
        return bisect_right(self.turn_starts, n) - 1

    def original(self, n: int) -> int:
        """Canonical offset of normalised offset ``n`` (for an end offset, the end of a run)."""
        i = bisect_right(self.bp_n, n) - 1
        return self.bp_o[i] + (n - self.bp_n[i])

    def original_span(self, ns: int, ne: int) -> tuple[int, int]:
        t = self.turn_index(ns)
        start = self.original(ns)
        end = self.turn_orig_ends[t] if ne >= self.turn_ends[t] else self.original(ne)
        return start, end


_INDEX_CACHE: dict[tuple[str, str, int, int], SourceIndex] = {}
_INDEX_CACHE_MAX = 4096


def source_index(transcript: Transcript) -> SourceIndex:
    """The (cached) index of a source. The key includes the file's SHA-256, so a changed file
    is indexed afresh."""
    key = (transcript.id, transcript.sha256, len(transcript.text), len(transcript.turns))
    index = _INDEX_CACHE.get(key)
    if index is None:
        if len(_INDEX_CACHE) >= _INDEX_CACHE_MAX:
            _INDEX_CACHE.clear()
        index = _INDEX_CACHE[key] = SourceIndex(transcript)
    return index


# --------------------------------------------------------------------------- quote plans


@dataclass(frozen=True)
class Segment:
    """A run of the quote's own words, and how it joins the run before it."""

    text: str  # normalised
    variants: tuple[str, ...]  # the first segment may differ in case at its first letter
    word_start: bool  # must not start inside a word
    word_end: bool  # must not end inside a word
    join: str = ""  # "" (first), "gap" (an ellipsis) or "bracket"
    space_before: bool = False  # bracket joins: white space between the bracket and its neighbours
    space_after: bool = False
    max_run: int = BRACKET_CHARS


@dataclass(frozen=True)
class Plan:
    """How to look for one quote in a normalised source (built once per quote)."""

    parsed: ParsedQuote
    segments: tuple[Segment, ...]
    lead_word: bool  # a bracket attached to the first word ([T]he): the match starts at the word's start
    tail_word: bool  # a bracket attached to the last word (learn[ed]): the match ends at the word's end
    trailing_dot: bool
    query: str  # the quote's own words, normalised (for the closest passage)
    tokens: frozenset[str]  # whole tokens (lowercase) the source must contain
    bigrams: frozenset[tuple[str, str]]  # pairs of neighbouring whole tokens

    @property
    def edited(self) -> bool:
        return self.parsed.edited


def _case_variants(text: str) -> tuple[str, ...]:
    first = text[:1]
    if first and first.lower() != first.upper():
        return tuple(dict.fromkeys((first.lower() + text[1:], first.upper() + text[1:], text)))
    return (text,)


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


_PLANS: dict[str, Plan] = {}


def plan_quote(text: str | ParsedQuote) -> Plan:
    """Compile a quote for :func:`find_spans`; raises :class:`QuoteSyntaxError` if malformed."""
    key = text.text if isinstance(text, ParsedQuote) else text
    plan = _PLANS.get(key)
    if plan is None:
        plan = _plan(text if isinstance(text, ParsedQuote) else parse_quote(text))
        if len(_PLANS) > 65536:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def _plan(parsed: ParsedQuote) -> Plan:
    pieces = [p for p in parsed.pieces if p.kind != "text" or p.text.strip() or p.text == ""]
    while pieces and pieces[0].kind == "gap":
        pieces.pop(0)
    while pieces and pieces[-1].kind == "gap":
        pieces.pop()
    texts = [i for i, p in enumerate(pieces) if p.kind == "text"]
    norm = {i: normalize(pieces[i].text) for i in texts}
    trailing_dot = False
    if pieces and pieces[-1].kind == "text":
        last = len(pieces) - 1
        stripped = norm[last].rstrip()
        if stripped.endswith(".") and not stripped.endswith(".."):
            norm[last] = stripped[:-1]
            trailing_dot = True
    lead_word = bool(pieces) and pieces[0].kind == "bracket" and len(texts) > 0 and texts[0] == 1 and not norm[1][:1].isspace()
    tail_word = (bool(pieces) and pieces[-1].kind == "bracket" and len(texts) > 0 and texts[-1] == len(pieces) - 2
                 and not norm[texts[-1]][-1:].isspace())
    segments: list[Segment] = []
    tokens: set[str] = set()
    bigrams: set[tuple[str, str]] = set()
    query_parts: list[str] = []
    for n, i in enumerate(texts):
        core = norm[i].strip()
        if not core:
            continue
        query_parts.append(core)
        between = pieces[texts[n - 1] + 1:i] if n > 0 else pieces[:i]
        after = pieces[i + 1:texts[n + 1]] if n + 1 < len(texts) else pieces[i + 1:]
        if not segments:
            join = ""
        elif any(p.kind == "gap" for p in between):
            join = "gap"
        else:
            join = "bracket"
        first = not segments
        # a run starts (ends) on a word boundary unless a bracket is attached to it (learn[ed])
        free_before = join == "gap" or not between or (first and norm[i][:1].isspace())
        free_after = any(p.kind == "gap" for p in after) or not after or (n + 1 == len(texts) and norm[i][-1:].isspace())
        word_start = free_before and _is_word(core[0])
        word_end = free_after and _is_word(core[-1])
        prev_raw = norm[texts[n - 1]] if n > 0 else ""
        brackets = sum(1 for p in between if p.kind == "bracket")
        segments.append(Segment(
            text=core, variants=_case_variants(core) if first and not between else (core,),
            word_start=word_start, word_end=word_end, join=join,
            space_before=join == "bracket" and prev_raw[-1:].isspace(), space_after=join == "bracket" and norm[i][:1].isspace(),
            max_run=BRACKET_CHARS * max(1, brackets) + max(0, brackets - 1),
        ))
        # whole tokens only: the first and last of a run may be cut by a bracket or differ in a full stop
        words = core.lower().split()[1:-1]
        tokens.update(words)
        bigrams.update(zip(words, words[1:]))
    return Plan(parsed, tuple(segments), lead_word, tail_word, trailing_dot, " ".join(query_parts),
                frozenset(tokens), frozenset(bigrams))


def find_spans(index: SourceIndex, plan: Plan, limit: int = 10) -> list[tuple[int, int]]:
    """Normalised spans where the quote stands (non-overlapping, in order, at most ``limit``)."""
    text = index.text
    segments = plan.segments
    if not segments:
        return []
    first = segments[0]
    size = len(first.text)
    starts: list[int] = []
    for variant in first.variants:
        pos = text.find(variant)
        while pos >= 0:
            starts.append(pos)
            pos = text.find(variant, pos + 1)
    if len(first.variants) > 1:
        starts = sorted(set(starts))
    spans: list[tuple[int, int]] = []
    last_end = -1
    for pos in starts:
        if pos < last_end:
            continue
        if first.word_start and pos > 0 and _is_word(text[pos - 1]):
            continue
        t = bisect_right(index.turn_starts, pos) - 1
        end = _rest(text, plan, 1, pos + size, index.turn_ends[t])
        if end < 0:
            continue
        start = pos
        if plan.lead_word:
            floor = index.turn_starts[t]
            while start > floor and _is_word(text[start - 1]):
                start -= 1
        spans.append((start, end))
        last_end = end
        if len(spans) >= limit:
            break
    return spans


def _rest(text: str, plan: Plan, i: int, end: int, turn_end: int) -> int:
    """Match segments ``i...`` after the previous segment ended at ``end``; the end of the
    whole match, or -1."""
    segments = plan.segments
    if segments[i - 1].word_end and end < len(text) and _is_word(text[end]):
        return -1
    if i == len(segments):
        if plan.trailing_dot and end < turn_end and text[end] == ".":
            return end + 1
        if plan.tail_word:
            while end < turn_end and _is_word(text[end]):
                end += 1
        return end
    seg = segments[i]
    size = len(seg.text)
    if seg.join == "gap":
        stop = turn_end
    else:
        stop = min(turn_end, end + seg.max_run + seg.space_before + seg.space_after + size)
    q = text.find(seg.text, end, stop)
    while q >= 0:
        ok = True
        if seg.join == "gap":
            ok = not (seg.word_start and q > 0 and _is_word(text[q - 1]))
        else:
            # white space beside a bracket may be a dash in the source ("it's -- it's" reads "it's-it's")
            between = text[end:q]
            if seg.space_before and seg.space_after:
                ok = between in (" ", "-") or (len(between) >= 3 and between[0] in " -" and between[-1] in " -")
            elif seg.space_before:
                ok = between[:1] in (" ", "-")
            elif seg.space_after:
                ok = between[-1:] in (" ", "-")
        if ok:
            found = _rest(text, plan, i + 1, q + size, turn_end)
            if found >= 0:
                return found
        q = text.find(seg.text, q + 1, stop)
    return -1


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Location:
    source: str
    file: str
    start: int
    end: int
    line: int
    turn: str
    role: str | None
    text: str

    def where(self) -> str:
        return f"{self.file}:{self.line}, {self.turn} ({self.role or 'unknown role'}), characters {self.start}-{self.end}"


@dataclass(frozen=True)
class Match:
    """Where one quote stands in one source."""

    status: str  # verbatim | verbatim-with-marked-edits | not-found | ambiguous
    quote: str
    locations: tuple[Location, ...] = ()
    closest: Location | None = None
    score: float | None = None
    reason: str = ""

    @property
    def found(self) -> bool:
        return self.status in OK_STATUSES

    @property
    def location(self) -> Location | None:
        return self.locations[0] if len(self.locations) == 1 else None

    @property
    def start(self) -> int | None:
        return self.location.start if self.location else None

    @property
    def end(self) -> int | None:
        return self.location.end if self.location else None

    @property
    def turn(self) -> str | None:
        return self.location.turn if self.location else None

    @property
    def text(self) -> str | None:
        return self.location.text if self.location else None


def _location(transcript: Transcript, index: SourceIndex, ns: int, ne: int) -> Location:
    start, end = index.original_span(ns, ne)
    turn = transcript.turns[index.turn_index(ns)]
    # as Transcript.line_of, knowing the turn: a line of the file for .md/.txt, the turn's cue or paragraph otherwise
    line = turn.line + (transcript.text.count("\n", turn.start, start) if transcript.format in ("md", "txt") else 0)
    return Location(transcript.id, transcript.path, start, end, line, turn.id, turn.role, transcript.text[start:end])


def match_quote(transcript: Transcript, text: str | Plan, *, turn: str | None = None, closest: bool = True) -> Match:
    """Find a quote in one source by the matching rules. ``turn`` (a turn or sentence id the
    author recorded) settles a quote that stands in more than one place. A quote that is not
    found gets the closest passage of the source and the exact differences (unless
    ``closest`` is false). Raises :class:`QuoteSyntaxError` for a malformed quote."""
    plan = text if isinstance(text, Plan) else plan_quote(text)
    index = source_index(transcript)
    spans = find_spans(index, plan)
    quote = plan.parsed.text
    if spans:
        locations = tuple(_location(transcript, index, s, e) for s, e in spans)
        if len(locations) > 1 and turn:
            wanted = turn_of(turn)
            chosen = tuple(loc for loc in locations if loc.turn == wanted)
            if len(chosen) == 1:
                locations = chosen
        if len(locations) > 1:
            places = "; ".join(loc.where() for loc in locations[:3])
            if len(locations) > 3:
                places += f"; and {len(locations) - 3} more" if len(locations) < 10 else "; and more"
            count = f"{len(locations)}" if len(locations) < 10 else "10 or more"
            return Match("ambiguous", quote, locations,
                         reason=f"stands in {count} places in {transcript.id}: {places}; "
                                "quote more words, or give the turn id, so it names one place")
        return Match("verbatim-with-marked-edits" if plan.edited else "verbatim", quote, locations)
    if not closest:
        return Match("not-found", quote)
    best, score = closest_passage(transcript, plan)
    reason = explain_difference(plan, best.text if best else "")
    return Match("not-found", quote, (), best, score, reason)


def closest_passage(transcript: Transcript, plan: Plan) -> tuple[Location | None, float | None]:
    """The passage of ``transcript`` most like the quote (rapidfuzz partial ratio, 0-100)."""
    from rapidfuzz import fuzz

    index = source_index(transcript)
    if not transcript.turns or not plan.query:
        return None, None
    query = plan.query.lower()
    qwords = frozenset(query.split())
    turn_words = index.turn_words
    if len(turn_words) > CANDIDATE_TURNS:
        overlap = [len(qwords.intersection(words)) for words in turn_words]
        ranked = heapq.nlargest(CANDIDATE_TURNS, range(len(overlap)), key=overlap.__getitem__)
    else:
        ranked = list(range(len(turn_words)))
    low = index.lower
    best: tuple[float, int, int] | None = None
    for t in ranked:
        ts, te = index.turn_starts[t], index.turn_ends[t]
        target = low[ts:te]
        if not target:
            continue
        al = fuzz.partial_ratio_alignment(query, target)
        if al is None:
            continue
        if len(query) <= len(target):
            ds, de = al.dest_start, al.dest_end
        else:  # the turn is shorter than the quote: the whole turn
            ds, de = 0, len(target)
        if best is None or al.score > best[0]:
            best = (al.score, ts + ds, ts + de)
    if best is None:
        return None, None
    score, ns, ne = best
    ns, ne = _trim_passage(index, plan, ns, ne)
    return _location(transcript, index, ns, ne), round(float(score), 1)


def _trim_passage(index: SourceIndex, plan: Plan, ns: int, ne: int) -> tuple[int, int]:
    """Fit the fuzzy alignment to the quote: widen it by a few words on each side (within the
    turn), then drop the words before the quote's first and after its last matching word."""
    text = index.text
    t = index.turn_index(ns)
    lo, hi = index.turn_starts[t], index.turn_ends[t]
    while ns > lo and _is_word(text[ns - 1]):
        ns -= 1
    while ne < hi and _is_word(text[ne]):
        ne += 1
    ws, we = max(lo, ns - 24), min(hi, ne + 24)
    while ws > lo and _is_word(text[ws - 1]):
        ws -= 1
    while we < hi and _is_word(text[we]):
        we += 1
    spans = [m.span() for m in _TOKEN_RE.finditer(text, ws, we)]
    quote_tokens = [w.lower() for w in _TOKEN_RE.findall(plan.query)]
    if plan.trailing_dot:
        quote_tokens.append(".")
    source_tokens = [text[a:b].lower() for a, b in spans]
    if not spans or not quote_tokens:
        return ns, ne
    ops = difflib.SequenceMatcher(a=quote_tokens, b=source_tokens, autojunk=False).get_opcodes()
    first, last = 0, len(spans)
    tag, i1, i2, j1, j2 = ops[0]
    if tag == "insert":
        first = j2
    elif tag == "replace" and j2 - j1 > i2 - i1:  # "he vision" against "Right. The vision"
        first = j2 - (i2 - i1)
    tag, i1, i2, j1, j2 = ops[-1]
    if tag == "insert":
        last = j1
    elif tag == "replace" and j2 - j1 > i2 - i1:
        last = j1 + (i2 - i1)
    if first >= last:
        return ns, ne
    return spans[first][0], spans[last - 1][1]


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(normalize(text))


def explain_difference(plan: Plan, passage: str) -> str:
    """The exact differences between a quote's words and a passage, in words."""
    if not passage:
        return "no passage of the source resembles it"
    quote_tokens = _tokens(plan.query)
    source_tokens = _tokens(passage)
    if source_tokens[-1:] == ["."] and quote_tokens[-1:] != ["."]:
        source_tokens = source_tokens[:-1]
    sm = difflib.SequenceMatcher(a=quote_tokens, b=source_tokens, autojunk=False)
    ops = [op for op in sm.get_opcodes() if op[0] != "equal"]
    # a passage that runs on before or after the quote is not a difference
    if ops and ops[0][0] == "insert" and ops[0][1] == 0:
        ops = ops[1:]
    if ops and ops[-1][0] == "insert" and ops[-1][1] == len(quote_tokens):
        ops = ops[:-1]
    if not ops:
        if [t.lower() for t in quote_tokens] == [t.lower() for t in source_tokens]:
            return "differs only in letter case after its first letter"
        return "differs from the closest passage in where it starts or ends (a quote starts and ends on whole words)"
    parts = []
    for tag, i1, i2, j1, j2 in ops[:3]:
        q = _join(quote_tokens[i1:i2])
        s = _join(source_tokens[j1:j2])
        if tag == "replace":
            parts.append(f"the quote has {q!r} where the source has {s!r}")
        elif tag == "delete":
            parts.append(f"the quote adds {q!r}, which the source does not have (mark added words with [brackets])")
        else:
            parts.append(f"the quote leaves out {s!r} without an ellipsis")
    more = f" (and {len(ops) - 3} more difference(s))" if len(ops) > 3 else ""
    return "; ".join(parts) + more


def _join(tokens: list[str]) -> str:
    text = " ".join(tokens)
    return re.sub(r" ([.,;:?!])", r"\1", text)


# --------------------------------------------------------------------------- study-wide search


class StudyIndex:
    """Which sessions could hold a quote: those that contain every whole token of the quote and
    every pair of neighbouring tokens. Built on the first quote that is not found in its own
    source; only the sessions it names are searched."""

    def __init__(self, transcripts: Iterable[Transcript]):
        self.transcripts = list(transcripts)
        self._sets: list[tuple[Transcript, frozenset[str], frozenset[tuple[str, str]]]] | None = None

    def candidates(self, plan: Plan) -> list[Transcript]:
        if self._sets is None:
            self._sets = [(t, *source_index(t).tokens()) for t in self.transcripts]
        wanted_tokens, wanted_pairs = plan.tokens, plan.bigrams
        return [t for t, tokens, pairs in self._sets if wanted_pairs <= pairs and wanted_tokens <= tokens]

    def search(self, plan: Plan, exclude: str | None = None) -> list[Location]:
        locations = []
        for transcript in self.candidates(plan):
            if transcript.id == exclude:
                continue
            index = source_index(transcript)
            for s, e in find_spans(index, plan, limit=3):
                locations.append(_location(transcript, index, s, e))
        return locations


# --------------------------------------------------------------------------- audit records


@dataclass
class Record:
    """One quote checked against its source: what the audit prints and provenance.json holds."""

    finding: str
    district: str
    quote: str
    matched_text: str | None
    source: str
    file: str | None
    sha256: str | None
    start: int | None
    end: int | None
    line: int | None
    turn: str | None
    role: str | None
    source_type: str | None
    label: str | None
    status: str
    closest: str | None = None
    score: float | None = None
    message: str = ""
    claimed_role: str | None = None
    recorded_sha256: str | None = None
    closest_line: int | None = None
    closest_turn: str | None = None
    closest_start: int | None = None
    closest_end: int | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    findings_file: str | None = None
    findings_line: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES

    def summary(self) -> str:
        where = f"{self.findings_file}:{self.findings_line}: " if self.findings_file else ""
        return f"{where}{self.finding}: {self.status}: {self.message}".rstrip(": ")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Audit:
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def results(self) -> list[Record]:
        return self.records

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if not r.ok]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def unusable(self) -> list[Problem]:
        return [p for p in self.problems if is_unusable(p)]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.errors

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.records))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts(), "quotes": [r.to_dict() for r in self.records],
                "problems": [p.to_dict() for p in self.problems], "skipped": list(self.skipped), "notes": list(self.notes)}


class Auditor:
    """Checks quotes against one study; shares indexes between quotes."""

    def __init__(self, study: Study):
        self.study = study
        self.sources = {t.id: t for t in study.transcripts}
        self.everywhere = StudyIndex(study.transcripts)

    def check(self, quote: Quote, finding_id: str = "", district: str = "", findings_file: str | None = None) -> Record:
        study = self.study
        transcript = self.sources.get(quote.source)
        record = Record(
            finding=finding_id, district=district, quote=quote.text, matched_text=None, source=quote.source,
            file=transcript.path if transcript else None, sha256=transcript.sha256 if transcript else None,
            start=None, end=None, line=None, turn=None, role=None,
            source_type=transcript.source_type if transcript else None,
            label=study.source_label(transcript) if transcript else None, status="not-found",
            claimed_role=quote.role, recorded_sha256=quote.sha256, findings_file=findings_file, findings_line=quote.line,
        )
        try:
            plan = plan_quote(quote.text)
        except QuoteSyntaxError as exc:
            record.status, record.message = "malformed", exc.message
            return record
        if transcript is None:
            from .findings import did_you_mean

            record.status = "unknown-source"
            elsewhere = self.everywhere.search(plan)
            found = f"; the quote stands in {_places(elsewhere)}" if elsewhere else ""
            record.message = f"{quote.source!r} is not a source of the study{did_you_mean(quote.source, self.sources)}{found}"
            record.alternatives = [asdict(loc) for loc in elsewhere]
            return record
        match = match_quote(transcript, plan, turn=quote.turn, closest=False)
        if match.status == "not-found":
            elsewhere = self.everywhere.search(plan, exclude=transcript.id)
            if elsewhere:
                record.status = "wrong-source"
                record.alternatives = [asdict(loc) for loc in elsewhere]
                first = elsewhere[0]
                self._closest(record, first, 100.0)
                places = "; ".join(f"{loc.source} ({loc.file}:{loc.line}, {loc.turn}, {loc.role or 'unknown role'}, "
                                   f"{study.source_label(self.sources[loc.source])})" for loc in elsewhere)
                record.message = f"not in {transcript.id} ({record.label}); it stands in {places}: attribute it to that session"
                return record
            best, score = closest_passage(transcript, plan)
            record.status = "not-found"
            if best is not None:
                self._closest(record, best, score)
                record.message = (f"not found in {transcript.id}: {explain_difference(plan, best.text)}; "
                                  f"closest passage ({best.file}:{best.line}, {best.turn}, {best.role or 'unknown role'}, "
                                  f'similarity {score}): "{_short(best.text)}"')
            else:
                record.message = f"not found in {transcript.id}, and no passage resembles it"
            return record
        if match.status == "ambiguous":
            record.status = "ambiguous"
            record.alternatives = [asdict(loc) for loc in match.locations]
            record.message = match.reason
            return record
        loc = match.location
        assert loc is not None
        record.matched_text, record.start, record.end = loc.text, loc.start, loc.end
        record.line, record.turn, record.role = loc.line, loc.turn, loc.role
        record.status = match.status
        reasons: list[tuple[str, str]] = []
        if quote.sha256 and quote.sha256 != transcript.sha256:
            reasons.append(("source-changed", f"{transcript.path} changed since the quote was taken (recorded SHA-256 "
                                              f"{quote.sha256[:12]}…, now {transcript.sha256[:12]}…): re-read the passage "
                                              "and update sha256"))
        if quote.role and quote.role != loc.role:
            roles = study.config.roles
            reasons.append(("speaker-mismatch", f"the quote is attributed to a {roles.get(quote.role, quote.role).lower()} "
                                                f"but the speaker at {loc.file}:{loc.line} ({loc.turn}) is a "
                                                f"{roles.get(loc.role or '', loc.role or 'participant of unknown role').lower()}"))
        if quote.turn and turn_of(quote.turn) != loc.turn:
            reasons.append(("turn-mismatch", f"recorded as {quote.turn} but it stands in {loc.turn} ({loc.file}:{loc.line})"))
        if reasons:
            record.status = reasons[0][0]
            record.message = "; ".join(r for _, r in reasons)
        elif transcript.district != district and district:
            record.message = f"note: a source of district {transcript.district}"
        return record

    def _closest(self, record: Record, loc: Location, score: float | None) -> None:
        record.closest, record.score = loc.text, score
        record.closest_line, record.closest_turn = loc.line, loc.turn
        record.closest_start, record.closest_end = loc.start, loc.end


def _places(locations: list[Location]) -> str:
    return "; ".join(f"{loc.source} ({loc.file}:{loc.line}, {loc.turn}, {loc.role or 'unknown role'})" for loc in locations)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_quote(study: Study, quote: Quote, finding: Finding | None = None) -> Record:
    """Check one quote (a convenience over :class:`Auditor`)."""
    auditor = _auditor(study)
    return auditor.check(quote, finding.id if finding else "", finding.district if finding else "", finding.path if finding else None)


_AUDITORS: dict[int, tuple[Study, Auditor]] = {}


def _auditor(study: Study) -> Auditor:
    cached = _AUDITORS.get(id(study))
    if cached is None or cached[0] is not study:
        if len(_AUDITORS) > 16:
            _AUDITORS.clear()
        cached = _AUDITORS[id(study)] = (study, Auditor(study))
    return cached[1]


def audit(study: Study, district: str | None = None, identifiers: Any = None) -> Audit:
    """Check every quote of the findings (of one district): where it stands, its status and,
    for a failing quote, the closest passage. ``identifiers``: a path to the private
    identifiers file, an :class:`~casestudy.deidentify.Identifiers`, ``False`` to skip, or
    ``None`` for ``<study>/private/identifiers.yaml`` (skipped, and said so, when missing)."""
    if district is not None:
        study.district(district)
    with gc_paused():
        return _audit(study, district, identifiers)


def _audit(study: Study, district: str | None, identifiers: Any) -> Audit:
    from .deidentify import check_findings_identifiers, check_transcripts, resolve_identifiers

    findings, problems = read_findings(study, district)
    result = Audit(problems=list(problems))
    if not findings and not problems:
        where = f"findings/{district}.yaml" if district else "findings/<DISTRICT>.yaml"
        result.notes.append(f"no findings to audit: {where} does not exist")
    auditor = _auditor(study)
    for finding in findings:
        for quote in finding.quotes:
            result.records.append(auditor.check(quote, finding.id, finding.district, finding.path))
    ids, skipped = resolve_identifiers(study, identifiers)
    result.skipped += skipped
    result.problems += check_findings_identifiers(study, findings, ids)
    if ids is not None:
        result.problems += check_transcripts(study, ids, district)
        result.notes.append(f"identifiers: checked {len(ids.names) + len(ids.terms)} name(s) and term(s) from {ids.display_path}")
    return result


def write_provenance(records: Audit | Iterable[Record], path: Path | str) -> None:
    """Write the provenance record of every quote as JSON (atomically; no timestamps, so the
    same study gives the same bytes)."""
    items = records.records if isinstance(records, Audit) else list(records)
    counts = Counter(r.status for r in items)
    payload = {
        "format": "casestudy-provenance",
        "version": 1,
        "verified": all(r.ok for r in items),
        "counts": dict(sorted(counts.items())),
        "quotes": [r.to_dict() for r in items],
    }
    atomic_write_text(Path(path), json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- report markup


def _attr(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def quote_html(record: Record, note_id: str, note_number: int, warning: str | None = None) -> str:
    """The markup a report writes around a quote: the audit of a rendered report reads the
    source id, offsets and SHA-256 back from these attributes."""
    attrs = {
        "class": "cs-quote", "data-source": record.source, "data-start": record.start, "data-end": record.end,
        "data-sha256": record.sha256, "data-turn": record.turn, "data-finding": record.finding,
        "data-status": record.status, "data-note": note_id,
    }
    if record.claimed_role:
        attrs["data-role"] = record.claimed_role
    attributes = " ".join(f'{k}="{_attr(v)}"' for k, v in attrs.items())
    # The quotation marks are presentation, in spans the report audit skips: the quote is the text between them.
    body = (f'<blockquote {attributes}><span class="cs-qm">\u201c</span>{html.escape(record.quote.strip())}'
            '<span class="cs-qm">\u201d</span>'
            f'<sup class="cs-note-ref"><a href="#{_attr(note_id)}">{int(note_number)}</a></sup></blockquote>')
    if warning:
        body += f'<p class="cs-warning">WARNING: {html.escape(warning)}</p>'
    return body


def footnote_html(note_id: str, label: str, source_ids: Iterable[str]) -> str:
    """One footnote: the source label ("SCV Teacher Focus Group"), the source ids as data."""
    return (f'<li id="{_attr(note_id)}" class="cs-footnote" data-sources="{_attr(" ".join(source_ids))}">'
            f"{html.escape(label)}</li>")


class _ReportParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.quotes: list[dict[str, Any]] = []
        self.notes: dict[str, dict[str, Any]] = {}
        self.texts: list[tuple[int, str]] = []
        self._quote: dict[str, Any] | None = None
        self._depth = 0
        self._sup = 0
        self._note: dict[str, Any] | None = None
        self._skip = 0
        self._label = False  # inside an excerpt's <span class="cs-source"> label
        self._qm = False  # inside a <span class="cs-qm">: a quotation mark the report adds around a quote

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        line = self.getpos()[0]
        for key in ("title", "alt", "aria-label"):
            if a.get(key):
                self.texts.append((line, a[key]))
        if tag in ("script", "style"):
            if not (tag == "script" and a.get("type", "").endswith("json")):
                self._skip += 1
            return
        if tag == "blockquote":
            if self._quote is not None:
                self._depth += 1
            elif "cs-quote" in classes or "cs-excerpt" in classes:
                kind = "quote" if "cs-quote" in classes else "excerpt"
                self._quote = {"attrs": a, "parts": [], "line": line, "kind": kind, "label_parts": []}
                self._depth = 0
        elif tag == "sup" and self._quote is not None:
            self._sup += 1
        elif tag == "span" and self._quote is not None and "cs-source" in classes:
            self._label = True
        elif tag == "span" and self._quote is not None and "cs-qm" in classes:
            self._qm = True
        elif tag == "li" and "cs-footnote" in classes:
            self._note = {"id": a.get("id", ""), "sources": a.get("data-sources", "").split(), "parts": [], "line": line}

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            if self._skip:
                self._skip -= 1
            return
        if tag == "blockquote" and self._quote is not None:
            if self._depth:
                self._depth -= 1
            else:
                self._quote["text"] = "".join(self._quote.pop("parts"))
                self.quotes.append(self._quote)
                self._quote = None
        elif tag == "sup" and self._sup:
            self._sup -= 1
        elif tag == "span" and self._label:
            self._label = False
        elif tag == "span" and self._qm:
            self._qm = False
        elif tag == "li" and self._note is not None:
            self._note["label"] = " ".join("".join(self._note.pop("parts")).split())
            self.notes[self._note["id"]] = self._note
            self._note = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.texts.append((self.getpos()[0], data))
        if self._quote is not None and self._qm:
            return
        if self._quote is not None and self._label:
            self._quote["label_parts"].append(data)
        elif self._quote is not None and not self._sup:
            self._quote["parts"].append(data)
        if self._note is not None:
            self._note["parts"].append(data)


def audit_report(study: Study, html_text: str | Path, identifiers: Any = None) -> Audit:
    """Audit the quotes in a rendered report (its HTML, or the path of the file): each quote is
    re-checked against its source, its offsets must be where the quote stands, its footnote's
    label must be the source's ("SCV Teacher Focus Group"), and no identifier or participant
    pseudonym may appear anywhere in the report's text."""
    name = "report.html"
    if isinstance(html_text, Path) or (isinstance(html_text, str) and "<" not in html_text and Path(html_text).is_file()):
        path = Path(html_text)
        name = relpath(path, study.root)
        try:
            html_text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read the report {str(path)!r}: {exc}") from None
    with gc_paused():
        return _audit_report(study, str(html_text), identifiers, name)


def _audit_report(study: Study, html_text: str, identifiers: Any, name: str) -> Audit:
    from .deidentify import check_text_identifiers, resolve_identifiers

    parser = _ReportParser()
    parser.feed(html_text)
    parser.close()
    result = Audit()
    auditor = _auditor(study)
    for item in parser.quotes:
        a = item["attrs"]
        if item["kind"] == "excerpt":
            result.records.append(_check_excerpt(study, auditor, item, name))
            continue
        quote = Quote(source=a.get("data-source", ""), text=item["text"].strip(), role=a.get("data-role") or None,
                      turn=a.get("data-turn") or None, sha256=a.get("data-sha256") or None, line=item["line"])
        record = auditor.check(quote, a.get("data-finding", ""), "", name)
        transcript = auditor.sources.get(quote.source)
        if record.ok and (str(record.start) != a.get("data-start") or str(record.end) != a.get("data-end")):
            record.status = "offsets-mismatch"
            record.message = (f"the report gives characters {a.get('data-start') or '?'}-{a.get('data-end') or '?'} but the "
                              f"quote stands at {record.start}-{record.end} of {quote.source}")
        note_id = a.get("data-note", "")
        note = parser.notes.get(note_id)
        if record.ok and transcript is not None:
            expected = study.source_label(transcript)
            if note is None:
                record.status, record.message = "footnote-mismatch", f"footnote {note_id or '(none)'} is missing from the report"
            elif note["label"] != expected:
                record.status = "footnote-mismatch"
                record.message = f"footnote {note_id} says {note['label']!r} but the source is {expected!r} ({quote.source})"
            elif note["sources"] and quote.source not in note["sources"]:
                record.status = "footnote-mismatch"
                record.message = f"footnote {note_id} lists {', '.join(note['sources'])}, not {quote.source}"
        result.records.append(record)
    for note in parser.notes.values():
        labels = {study.source_label(auditor.sources[s]) for s in note["sources"] if s in auditor.sources}
        unknown = [s for s in note["sources"] if s not in auditor.sources]
        if unknown:
            result.problems.append(Problem(name, note["line"], "unknown-source", f"footnote {note['id']} names unknown source(s) {', '.join(unknown)}"))
        elif labels and note["label"] not in labels:
            result.problems.append(Problem(name, note["line"], "footnote-mismatch",
                                           f"footnote {note['id']} says {note['label']!r}; its source is {' / '.join(sorted(labels))}"))
    ids, skipped = resolve_identifiers(study, identifiers)
    result.skipped += skipped
    result.problems += check_text_identifiers(study, parser.texts, ids, name)
    if ids is not None:
        result.notes.append(f"identifiers: checked {len(ids.names) + len(ids.terms)} name(s) and term(s) from {ids.display_path}")
    if not parser.quotes:
        result.notes.append(f"no marked-up quotes (<blockquote class=\"cs-quote\">) in {name}")
    return result


def _check_excerpt(study: Study, auditor: Auditor, item: dict[str, Any], name: str) -> Record:
    """An excerpt (the joint display's representative passages). One with offsets is a coded
    passage copied from its source: the source's text at those offsets must be the excerpt,
    exactly (white space folded). One without offsets is a findings quote and is checked by the
    quote rules. Either way its label (<span class="cs-source">) must be the source's."""
    a = item["attrs"]
    text = item["text"].strip()
    if text[:1] == "\u201c" and text[-1:] == "\u201d":  # the quotation marks the display puts around it
        text = text[1:-1].strip()
    source = a.get("data-source", "")
    transcript = auditor.sources.get(source)
    quote = Quote(source=source, text=text, role=None, turn=None, sha256=None, line=item["line"])
    offsets = a.get("data-start", ""), a.get("data-end", "")
    if transcript is not None and all(o.isdigit() for o in offsets):
        start, end = int(offsets[0]), int(offsets[1])
        stands = transcript.text[start:end]
        turn = transcript.turn_at(start)
        record = Record(
            finding="(excerpt)", district=transcript.district, quote=text, matched_text=stands, source=source,
            file=transcript.path, sha256=transcript.sha256, start=start, end=end, line=transcript.line_of(start),
            turn=turn.id if turn else None, role=turn.role if turn else None, source_type=transcript.source_type,
            label=study.source_label(transcript), status="verbatim", findings_file=name, findings_line=item["line"])
        if " ".join(stands.split()) != " ".join(text.split()):
            record.status = "offsets-mismatch"
            record.message = f"characters {start}-{end} of {source} read {_short(stands)!r}, not the excerpt"
    else:
        record = auditor.check(quote, "(excerpt)", "", name)
    label = " ".join("".join(item["label_parts"]).split())
    if record.ok and transcript is not None and label != study.source_label(transcript):
        record.status = "footnote-mismatch"
        record.message = f"the excerpt is labelled {label!r} but its source is {study.source_label(transcript)!r} ({source})"
    return record


def record_rows(records: Iterable[Record]) -> list[dict[str, Any]]:
    """One flat row per quote (for CSV-like output)."""
    return [{"finding": r.finding, "status": r.status, "source": r.source, "file": r.file or "", "line": r.line,
             "turn": r.turn or "", "role": r.role or "", "start": r.start, "end": r.end} for r in records]


def provenance_lines(records: Iterable[Record]) -> list[str]:
    """The provenance table as text: one block per source (its id, file and footnote label),
    one line per quote: line in the file, turn, speaker role, characters, status, finding."""
    records = list(records)
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r.source, []).append(r)
    header = ("line", "turn", "role", "characters", "status", "finding")
    cells = {id(r): (str(r.line or ""), (r.turn or "").rsplit("#", 1)[-1], r.role or "",
                     f"{r.start}-{r.end}" if r.start is not None else "", r.status, r.finding) for r in records}
    widths = [max([len(header[i])] + [len(c[i]) for c in cells.values()]) for i in range(len(header))]

    def row(values: tuple[str, ...]) -> str:
        parts = [values[0].rjust(widths[0])] + [v.ljust(w) for v, w in zip(values[1:-1], widths[1:-1], strict=True)] + [values[-1]]
        return "  " + "  ".join(parts)

    lines = []
    for source in sorted(groups):
        items = sorted(groups[source], key=lambda r: (r.start if r.start is not None else -1, r.finding))
        first = items[0]
        label = f" ({first.label})" if first.label else ""
        lines.append(f"{source}  {first.file or '(no such source)'}{label}")
        lines.append(row(header))
        lines += [row(cells[id(r)]) for r in items]
    return lines
