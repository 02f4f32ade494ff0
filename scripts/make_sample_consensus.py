"""Write the sample study's consensus coder, codings/consensus.jsonl, by adjudicating ana's and
ben's disagreements through casestudy.adjudication, the way a team settles them in a meeting.

For SCV35, AUSD and MPS, the codings both coders agree on are copied in first. Then the
disagreements of SCV35 and AUSD, and of one MPS session (the teacher focus group), are settled;
the other MPS disagreements are left pending, for the adjudication notebook to show. YUHSD is
not adjudicated at all yet, so its report counts a coder's codings (ana's), not a consensus. The rules follow how
the sample coders were made (scripts/make_sample_codings.py): ana is thorough, ben misses more,
sometimes picks a sibling code, codes some whole turns and a few short sentences ana leaves alone.

- ana applied it, ben did not: mostly *apply* (ben missed it); a few are *rejected* on
  discussion (a passing mention);
- ben applied it, ana did not: ana's sibling code on the same unit wins (*reject*); a whole-turn
  coding of ben's does not carry to a sentence that does not say it (*reject*, some *applied*);
  ben's extra codes on broad words are mostly *rejected*, some *applied*;
- ana and ben applied two sibling codes of one condition: now and then both are *recoded* to the
  condition itself.

Deterministic: a fixed seed, disagreements in text order, times from a fixed base plus seeded
steps; the same coder files always give the same consensus file.

Usage: python scripts/make_sample_consensus.py [--study DIR] [--overwrite]
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from casestudy import coding
from casestudy.adjudication import CONSENSUS, Adjudication
from casestudy.agreement import Disagreement
from casestudy.errors import CasestudyError
from casestudy.study import Study, load_study

SEED = 20240304
CODERS = ("ana", "ben")
DISTRICTS = ("AUSD", "MPS", "SCV35")  # YUHSD: not adjudicated yet; new districts go last
SETTLE = {"SCV35": None, "AUSD": None, "MPS": ("MPS/teacher-focus-group",)}  # None: every session of the district
BASE_TIME = datetime(2024, 3, 4, 14, 0, tzinfo=UTC)
ANA_REJECTED = 0.12  # share of ana-only codings the team drops on discussion
BEN_TURN_APPLIED = 0.3  # share of ben's whole-turn codings that do carry to the sentence
BEN_EXTRA_APPLIED = 0.3  # share of ben's other extra codings the team keeps
RECODE = 0.35  # share of sibling pairs recoded to their condition


class Clock:
    def __init__(self, start: datetime, rng: random.Random):
        self.now = start
        self.rng = rng

    def tick(self) -> str:
        self.now += timedelta(seconds=self.rng.randint(20, 90))
        return self.now.strftime("%Y-%m-%dT%H:%M:%SZ")


def siblings(study: Study, a: str, b: str) -> bool:
    codes = study.codebook.codes
    return a != b and codes[a].parent is not None and codes[a].parent == codes[b].parent


def confusable(study: Study, a: str, b: str) -> bool:
    codes = study.codebook.codes
    return siblings(study, a, b) or codes[a].parent == b or codes[b].parent == a


def settle(study: Study, adj: Adjudication, sessions: tuple[str, ...] | None, rng: random.Random, clock: Clock) -> int:
    labels = adj.result.labels
    recoded: dict[str, str] = {}  # unit id -> the condition both sibling codes were recoded to
    settled = 0
    for d in adj.disagreements:
        if sessions is not None and d.unit.source not in sessions:
            continue
        on_unit = adj.codes_on_unit(d)
        label = labels[d.code].lower()
        if d.applied_by == ("ana",):
            rival = next((c for c in on_unit["ben"] if c not in on_unit["ana"] and confusable(study, d.code, c)), None)
            decision = decide_ana(study, d, rival, label, labels, recoded, rng)
        else:
            rival = next((c for c in on_unit["ana"] if c not in on_unit["ben"] and confusable(study, d.code, c)), None)
            decision = decide_ben(study, d, rival, label, labels, recoded, rng)
        action, reason, code = decision
        adj.decide(d, action, reason, code=code, at=clock.tick())
        settled += 1
    return settled


def decide_ana(study: Study, d: Disagreement, rival: str | None, label: str, labels: dict[str, str],
               recoded: dict[str, str], rng: random.Random) -> tuple[str, str, str | None]:
    if rival is not None:
        parent = study.codebook.codes[d.code].parent
        if siblings(study, d.code, rival) and parent and rng.random() < RECODE:
            recoded[d.unit.id] = parent
            return ("recode", f"{labels[d.code]} or {labels[rival].lower()}: the sentence fits both elements, so we "
                              f"code the condition, {labels[parent].lower()}.", parent)
        return "apply", f"{labels[d.code]} is what the sentence describes; {labels[rival].lower()} is the neighbouring code.", None
    if rng.random() < ANA_REJECTED:
        return "reject", f"On discussion a passing mention, not enough for {label}.", None
    return "apply", f"Ana's reading stands: the sentence says what the definition of {label} describes; Ben missed it.", None


def decide_ben(study: Study, d: Disagreement, rival: str | None, label: str, labels: dict[str, str],
               recoded: dict[str, str], rng: random.Random) -> tuple[str, str, str | None]:
    if rival is not None:
        if d.unit.id in recoded:
            parent = recoded[d.unit.id]
            return ("recode", f"{labels[rival]} or {label}: the sentence fits both elements, so we code the condition, "
                              f"{labels[parent].lower()}.", parent)
        return "reject", f"{labels[rival]} fits the definition better than {label} here (sibling codes).", None
    whole_turn = any(c.sentence is None for c in d.codings)
    if whole_turn:
        if rng.random() < BEN_TURN_APPLIED:
            return "apply", f"Ben coded the whole turn; this sentence carries its point about {label} too.", None
        return "reject", f"Ben coded the whole turn; this sentence does not speak to {label}.", None
    if rng.random() < BEN_EXTRA_APPLIED:
        return "apply", f"Ana agreed on discussion: the sentence is about {label} after all.", None
    return "reject", f"A broad word, not what the definition of {label} describes.", None


def make(study: Study) -> dict[str, tuple[int, int, int]]:
    rng = random.Random(f"{SEED}-decisions")
    clock = Clock(BASE_TIME, random.Random(f"{SEED}-clock"))
    totals = {}
    for district in DISTRICTS:
        adj = Adjudication(study, CODERS, district)
        seeded = adj.seed(at=clock.tick())
        settled = settle(study, adj, SETTLE.get(district), rng, clock) if district in SETTLE else 0
        totals[district] = (seeded, settled, len(adj.disagreements))
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing codings/consensus.jsonl")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study, strict=True)
        path = coding.coder_path(study, CONSENSUS)
        if path.exists() and not args.overwrite:
            print(f"{path} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
        path.unlink(missing_ok=True)
        totals = make(study)
        coding.lock_path(path).unlink(missing_ok=True)  # no other process writes it now; keep the folder clean for git
    except CasestudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    for district, (seeded, settled, total) in totals.items():
        print(f"{district}: {seeded} agreed codings copied, {settled} of {total} disagreements settled")
    print(f"-> codings/{CONSENSUS}.jsonl ({len(coding.load_codings(study, CONSENSUS))} codings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
