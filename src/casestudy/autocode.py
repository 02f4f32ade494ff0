"""Auto-coding: suggest codes for sentences from the codebook's patterns, and say why.

Each pattern in ``codebook.yaml`` is compiled once into spaCy matchers:

- a *phrase* (``data wall``) goes into a :class:`~spacy.matcher.PhraseMatcher` on the
  ``NORM`` attribute, which here holds each word's lemma, so "data walls" matches
  "data wall" and "Coaches" matches "coach";
- *tokens* (``[{LEMMA: look}, {LOWER: at}]``) are spaCy :class:`~spacy.matcher.Matcher`
  patterns; their ``LEMMA`` values are lemmatized like the text and matched on ``NORM``;
- a *regex* matches one token's text. It is evaluated once per distinct word (a lexeme
  flag), not once per token;
- ``roles`` keep a pattern to turns whose speaker has one of those roles.

Lemmas come from spaCy's lookup lemmatizer table (package ``spacy-lookups-data``), looked up
on the lower-cased word. They are stored as each *lexeme's* norm when spaCy first sees a word,
so lemmatizing costs one look-up per distinct word, not one per token; the tokenizer's
exceptions lose their own norms ("gonna" -> "going") so that the norm is always the lemma of
the lower-cased word, for patterns and text alike.

Speed (see ``benchmarks/autocode.py``): each speaker turn is tokenized once, in one tokenizer
stream over all sessions. Sentences are the study's own (the study is segmented with spaCy's
sentencizer when it is loaded, :mod:`casestudy.transcripts`); a match goes to the sentence
that holds it by its offsets, so turns are not segmented a second time. spaCy's Matcher tests
every pattern at every token, in Python for set values (``{IN: [...]}``), so it runs on few
tokens: a token pattern that is a fixed sequence of words is found by the phrase matcher (on
the lemmas of its words, a superset) and its ``LOWER``/``ORTH`` values are checked on the
tokens found; any other token pattern runs its Matcher only on a window around its rarest
required word, and only where its other required words are near. The lines of the
suggestions file are built from JSON pieces made once per turn, sentence and (pattern,
words), and written in encoded batches; the garbage collector is paused meanwhile, and new
words get only the lexeme attributes the patterns read (:func:`_keep_lexeme_attributes`).

A suggestion is one code on one sentence, with every match in that sentence as evidence.
Suggestions are written to ``suggestions/<coder>.jsonl`` (never to a human coder's
``codings/`` file), in a stable order with stable ids; :func:`evaluate` scores them against a
human coder.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spacy.attrs import NORM
from spacy.language import Language
from spacy.matcher import Matcher, PhraseMatcher
from spacy.tokens import Doc

from .perf import gc_paused
from . import coding
from .codebook import Codebook, Pattern
from .errors import DataError, Problem, UsageError, relpath
from .files import atomic_open, check_name
from .transcripts import Sentence, Transcript, Turn

if TYPE_CHECKING:
    from .study import Study

log = logging.getLogger("casestudy")

FORMAT_VERSION = 1
DEFAULT_CODER = "auto"
BATCH_SIZE = 256
WRITE_BATCH = 256  # lines per write of the suggestions file (about 150 kB: joined and encoded in the CPU's cache)
MAX_EXPANSION = 64  # fixed token patterns with more word combinations than this use windows
_quote = json.encoder.encode_basestring  # json's own string escaping (C), as json.dumps(ensure_ascii=False)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Evidence:
    """One pattern match: the pattern, the words it matched and where (source offsets)."""

    pattern: str
    words: str
    start: int
    end: int
    explanation: str

    def to_dict(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "words": self.words, "start": self.start, "end": self.end,
                "explanation": self.explanation}


@dataclass(frozen=True)
class Suggestion:
    """One code proposed for one sentence. ``pattern`` is the first matching pattern in
    codebook order; ``evidence`` lists every match in the sentence, in text order."""

    id: str
    code: str
    source: str
    anchor: coding.Anchor
    pattern: str
    evidence: tuple[Evidence, ...]
    speaker: str
    role: str | None
    line: int

    @property
    def explanation(self) -> str:
        return "; ".join(e.explanation for e in self.evidence)

    def to_dict(self) -> dict[str, Any]:
        """The suggestion as one line of ``suggestions/<coder>.jsonl``."""
        return {"v": FORMAT_VERSION, "id": self.id, "code": self.code, "source": self.source,
                "anchor": self.anchor.to_dict(), "pattern": self.pattern,
                "evidence": [e.to_dict() for e in self.evidence],
                "speaker": self.speaker, "role": self.role, "line": self.line}


def suggestion_id(code: str, sentence_id: str, pattern_id: str) -> str:
    """``s-`` + 12 hex digits from the code, the sentence and the pattern: the same on every run."""
    return "s-" + hashlib.sha256(f"{code}\x1f{sentence_id}\x1f{pattern_id}".encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- lemmas


@lru_cache(maxsize=1)
def lemma_table() -> dict[str, str]:
    """spaCy's English lookup-lemmatizer table (``spacy-lookups-data``): word -> lemma.

    Read as the plain dict it is stored as (about 0.03 s); ``spacy.lookups.load_lookups``
    builds a hashed ``Table`` from it, which takes half a second and is no faster to look up."""
    import gzip

    import spacy_lookups_data

    path = Path(str(spacy_lookups_data.en["lemma_lookup"]))  # en_lemma_lookup.json, shipped gzipped
    gzipped = path.with_name(path.name + ".gz")
    data = gzip.decompress(gzipped.read_bytes()) if gzipped.exists() else path.read_bytes()
    return json.loads(data)


def lemma(word: str) -> str:
    """The lookup lemma of the lower-cased word ("Coaches" -> "coach", "data" -> "datum")."""
    low = word.lower()
    return lemma_table().get(low, low)


@lru_cache(maxsize=1)
def _lemma_english() -> type[Language]:
    """``English`` whose tokenizer exceptions set no norms of their own ("gonna" -> "going"),
    so that every token's norm is its lexeme's (the lemma). A subclass rather than
    ``nlp.tokenizer.rules = ...`` on a blank pipeline, which builds the special cases twice."""
    from spacy.lang.en import English

    exceptions = {key: [{attr: value for attr, value in token.items() if attr not in (NORM, "NORM")} for token in tokens]
                  for key, tokens in English.Defaults.tokenizer_exceptions.items()}
    defaults = type("LemmaDefaults", (English.Defaults,), {"tokenizer_exceptions": exceptions})
    return type("LemmaEnglish", (English,), {"Defaults": defaults})


def lemma_pipeline() -> Language:
    """A fresh English tokenizer (as ``blank("en")``) whose lexeme norms are lookup lemmas.

    A pipeline of its own (not :func:`casestudy.nlp.blank_nlp`): it changes what ``NORM``
    means in its vocabulary, and the regex flags it gets are one codebook's."""
    table = lemma_table()

    def norm(text: str) -> str:
        low = text.lower()
        return table.get(low, low)

    nlp = _lemma_english()()
    nlp.vocab.lex_attr_getters[NORM] = norm
    for lexeme in nlp.vocab:
        lexeme.norm_ = norm(lexeme.orth_)
    return nlp


