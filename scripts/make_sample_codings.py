"""Write the sample study's coder files, codings/ana.jsonl and codings/ben.jsonl.

Two synthetic coders read the transcripts of the chosen districts sentence by sentence, the
way the codebook asks: a sentence is coded when it says what a code's definition describes,
recognised here by the code's patterns (specific phrases always, broad single words only in
longer sentences, a child code in preference to its condition, at most three codes a
sentence, facilitators' questions never coded). Then each coder is made human:

- ana is thorough: she misses little, writes memos on some codings, revises a few memos and
  removes a few codings she applied by mistake;
- ben misses more, and how much depends on the code (he rarely misses a data wall and often
  misses culture or a success), sometimes applies a sibling code instead (data tracking for
  data walls, voice and choice for reflection), codes some whole turns instead of sentences,
  and codes a few short sentences ana leaves alone.

So agreement between them is high for some codes and low for others, as in real double
coding. Everything is written through casestudy.coding (apply_code_to_sentence, ...), with a
fixed seed and timestamps from a fixed base time plus seeded increments: the same
transcripts always give the same files.

Usage: python scripts/make_sample_codings.py [--study DIR] [--districts SCV35 AUSD ...] [--overwrite]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from casestudy import coding
from casestudy.codebook import Codebook
from casestudy.errors import CasestudyError
from casestudy.study import Study, load_study
from casestudy.transcripts import Sentence, Transcript, Turn

SEED = 20231017
DEFAULT_DISTRICTS = ("AUSD", "MPS", "SCV35", "YUHSD")  # new districts go last: the earlier ones keep their bytes
CODERS = ("ana", "ben")
BASE_TIME = {"ana": datetime(2024, 2, 5, 9, 0, tzinfo=UTC), "ben": datetime(2024, 2, 6, 13, 30, tzinfo=UTC)}
WORD_RE = re.compile(r"[a-z0-9]+(?:['\u2019][a-z]+)?")
# broad words a careful reader codes only when the sentence is about them at some length
WEAK_WORDS = {"support", "community", "improve", "better", "problem", "business", "college", "communicate",
              "communication", "schedule", "standard", "material", "principal", "flexible", "comfortable",
              "learned", "mission", "lesson", "leader", "help", "time", "room", "space", "data", "test", "grade",
              "unit", "pace", "goal", "chart", "seat", "zone", "safe", "why", "risk", "hard", "ahead", "behind",
              "menu", "choice", "trust", "partner"}
MIN_WORDS = 4
WEAK_MIN_WORDS = 8
MAX_WEAK = 2
MAX_CODES = 3
# ben's chance of missing a code the base reading finds: low for concrete elements, high for judgement calls
BEN_MISS = {"shared-vision": 0.05, "data-walls": 0.05, "flexible-seating": 0.05, "small-groups": 0.08,
            "learner-profiles": 0.05, "student-led-conferences": 0.05, "help-stick": 0.05,
            "standards-based-grading": 0.1, "professional-development": 0.1,
            "culture": 0.5, "success": 0.55, "challenge": 0.35, "lesson": 0.6, "learner-supports": 0.45,
            "relationships": 0.5, "transparency": 0.4, "partnerships": 0.3, "instruction": 0.3}
BEN_MISS_DEFAULT = 0.2
BEN_SWAP = 0.2  # chance of a sibling code instead of the right one, where a sibling is easy to mistake
CONFUSABLE = {"transparency": "assessment-system", "instruction": "curriculum", "culture": "shared-vision",
              "success": "lesson", "challenge": "lesson", "learner-supports": "instruction",
              "professional-development": "leadership-development", "learning-pathways": "curriculum",
              "data-walls": "data-tracking", "data-tracking": "data-walls", "self-assessment": "voice-and-choice",
              "voice-and-choice": "self-assessment", "relationships": "culture", "flexible-environments": "learning-pathways"}
BEN_WHOLE_TURN = 0.35
BEN_EXTRA = 0.25
ANA_MISS = 0.04
ANA_MEMO = 0.06
MEMOS = (
    "Clear example of {label}; a candidate quote for the report.",
    "{role} view of {label}. Compare with what the students say about it.",
    "Borderline: could also be {other}. Kept {label} because of the definition: {use_when}",
    "Ties {label} to the district's plan; ask the district team about it at the spring visit.",
    "Strong statement. Check whether other {role_plural} in this session agree.",
)


@dataclass(frozen=True)
class Cue:
    code: str
    words: tuple[tuple[str, ...], ...]  # per position, the words that may stand there
    roles: tuple[str, ...]
    weak: bool
    regex: re.Pattern | None = None


def words_of(text: str) -> list[str]:
    return WORD_RE.findall(text.lower().replace("-", " "))


def same_word(cue: str, word: str) -> bool:
    return word == cue or word in (cue + "s", cue + "es") or (cue.endswith("y") and word == cue[:-1] + "ies") \
        or (len(cue) >= 5 and word.startswith(cue))


def token_words(value: list) -> tuple[tuple[str, ...], ...] | None:
    """A token pattern that is a fixed sequence of words ({LOWER: x} or {LEMMA: {IN: [x, y]}}, no
    operators) as the words allowed at each position; None for any other token pattern."""
    sequence = []
    for token in value:
        token = {str(k).upper(): v for k, v in dict(token).items()}
        if len(token) != 1 or next(iter(token)) not in ("LOWER", "LEMMA", "ORTH", "TEXT"):
            return None
        arg = next(iter(token.values()))
        words = [arg] if isinstance(arg, str) else arg.get("IN") if isinstance(arg, dict) and list(arg) == ["IN"] else None
        if not words or not all(isinstance(w, str) for w in words):
            return None
        sequence.append(tuple(w.lower() for w in words))
    return tuple(sequence) or None


def cues_of(codebook: Codebook) -> list[Cue]:
    cues = []
    for code in codebook.codes.values():
        for pattern in code.patterns:
            if pattern.kind == "phrase":
                words = tuple((w,) for w in words_of(pattern.value))
                if words:
                    cues.append(Cue(code.id, words, pattern.roles, len(words) == 1 and words[0][0] in WEAK_WORDS))
            elif pattern.kind == "tokens":
                sequence = token_words(pattern.value)
                if sequence:
                    cues.append(Cue(code.id, sequence, pattern.roles, len(sequence) == 1 and bool(set(sequence[0]) & WEAK_WORDS)))
            elif pattern.kind == "regex":
                cues.append(Cue(code.id, (), pattern.roles, False, re.compile(pattern.value)))
    return cues


def cue_matches(cue: Cue, words: list[str], tokens: list[str], role: str | None) -> bool:
    if cue.roles and role not in cue.roles:
        return False
    if cue.regex is not None:
        return any(cue.regex.fullmatch(token) for token in tokens)
    n = len(cue.words)
    return any(all(any(same_word(c, w) for c in choices) for choices, w in zip(cue.words, words[i:i + n], strict=True))
               for i in range(len(words) - n + 1))


def read_sentence(sentence: Sentence, role: str | None, cues: list[Cue], codebook: Codebook) -> tuple[list[str], list[str]]:
    """(codes a careful reader applies, codes only a broad word suggests) for one sentence."""
    words = words_of(sentence.text)
    tokens = re.findall(r"\S+", sentence.text)
    tokens = [t.strip(".,;:!?\"'()[]") for t in tokens]
    strong: list[str] = []
    weak: list[str] = []
    for cue in cues:
        if cue_matches(cue, words, tokens, role):
            target = strong if not cue.weak else weak
            if cue.code not in target:
                target.append(cue.code)
    weak = [c for c in weak if c not in strong]
    chosen = list(strong)
    if len(words) >= WEAK_MIN_WORDS:
        chosen += weak[:MAX_WEAK]
        weak = weak[MAX_WEAK:]
    # a child code (a district element) stands for its condition
    chosen = [c for c in chosen if not any(codebook.codes[o].parent == c for o in chosen if o != c)]
    order = list(codebook.codes)
    return sorted(chosen[:MAX_CODES], key=order.index), weak  # specific phrases first, then broad words


class Clock:
    """Each coder's own working time: a fixed start plus seeded steps, with breaks between sessions."""

    def __init__(self, start: datetime, rng: random.Random):
        self.now = start
        self.rng = rng

    def tick(self, low: int = 15, high: int = 150) -> str:
        self.now += timedelta(seconds=self.rng.randint(low, high))
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def pause(self) -> None:
        self.now += timedelta(minutes=self.rng.randint(40, 180))


