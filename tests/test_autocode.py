"""Auto-coding: lemma-aware phrases, token patterns, regexes, role rules, evidence, the
suggestions file (never a coder's file), stable output, and evaluation against a coder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from spacy.matcher import Matcher

from casestudy import autocode, coding
from casestudy.codebook import load_codebook
from casestudy.errors import DataError, UsageError
from casestudy.study import load_study

DATA = Path(__file__).resolve().parent / "data"
STUDY = """\
name: Auto-coding test study
districts:
  D1: {name: District One, label: D1}
  D2: {name: District Two, label: D2}
source_types:
  teacher_focus_group: Teacher Focus Group
roles:
  facilitator: Facilitator
  teacher: Teacher
  student: Student
"""
SID = "D1/teacher-focus-group#"  # sentence ids of the test transcript start with this
AT = "2026-11-24T12:00:00Z"


@pytest.fixture
def study_root(make_study):
    transcript = (DATA / "autocode_transcript.md").read_text(encoding="utf-8")
    return make_study({
        "study.yaml": STUDY,
        "codebook.yaml": (DATA / "autocode_codebook.yaml").read_text(encoding="utf-8"),
        "transcripts/D1/teacher-focus-group.md": transcript,
        "transcripts/D2/teacher-focus-group.md": transcript.replace("district: D1", "district: D2"),
    })


@pytest.fixture
def study(study_root):
    loaded = load_study(study_root)
    assert [p for p in loaded.problems if p.severity == "error"] == []
    return loaded


def by_sentence(suggestions):
    return {(s.anchor.sentence.split("#")[1], s.code): s for s in suggestions if s.source.startswith("D1/")}


# --------------------------------------------------------------------------- matching


def test_lemmas_match_inflections_and_case():
    nlp = autocode.lemma_pipeline()
    assert [t.norm_ for t in nlp("Coaches data walls")] == ["coach", "datum", "wall"]
    assert [t.norm_ for t in nlp.make_doc("data wall")] == ["datum", "wall"]  # patterns are lemmatized the same way


def test_phrase_patterns_match_on_lemmas(study):
    found = by_sentence(autocode.suggest(study))
    walls = found[("t002.s01", "data-walls")]
    assert [e.words for e in walls.evidence] == ["data walls"]
    assert walls.evidence[0].explanation == 'phrase "data wall" matched "data walls"'
    coach = found[("t002.s02", "coaching")]
    assert [e.words for e in coach.evidence] == ["Coaches", "coach"]  # one suggestion, all the evidence


def test_token_pattern(study):
    use = by_sentence(autocode.suggest(study))[("t003.s02", "data-use")]
    assert use.evidence[0].words == "looked at the data"
    assert use.evidence[0].explanation == 'tokens [{LEMMA: look}, {LOWER: at}, {LOWER: the}, {LEMMA: data}] matched "looked at the data"'


def test_regex_matches_one_tokens_text(study):
    found = by_sentence(autocode.suggest(study))
    assert [e.words for e in found[("t003.s03", "grading")].evidence] == ["developing"]  # "Proficient": regexes are case-sensitive


def test_role_rule_only_for_speakers_with_the_role(study):
    found = by_sentence(autocode.suggest(study))
    assert ("t003.s01", "voice") in found  # Ben, a student: "I get to pick my seat."
    assert ("t002.s03", "voice") not in found  # Ana, a teacher: "I get to decide ..."
    assert found[("t003.s01", "voice")].role == "student"
    assert "(said by student)" in found[("t003.s01", "voice")].evidence[0].explanation


def test_facilitator_turns_are_left_out_unless_asked_for(study, study_root, run):
    assert ("t001.s02", "coaching") not in by_sentence(autocode.suggest(study))  # "Do the coaches help?"
    found = by_sentence(autocode.suggest(study, include_facilitator=True))
    assert found[("t001.s02", "coaching")].role == "facilitator"
    result = run("autocode", "--study", study_root, "--include-facilitator", "--format", "json")
    assert result.code == 0 and {"code": "coaching", "label": "Coaching", "suggestions": 6, "sources": 2,
                                 "top_patterns": '"coach" 8'} in json.loads(result.out)


def test_evidence_and_anchor_point_into_the_source(study):
    suggestions = autocode.suggest(study)
    assert len(suggestions) == 12  # six in each district's copy of the transcript
    sources = {t.id: t for t in study.transcripts}
    sentences = {s.id: s for t in study.transcripts for s in t.sentences}
    for s in suggestions:
        text = sources[s.source].text
        sentence = sentences[s.anchor.sentence]
        assert (s.anchor.start, s.anchor.end, s.anchor.text, s.line) == (sentence.start, sentence.end, sentence.text, sentence.line)
        assert s.anchor.sha256 == sources[s.source].sha256 and s.anchor.turn == sentence.turn_id
        for e in s.evidence:
            assert text[e.start:e.end] == e.words and s.anchor.start <= e.start < e.end <= s.anchor.end
        assert re.fullmatch(r"s-[0-9a-f]{12}", s.id)
        assert s.pattern == s.evidence[0].pattern


@pytest.mark.parametrize("flags", ["(?i)", "none"])
def test_token_and_regex_patterns_find_what_spacys_matcher_finds(tmp_path, flags):
    text = (DATA / "autocode_pattern_shapes.yaml").read_text(encoding="utf-8")
    if flags == "none":  # no global flag: the regexes are tried together first (autocode._any_of)
        text = text.replace('"(?i)^assess"', '"^[Aa][Ss][Ss][Ee][Ss][Ss]"')
    (tmp_path / "codebook.yaml").write_text(text, encoding="utf-8")
    codebook, problems = load_codebook(tmp_path / "codebook.yaml")
    assert problems == []
    coder = autocode.Autocoder(codebook)
    reference = autocode.lemma_pipeline()  # every lexeme attribute, as spaCy computes them
    assert len(reference.vocab.lex_attr_getters) > len(coder.nlp.vocab.lex_attr_getters)
    plain = Matcher(reference.vocab)
    for index, pattern in enumerate(coder.patterns):
        spacy_pattern = [{"TEXT": {"REGEX": pattern.value}}] if pattern.kind == "regex" else autocode._token_pattern(pattern.value)
        plain.add(str(index), [spacy_pattern])
    found_any = 0
    for line in (DATA / "autocode_pattern_shapes.txt").read_text(encoding="utf-8").splitlines():
        expected = {(int(reference.vocab.strings[k]), s, e) for k, s, e in plain(reference(line))}
        assert coder.matches(coder.nlp(line), None) == expected, line
        found_any += len(expected)
    assert found_any >= 25


def test_regexes_are_tried_together_only_when_that_is_safe():
    plain = [re.compile(p) for p in ("^(emerging|developing)$", "ing$", "^pre-", "(?i:^assess)")]
    joined = autocode._any_of(plain)
    assert joined is not None
    for word in ["emerging", "reading", "pre-test", "test", "Developing", "ingot", "ASSESSED", "", "pre"]:
        assert bool(joined.search(word)) == any(rx.search(word) for rx in plain), word
    assert autocode._any_of([re.compile("(?i)^assess"), re.compile("ing$")]) is None  # a global flag
    assert autocode._any_of([re.compile(r"(a)\1"), re.compile("b")]) is None  # a back-reference
    assert autocode._any_of([re.compile("(?P<x>a)"), re.compile("b")]) is None  # a named group
    assert autocode._any_of(plain[:1]) is None  # one regex needs no other


def test_garbage_collector_is_restored_after_auto_coding(sample_study):
    import gc

    assert gc.isenabled()
    lines = autocode.Autocoder(sample_study.codebook).lines(sample_study.transcripts)
    next(lines)
    assert not gc.isenabled()  # paused while lines are made
    lines.close()  # a caller that stops early
    assert gc.isenabled()
    autocode.suggest(sample_study)
    assert gc.isenabled()


def test_lines_are_the_records_as_json(sample_study):
    coder = autocode.Autocoder(sample_study.codebook)
    records = list(coder.suggest(sample_study.transcripts))
    lines = list(coder.lines(sample_study.transcripts))
    assert len(records) == len(lines) > 100
    for record, (code, source, patterns, line) in zip(records, lines, strict=True):
        assert line == json.dumps(record.to_dict(), ensure_ascii=False)
        assert (code, source, patterns) == (record.code, record.source, tuple(e.pattern for e in record.evidence))


# --------------------------------------------------------------------------- the suggestions file


def test_run_writes_suggestions_never_a_coders_file(study, study_root, run):
    coding.apply_code_to_sentence(study, "ana", "data-walls", SID + "t002.s01", at=AT)
    coder_file = study_root / "codings" / "ana.jsonl"
    before = coder_file.read_bytes()
    result = run("autocode", "--study", study_root)
    assert result.code == 0, result.err
    assert "12 suggestions written to suggestions/auto.jsonl" in result.out
    assert coder_file.read_bytes() == before
    rows = [json.loads(line) for line in (study_root / "suggestions" / "auto.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {r["code"] for r in rows} == {"data-walls", "coaching", "data-use", "grading", "voice"}
    refused = run("autocode", "--study", study_root, "--coder", "ana")
    assert refused.code == 2 and "human coder" in refused.err
    assert not (study_root / "suggestions" / "ana.jsonl").exists() and coder_file.read_bytes() == before
    # what coding.py reads back is what was written
    assert [s["id"] for s in coding.load_suggestions(study, "auto")] == [r["id"] for r in rows]


def test_output_is_stable_and_district_runs_merge(study, study_root):
    path = autocode.run(study).path
    first = path.read_bytes()
    assert autocode.run(load_study(study_root)).path.read_bytes() == first
    result = autocode.run(study, district="D1")
    assert result.kept == 6 and result.count == 6
    assert path.read_bytes() == first  # the other district's lines kept, in the same order


def test_summary_rows(study):
    rows = autocode.summary_rows(study, autocode.run(study))
    assert [r["code"] for r in rows] == ["data-walls", "coaching", "data-use", "grading", "voice"]
    assert rows[1] == {"code": "coaching", "label": "Coaching", "suggestions": 4, "sources": 2,
                       "top_patterns": '"coach" 6'}


def test_pattern_that_cannot_compile_is_refused(make_study, run):
    root = make_study({"codebook.yaml": (DATA / "autocode_bad_regex_codebook.yaml").read_text(encoding="utf-8")})
    result = run("autocode", "--study", root)
    assert result.code == 1
    assert "codebook.yaml:10: bad-pattern: code 'grading'" in result.err
    assert "auto-coding refused" in result.err
    assert not (root / "suggestions").exists()
    earlier = root / "suggestions" / "auto.jsonl"  # suggestions from before the codebook broke are kept as they are
    earlier.parent.mkdir()
    earlier.write_text('{"v": 1, "id": "s-000000000000"}\n', encoding="utf-8")
    assert run("autocode", "--study", root).code == 1
    assert earlier.read_text(encoding="utf-8") == '{"v": 1, "id": "s-000000000000"}\n'
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["auto.jsonl"]
    with pytest.raises(DataError, match="auto-coding refused"):
        autocode.suggest(load_study(root))


# --------------------------------------------------------------------------- evaluation


def code_by_hand(study):
    coding.apply_code_to_sentence(study, "ana", "data-walls", SID + "t002.s01", at=AT)  # also suggested: TP
    coding.apply_code_to_turn(study, "ana", "coaching", SID + "t003", at=AT)  # three sentences, one suggested
    coding.apply_code_to_sentence(study, "ana", "voice", SID + "t002.s03", at=AT)  # a teacher's "I get to": FN


def test_evaluate_known_precision_and_recall(study):
    code_by_hand(study)
    autocode.run(study)
    result = autocode.evaluate(study, "auto", "ana")
    assert result.sources == ("D1/teacher-focus-group",)  # D2 was not coded by ana: not scored
    scores = {s.code: s for s in result.codes}
    assert (scores["data-walls"].tp, scores["data-walls"].fp, scores["data-walls"].fn) == (1, 0, 0)
    coaching = scores["coaching"]  # suggested t002.s02, t003.s02; coded t003.s01-s03
    assert (coaching.tp, coaching.fp, coaching.fn) == (1, 1, 2)
    assert coaching.precision == 0.5 and coaching.recall == pytest.approx(1 / 3) and coaching.f1 == pytest.approx(0.4)
    assert (scores["voice"].tp, scores["voice"].fp, scores["voice"].fn) == (0, 1, 1) and scores["voice"].f1 == 0
    assert scores["grading"].precision == 0 and scores["grading"].recall is None
    micro = result.micro
    assert (micro.tp, micro.fp, micro.fn) == (2, 4, 3)
    assert micro.precision == pytest.approx(2 / 6) and micro.recall == pytest.approx(2 / 5)


def test_evaluate_from_the_command_line(study, study_root, run):
    code_by_hand(study)
    result = run("autocode", "--study", study_root, "--evaluate", "--against", "ana", "--format", "json")
    assert result.code == 0, result.err
    rows = {r["code"]: r for r in json.loads(result.out)}
    assert rows["coaching"]["precision"] == 0.5 and rows["coaching"]["recall"] == 0.333
    assert rows["(all codes, micro)"]["tp"] == 2
    table = run("autocode", "--study", study_root, "--evaluate", "--against", "ana")
    assert table.code == 0 and "precision" in table.out and "coaching" in table.out
    assert run("autocode", "--study", study_root, "--evaluate").code == 2


def test_evaluate_needs_codings_in_scope(study):
    code_by_hand(study)
    autocode.run(study)
    with pytest.raises(UsageError, match="no codings in district D2"):
        autocode.evaluate(study, "auto", "ana", district="D2")
    with pytest.raises(UsageError, match="no coder 'bob'"):
        autocode.evaluate(study, "auto", "bob")
