"""Findings files: the format, every bad-input case, and how the audit reports each."""

from __future__ import annotations

import pytest

from casestudy.errors import DataError
from casestudy.findings import SECTIONS, QuoteSyntaxError, load_findings, parse_quote, read_findings, validate_findings
from casestudy.study import load_study

from .conftest import DATA

TEACHER = (DATA / "provenance_teacher_focus_group.md").read_text(encoding="utf-8")
STUDENT = (DATA / "provenance_student_focus_group.md").read_text(encoding="utf-8")
FINDINGS = (DATA / "provenance_findings.yaml").read_text(encoding="utf-8")


@pytest.fixture
def study_with(make_study):
    """A mini study with two sessions and the given findings/D1.yaml text."""

    def _make(findings: str | None = FINDINGS, **extra: str):
        files = {"transcripts/D1/teacher-focus-group.md": TEACHER, "transcripts/D1/student-focus-group.md": STUDENT}
        if findings is not None:
            files["findings/D1.yaml"] = findings
        files.update(extra)
        return make_study(files)

    return _make


def one_finding(quote_text: str, source: str = "D1/teacher-focus-group", extra: str = "") -> str:
    return (
        "district: D1\n"
        "findings:\n"
        "  - id: d1-one\n"
        "    section: key-findings\n"
        "    conditions: [agency]\n"
        "    statement: A statement.\n"
        "    quotes:\n"
        f"      - source: {source}\n"
        f"        text: {quote_text!r}\n"
        f"{extra}"
    )


# --------------------------------------------------------------------------- the format


def test_sections_are_the_report_sections():
    assert SECTIONS == ("key-findings", "district-systems", "on-the-ground", "school-perspectives", "successes",
                        "challenges", "lessons")


def test_load_findings_reads_every_field(study_with):
    study = load_study(study_with())
    findings = load_findings(study, "D1")
    assert [f.id for f in findings] == ["d1-vision-shared", "d1-trackers"]
    first = findings[0]
    assert first.district == "D1" and first.section == "key-findings" and first.conditions == ("agency",)
    assert first.path == "findings/D1.yaml" and first.line == 3
    assert "Teachers agree" in first.statement
    quote = first.quotes[0]
    assert quote.source == "D1/teacher-focus-group" and quote.role == "teacher"
    assert quote.turn == "D1/teacher-focus-group#t003" and quote.line == 10
    assert findings[1].conditions == ("agency", "data-walls") and len(findings[1].quotes) == 3
    assert findings[1].survey_constructs == ()


def test_no_findings_file_gives_an_empty_list(study_with):
    study = load_study(study_with(findings=None))
    assert load_findings(study, "D1") == []
    assert validate_findings(study) == []


def test_the_sample_findings_are_valid(sample_study):
    errors = [p for p in validate_findings(sample_study) if p.severity == "error"]
    assert errors == []


# --------------------------------------------------------------------------- quote syntax


def test_parse_quote_pieces():
    parsed = parse_quote("[Students] have a menu ... learn[ed] it")
    assert [p.kind for p in parsed.pieces] == ["bracket", "text", "gap", "text", "bracket", "text"]
    assert parsed.edited
    assert parsed.source_words == "have a menu learn it"
    assert not parse_quote("plain words.").edited
    for ellipsis in ("a ... b", "a … b", "a [...] b", "a [\u2026] b", "a . . . b", "a.... b"):
        assert [p.kind for p in parse_quote(ellipsis).pieces] == ["text", "gap", "text"], ellipsis


@pytest.mark.parametrize(("text", "kind"), [
    ("the [students have a menu", "unbalanced-brackets"),
    ("the students] have a menu", "unbalanced-brackets"),
    ("the [students [and] teachers] have", "nested-brackets"),
    ("the [] menu", "empty-brackets"),
    ("...", "ellipsis-only-quote"),
    (" … [...] ", "ellipsis-only-quote"),
    ("[students] ... [teachers]", "no-source-words"),
    ("   ", "empty-quote"),
])
def test_malformed_quotes_are_refused(text, kind):
    with pytest.raises(QuoteSyntaxError) as caught:
        parse_quote(text)
    assert caught.value.type == kind


# --------------------------------------------------------------------------- bad input, each a test


def test_unknown_condition(study_with, run):
    root = study_with(FINDINGS.replace("conditions: [agency]", "conditions: [agencyy]"))
    study = load_study(root)
    problems = validate_findings(study)
    bad = [p for p in problems if p.type == "unknown-condition"]
    assert len(bad) == 1 and bad[0].line == 5 and "'agencyy'" in bad[0].message and "did you mean 'agency'" in bad[0].message
    with pytest.raises(DataError):
        load_findings(study, "D1")
    result = run("audit", "--study", root)
    assert result.code == 1
    assert "findings/D1.yaml:5: unknown-condition" in result.out