def sibling(codebook: Codebook, code: str) -> str | None:
    if code in CONFUSABLE:
        return CONFUSABLE[code]
    parent = codebook.codes[code].parent
    others = [c for c in codebook.children(parent)] if parent else []
    others = [c for c in others if c != code]
    return others[0] if others else None


def memo_for(study: Study, code: str, role: str | None, rng: random.Random) -> str:
    info = study.codebook.codes[code]
    role_label = study.config.roles.get(role or "", role or "Speaker")
    other = sibling(study.codebook, code) or info.parent or "another condition"
    use_when = (info.use_when.split(".")[0] + ".") if info.use_when else info.definition
    return rng.choice(MEMOS).format(label=info.label.lower(), role=role_label, role_plural=role_label.lower() + "s",
                                    other=study.codebook.codes[other].label.lower() if other in study.codebook.codes else other,
                                    use_when=use_when)


def code_as_ana(study: Study, reading: dict, rng: random.Random, clock: Clock) -> None:
    applied: list[tuple[coding.Coding, str | None]] = []
    for transcript in reading["sources"]:
        for turn in transcript.turns:
            for sentence in turn.sentences:
                for code in reading[sentence.id][0]:
                    if rng.random() < ANA_MISS:
                        continue
                    memo = memo_for(study, code, turn.role, rng) if rng.random() < ANA_MEMO else None
                    applied.append((coding.apply_code_to_sentence(study, "ana", code, sentence.id, memo, at=clock.tick()), turn.role))
        clock.pause()
    # second thoughts at the end of the day: revise some memos, take back some codings
    with_memo = [c for c, _ in applied if c.memo]
    for c in rng.sample(with_memo, min(3, len(with_memo))):
        coding.edit_memo(study, "ana", c.id, c.memo + " Revised after talking it through with Ben.", at=clock.tick())
    without = [(c, role) for c, role in applied if not c.memo]
    for c, _role in rng.sample(without, min(4, len(without))):
        coding.remove_coding(study, "ana", c.id, at=clock.tick())


