"""Benchmark auto-coding against spaCy's tokenizer and a naive regular-expression baseline.

    .venv/bin/python benchmarks/autocode.py            # 1,000,000+ words, 300+ patterns
    .venv/bin/python benchmarks/autocode.py --words 200000 --repeat 1 --no-breakdown   # a quick look

What it does, in one run:

1. Builds a corpus in a temporary study: sentences of the sample study's transcripts,
   recombined and varied word by word (substitutions from a vocabulary drawn from the
   transcripts and the codebook, inflected forms, swapped neighbours), seeded, spread over
   four districts, many sessions and speakers of every role. Not a few words repeated: the
   report prints how many distinct words it has.
2. Builds a codebook: the sample codebook plus generated codes whose patterns (phrases, token
   patterns, regexes, role rules) are drawn from the same vocabulary.
3. Times, on the same turns, in fresh pipelines (cold tokenizer caches), tokenizer and
   auto-coding taking turns (``--repeat`` rounds, the best of each kept: other jobs on the
   machine slow both alike that way), by wall clock and by the CPU time of the process:
   - spaCy's tokenizer alone (``spacy.blank("en").tokenizer.pipe``), the practical limit;
   - full auto-coding, ``casestudy.autocode.run`` with ``include_facilitator=True`` (every turn,
     as the baselines read): compile the patterns, tokenize each turn once, lemmas, matching,
     role rules, each match assigned to its sentence (the study's segmentation, done when
     ``load_study`` read the corpus, timed separately), one suggestion per code and sentence
     with its evidence, and the suggestions file written and fsynced;
   - a naive baseline: one compiled regular expression per pattern (case-insensitive, with the
     corpus's inflected forms of each lemma, so it finds what the lemma matcher finds) run over
     every sentence, grouped per sentence and code. It is timed on a fixed share of the
     sentences (``--naive-share``) and reported per word, like the others.
4. Prints words per second for each, the ratios (by wall clock, and by CPU time), the peak
   memory of the process while auto-coding (Linux ``VmHWM``, reset before a last auto-coding
   run when the kernel allows it; otherwise ``ru_maxrss`` of the whole run), whether the
   targets are met (auto-coding at least half the tokenizer's speed, at least ten times the
   naive baseline, under 1 GiB), and where auto-coding's CPU time goes, step by step.
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from casestudy import autocode  # noqa: E402
from casestudy.study import load_study  # noqa: E402

ROLES = ["facilitator", "teacher", "student", "parent", "school_leader", "district_administrator", "instructional_coach"]
SOURCE_TYPES = {
    "teacher_focus_group": ["teacher", "instructional_coach"],
    "student_focus_group": ["student"],
    "parent_focus_group": ["parent"],
    "school_leader_interview": ["school_leader"],
    "district_administrator_focus_group": ["district_administrator"],
}
NAMES = ["Ana", "Ben", "Carla", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jo", "Kiri", "Luis", "Mei", "Nadia", "Omar"]
WORD_RE = re.compile(r"[A-Za-z][A-Za-z'-]*")
SUFFIXES = ["s", "ed", "ing", "er", "ly", "ness", "ful"]


# --------------------------------------------------------------------------- corpus


def sample_material(sample) -> tuple[list[list[str]], list[str], list[int]]:
    """Sample sentences as word lists, and the vocabulary with its frequencies."""
    sentences = [s.text.split() for t in sample.transcripts for s in t.sentences if len(s.text.split()) >= 3]
    counts: Counter[str] = Counter()
    for words in sentences:
        counts.update(w.lower() for w in WORD_RE.findall(" ".join(words)))
    for pattern in sample.codebook.patterns():
        if pattern.kind == "phrase":
            counts.update({w.lower(): 3 for w in WORD_RE.findall(str(pattern.value))})
    vocab = sorted(counts)
    return sentences, vocab, [counts[w] for w in vocab]


def vary(words: list[str], rng: random.Random, vocab: list[str], weights: list[int], phrases: list[str]) -> str:
    """One new sentence from a sample sentence: word-level substitution, inflection,
    neighbour swaps and an occasional codebook phrase."""
    out = list(words)
    substitutes = rng.choices(vocab, weights=weights, k=len(out))
    for i in range(len(out)):
        r = rng.random()
        if r < 0.30:
            tail = out[i][len(out[i].rstrip(".,;:?!\"")):]
            out[i] = substitutes[i] + tail
        elif r < 0.36:
            out[i] = out[i].rstrip(".,;:?!\"") + rng.choice(SUFFIXES)
        elif r < 0.42 and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
    if rng.random() < 0.1:
        phrase = rng.choice(phrases)
        if rng.random() < 0.4:
            phrase += "s"
        out.insert(rng.randrange(len(out) + 1), phrase)
    text = " ".join(out).strip()
    if text and text[-1] not in ".?!":
        text += rng.choice([".", ".", ".", "?", "!"])
    return text[0].upper() + text[1:]


def build_corpus(root: Path, sample, words_wanted: int, seed: int) -> int:
    rng = random.Random(seed)
    sentences, vocab, weights = sample_material(sample)
    phrases = [str(p.value) for p in sample.codebook.patterns() if p.kind == "phrase"]
    districts = ["D1", "D2", "D3", "D4"]
    (root / "study.yaml").write_text(yaml.safe_dump({
        "name": "Benchmark corpus", "synthetic": True,
        "districts": {d: {"name": f"District {d}", "label": d} for d in districts},
        "source_types": {k: k.replace("_", " ").title() for k in SOURCE_TYPES},
        "roles": {r: r.replace("_", " ").title() for r in ROLES},
    }, sort_keys=False), encoding="utf-8")
    written = 0
    session = 0
    while written < words_wanted:
        session += 1
        district = districts[session % len(districts)]
        source_type = list(SOURCE_TYPES)[session % len(SOURCE_TYPES)]
        people = rng.sample(NAMES, 5)
        participants = {"Facilitator": "facilitator"} | {name: rng.choice(SOURCE_TYPES[source_type]) for name in people}
        lines = ["---", yaml.safe_dump({"district": district, "school": f"School {session % 9}", "source_type": source_type,
                                        "date": "2024-03-01", "facilitator": "Facilitator", "participants": participants,
                                        "synthetic": True}, sort_keys=False).strip(), "---"]
        session_words = 0
        speakers = list(participants)
        while session_words < 5000:
            speaker = "Facilitator" if rng.random() < 0.15 else rng.choice(people)
            turn = " ".join(vary(rng.choice(sentences), rng, vocab, weights, phrases) for _ in range(rng.randint(1, 6)))
            lines.append(f"{speaker}: {turn}")
            session_words += len(turn.split())
        for name in speakers:  # every participant speaks
            lines.append(f"{name}: {vary(rng.choice(sentences), rng, vocab, weights, phrases)}")
        path = root / "transcripts" / district / f"session-{session:04d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written += session_words
    return session


def build_codebook(root: Path, sample_root: Path, sample, extra: int, seed: int) -> None:
    """The sample codebook plus generated codes with ``extra`` patterns of every kind."""
    rng = random.Random(seed + 1)
    data = yaml.safe_load((sample_root / "codebook.yaml").read_text(encoding="utf-8"))
    sentences, vocab, _weights = sample_material(sample)
    content = [w for w in vocab if len(w) > 4 and "'" not in w]
    bigrams = sorted({(a.lower(), b.lower()) for words in sentences for a, b in zip(words, words[1:])
                      if WORD_RE.fullmatch(a) and WORD_RE.fullmatch(b) and len(a) > 3 and len(b) > 3})
    patterns: list = []
    for i in range(extra):
        kind = i % 10
        if kind < 6:
            patterns.append(" ".join(rng.choice(bigrams)) if kind % 2 else rng.choice(content))
        elif kind == 6:
            a, b = rng.choice(bigrams)
            patterns.append({"tokens": [{"LEMMA": {"IN": [a, rng.choice(content)]}}, {"IS_ALPHA": True, "OP": "?"}, {"LOWER": b}]})
        elif kind == 7:
            a, b = rng.choice(bigrams)
            patterns.append({"tokens": [{"LOWER": a}, {"LEMMA": b}]})
        elif kind == 8:
            stem = rng.choice(content)[:4]
            patterns.append({"regex": f"^{stem}[a-z]*(ing|ed|s)$"})
        else:
            patterns.append({"phrase": rng.choice(content), "roles": rng.sample(ROLES[1:], 2)})
    per_code = 5
    for n in range(0, len(patterns), per_code):
        data["codes"].append({"id": f"generated-{n // per_code + 1:03d}", "label": f"Generated {n // per_code + 1}",
                              "group": "outcomes", "definition": "A generated code for the benchmark.",
                              "patterns": patterns[n:n + per_code]})
    (root / "codebook.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


# --------------------------------------------------------------------------- the naive baseline


def naive_regexes(study) -> list[tuple[re.Pattern, str, frozenset]]:
    """One case-insensitive regular expression per pattern, with every inflected form of each
    lemma that occurs in the corpus (what a careful script without spaCy would write)."""
    forms: dict[str, set[str]] = {}
    for transcript in study.transcripts:
        for word in set(WORD_RE.findall(transcript.text.lower())):
            forms.setdefault(autocode.lemma(word), set()).add(word)

    def alternatives(word: str) -> str:
        words = {word.lower()} | forms.get(autocode.lemma(word), set())
        return "(?:" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + ")"

    def token(spec: dict) -> str:
        parts = []
        for attr, value in spec.items():
            if attr in ("OP",):
                continue
            values = value.get("IN") if isinstance(value, dict) else [value]
            if attr == "IS_ALPHA":
                parts.append(r"[A-Za-z]+")
            elif attr == "LEMMA" and values:
                parts.append("(?:" + "|".join(alternatives(v) for v in values) + ")")
            elif values:
                parts.append("(?:" + "|".join(re.escape(str(v)) for v in values) + ")")
        body = parts[0] if parts else r"\S+"
        return f"(?:{body}\\W+)?" if spec.get("OP") == "?" else f"{body}\\W+"

    compiled = []
    for pattern in study.codebook.patterns():
        if pattern.kind == "phrase":
            words = WORD_RE.findall(str(pattern.value)) or [str(pattern.value)]
            source = r"\b" + r"\W+".join(alternatives(w) for w in words) + r"\b"
        elif pattern.kind == "tokens":
            source = r"\b" + "".join(token(dict(t)) for t in pattern.value)
            source = source[: -len(r"\W+")] + r"\b" if source.endswith(r"\W+") else source
        else:
            source = r"\b(?:" + str(pattern.value).strip("^$") + r")\b"
        compiled.append((re.compile(source, re.IGNORECASE), pattern.code_id, frozenset(pattern.roles)))
    return compiled


def naive(study, regexes, share: float) -> tuple[int, float, int]:
    """Run every regex over every sentence of every ``1/share``-th turn; (words, seconds, hits)."""
    step = max(1, round(1 / share))
    turns = [turn for t in study.transcripts for turn in t.turns][::step]
    words = sum(len(turn.text.split()) for turn in turns)
    start = time.perf_counter()
    found: set[tuple[str, str]] = set()
    for turn in turns:
        for sentence in turn.sentences:
            text = sentence.text
            for rx, code, roles in regexes:
                if roles and turn.role not in roles:
                    continue
                if rx.search(text):
                    found.add((sentence.id, code))
    return words, time.perf_counter() - start, len(found)


# --------------------------------------------------------------------------- timing


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result) of one call, after a collection."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def taking_turns(repeat: int, functions: dict) -> dict[str, tuple[float, float, object]]:
    """Run each function ``repeat`` times, taking turns (a, b, a, b, ...), and keep the best
    wall time and the best CPU time of each: other jobs on the machine slow both alike, so
    their ratio is steadier than timing one after the other."""
    best: dict[str, tuple[float, float, object]] = {}
    for _ in range(repeat):
        for name, fn in functions.items():
            wall, cpu, result = timed(fn)
            old = best.get(name)
            best[name] = (min(wall, old[0]), min(cpu, old[1]), result) if old else (wall, cpu, result)
    return best


def breakdown(study, texts: list[str], repeat: int) -> list[tuple[str, float]]:
    """Cumulative passes over the same turns, each in a fresh auto-coder: (step, best CPU seconds)."""
    roles = [turn.role for t in study.transcripts for turn in t.turns]

    def fresh():
        return autocode.Autocoder(study.codebook, include_facilitator=True)

    def tokenize():
        return [0 for _ in fresh().nlp.tokenizer.pipe(texts, batch_size=autocode.BATCH_SIZE)]

    def match():
        coder = fresh()
        return [coder._found(doc, role) for doc, role in zip(coder.nlp.tokenizer.pipe(texts, batch_size=autocode.BATCH_SIZE), roles)]

    steps = {
        "compile the codebook (Autocoder)": fresh,
        "+ tokenize: lemmas (lexeme norms), regex flags": tokenize,
        "+ match phrases, token patterns, regexes, roles": match,
        "+ each match to its sentence (Autocoder._turns)": lambda: [0 for _ in fresh()._turns(study.transcripts, autocode.BATCH_SIZE)],
        "+ JSON lines with evidence (Autocoder.lines)": lambda: [0 for _ in fresh().lines(study.transcripts)],
        "+ write the file atomically (autocode.run)": lambda: autocode.run(study, "auto", include_facilitator=True),
    }
    return [(label, cpu) for label, (_wall, cpu, _result) in taking_turns(repeat, steps).items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=1_000_000, help="corpus size in words (at least)")
    parser.add_argument("--extra-patterns", type=int, default=120, help="generated patterns added to the sample codebook's")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="time tokenizer and auto-coding this many times (taking turns), keep the best")
    parser.add_argument("--naive-share", type=float, default=0.2, help="share of the turns the naive baseline runs over")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false", help="skip the per-step timing")
    parser.add_argument("--keep", type=Path, default=None, help="build the corpus here and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)

    sample = load_study(REPO)
    with tempfile.TemporaryDirectory(prefix="casestudy-bench-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        sessions = build_corpus(root, sample, args.words, args.seed)
        build_codebook(root, REPO, sample, args.extra_patterns, args.seed)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        study = load_study(root)
        loaded = time.perf_counter() - t0
        errors = [p for p in study.problems if p.severity == "error"]
        if errors:
            for problem in errors[:10]:
                print(problem, file=sys.stderr)
            return 1
        texts = [turn.text for t in study.transcripts for turn in t.turns]
        words = sum(len(text.split()) for text in texts)
        distinct = len({w.lower() for text in texts for w in text.split()})
        sentences = sum(len(turn.sentences) for t in study.transcripts for turn in t.turns)
        patterns = study.codebook.patterns()
        kinds = Counter(p.kind for p in patterns)
        print(f"corpus: {words:,} words ({distinct:,} distinct), {sentences:,} sentences, {len(texts):,} turns, "
              f"{sessions} sessions; built in {built:.1f} s, loaded and segmented by load_study in {loaded:.1f} s")
        print(f"codebook: {len(patterns)} patterns ({kinds['phrase']} phrases, {kinds['tokens']} token patterns, "
              f"{kinds['regex']} regexes, {sum(1 for p in patterns if p.roles)} with roles), {len(study.codebook.codes)} codes")

        import spacy

        def tokenize():
            nlp = spacy.blank("en")  # fresh: a cold tokenizer cache, as auto-coding gets
            return sum(len(doc) for doc in nlp.tokenizer.pipe(texts, batch_size=autocode.BATCH_SIZE))

        # every turn, the facilitator's too, so that all three read the same text
        best = taking_turns(args.repeat, {
            "tokenizer": tokenize,
            "autocode": lambda: autocode.run(study, "auto", include_facilitator=True),
        })
        (tok_s, tok_cpu, tokens), (auto_s, auto_cpu, result) = best["tokenizer"], best["autocode"]
        reset = reset_peak()
        autocode.run(study, "auto", include_facilitator=True)
        peak = peak_mib()
        regexes = naive_regexes(study)
        naive_words, naive_s, naive_hits = naive(study, regexes, args.naive_share)
        steps = breakdown(study, texts, args.repeat) if args.breakdown else []

        tok_rate, auto_rate, naive_rate = words / tok_s, words / auto_s, naive_words / naive_s
        size = result.path.stat().st_size / 2**20
        sample_density = len(autocode.suggest(sample, include_facilitator=True)) / sum(len(turn.sentences) for t in sample.transcripts for turn in t.turns)
        print(f"suggestions: {result.count:,} ({size:.1f} MiB), {result.count / sentences:.2f} per sentence "
              f"(the sample study with its own codebook: {sample_density:.2f}); {tokens:,} tokens")
        print()
        print(f"{'step':<44}{'seconds':>10}{'words/s':>14}{'CPU s':>9}")
        print(f"{'spaCy tokenizer alone':<44}{tok_s:>10.2f}{tok_rate:>14,.0f}{tok_cpu:>9.2f}")
        print(f"{'auto-coding (casestudy.autocode.run)':<44}{auto_s:>10.2f}{auto_rate:>14,.0f}{auto_cpu:>9.2f}")
        label = f"naive: one regex per pattern ({args.naive_share:.0%} of turns)"
        print(f"{label:<44}{naive_s:>10.2f}{naive_rate:>14,.0f}")
        print(f"(best of {args.repeat} runs each, tokenizer and auto-coding taking turns)")
        print()
        ratio_tok, ratio_naive = auto_rate / tok_rate, auto_rate / naive_rate
        memory = "peak RSS while auto-coding" if reset else "peak RSS of the whole run"
        print(f"auto-coding / tokenizer: {ratio_tok:.2f}  (target >= 0.5: {'met' if ratio_tok >= 0.5 else 'NOT met'}; "
              f"by CPU time {tok_cpu / auto_cpu:.2f})")
        print(f"auto-coding / naive:     {ratio_naive:.1f}x (target >= 10x: {'met' if ratio_naive >= 10 else 'NOT met'})")
        print(f"memory: {memory} {peak:,.0f} MiB (target < 1024 MiB: {'met' if peak < 1024 else 'NOT met'})")
        print(f"(naive baseline found {naive_hits:,} sentence-code pairs in its share; the regexes only approximate "
              "the lemma matcher, they are there for timing)")
        if steps:
            print()
            print("where auto-coding's time goes (CPU seconds, best of the runs; each pass repeats the one before it and adds one step):")
            for label, seconds in steps:
                print(f"  {label:<58}{seconds:>8.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
