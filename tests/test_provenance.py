"""Quote matching rules, the audit of findings and of rendered reports, the provenance record."""

from __future__ import annotations

import json
import shutil

import pytest

from casestudy.findings import Quote, load_findings
from casestudy.provenance import (
    STATUSES,
    Record,
    audit,
    audit_report,
    check_quote,
    footnote_html,
    match_quote,
    normalize,
    quote_html,
    write_provenance,
)
from casestudy.study import load_study

from .conftest import DATA

TEACHER = (DATA / "provenance_teacher_focus_group.md").read_text(encoding="utf-8")
STUDENT = (DATA / "provenance_student_focus_group.md").read_text(encoding="utf-8")
FINDINGS = (DATA / "provenance_findings.yaml").read_text(encoding="utf-8")
TEACHER_ID = "D1/teacher-focus-group"


@pytest.fixture
def root(make_study):
    return make_study({"transcripts/D1/teacher-focus-group.md": TEACHER, "transcripts/D1/student-focus-group.md": STUDENT,
                       "findings/D1.yaml": FINDINGS})


@pytest.fixture
def study(root):
    return load_study(root)


@pytest.fixture
def teacher(study):
    return study.source(TEACHER_ID)


def found(transcript, text, **kw):
    match = match_quote(transcript, text, **kw)
    assert match.status in ("verbatim", "verbatim-with-marked-edits"), (text, match.status, match.reason)
    assert transcript.text[match.start:match.end] == match.text
    return match


# --------------------------------------------------------------------------- the matching rules


def test_verbatim_quote_gives_offsets_turn_role_and_line(teacher):
    match = found(teacher, "The vision is shared. The -- the how is where it gets uneven.")
    assert match.status == "verbatim"
    assert match.text == "The vision is shared. The -- the how is where it gets uneven."
    assert match.turn == f"{TEACHER_ID}#t003"
    assert match.location.role == "teacher"
    assert match.location.line == 15  # the line of the file it is on
    assert TEACHER.splitlines()[14].endswith(match.text)


@pytest.mark.parametrize("text", [
    "the vision is shared.",  # case at the quote's start
    "The vision is shared",  # trailing full stop dropped
    "The kids build a learner profile in the first two weeks.",  # trailing full stop added (source: ",")
    "The vision is shared. The—the how is where it gets uneven",  # em dash
    "The vision is shared. The – the how is where it gets uneven",  # en dash with spaces
    "The vision is shared. The--the how",  # no spaces
    "The vision   is\tshared.",  # runs of white space
    'Say more about the "how."',  # straight quotes for curly ones
    "It's the kids' own plan, not mine",  # straight apostrophes for curly ones
    "It’s the kids’ own plan. I learned",  # curly apostrophes for straight ones
    "I learned that the hard way, when the tracker was mine",  # across a line break in the file
])
def test_differences_the_rules_allow(teacher, text):
    assert found(teacher, text).status == "verbatim"


@pytest.mark.parametrize(("text", "matched"), [
    ("[Students] pick from a menu of tasks", "pick from a menu of tasks"),
    ("We call them choice Fridays. [Students] pick from a menu", "We call them choice Fridays. They pick from a menu"),
    ("they color in the [progress] tracker as they show", "they color in the tracker as they show"),
    ("I learn[ed] that the hard way", "I learned that the hard way"),
    ("I [came to learn] that the hard way", "I learned that the hard way"),
    ("[T]he vision is shared", "The vision is shared"),
    ("The vision is shared ... where it gets uneven", "The vision is shared. The -- the how is where it gets uneven"),
    ("The vision is shared … where it gets uneven", "The vision is shared. The -- the how is where it gets uneven"),
    ("The vision is shared [...] where it gets uneven", "The vision is shared. The -- the how is where it gets uneven"),
    ("... the how is where it gets uneven", "the how is where it gets uneven"),
])
def test_marked_edits(teacher, text, matched):
    match = found(teacher, text)
    assert match.status == "verbatim-with-marked-edits"
    assert match.text == matched


