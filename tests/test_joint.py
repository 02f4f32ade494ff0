"""The joint display on a small hand-coded study whose counts, quotes and survey scores are known,
and on the sample study."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from casestudy import coding, joint
from casestudy.study import load_study

from .helpers import session_text

DATA = Path(__file__).resolve().parent / "data"
T = "D1/teacher-focus-group"
S = "D1/student-focus-group"
AT = "2026-01-05T09:00:00Z"

STUDENT_TRANSCRIPT = session_text("student_focus_group", {"Kim": "student", "Lee": "student"}, """\
    Facilitator: What do you like about class?
    Lee: Kim and I get to pick our own station every single morning.
    Kim: I pick my own station <b>every</b> single morning. We trust our teacher.
""")


@pytest.fixture
def coded(make_study):
    """Teacher focus group (MINI_TRANSCRIPT): t001 facilitator, t002 Ana "They track goals on the
    data walls. | It builds trust.", t003 Ben "Um, and they get voice and choice. | It changed
    the culture of the room." Student focus group above (t002 Lee, t003 Kim). Survey: tests/data/survey_spec.yaml
    (voice -> agency, trust -> culture) with the two hand-made waves."""
    root = make_study({
        "transcripts/D1/student-focus-group.md": STUDENT_TRANSCRIPT,
        "survey.yaml": (DATA / "survey_spec.yaml").read_text(encoding="utf-8"),
        "surveys/D1/students-2022.csv": (DATA / "survey_wave_2022.csv").read_bytes(),
        "surveys/D1/students-2023.csv": (DATA / "survey_wave_2023.csv").read_bytes(),
    })
    study = load_study(root)
    assert not [p for p in study.problems if p.severity == "error"]
    for code, sentence in [("data-walls", f"{T}#t002.s01"), ("agency", f"{T}#t002.s01"),  # one passage, twice
                           ("agency", f"{T}#t003.s01"), ("agency", f"{S}#t001.s01"),  # the facilitator's question
                           ("culture", f"{T}#t002.s02"), ("culture", f"{T}#t003.s02"),
                           ("agency", f"{S}#t002.s01"), ("agency", f"{S}#t003.s01"), ("culture", f"{S}#t003.s02")]:
        coding.apply_code_to_sentence(study, "ana", code, sentence, at=AT)
    return study


def row(table, condition):
    return next(r for r in table.rows if r.condition == condition)


def test_counts_passages_and_sessions_with_children_under_their_condition(coded):
    table = joint.joint_display(coded, "D1")
    assert table.coder == "ana"
    assert [r.condition for r in table.rows] == ["agency", "culture"]  # the conditions, not the child code
    assert list(table.source_types) == ["teacher_focus_group", "student_focus_group"]
    agency = row(table, "agency")
    assert agency.counts["teacher_focus_group"] == joint.Passages(2, 1)  # data-walls + agency on one sentence count once
    assert agency.counts["student_focus_group"] == joint.Passages(3, 1)  # the facilitator's coded question counts
    assert row(table, "culture").counts == {"teacher_focus_group": joint.Passages(2, 1), "student_focus_group": joint.Passages(1, 1)}


def test_quotes_leave_out_facilitators_names_and_fragments(coded):
    agency = row(joint.joint_display(coded, "D1"), "agency")
    teacher = agency.quotes["teacher_focus_group"]
    assert teacher.text in ("They track goals on the data walls.", "Um, and they get voice and choice.")
    assert teacher.source_label == "D1 Teacher Focus Group" and teacher.origin == "coding"
    assert coded.source(T).text[teacher.start:teacher.end] == teacher.text  # verbatim, at its offsets
    assert agency.quotes["student_focus_group"].text == "I pick my own station <b>every</b> single morning."  # not Lee's, which names Kim
    culture = row(joint.joint_display(coded, "D1"), "culture")
    assert culture.quotes["teacher_focus_group"].text == "It changed the culture of the room."  # 7 words beat "It builds trust."
    assert culture.quotes["student_focus_group"].text == "We trust our teacher."  # the only passage: a short one is better than none


def test_the_representative_passage_is_the_one_most_like_the_others(coded):
    for sentence in (f"{T}#t003.s02", f"{T}#t002.s02"):
        coding.apply_code_to_sentence(coded, "ana", "agency", sentence, at=AT)
    texts = {"They track goals on the data walls.", "Um, and they get voice and choice.", "It changed the culture of the room."}
    from rapidfuzz import fuzz

    def mean_similarity(text):
        return sum(fuzz.token_sort_ratio(text, other) for other in texts - {text}) / (len(texts) - 1)

    best = max(sorted(texts), key=mean_similarity)
    assert row(joint.joint_display(coded, "D1"), "agency").quotes["teacher_focus_group"].text == best


def test_linked_survey_constructs_with_latest_score_and_change(coded):
    agency = row(joint.joint_display(coded, "D1"), "agency")
    [voice] = agency.constructs
    assert (voice.key, voice.wave, voice.previous_wave, voice.band) == ("students/voice", 2023, 2022, "strong")
    assert voice.score == pytest.approx(28 / 9)  # (3 + 3 + 10/3) / 3, by hand from survey_wave_2023.csv
    assert voice.change == pytest.approx(28 / 9 - 38 / 15)
    assert voice.text() == "Student voice 2023: 3.11 (+0.58 since 2022), strong, n=3-4"
    assert [c.key for c in row(joint.joint_display(coded, "D1"), "culture").constructs] == ["students/trust"]


def test_findings_quotes_come_first_and_findings_can_link_constructs(coded, monkeypatch):
    finding = SimpleNamespace(conditions=("culture",), quotes=[SimpleNamespace(source=S, text="We trust our teacher")],
                              survey_constructs=["students/voice"])
    monkeypatch.setattr(joint, "_findings", lambda study, district: [finding])
    culture = row(joint.joint_display(coded, "D1"), "culture")
    quote = culture.quotes["student_focus_group"]
    assert (quote.text, quote.origin, quote.source) == ("We trust our teacher", "finding", S)
    assert culture.quotes["teacher_focus_group"].origin == "coding"  # no finding quotes a teacher
    assert [c.key for c in culture.constructs] == ["students/voice", "students/trust"]  # survey.yaml order


def test_coder_choice(coded, run):
    coding.apply_code_to_sentence(coded, "ben", "culture", f"{T}#t002.s02", at=AT)
    assert joint.resolve_coder(coded, None) == "ana"  # no consensus: the first coder, as the report does
    assert joint.joint_display(coded, "D1", "ben").coder == "ben"
    coding.apply_code_to_sentence(coded, "consensus", "culture", f"{S}#t003.s02", at=AT)
    table = joint.joint_display(coded, "D1")
    assert table.coder == "consensus"
    assert row(table, "culture").counts == {"student_focus_group": joint.Passages(1, 1)}
    assert run("joint", "--study", coded.root, "--coder", "nobody").code == 2
    assert run("joint", "--study", coded.root, "--coder", "../x").code == 2


def test_no_codings_and_no_survey(make_study):
    study = load_study(make_study())
    table = joint.joint_display(study, "D1")
    assert table.coder is None and all(not r.counts and not r.constructs for r in table.rows)


def test_cli_formats(coded, run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = run("joint", "--study", coded.root, "--district", "D1")
    assert result.code == 0, result.err
    assert "Teacher Focus Group" in result.out and "3/1" in result.out and "2/1" in result.out and "Student voice 2023: 3.11" in result.out
    records = list(__import__("csv").DictReader(run("joint", "--study", coded.root, "--format", "csv").out.splitlines()))
    agency = records[0]
    assert (agency["condition"], agency["passages"], agency["passages_teacher_focus_group"], agency["sessions_student_focus_group"]) == \
        ("agency", "5", "2", "1")
    assert agency["survey_students"].startswith("Student voice 2023: 3.11")
    data = json.loads(run("joint", "--study", coded.root, "--format", "json").out)
    assert data["coder"] == "ana"
    assert data["rows"][0]["source_types"]["student_focus_group"]["passages"] == 3
    assert data["rows"][0]["survey"]["students"][0]["score"] == pytest.approx(28 / 9, abs=1e-4)
    page = run("joint", "--study", coded.root, "--district", "D1", "--format", "html").out
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "&lt;b&gt;every&lt;/b&gt;" in page and "<b>every" not in page  # escaped
    assert "<script" not in page and "http" not in page  # self-contained
    assert 'class="cs-excerpt" data-source="D1/student-focus-group"' in page  # audited by audit --report


def test_sample_counts_match_a_direct_count(sample_study):
    coder = "ana"
    table = joint.joint_display(sample_study, "AUSD", coder)
    codebook = sample_study.codebook
    sources = {t.id: t for t in sample_study.transcripts}
    spans, sessions = defaultdict(set), defaultdict(set)
    for c in coding.load_codings(sample_study, coder):
        t = sources.get(c.source)
        if c.status == "stale" or t is None or t.district != "AUSD" or c.code not in codebook.codes:
            continue
        key = (codebook.condition_of(c.code), t.source_type)
        spans[key].add((c.source, c.start, c.end))
        sessions[key].add(c.source)
    assert len(table.rows) == 12
    for r in table.rows:
        for st, counts in r.counts.items():
            assert (counts.passages, counts.sessions) == (len(spans[(r.condition, st)]), len(sessions[(r.condition, st)]))
        assert set(r.counts) == {st for (condition, st) in spans if condition == r.condition}
    assert sum(r.passages for r in table.rows) > 0
    from casestudy.findings import load_findings

    from casestudy.survey import load_survey_spec

    def about_agency(codes):
        return any(c in codebook.codes and codebook.condition_of(c) == "agency" for c in codes)

    named = {key for f in load_findings(sample_study, "AUSD") if about_agency(f.conditions) for key in f.constructs}
    linked = {key for code in codebook.codes.values() if about_agency([code.id]) for key in code.survey_constructs}
    linked |= {c.key for c in load_survey_spec(sample_study).constructs() if about_agency(c.conditions)}
    assert {c.key for c in row(table, "agency").constructs} == linked | named  # codebook links plus findings' constructs
    assert {c.key for c in row(table, "learner-supports").constructs} == {"students/supportive-relationships", "staff/learner-supports"}


def test_cli_joint_on_the_sample(run, sample_copy, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = run("joint", "--study", sample_copy, "--district", "SCV35")
    assert result.code == 0, result.err
    for text in ("Shared vision", "Leadership development", "Student agency 2023:", "Shared vision 2023:"):
        assert text in result.out