# Lexeme attributes the auto-coder reads itself: LOWER (LOWER values of fixed token
# patterns), NORM (the lemma), and IS_SPACE (whitespace tokens), whatever the patterns say.
_OWN_ATTRIBUTES = ("LOWER", "NORM", "IS_SPACE")


def _keep_lexeme_attributes(vocab, patterns: list[Pattern]) -> None:
    """Compute only the lexeme attributes that something reads.

    spaCy works out some twenty attributes (shape, prefix, suffix, like_num, is_stop, ...) for
    every new word, in Python, which is a tenth of tokenizing a million words. The auto-coder's
    vocabulary is its own, so its lexemes get only the ones the codebook's token patterns use
    (``IS_ALPHA``, ``SHAPE``, ...) besides :data:`_OWN_ATTRIBUTES`; ``ORTH``, ``TEXT`` and
    ``LENGTH`` come from the text itself."""
    from spacy.attrs import IDS

    used = set(_OWN_ATTRIBUTES)
    for pattern in patterns:
        if pattern.kind == "tokens":
            for token in pattern.value:
                used.update(str(name).upper() for name in dict(token))
    keep = {IDS[name] for name in used if name in IDS}
    for attr in list(vocab.lex_attr_getters):
        if attr not in keep:
            del vocab.lex_attr_getters[attr]


# --------------------------------------------------------------------------- compiling patterns

_TEXT_ATTRS = ("LEMMA", "LOWER", "ORTH", "TEXT")
_BOUNDED_OPS = (None, "?", "!", "1")


def _lemmatize_value(value: Any) -> Any:
    """A token-pattern ``LEMMA`` value with its words lemmatized (``{IN: [buy, bought]}``)."""
    if isinstance(value, str):
        return lemma(value)
    if isinstance(value, dict):
        return {op: ([lemma(v) if isinstance(v, str) else v for v in arg] if op in ("IN", "NOT_IN") and isinstance(arg, list)
                     else arg) for op, arg in value.items()}
    return value


def _token_pattern(value: list[dict]) -> list[dict]:
    """A codebook token pattern for spaCy's Matcher: ``LEMMA`` becomes ``NORM`` (the lemma
    here), with its values lemmatized the same way as the text."""
    out = []
    for token in value:
        spec = {}
        for attr, arg in dict(token).items():
            if str(attr).upper() == "LEMMA":
                spec["NORM"] = _lemmatize_value(arg)
            else:
                spec[attr] = arg
        out.append(spec)
    return out


def _words_of(arg: Any) -> list[str] | None:
    """The words a token attribute allows: a string, or ``{IN: [strings]}``; else None."""
    values = [arg] if isinstance(arg, str) else (arg.get("IN") if isinstance(arg, dict) and list(arg) == ["IN"] else None)
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        return None
    return list(dict.fromkeys(values))