@pytest.mark.parametrize(("text", "reason"), [
    ("The vision is shared. The -- the how is where it gets even.", "the quote has 'even' where the source has 'uneven'"),
    ("The Vision is shared.", "the quote has 'Vision' where the source has 'vision'"),
    ("The vision is really shared.", "the quote adds 'really'"),
    ("The vision shared.", "the quote leaves out 'is' without an ellipsis"),
    ("The vision is shared; The -- the how", "the quote has ';' where the source has '.'"),
    ("he vision is shared", "the quote has 'he' where the source has 'The'"),  # starts inside a word
])
def test_nothing_else_may_differ(teacher, text, reason):
    match = match_quote(teacher, text)
    assert match.status == "not-found"
    assert reason in match.reason
    assert match.closest is not None and match.closest.turn == f"{TEACHER_ID}#t003"
    assert match.score is not None and match.score > 70


def test_a_quote_stays_within_one_turn(teacher):
    # the end of one turn and the start of the next, with and without an ellipsis
    assert match_quote(teacher, "it gets uneven. Say more about the").status == "not-found"
    assert match_quote(teacher, "The vision is shared ... Say more about the").status == "not-found"


def test_a_bracket_stands_for_a_short_run_only(teacher):
    # 60 characters between "Fridays." and "on the tracker": too many for one bracket
    assert match_quote(teacher, "We call them choice Fridays. [They] on the tracker.").status == "not-found"
    # 28 characters: a bracket may stand for them
    assert found(teacher, "I think [that] really clear on").text == "I think that's the one thing we're really clear on"


def test_two_places_are_both_reported_and_a_turn_settles_them(teacher):
    match = match_quote(teacher, "It's the kids' own plan")
    assert match.status == "ambiguous"
    assert [loc.turn for loc in match.locations] == [f"{TEACHER_ID}#t005", f"{TEACHER_ID}#t006"]
    assert "stands in 2 places" in match.reason
    settled = match_quote(teacher, "It's the kids' own plan", turn=f"{TEACHER_ID}#t006.s01")
    assert settled.status == "verbatim" and settled.turn == f"{TEACHER_ID}#t006"


def test_normalize():
    assert normalize("“Don’t” — she said  --  twice\u00a0now") == '"Don\'t"-she said-twice now'


# --------------------------------------------------------------------------- the audit


def test_audit_passes_on_valid_findings(study, root, run):
    result = audit(study, identifiers=False)
    assert result.ok
    assert [r.status for r in result.records] == ["verbatim", "verbatim-with-marked-edits", "verbatim-with-marked-edits", "verbatim"]
    first = result.records[0]
    assert (first.finding, first.source, first.turn, first.role, first.label) == (
        "d1-vision-shared", TEACHER_ID, f"{TEACHER_ID}#t003", "teacher", "D1 Teacher Focus Group")
    assert first.file == "transcripts/D1/teacher-focus-group.md" and first.line == 15
    assert study.source(TEACHER_ID).text[first.start:first.end] == first.matched_text
    out = run("audit", "--study", root)
    assert out.code == 0, out.out + out.err
    assert "D1/teacher-focus-group  transcripts/D1/teacher-focus-group.md (D1 Teacher Focus Group)" in out.out
    assert "4 quote(s): 2 verbatim, 2 verbatim-with-marked-edits; all verified" in out.out
    assert "identifier check skipped" in out.out  # no private/identifiers.yaml


def test_altering_one_word_fails_with_the_reason_and_closest_passage(root, run):
    findings = root / "findings" / "D1.yaml"
    findings.write_text(FINDINGS.replace("where it gets uneven", "where it gets even"), encoding="utf-8")
    out = run("audit", "--study", root)
    assert out.code == 1
    assert "FAIL findings/D1.yaml:10: d1-vision-shared: not-found: not found in D1/teacher-focus-group: " \
           "the quote has 'even' where the source has 'uneven'" in out.out
    assert "closest passage (transcripts/D1/teacher-focus-group.md:15, D1/teacher-focus-group#t003, teacher, similarity" in out.out
    assert '"The vision is shared. The -- the how is where it gets uneven."' in out.out
    data = json.loads(run("audit", "--study", root, "--format", "json").out)
    record = data["quotes"][0]
    assert record["status"] == "not-found" and record["closest_line"] == 15 and record["score"] > 90
    assert data["ok"] is False