def test_unknown_source(study_with, run):
    root = study_with(one_finding("The vision is shared.", source="D1/teacher-focus-grop"))
    problems = validate_findings(load_study(root))
    assert [(p.type, p.line) for p in problems] == [("unknown-source", 8)]
    assert "did you mean 'D1/teacher-focus-group'" in problems[0].message
    result = run("audit", "--study", root)
    assert result.code == 1
    assert "unknown-source" in result.out
    # the audit still says where the quote does stand
    assert "the quote stands in D1/teacher-focus-group" in result.out


def test_unbalanced_brackets_make_the_file_unusable(study_with, run):
    root = study_with(one_finding("[Students pick from a menu of tasks"))
    result = run("audit", "--study", root)
    assert result.code == 2
    assert "findings/D1.yaml:9: unbalanced-brackets" in result.err
    assert "never closed" in result.err


def test_ellipsis_only_quote_is_unusable(study_with, run):
    root = study_with(one_finding("..."))
    result = run("audit", "--study", root)
    assert result.code == 2
    assert "findings/D1.yaml:9: ellipsis-only-quote" in result.err


def test_a_quote_in_two_places_reports_both(study_with, run):
    root = study_with(one_finding("It's the kids' own plan"))
    result = run("audit", "--study", root)
    assert result.code == 1
    assert "ambiguous" in result.out
    assert "stands in 2 places in D1/teacher-focus-group" in result.out
    assert "D1/teacher-focus-group#t005" in result.out and "D1/teacher-focus-group#t006" in result.out


def test_yaml_error_in_findings(study_with, run):
    root = study_with("district: D1\nfindings:\n  - id: d1-x\n    statement: [unclosed\n")
    problems = validate_findings(load_study(root))
    assert problems[0].type == "bad-yaml" and problems[0].line is not None
    result = run("audit", "--study", root)
    assert result.code == 2
    assert "findings/D1.yaml:" in result.err and "bad-yaml" in result.err


def test_structural_problems_are_each_reported_with_their_line(study_with):
    text = (
        "district: D2\n"  # 1: not the file's district
        "findings:\n"
        "  - id: D1 Vision\n"  # 3: bad id
        "    section: key-finding\n"  # 4: unknown section
        "    conditions: [agency]\n"
        "    statement: A statement.\n"
        "    quote: []\n"  # 7: unknown key (a typo for quotes)
        "  - id: d1-two\n"
        "    section: lessons\n"
        "    statement: Another.\n"
        "    quotes:\n"
        "      - source: D1/teacher-focus-group\n"
        "        text: The vision is shared.\n"
        "        turn: D1/teacher-focus-group#t099\n"  # 14: no such turn
        "        sha256: abc\n"  # 15: not a SHA-256
        "        role: principal\n"  # 16: not a role of study.yaml
        "    constructs: [students/agency]\n"  # 17: the study has no survey.yaml
        "  - id: d1-two\n"  # 18: duplicate id
        "    section: lessons\n"
        "    statement: Third.\n"
    )
    problems = validate_findings(load_study(study_with(text)))
    found = {(p.type, p.line) for p in problems}
    assert {("district-mismatch", 1), ("bad-finding-id", 3), ("unknown-section", 4), ("unknown-key", 7),
            ("unknown-turn", 14), ("bad-sha256", 15), ("unknown-role", 16), ("unknown-construct", 17),
            ("duplicate-finding", 18)} <= found
    section = next(p for p in problems if p.type == "unknown-section")
    assert "did you mean 'key-findings'" in section.message


def test_a_findings_file_for_an_unknown_district(study_with):
    root = study_with(**{"findings/D9.yaml": "district: D9\nfindings: []\n"})
    problems = validate_findings(load_study(root))
    assert [(p.path, p.type) for p in problems] == [("findings/D9.yaml", "unknown-district")]


def test_a_source_of_another_district_is_allowed_but_noted(make_study):
    other = STUDENT.replace("district: D1", "district: D2")
    study_yaml = (
        "name: Two districts\ndistricts:\n  D1:\n    name: One\n    label: D1\n  D2:\n    name: Two\n    label: D2\n"
        "source_types:\n  teacher_focus_group: Teacher Focus Group\n  student_focus_group: Student Focus Group\n"
        "roles:\n  facilitator: Facilitator\n  teacher: Teacher\n  student: Student\n"
    )
    root = make_study({"study.yaml": study_yaml, "transcripts/D1/teacher-focus-group.md": TEACHER,
                       "transcripts/D2/student-focus-group.md": other,
                       "findings/D1.yaml": one_finding("I look at my tracker.", source="D2/student-focus-group")})
    study = load_study(root)
    problems = validate_findings(study)
    assert [(p.type, p.severity) for p in problems] == [("other-district-source", "warning")]
    findings, _ = read_findings(study, "D1")
    assert findings[0].quotes[0].source == "D2/student-focus-group"