def _fixed_words(value: list[dict]) -> tuple[list[list[str]], bool] | None:
    """For a token pattern that is a fixed sequence of words (each token one text attribute
    with a word or a set of words, no operators): every word sequence it allows, and whether
    all its tokens are ``LEMMA`` (then a lemma match is already exact). None otherwise."""
    choices = []
    all_lemma = True
    for token in value:
        token = {str(k).upper(): v for k, v in dict(token).items()}
        if token.pop("OP", None) not in (None, "1") or len(token) != 1:
            return None
        (attr, arg), = token.items()
        words = _words_of(arg) if attr in _TEXT_ATTRS else None
        if words is None:
            return None
        all_lemma = all_lemma and attr == "LEMMA"
        choices.append(words)
    total = 1
    for words in choices:
        total *= len(words)
    if not choices or total > MAX_EXPANSION:
        return None
    return [list(seq) for seq in itertools.product(*choices)], all_lemma


def _checks(value: list[dict], vocab) -> tuple[tuple[str, frozenset[int]], ...]:
    """For a fixed token pattern (:func:`_fixed_words`): per token, the Token attribute to test
    and the hashes it may have, as spaCy's Matcher would test them (``LOWER`` compares the
    token's lower-cased text with the value as written, ``LEMMA`` the lemma with the value's
    lemma). The phrase matcher has found the lemmas already; this confirms the rest without
    calling a Matcher (whose set predicates run in Python) on every candidate."""
    checks = []
    for token in value:
        ((attr, arg),) = {str(k).upper(): v for k, v in dict(token).items() if str(k).upper() != "OP"}.items()
        words = _words_of(arg) or []
        if attr == "LEMMA":
            checks.append(("norm", frozenset(vocab.strings.add(lemma(w)) for w in words)))
        else:
            checks.append(("lower" if attr == "LOWER" else "orth", frozenset(vocab.strings.add(w) for w in words)))
    return tuple(checks)


def _required_words(value: list[dict], stop_words: set[str]) -> list[list[str]]:
    """For each token every match must have (no ``OP`` or ``OP: "1"``) with a text attribute
    that is a word or a set of words: those words, the rarest-looking token first.

    Every match of the pattern holds, for each of these tokens, a token whose lemma is the
    lemma of one of its words; so the phrase matcher finds the few places worth running the
    pattern's Matcher on (around the first, when the others are near)."""
    scored = []
    for position, token in enumerate(value):
        token = {str(k).upper(): v for k, v in dict(token).items()}
        if token.get("OP") not in (None, "1"):
            continue
        best: tuple | None = None
        for attr, arg in token.items():
            words = _words_of(arg) if attr in _TEXT_ATTRS else None
            if words is not None:
                score = (all(w.lower() in stop_words for w in words), len(words), -min(len(w) for w in words), position)
                if best is None or score < best[0]:
                    best = (score, words)
        if best is not None:
            scored.append(best)
    return [words for _score, words in sorted(scored)]


def _window(value: list[dict]) -> int | None:
    """The most tokens a match of the pattern can span (None when unbounded: ``*``, ``+``)."""
    ops = [{str(k).upper(): v for k, v in dict(token).items()}.get("OP") for token in value]
    return len(value) if all(op in _BOUNDED_OPS for op in ops) else None


# --------------------------------------------------------------------------- the matcher

# One sentence's suggestion before it becomes a record or a line: the transcript, turn and
# sentence, the primary pattern's index and the matches (start, end in the source, pattern index).
_Hit = tuple[Transcript, Turn, Sentence, int, list[tuple[int, int, int]]]


def is_facilitator(transcript: Transcript, turn: Turn) -> bool:
    """A turn of the session's facilitator (the ``facilitator`` of its metadata, or the role)."""
    return turn.role == "facilitator" or (bool(transcript.facilitator) and turn.speaker == transcript.facilitator)