def test_the_wrong_session_fails_and_names_the_right_one(root, run):
    findings = root / "findings" / "D1.yaml"
    findings.write_text(FINDINGS.replace("      - source: D1/student-focus-group", "      - source: D1/teacher-focus-group"), encoding="utf-8")
    out = run("audit", "--study", root)
    assert out.code == 1
    assert "wrong-source: not in D1/teacher-focus-group (D1 Teacher Focus Group); it stands in D1/student-focus-group " \
           "(transcripts/D1/student-focus-group.md:14, D1/student-focus-group#t002, student, D1 Student Focus Group)" in out.out


def test_a_real_name_in_a_finding_fails_and_says_where(root, run):
    (root / "private").mkdir()
    shutil.copy(DATA / "provenance_identifiers.yaml", root / "private" / "identifiers.yaml")
    (root / ".gitignore").write_text("private/\n", encoding="utf-8")
    findings = root / "findings" / "D1.yaml"
    findings.write_text(FINDINGS.replace("Students track their own progress", "As Maria Lopez showed, students track their progress"),
                        encoding="utf-8")
    out = run("audit", "--study", root)
    assert out.code == 1
    assert "findings/D1.yaml:16: identifier: finding 'd1-trackers': the statement contains 'Maria Lopez', " \
           "listed in private/identifiers.yaml" in out.out
    assert "identifiers: checked 3 name(s) and term(s) from private/identifiers.yaml" in out.out
    assert "skipped" not in out.out


def test_a_pseudonym_used_as_a_name_fails(root, run):
    findings = root / "findings" / "D1.yaml"
    text = FINDINGS.replace("Students track their own progress", "Dana and Reyes say students track their progress")
    findings.write_text(text.replace("[Students] pick", "[Students] pick"), encoding="utf-8")
    out = run("audit", "--study", root)
    assert out.code == 1
    assert "pseudonym: finding 'd1-trackers': the statement names 'Dana', a participant's pseudonym in D1/teacher-focus-group" in out.out
    assert "names 'Reyes'" in out.out  # the surname of "Mr. Reyes"
    assert "'Facilitator'" not in out.out  # a generic label, not a name


def test_speaker_mismatch_and_source_changed(root, study, run):
    text = FINDINGS.replace("        text: \"I look at my tracker.\"\n        role: student",
                            "        text: \"I look at my tracker.\"\n        role: teacher")
    text = text.replace("        turn: D1/teacher-focus-group#t003", "        turn: D1/teacher-focus-group#t003\n        sha256: " + "0" * 64)
    (root / "findings" / "D1.yaml").write_text(text, encoding="utf-8")
    result = audit(load_study(root), identifiers=False)
    statuses = {r.finding + ":" + r.source: r.status for r in result.records}
    assert statuses["d1-vision-shared:" + TEACHER_ID] == "source-changed"
    assert statuses["d1-trackers:D1/student-focus-group"] == "speaker-mismatch"
    mismatch = next(r for r in result.records if r.status == "speaker-mismatch")
    assert mismatch.message.startswith("the quote is attributed to a teacher but the speaker at "
                                       "transcripts/D1/student-focus-group.md:14 (D1/student-focus-group#t002) is a student")
    assert run("audit", "--study", root).code == 1


def test_a_recorded_turn_that_does_not_hold_the_quote(root):
    (root / "findings" / "D1.yaml").write_text(FINDINGS.replace("#t003", "#t002"), encoding="utf-8")
    record = audit(load_study(root), identifiers=False).records[0]
    assert record.status == "turn-mismatch" and f"stands in {TEACHER_ID}#t003" in record.message


def test_missing_identifier_list_skips_only_that_check(root, run):
    (root / "findings" / "D1.yaml").write_text(FINDINGS.replace("where it gets uneven", "where it gets even"), encoding="utf-8")
    out = run("audit", "--study", root)
    assert out.code == 1  # the other checks still ran
    assert "identifier check skipped: there is no private/identifiers.yaml" in out.out
    assert run("audit", "--study", root, "--identifiers", root / "nope.yaml").code == 2


