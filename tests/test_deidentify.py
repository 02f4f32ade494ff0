"""The private identifiers list, the name checks, and ``casestudy deidentify``."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from casestudy.deidentify import (
    Identifiers,
    IdentifiersError,
    Scanner,
    deidentify,
    gitignore_problems,
    load_identifiers,
    name_forms,
    participant_names,
)
from casestudy.study import load_study
from casestudy.transcripts import load_transcript

from .conftest import DATA

RAW = (DATA / "provenance_real_names.md").read_text(encoding="utf-8")
TEACHER = (DATA / "provenance_teacher_focus_group.md").read_text(encoding="utf-8")


@pytest.fixture
def raw_study(make_study):
    root = make_study({"transcripts/D1/teacher-focus-group.md": RAW})
    (root / "private").mkdir()
    shutil.copy(DATA / "provenance_identifiers.yaml", root / "private" / "identifiers.yaml")
    return root


# --------------------------------------------------------------------------- the identifiers file


def test_load_identifiers():
    ids = load_identifiers(DATA / "provenance_identifiers.yaml")
    assert ids.names == ("Maria Lopez", "Ms. Lopez") and ids.terms == ("Saguaro Street",)
    assert ids.pseudonyms == {"Maria Lopez": "Dana", "Ms. Lopez": "Dana"} and ids.allow == ("Will",)
    assert ids.replacement("Maria Lopez") == "Dana" and ids.replacement("Saguaro Street") == "[redacted]"


@pytest.mark.parametrize(("text", "kind"), [
    ("names: [Maria\n", "bad-yaml"),
    ("names: Maria\nnicknames: [Mo]\n", "unknown-key"),
    ("names:\n  - {a: b}\n", "bad-identifiers"),
    ("pseudonyms: [Dana]\n", "bad-identifiers"),
    ("- Maria\n", "bad-identifiers"),
])
def test_unusable_identifier_files(tmp_path, text, kind):
    path = tmp_path / "identifiers.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(IdentifiersError) as caught:
        load_identifiers(path)
    assert caught.value.exit_code == 2
    assert [p.type for p in caught.value.problems] == [kind]


def test_an_unusable_identifier_file_stops_the_audit(raw_study, run):
    (raw_study / "private" / "identifiers.yaml").write_text("names: [Maria\n", encoding="utf-8")
    out = run("audit", "--study", raw_study)
    assert out.code == 2 and "bad-yaml" in out.err


# --------------------------------------------------------------------------- names in text


def test_pseudonym_forms_and_generic_labels(make_study):
    assert name_forms("Mr. Reyes") == ["Mr. Reyes", "Mr Reyes", "Reyes"]
    assert name_forms("Coach Tafoya") == ["Coach Tafoya", "Tafoya"]
    assert name_forms("Maria Lopez") == ["Maria Lopez", "Maria", "Lopez"]
    transcript = TEACHER.replace("  Mr. Reyes: teacher\n", "  Mr. Reyes: teacher\n  Student 2: teacher\n  Will: teacher\n")
    study = load_study(make_study({"transcripts/D1/teacher-focus-group.md": transcript}))
    names = participant_names(study, allow=["Will"])
    assert set(names) == {"Dana", "Mr. Reyes", "Mr Reyes", "Reyes"}  # not Facilitator, Student 2, or the allowed Will
    assert names["Dana"] == ["D1/teacher-focus-group"]


def test_scanner(make_study):
    study = load_study(make_study({"transcripts/D1/teacher-focus-group.md": TEACHER}))
    scanner = Scanner(study, load_identifiers(DATA / "provenance_identifiers.yaml"))
    hits = scanner.scan("The facilitator asked Dana; maria   lopez and Ms. Lopez live on Saguaro Street. Reyes’s class; dana.")
    assert [(h.kind, h.text) for h in hits] == [
        ("pseudonym", "Dana"), ("identifier", "maria   lopez"), ("identifier", "Ms. Lopez"),
        ("identifier", "Saguaro Street"), ("pseudonym", "Reyes")]  # "dana" in lower case is a word, not the name
    assert Scanner(study, None).scan("Mariachi bands, Danaher Corp.") == []  # whole words only


def test_gitignore_warning(tmp_path):
    ids = Identifiers(names=("X",), path=tmp_path / "private" / "identifiers.yaml")
    assert [p.type for p in gitignore_problems(tmp_path, ids)] == ["not-ignored"]
    (tmp_path / ".gitignore").write_text("# private\nprivate/\n", encoding="utf-8")
    assert gitignore_problems(tmp_path, ids) == []


def test_audit_warns_about_names_left_in_transcripts(raw_study, run):
    (raw_study / ".gitignore").write_text("private/\n", encoding="utf-8")
    out = run("audit", "--study", raw_study)
    assert "transcripts/D1/teacher-focus-group.md:9: warning: identifier-in-transcript" in out.out
    assert out.code == 0  # no findings, and a warning only


# --------------------------------------------------------------------------- deidentify


def test_deidentify_writes_new_files_and_a_log(raw_study, tmp_path, run):
    out_dir = tmp_path / "clean"
    result = run("deidentify", "--study", raw_study, "--out", out_dir)
    assert result.code == 0, result.err
    assert "4 replacement(s) in 1 of 1 file(s)" in result.out
    assert "warning: transcripts/D1/teacher-focus-group.md: 1 listed name(s) left in other capitals" in result.err
    original = raw_study / "transcripts" / "D1" / "teacher-focus-group.md"
    assert original.read_text(encoding="utf-8") == RAW  # never in place
    clean = (out_dir / "transcripts" / "D1" / "teacher-focus-group.md").read_text(encoding="utf-8")
    assert "  Dana: teacher\n" in clean
    assert "Dana: I host it, in room 12 on [redacted]. Ben comes in on Fridays." in clean
    assert "Ben: Dana lets us watch." in clean
    assert "Maria Lopez" not in clean and "Ms. Lopez" not in clean
    logs = list((raw_study / "private").glob("deidentify-*.json"))
    assert len(logs) == 1
    log = json.loads(logs[0].read_text(encoding="utf-8"))
    changes = log["files"][0]["changes"]
    assert [(c["line"], c["found"], c["replacement"]) for c in changes] == [
        (9, "Maria Lopez", "Dana"), (14, "Maria Lopez", "Dana"), (14, "Saguaro Street", "[redacted]"), (15, "Ms. Lopez", "Dana")]
    transcript, problems = load_transcript(out_dir / "transcripts" / "D1" / "teacher-focus-group.md", out_dir, "D1")
    assert transcript is not None and transcript.participants == {"Facilitator": "facilitator", "Dana": "teacher", "Ben": "teacher"}


def test_deidentify_in_place_backs_up_first(raw_study):
    ids = load_identifiers(raw_study / "private" / "identifiers.yaml", raw_study)
    result = deidentify(raw_study, ids, in_place=True)
    assert result.backup is not None
    backup = result.backup / "transcripts" / "D1" / "teacher-focus-group.md"
    assert backup.read_text(encoding="utf-8") == RAW
    assert "Maria Lopez" not in (raw_study / "transcripts" / "D1" / "teacher-focus-group.md").read_text(encoding="utf-8")
    assert load_study(raw_study).source("D1/teacher-focus-group").participants["Dana"] == "teacher"


def test_deidentify_refuses_to_overwrite_without_backup(raw_study, run):
    out = run("deidentify", "--study", raw_study, "--out", raw_study)
    assert out.code == 2 and "--in-place" in out.err
    assert (raw_study / "transcripts" / "D1" / "teacher-focus-group.md").read_text(encoding="utf-8") == RAW


def test_deidentify_needs_a_pseudonym_for_speaker_labels(raw_study, run, tmp_path):
    (raw_study / "private" / "identifiers.yaml").write_text("names: [Ben]\n", encoding="utf-8")
    out = run("deidentify", "--study", raw_study, "--out", tmp_path / "clean")
    assert out.code == 2 and "'Ben'" in out.err and "no pseudonym" in out.err
    assert not (tmp_path / "clean").exists()


def test_deidentify_without_identifiers(make_study, run, tmp_path):
    root = make_study()
    out = run("deidentify", "--study", root, "--out", tmp_path / "x")
    assert out.code == 2 and "identifiers" in out.err


def test_deidentify_captions_sidecars_and_word(make_study, tmp_path):
    import docx

    meta = ("district: D1\nschool: School One\nsource_type: student_focus_group\ndate: 2023-10-02\n"
            "facilitator: Facilitator\nparticipants:\n  Facilitator: facilitator\n  Maria Lopez: student\n")
    vtt = ("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n<v Facilitator>Hello, Maria Lopez.\n\n"
           "00:00:05.000 --> 00:00:08.000\n<v Maria Lopez>I live on Saguaro Street.\n")
    document = docx.Document()
    document.add_paragraph("Facilitator: Welcome.")
    paragraph = document.add_paragraph("Maria ")
    paragraph.add_run("Lopez: I teach here.")  # the name split across two runs
    document.core_properties.author = "Maria Lopez"
    buffer = io.BytesIO()
    document.save(buffer)
    root = make_study({
        "transcripts/D1/student-focus-group.vtt": vtt, "transcripts/D1/student-focus-group.meta.yaml": meta,
        "transcripts/D1/school-leader-interview.docx": buffer.getvalue(),
        "transcripts/D1/school-leader-interview.meta.yaml": meta.replace("student_focus_group", "school_leader_interview")
                                                                  .replace("student\n", "teacher\n"),
    })
    private = tmp_path / "private"
    private.mkdir()
    shutil.copy(DATA / "provenance_identifiers.yaml", private / "identifiers.yaml")
    ids = load_identifiers(private / "identifiers.yaml")
    result = deidentify(root, ids, out=tmp_path / "clean")
    clean = tmp_path / "clean" / "transcripts" / "D1"
    assert "<v Dana>I live on [redacted]." in (clean / "student-focus-group.vtt").read_text(encoding="utf-8")
    assert "  Dana: student" in (clean / "student-focus-group.meta.yaml").read_text(encoding="utf-8")
    word = docx.Document(str(clean / "school-leader-interview.docx"))
    assert [p.text for p in word.paragraphs] == ["Facilitator: Welcome.", "Dana: I teach here."]
    assert word.core_properties.author == "Dana"
    assert result.log.parent == private  # the log goes beside the identifiers file
    assert sorted(p.name for p in clean.iterdir()) == [
        "school-leader-interview.docx", "school-leader-interview.meta.yaml", "student-focus-group.meta.yaml", "student-focus-group.vtt",
        "teacher-focus-group.md"]  # every transcript of the study, changed or not


def test_deidentify_warns_when_a_pseudonym_is_already_taken(raw_study, tmp_path):
    ids = Identifiers(names=("Maria Lopez",), pseudonyms={"Maria Lopez": "Ben"}, path=raw_study / "private" / "identifiers.yaml")
    first = deidentify(raw_study, ids, out=tmp_path / "a")
    assert "transcripts/D1/teacher-focus-group.md: the pseudonym 'Ben' was already used in the file: " \
           "two people may now share it" in first.warnings
    second = deidentify(raw_study, ids, out=tmp_path / "b")
    assert second.log != first.log and first.log.exists()  # every run keeps its own log