class Autocoder:
    """The codebook's patterns compiled into one lemma pipeline and its matchers.

    The facilitator's turns are left out unless ``include_facilitator``: researchers code what
    participants say, and a facilitator's questions repeat the codebook's words ("What about
    assessment?")."""

    def __init__(self, codebook: Codebook, include_facilitator: bool = False):
        self.codebook = codebook
        self.include_facilitator = include_facilitator
        self.patterns: list[Pattern] = codebook.patterns()
        self.nlp = lemma_pipeline()
        vocab = self.nlp.vocab
        _keep_lexeme_attributes(vocab, self.patterns)
        stop_words = set(self.nlp.Defaults.stop_words)
        self._rank = {code_id: rank for rank, code_id in enumerate(codebook.codes)}
        self._code_rank = [self._rank[p.code_id] for p in self.patterns]
        self._roles = [frozenset(p.roles) for p in self.patterns]
        self._explain = [p.describe() for p in self.patterns]
        self._phrases = PhraseMatcher(vocab, attr="NORM")
        self._always = Matcher(vocab, validate=False)  # token patterns with no word to anchor on
        self._key: dict[int, int] = {}  # phrase or "always" key -> pattern index
        self._fixed: dict[int, tuple[int, tuple | None]] = {}  # key -> (pattern index, per-token checks)
        # anchor key -> (pattern index, matcher, window, keys of the other required words)
        self._anchored: dict[int, tuple[int, Matcher, int | None, tuple[int, ...]]] = {}
        regexes: list[tuple[int, re.Pattern]] = []
        problems: list[Problem] = []
        for index, pattern in enumerate(self.patterns):
            key = f"p{index}"
            try:
                if pattern.kind == "phrase":
                    self._phrases.add(key, [self.nlp.make_doc(str(pattern.value))])
                    self._key[vocab.strings[key]] = index
                elif pattern.kind == "tokens":
                    fixed = _fixed_words(pattern.value)
                    required = [] if fixed else _required_words(pattern.value, stop_words)
                    if fixed:
                        sequences, exact = fixed
                        self._phrases.add(key, [Doc(vocab, words=seq) for seq in sequences])
                        self._fixed[vocab.strings[key]] = (index, None if exact else _checks(pattern.value, vocab))
                    elif required:
                        own = Matcher(vocab, validate=False)
                        own.add(key, [_token_pattern(pattern.value)])
                        partners = []
                        for number, words in enumerate(required):
                            name = key if number == 0 else f"{key}.{number}"
                            self._phrases.add(name, [Doc(vocab, words=[w]) for w in words])
                            if number:
                                partners.append(vocab.strings[name])
                        self._anchored[vocab.strings[key]] = (index, own, _window(pattern.value), tuple(partners))
                    else:
                        self._always.add(key, [_token_pattern(pattern.value)])
                        self._key[vocab.strings[key]] = index
                else:
                    regexes.append((index, re.compile(str(pattern.value))))
            except Exception as exc:  # re.error, spaCy's ValueError/MatchPatternError
                problems.append(Problem(codebook.path, pattern.line, "bad-pattern",
                                        f"code {pattern.code_id!r}: {pattern.describe()} cannot be compiled "
                                        f"({' '.join(str(exc).split())[:200]})"))
        if problems:
            raise DataError(f"{len(problems)} pattern(s) in {codebook.path} cannot be compiled; fix them before auto-coding",
                            problems)
        # A regex is tested once per distinct word, when spaCy first sees it (a lexeme flag's
        # getter); each word it matches becomes a phrase of the regex's key (on NORM, so a
        # superset: the token's own text is checked again when the phrase is found).
        self._regexes = dict(regexes)
        self._regex_key = {vocab.strings[f"r{index}"]: index for index, _ in regexes}
        self._pending: list[tuple[int, str]] = []

        any_regex = _any_of([rx for _, rx in regexes])

        def note(text: str) -> bool:
            if any_regex is not None and any_regex.search(text) is None:
                return False  # most words match no regex: one search instead of one per regex
            hits = [(index, text) for index, rx in regexes if rx.search(text)]
            self._pending += hits
            return bool(hits)

        if regexes:
            vocab.add_flag(note)
        self._has_always = len(self._always) > 0
        self._allowed_by_role: dict[str | None, list[bool]] = {}

    # ------------------------------------------------------------------ matching

    def matches(self, doc: Doc, role: str | None) -> set[tuple[int, int, int]]:
        """(pattern index, start token, end token) of every match allowed for ``role``."""
        return set(self._found(doc, role))

    def _allowed(self, role: str | None) -> list[bool]:
        """Per pattern, whether a turn of ``role`` may match it (its ``roles``, if it has any)."""
        allowed = self._allowed_by_role.get(role)
        if allowed is None:
            allowed = self._allowed_by_role[role] = [not roles or role in roles for roles in self._roles]
        return allowed

    def _found(self, doc: Doc, role: str | None) -> list[tuple[int, int, int]]:
        """:meth:`matches` as a list (each match once: every pattern is found one way only,
        the phrase matcher reports a span once per key, and windows of one key are merged)."""
        if self._pending:
            self._add_regex_words()
        allowed = self._allowed(role)
        key = self._key
        found: list[tuple[int, int, int]] = []
        rest: list[tuple[int, int, int]] = []
        for match in self._phrases(doc):
            index = key.get(match[0])
            if index is None:
                rest.append(match)
            elif allowed[index]:
                found.append((index, match[1], match[2]))
        if rest or self._has_always:
            found += self._other_matches(doc, rest, allowed)
        return found

    def _other_matches(self, doc: Doc, rest: list[tuple[int, int, int]], allowed: list[bool]) -> list[tuple[int, int, int]]:
        """(pattern index, start, end) of the token patterns and regexes, from the phrase
        matcher's candidates for them (key, start, end), and of the token patterns that run
        on every doc."""
        found: list[tuple[int, int, int]] = []
        windows: dict[int, list[int]] = {}
        fixed, anchored, regex_key = self._fixed, self._anchored, self._regex_key
        for k, s, e in rest:
            if k in fixed:
                index, checks = fixed[k]
                if allowed[index] and (checks is None or all(getattr(doc[i], attr) in words
                                                             for i, (attr, words) in enumerate(checks, s))):
                    found.append((index, s, e))
            elif k in regex_key:
                index = regex_key[k]
                if allowed[index] and self._regexes[index].search(doc[s].text):
                    found.append((index, s, e))
            else:  # a word a token pattern requires: its anchor, or another it needs near the anchor
                windows.setdefault(k, []).append(s)
        for k, positions in windows.items():
            entry = anchored.get(k)
            if entry is None or not allowed[entry[0]]:
                continue
            index, own, window, partners = entry
            for partner in partners:
                near = windows.get(partner)
                if not near:
                    positions = []
                elif window is not None:
                    near.sort()
                    positions = [p for p in positions if _near(near, p, window)]
                if not positions:
                    break
            for first, last in _spans(positions, window, len(doc)):
                found.extend((index, first + ms, first + me) for _, ms, me in own(doc[first:last]))
        if self._has_always:
            key = self._key
            found.extend((key[k], s, e) for k, s, e in self._always(doc) if allowed[key[k]])
        return found

    def _add_regex_words(self) -> None:
        """Make the words the regexes matched since the last doc phrases of their regex."""
        vocab = self.nlp.vocab
        for index, text in self._pending:
            self._phrases.add(f"r{index}", [Doc(vocab, words=[text])])
        self._pending.clear()

    # ------------------------------------------------------------------ per sentence

    def _turns(self, transcripts: Iterable[Transcript], batch_size: int) -> Iterator[tuple[Transcript, Turn, list[_Row]]]:
        """Each turn with matches and its matches as rows (sentence number, code rank, start and
        end in the source, pattern index), sorted: so a suggestion (one code in one sentence) is
        a run of rows, in text order, its matches in text order. Turns are tokenized in one
        ``nlp.pipe`` stream; a match goes to the sentence that holds it (the study's own
        sentences, by offsets), and one across a sentence boundary goes nowhere."""
        with gc_paused():
            yield from self._turns_unpaused(transcripts, batch_size)

    def _turns_unpaused(self, transcripts: Iterable[Transcript], batch_size: int) -> Iterator[tuple[Transcript, Turn, list[_Row]]]:
        items = [(transcript, turn) for transcript in transcripts for turn in transcript.turns
                 if self.include_facilitator or not is_facilitator(transcript, turn)]
        # the tokenizer's own pipe: the pipeline has no components, so this is nlp.pipe without its overhead
        docs = self.nlp.tokenizer.pipe((turn.text for _, turn in items), batch_size=batch_size)
        code_rank, key, phrases, others, has_always = self._code_rank, self._key, self._phrases, self._other_matches, self._has_always
        allowed_by_role = self._allowed_by_role
        for (transcript, turn), doc in zip(items, docs, strict=True):
            # what _found does, with each match turned into its row at once (this loop is most
            # of the time auto-coding adds to tokenizing)
            if self._pending:
                self._add_regex_words()
            candidates = phrases(doc)
            if not candidates and not has_always:
                continue
            allowed = allowed_by_role.get(turn.role) or self._allowed(turn.role)
            sentences = turn.sentences
            starts = [s.start for s in sentences]
            base = turn.start
            rows: list[_Row] = []
            rest: list[tuple[int, int, int]] = []
            for k, s, e in candidates:
                index = key.get(k)
                if index is None:
                    rest.append((k, s, e))
                    continue
                if not allowed[index]:
                    continue
                token = doc[s]
                first = base + token.idx
                if e - s > 1:
                    token = doc[e - 1]
                last = base + token.idx + len(token)
                number = bisect_right(starts, first) - 1
                if number >= 0 and last <= sentences[number].end:
                    rows.append((number, code_rank[index], first, last, index))
            if rest or has_always:
                for index, s, e in others(doc, rest, allowed):
                    first = base + doc[s].idx
                    token = doc[e - 1]
                    last = base + token.idx + len(token)
                    number = bisect_right(starts, first) - 1
                    if number >= 0 and last <= sentences[number].end:
                        rows.append((number, code_rank[index], first, last, index))
            if rows:
                rows.sort()
                yield transcript, turn, rows

    def hits(self, transcripts: Iterable[Transcript], batch_size: int = BATCH_SIZE) -> Iterator[_Hit]:
        """Each (sentence, code) with matches, in text order: source, turn, sentence, then code
        in codebook order; with the first matching pattern in codebook order (the lowest index)
        and the matches (start, end, pattern index) in text order."""
        for transcript, turn, rows in self._turns(transcripts, batch_size):
            sentences = turn.sentences
            for number, matches in _groups(rows):
                yield transcript, turn, sentences[number], min(m[2] for m in matches), matches

    def suggest(self, transcripts: Iterable[Transcript], batch_size: int = BATCH_SIZE) -> Iterator[Suggestion]:
        """:class:`Suggestion` records for every sentence with matches, in text order."""
        patterns, explain = self.patterns, self._explain
        for transcript, turn, sentence, primary_index, matches in self.hits(transcripts, batch_size):
            text = transcript.text
            primary = patterns[primary_index]
            evidence = tuple(Evidence(patterns[i].id, text[a:b], a, b, f'{explain[i]} matched "{text[a:b]}"')
                             for a, b, i in matches)
            yield Suggestion(
                id=suggestion_id(primary.code_id, sentence.id, primary.id), code=primary.code_id, source=transcript.id,
                anchor=coding.Anchor(start=sentence.start, end=sentence.end, sentence=sentence.id, turn=turn.id,
                                     sha256=transcript.sha256, text=sentence.text),
                pattern=primary.id, evidence=evidence, speaker=turn.speaker, role=turn.role, line=sentence.line,
            )

    def lines(self, transcripts: Iterable[Transcript], batch_size: int = BATCH_SIZE) -> Iterator[tuple[str, str, tuple[str, ...], str]]:
        """(code, source, pattern ids of the evidence, JSON line) for every suggestion, in text
        order. Each line is ``json.dumps(suggestion.to_dict(), ensure_ascii=False)``, written
        straight from the matches with json's own string escaping and without building the
        records, which halves the cost of a million-word run (a test checks the lines are
        the same). The JSON of a turn, a sentence and a (pattern, words) pair is made once."""
        patterns, explain = self.patterns, self._explain
        pattern_ids = [p.id for p in patterns]
        quoted_ids = [_quote(p.id) for p in patterns]
        codes = [p.code_id for p in patterns]
        quoted_codes = [_quote(p.code_id) for p in patterns]
        # suggestion_id's input, in pieces: code + US before the sentence id, US + pattern id after it
        id_head = [f"{p.code_id}\x1f".encode() for p in patterns]
        id_tail = [f"\x1f{p.id}".encode() for p in patterns]
        sha256 = hashlib.sha256
        fragments: dict[tuple[int, str], tuple[str, str]] = {}
        tails: dict[tuple[str, str | None], str] = {}
        last_transcript: Transcript | None = None
        head = ""
        for transcript, turn, rows in self._turns(transcripts, batch_size):
            if transcript is not last_transcript:
                last_transcript = transcript
                text, source, sha = transcript.text, transcript.id, transcript.sha256
                head = f'"source": {_quote(source)}, '
            tail = tails.get((turn.speaker, turn.role))
            if tail is None:
                tail = tails[(turn.speaker, turn.role)] = (
                    f', "speaker": {_quote(turn.speaker)}, "role": {"null" if turn.role is None else _quote(turn.role)}, "line": ')
            turn_json = _quote(turn.id)
            sentences = turn.sentences
            last_number = -1
            sentence_json = ""
            sentence_id = b""
            size = len(rows)
            j = 0
            while j < size:  # each run of rows with one sentence and code is a suggestion
                number, rank, a, b, primary = rows[j]
                j += 1
                if number != last_number:
                    last_number = number
                    sentence = sentences[number]
                    sentence_json = (f'"anchor": {{"start": {sentence.start}, "end": {sentence.end}, '
                                     f'"sentence": {_quote(sentence.id)}, "turn": {turn_json}, '
                                     f'"sha256": "{sha}", "text": {_quote(sentence.text)}}}, ')
                    sentence_id = sentence.id.encode()
                matches = [(a, b, primary)]
                while j < size and rows[j][0] == number and rows[j][1] == rank:
                    matches.append(rows[j][2:])
                    j += 1
                parts = []
                for a, b, i in matches:
                    words = text[a:b]
                    fragment = fragments.get((i, words))
                    if fragment is None:
                        fragment = fragments[(i, words)] = (
                            f'{{"pattern": {quoted_ids[i]}, "words": {_quote(words)}, "start": ',
                            f', "explanation": {_quote(explain[i] + " matched " + chr(34) + words + chr(34))}}}')
                    parts.append(f'{fragment[0]}{a}, "end": {b}{fragment[1]}')
                if len(matches) == 1:
                    evidence, used = parts[0], (pattern_ids[primary],)
                else:
                    primary = min(m[2] for m in matches)
                    evidence, used = ", ".join(parts), tuple([pattern_ids[m[2]] for m in matches])
                digest = sha256(id_head[primary] + sentence_id + id_tail[primary]).hexdigest()  # = suggestion_id(...)
                yield codes[primary], source, used, (
                    f'{{"v": {FORMAT_VERSION}, "id": "s-{digest[:12]}", "code": {quoted_codes[primary]}, {head}{sentence_json}'
                    f'"pattern": {quoted_ids[primary]}, "evidence": [{evidence}]{tail}{sentence.line}}}')