def test_district_filter_and_unknown_district(root, run):
    assert run("audit", "--study", root, "--district", "D1").code == 0
    assert run("audit", "--study", root, "--district", "D7").code == 2
    assert run("audit", "--study", root, "--district", "../x").code == 2


def test_write_provenance(root, tmp_path, run):
    target = tmp_path / "out" / "provenance.json"
    out = run("audit", "--study", root, "--write-provenance", target)
    assert out.code == 0
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["format"] == "casestudy-provenance" and data["verified"] is True
    assert data["counts"] == {"verbatim": 2, "verbatim-with-marked-edits": 2}
    record = data["quotes"][0]
    for key in ("quote", "matched_text", "file", "sha256", "start", "end", "turn", "role", "label", "status", "source_type"):
        assert record[key] not in (None, ""), key
    assert record["label"] == "D1 Teacher Focus Group" and record["source_type"] == "teacher_focus_group"
    # the same study gives the same bytes
    first = target.read_bytes()
    run("audit", "--study", root, "--write-provenance", target)
    assert target.read_bytes() == first


def test_check_quote_for_one_quote(study):
    record = check_quote(study, Quote(source=TEACHER_ID, text="Right. The vision is shared."))
    assert record.ok and record.start is not None and record.status in STATUSES


# --------------------------------------------------------------------------- rendered reports


class Notes:
    def __init__(self):
        self.notes = []

    def note_for(self, label, source_id, share_with_previous):
        if share_with_previous and self.notes and self.notes[-1][1] == label:
            return self.notes[-1][0]
        self.notes.append((f"fn-{len(self.notes) + 1}", label, [source_id]))
        return self.notes[-1][0]

    def number(self, note_id):
        return int(note_id.split("-")[1])


def report_html(study, edit=None) -> str:
    """A report page as the renderer writes it: each quote in quote_html, numbered footnotes."""
    result = audit(study, identifiers=False)
    notes = Notes()
    body = []
    for record in result.records:
        note = notes.note_for(record.label, record.source, False)
        body.append(quote_html(record, note, notes.number(note)))
    items = "".join(footnote_html(n, label, sources) for n, label, sources in notes.notes)
    page = ("<html><head><style>p{color:red}</style><script>var x='Dana';</script></head><body>"
            "<h2>Key findings</h2>" + "\n".join(body) + f'<ol class="cs-footnotes">{items}</ol></body></html>')
    return edit(page) if edit else page


def test_report_markup_round_trip(study):
    page = report_html(study)
    assert 'data-source="D1/teacher-focus-group"' in page and 'data-note="fn-1"' in page
    assert '<li id="fn-1" class="cs-footnote" data-sources="D1/teacher-focus-group">D1 Teacher Focus Group</li>' in page
    result = audit_report(study, page, identifiers=False)
    assert result.ok, [r.summary() for r in result.records] + [str(p) for p in result.problems]
    assert len(result.records) == 4 and result.results is result.records


def test_report_quote_that_was_altered(study):
    page = report_html(study, lambda p: p.replace("gets uneven", "gets even"))
    result = audit_report(study, page, identifiers=False)
    assert not result.ok and result.records[0].status == "not-found"
    assert "the quote has 'even' where the source has 'uneven'" in result.records[0].message


def test_report_offsets_must_be_where_the_quote_stands(study):
    record = audit(study, identifiers=False).records[0]
    page = report_html(study, lambda p: p.replace(f'data-start="{record.start}"', f'data-start="{record.start + 1}"', 1))
    failed = audit_report(study, page, identifiers=False).records[0]
    assert failed.status == "offsets-mismatch"


def test_report_footnote_label_must_match_the_source(study):
    page = report_html(study, lambda p: p.replace(">D1 Teacher Focus Group</li>", ">D1 Student Focus Group</li>", 1))
    result = audit_report(study, page, identifiers=False)
    assert result.records[0].status == "footnote-mismatch"
    assert "footnote fn-1 says 'D1 Student Focus Group' but the source is 'D1 Teacher Focus Group'" in result.records[0].message