def code_as_ben(study: Study, reading: dict, rng: random.Random, clock: Clock) -> None:
    applied: list[coding.Coding] = []
    for transcript in reading["sources"]:
        for turn in transcript.turns:
            plan: dict[str, list[str]] = {}  # code -> sentence ids
            for sentence in turn.sentences:
                codes, weak = reading[sentence.id]
                for code in codes:
                    if rng.random() < BEN_MISS.get(code, BEN_MISS_DEFAULT):
                        continue
                    other = sibling(study.codebook, code)
                    if other and rng.random() < BEN_SWAP:
                        code = other
                    plan.setdefault(code, []).append(sentence.id)
                if not codes and weak and len(words_of(sentence.text)) >= MIN_WORDS and rng.random() < BEN_EXTRA:
                    plan.setdefault(weak[0], []).append(sentence.id)
            for code, sentence_ids in plan.items():
                if len(turn.sentences) >= 3 and len(sentence_ids) >= 2 and rng.random() < BEN_WHOLE_TURN:
                    applied.append(coding.apply_code_to_turn(study, "ben", code, turn.id, at=clock.tick(30, 200)))
                    continue
                for sentence_id in sentence_ids:
                    applied.append(coding.apply_code_to_sentence(study, "ben", code, sentence_id, at=clock.tick(30, 200)))
        clock.pause()
    for c in rng.sample(applied, min(3, len(applied))):
        coding.remove_coding(study, "ben", c.id, at=clock.tick())
    for c in rng.sample(applied, min(2, len(applied))):
        if c.id in {x.id for x in coding.load_codings(study, "ben")}:
            coding.edit_memo(study, "ben", c.id, "Not sure about this one; discuss with Ana.", at=clock.tick())


def coded_turns(transcript: Transcript) -> list[Turn]:
    return [t for t in transcript.turns if t.role not in ("facilitator", "observer")]


def make(study: Study, districts: list[str]) -> dict[str, int]:
    cues = cues_of(study.codebook)
    reading: dict = {"sources": []}
    for district in districts:
        sources = study.sources(district)
        if not sources:
            raise SystemExit(f"district {district} has no transcripts yet under transcripts/{district}/")
        reading["sources"] += sources
    for transcript in reading["sources"]:
        keep = {t.id for t in coded_turns(transcript)}
        for turn in transcript.turns:
            for sentence in turn.sentences:
                if turn.id in keep and len(words_of(sentence.text)) >= MIN_WORDS:
                    reading[sentence.id] = read_sentence(sentence, turn.role, cues, study.codebook)
                else:
                    reading[sentence.id] = ([], [])
    code_as_ana(study, reading, random.Random(f"{SEED}-ana"), Clock(BASE_TIME["ana"], random.Random(f"{SEED}-ana-clock")))
    code_as_ben(study, reading, random.Random(f"{SEED}-ben"), Clock(BASE_TIME["ben"], random.Random(f"{SEED}-ben-clock")))
    return {coder: len(coding.load_codings(study, coder)) for coder in CODERS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--districts", nargs="+", default=list(DEFAULT_DISTRICTS))
    parser.add_argument("--overwrite", action="store_true", help="replace existing codings/ana.jsonl and codings/ben.jsonl")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study, strict=True)
        for district in args.districts:
            study.district(district)
        paths = [coding.coder_path(study, coder) for coder in CODERS]
        existing = [p for p in paths if p.exists()]
        if existing and not args.overwrite:
            print(f"{', '.join(str(p) for p in existing)} exist; pass --overwrite to replace them", file=sys.stderr)
            return 2
        for path in existing:
            path.unlink()
        totals = make(study, args.districts)
        for path in paths:  # no other process writes these files now; keep the folder clean for git
            coding.lock_path(path).unlink(missing_ok=True)
    except CasestudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    for coder, total in totals.items():
        print(f"{coder}: {total} codings in {', '.join(args.districts)} -> codings/{coder}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