_Row = tuple[int, int, int, int, int]


def _groups(rows: list[_Row]) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """Sorted rows of one turn as (sentence number, matches) per sentence and code, in order."""
    groups: list[tuple[int, list[tuple[int, int, int]]]] = []
    current = (-1, -1)
    matches: list[tuple[int, int, int]] = []
    for number, rank, a, b, index in rows:
        if (number, rank) != current:
            current = (number, rank)
            matches = []
            groups.append((number, matches))
        matches.append((a, b, index))
    return groups


def _any_of(regexes: list[re.Pattern]) -> re.Pattern | None:
    """One regex that matches a text when (and only when) one of ``regexes`` does, or None when
    they cannot be joined safely: global flags such as ``(?i)`` must stay at the start of a
    pattern, and back-references would point at the wrong group."""
    if len(regexes) < 2:
        return None
    if any(rx.flags & ~re.UNICODE or rx.groupindex or re.search(r"\\[1-9]|\(\?P=|\(\?\(", rx.pattern) for rx in regexes):
        return None
    try:
        return re.compile("|".join(f"(?:{rx.pattern})" for rx in regexes))
    except re.error:
        return None


def _near(positions: list[int], position: int, window: int) -> bool:
    """Whether a match of at most ``window`` tokens can hold ``position`` and one of ``positions`` (sorted)."""
    i = bisect_left(positions, position - window + 1)
    return i < len(positions) and positions[i] < position + window