def test_report_escapes_text_and_names_are_found(study):
    record = audit(study, identifiers=False).records[0]
    record.quote = "<script>alert(1)</script> & more"
    markup = quote_html(record, "fn-1", 1, warning="<b>not verified</b>")
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert '<p class="cs-warning">WARNING: &lt;b&gt;not verified&lt;/b&gt;</p>' in markup
    page = report_html(study, lambda p: p.replace("<h2>Key findings</h2>", "<h2>Key findings</h2><p>Ms. Lopez and Dana agree.</p>"))
    from casestudy.deidentify import load_identifiers

    ids = load_identifiers(DATA / "provenance_identifiers.yaml")
    result = audit_report(study, page, identifiers=ids)
    kinds = sorted((p.type, p.line) for p in result.problems)
    assert kinds == [("identifier", 1), ("pseudonym", 1)]  # script contents are not report text
    assert not result.ok


def test_audit_report_command(root, study, tmp_path, run):
    report = tmp_path / "report.html"
    report.write_text(report_html(study), encoding="utf-8")
    out = run("audit", "--study", root, "--report", report, "--write-provenance", tmp_path / "p.json")
    assert out.code == 0, out.out
    report.write_text(report_html(study, lambda p: p.replace("gets uneven", "gets even")), encoding="utf-8")
    out = run("audit", "--study", root, "--report", report)
    assert out.code == 1 and "not-found" in out.out
    assert run("audit", "--study", root, "--report", tmp_path / "missing.html").code == 2


def test_record_round_trip(study):
    record = audit(study, identifiers=False).records[0]
    data = record.to_dict()
    assert Record(**data) == record
    assert record.summary().startswith("findings/D1.yaml:10: d1-vision-shared: verbatim")


def test_write_provenance_accepts_records(study, tmp_path):
    records = audit(study, identifiers=False).records
    write_provenance(records, tmp_path / "p.json")
    assert len(json.loads((tmp_path / "p.json").read_text())["quotes"]) == 4


# --------------------------------------------------------------------------- the sample study


def test_sample_study_audit_passes(sample_root, run):
    if not (sample_root / "findings").is_dir():
        pytest.fail("the sample study has no findings/ folder")
    out = run("audit", "--study", sample_root, "--identifiers", DATA / "provenance_identifiers.yaml")
    assert out.code == 0, out.out[-3000:] + out.err
    assert "all verified" in out.out


def test_sample_findings_load(sample_study):
    findings = load_findings(sample_study)
    assert {f.district for f in findings} == set(sample_study.config.districts)


def test_report_excerpts_of_the_joint_display_are_checked(study):
    """The joint display's excerpts: a coded passage must be the source's text at its offsets, and
    its label the source's; the quotation marks around it are not part of it."""
    import html

    teacher = study.source(TEACHER_ID)
    sentence = next(s for s in teacher.sentences if len(s.text.split()) >= 4)
    label = study.source_label(teacher)

    def page(text: str, start: int, end: int, shown_label: str) -> str:
        # the markup casestudy.joint.joint_html writes for a coded passage
        return (f'<html><body><table class="cs-joint"><tr><td><blockquote class="cs-excerpt" data-source="{TEACHER_ID}" '
                f'data-origin="coding" data-start="{start}" data-end="{end}">\u201c{html.escape(text)}\u201d'
                f'<span class="cs-source">{html.escape(shown_label)}</span></blockquote></td></tr></table></body></html>')

    ok = audit_report(study, page(sentence.text, sentence.start, sentence.end, label), identifiers=False)
    assert ok.ok and ok.records[0].status == "verbatim", [r.summary() for r in ok.records]
    moved = audit_report(study, page(sentence.text, sentence.start + 1, sentence.end, label), identifiers=False)
    assert moved.records[0].status == "offsets-mismatch"
    altered = audit_report(study, page(sentence.text.replace(sentence.text.split()[1], "zebra", 1), sentence.start,
                                       sentence.end, label), identifiers=False)
    assert altered.records[0].status == "offsets-mismatch"
    relabelled = audit_report(study, page(sentence.text, sentence.start, sentence.end, "D1 Parent Focus Group"), identifiers=False)
    assert relabelled.records[0].status == "footnote-mismatch" and label in relabelled.records[0].message