def _spans(positions: list[int], window: int | None, size: int) -> list[tuple[int, int]]:
    """Token ranges that hold every match through the given anchor positions (merged when they
    overlap); the whole doc when the pattern's length is unbounded."""
    if window is None:
        return [(0, size)]
    spans: list[tuple[int, int]] = []
    for position in sorted(positions):
        first, last = max(0, position - window + 1), min(size, position + window)
        if spans and first <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], last))
        else:
            spans.append((first, last))
    return spans


# --------------------------------------------------------------------------- running on a study


def pattern_problems(study: Study) -> list[Problem]:
    """The codebook problems that stop auto-coding (patterns that do not compile)."""
    return [p for p in study.problems if p.type == "bad-pattern" and p.severity == "error"]


def check_codebook(study: Study) -> None:
    """Refuse to auto-code when a pattern in the codebook cannot be compiled."""
    bad = pattern_problems(study)
    if bad:
        raise DataError(f"auto-coding refused: {len(bad)} pattern(s) in {study.codebook.path} cannot be compiled; "
                        "fix them (each is listed with its code and line) and run again", bad)


def check_suggester(study: Study, coder: str) -> str:
    """``coder`` as a suggester name: a safe name that is not a human coder's."""
    check_name(coder, "coder")
    if coding.coder_path(study, coder).exists():
        raise UsageError(f"{coder!r} is a human coder (codings/{coder}.jsonl exists); suggestions are written under a "
                         f"name of their own (default {DEFAULT_CODER!r}) and never into a coder's codings")
    return coder


def suggest(study: Study, district: str | None = None, autocoder: Autocoder | None = None,
            include_facilitator: bool = False) -> list[Suggestion]:
    """Suggestions for the study's sources (one district or all), in a stable order; nothing is written."""
    check_codebook(study)
    if district is not None:
        study.district(district)
    with gc_paused():
        autocoder = autocoder or Autocoder(study.codebook, include_facilitator)
        return list(autocoder.suggest(study.sources(district)))


@dataclass(frozen=True)
class AutocodeResult:
    """What :func:`run` wrote: the file, and per suggestion its code, source and evidence patterns."""

    path: Path
    coder: str
    district: str | None
    tally: tuple[tuple[str, str, tuple[str, ...]], ...]
    kept: int  # lines of other districts kept from the file as it was

    @property
    def count(self) -> int:
        return len(self.tally)


def run(study: Study, coder: str = DEFAULT_CODER, district: str | None = None,
        include_facilitator: bool = False) -> AutocodeResult:
    """Auto-code the study (or one district) and write ``suggestions/<coder>.jsonl`` atomically.

    The file is in text order (sessions in study order, then sentence, then code in codebook
    order). With a district, the file's suggestions for the other districts' sources are kept."""
    check_codebook(study)
    check_suggester(study, coder)
    if district is not None:
        study.district(district)
    with gc_paused():
        return _run(study, coder, district, include_facilitator)


def _run(study: Study, coder: str, district: str | None, include_facilitator: bool) -> AutocodeResult:
    """:func:`run` once its arguments are checked."""
    autocoder = Autocoder(study.codebook, include_facilitator)
    path = coding.suggestions_path(study, coder)
    order = {t.id: n for n, t in enumerate(study.transcripts)}
    kept = _kept_lines(path, study, order, district) if district is not None else []
    tally: list[tuple[str, str, tuple[str, ...]]] = []
    # binary writes of encoded batches: a text file's encoder makes writing 50 MB three times slower
    with atomic_open(path, "wb") as fh:
        if not kept:
            batch: list[str] = []
            for code, source, evidence, line in autocoder.lines(study.sources(district)):
                tally.append((code, source, evidence))
                batch.append(line)
                if len(batch) >= WRITE_BATCH:
                    fh.write(("\n".join(batch) + "\n").encode("utf-8"))
                    batch = []
            if batch:
                fh.write(("\n".join(batch) + "\n").encode("utf-8"))
        else:
            rank = autocoder._rank
            rows = list(kept)
            for code, source, evidence, line in autocoder.lines(study.sources(district)):
                tally.append((code, source, evidence))
                row = json.loads(line)
                rows.append(((order[source], row["anchor"]["start"], rank[code], row["id"]), line))
            fh.write("".join(line + "\n" for _, line in sorted(rows)).encode("utf-8"))
    log.info("%s: %d suggestion(s) written, %d kept", relpath(path, study.root), len(tally), len(kept))
    return AutocodeResult(path=path, coder=coder, district=district, tally=tuple(tally), kept=len(kept))


def _kept_lines(path: Path, study: Study, order: dict[str, int], district: str) -> list[tuple[tuple, str]]:
    """(sort key, line) of the suggestions file's lines for sources of other districts that
    are still in the study; lines that cannot be read are dropped (the file is derived)."""
    if not path.exists():
        return []
    rank = {code_id: n for n, code_id in enumerate(study.codebook.codes)}
    kept = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
            source, start, code, sid = row["source"], row["anchor"]["start"], row["code"], str(row["id"])
        except (json.JSONDecodeError, KeyError, TypeError):
            log.warning("%s:%d: dropped a line that is not a suggestion (the file is rebuilt by autocode)",
                        relpath(path, study.root), number)
            continue
        if source in order and source.split("/", 1)[0] != district and isinstance(start, int):
            kept.append(((order[source], start, rank.get(code, len(rank)), sid), raw))
    return kept


def summary_rows(study: Study, result: AutocodeResult) -> list[dict[str, Any]]:
    """Suggestions per code (codebook order): how many, in how many sources, and the three
    patterns that matched most often (a phrase as itself, other patterns by id)."""
    names = {p.id: (f'"{p.value}"' if p.kind == "phrase" else p.id) for p in study.codebook.patterns()}
    per_code: dict[str, tuple[list[int], set[str], dict[str, int]]] = {}
    for code, source, evidence in result.tally:
        count, sources, patterns = per_code.setdefault(code, ([0], set(), {}))
        count[0] += 1
        sources.add(source)
        for pattern in evidence:
            patterns[pattern] = patterns.get(pattern, 0) + 1
    rows = []
    for code_id, code in study.codebook.codes.items():
        if code_id not in per_code:
            continue
        count, sources, patterns = per_code[code_id]
        top = sorted(patterns.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        rows.append({"code": code_id, "label": code.label, "suggestions": count[0], "sources": len(sources),
                     "top_patterns": ", ".join(f"{names.get(p, p)} {n}" for p, n in top)})
    return rows


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class CodeScore:
    """Sentence-level agreement of suggestions with a human coder for one code (or all)."""

    code: str
    label: str
    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {"code": self.code, "label": self.label, "tp": self.tp, "fp": self.fp, "fn": self.fn,
                "precision": rounded(self.precision), "recall": rounded(self.recall), "f1": rounded(self.f1)}


@dataclass(frozen=True)
class Evaluation:
    suggester: str
    against: str
    district: str | None
    sources: tuple[str, ...]  # the sources the human coder has coded (the only ones scored)
    sentences: int
    codes: tuple[CodeScore, ...]
    micro: CodeScore

    def rows(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.codes] + [self.micro.to_dict()]


def _sentences_overlapping(transcript: Transcript, start: int, end: int) -> list[str]:
    return [s.id for s in transcript.sentences if s.start < end and start < s.end]


def evaluate(study: Study, suggester: str, against_coder: str, district: str | None = None) -> Evaluation:
    """Per-code precision, recall and F1 of ``suggestions/<suggester>.jsonl`` against the
    codings of ``against_coder``, at the sentence level: a human coding counts for every
    sentence it overlaps; a suggestion for its sentence. Only sources the human coder has
    coded are scored (an uncoded session says nothing about the suggestions there).
    ``micro`` sums the counts of all codes."""
    check_name(suggester, "coder")
    if district is not None:
        study.district(district)
    path = coding.suggestions_path(study, suggester)
    if not path.exists():
        raise UsageError(f"no suggestions to evaluate: {relpath(path, study.root)} does not exist (run 'casestudy autocode' first)")
    in_scope = {t.id: t for t in study.sources(district)}
    human: set[tuple[str, str]] = set()  # (code, sentence id)
    coded_sources: set[str] = set()
    for c in coding.load_codings(study, against_coder):
        transcript = in_scope.get(c.source)
        if transcript is None:
            continue
        if c.status == "stale":
            log.warning("coding %s of %s is stale (its text is no longer in the source); not scored", c.id, c.source)
            continue
        coded_sources.add(c.source)
        human.update((c.code, sid) for sid in _sentences_overlapping(transcript, c.start, c.end))
    if not coded_sources:
        where = f" in district {district}" if district else ""
        raise UsageError(f"coder {against_coder!r} has no codings{where}; there is nothing to evaluate against")
    machine: set[tuple[str, str]] = set()
    outdated: set[str] = set()
    for s in coding.load_suggestions(study, suggester):
        if s["source"] not in coded_sources:
            continue
        anchor = s["anchor"]
        transcript = in_scope[s["source"]]
        if anchor.get("sha256") != transcript.sha256:
            outdated.add(s["source"])
        if anchor.get("sentence"):
            machine.add((s["code"], anchor["sentence"]))
        else:
            machine.update((s["code"], sid) for sid in _sentences_overlapping(transcript, anchor["start"], anchor["end"]))
    for source in sorted(outdated):
        log.warning("suggestions for %s were made on another version of it; run 'casestudy autocode' again", source)
    scores = []
    for code_id, code in study.codebook.codes.items():
        h = {sid for c, sid in human if c == code_id}
        m = {sid for c, sid in machine if c == code_id}
        if h or m:
            scores.append(CodeScore(code_id, code.label, tp=len(h & m), fp=len(m - h), fn=len(h - m)))
    micro = CodeScore("(all codes, micro)", "", tp=sum(s.tp for s in scores), fp=sum(s.fp for s in scores),
                      fn=sum(s.fn for s in scores))
    sentences = sum(1 for source in coded_sources for _ in in_scope[source].sentences)
    return Evaluation(suggester=suggester, against=against_coder, district=district, sources=tuple(sorted(coded_sources)),
                      sentences=sentences, codes=tuple(scores), micro=micro)
