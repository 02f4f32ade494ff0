from pathlib import Path

import pytest

from casestudy.errors import UsageError
from casestudy.study import load_study
from casestudy.transcripts import get_reader, load_transcript

from .conftest import MINI_TRANSCRIPT


def load(root: Path, rel: str):
    return load_transcript(root / rel, root, rel.split("/")[1])


def test_turns_sentences_offsets_and_lines(make_study):
    root = make_study()
    t, problems = load(root, "transcripts/D1/teacher-focus-group.md")
    assert problems == []
    assert t.id == "D1/teacher-focus-group"
    assert [turn.speaker for turn in t.turns] == ["Facilitator", "Ana", "Ben"]
    assert [turn.role for turn in t.turns] == ["facilitator", "teacher", "teacher"]
    assert [turn.line for turn in t.turns] == [13, 14, 15]
    ben = t.turns[2]
    assert ben.text == "Um, and they get voice and choice.\nIt changed the culture of the room."
    sentences = list(t.sentences)
    assert [s.id for s in sentences][:3] == ["D1/teacher-focus-group#t001.s01", "D1/teacher-focus-group#t001.s02",
                                            "D1/teacher-focus-group#t002.s01"]
    for s in sentences:
        assert t.text[s.start:s.end] == s.text
    assert sentences[-1].text == "It changed the culture of the room." and sentences[-1].line == 16
    assert len(t.sha256) == 64


def test_ids_are_stable_across_loads(make_study):
    root = make_study()
    first, _ = load(root, "transcripts/D1/teacher-focus-group.md")
    second, _ = load(root, "transcripts/D1/teacher-focus-group.md")
    assert [s.id for s in first.sentences] == [s.id for s in second.sentences]
    assert first.sha256 == second.sha256


def test_bom_and_crlf_give_the_same_segments(make_study):
    plain = make_study()
    reference, _ = load(plain, "transcripts/D1/teacher-focus-group.md")
    data = b"\xef\xbb\xbf" + MINI_TRANSCRIPT.replace("\n", "\r\n").encode("utf-8")
    (plain / "transcripts/D1/teacher-focus-group.md").write_bytes(data)
    t, problems = load(plain, "transcripts/D1/teacher-focus-group.md")
    assert problems == []
    assert [(s.id, s.text, s.start, s.line) for s in t.sentences] == [(s.id, s.text, s.start, s.line) for s in reference.sentences]
    assert t.sha256 != reference.sha256  # the bytes differ, so the recorded hash does


def test_windows_1252_keeps_smart_quotes_and_warns(make_study):
    text = MINI_TRANSCRIPT.replace("It changed", "It\u2019s \u201cchanged\u201d")
    root = make_study({"transcripts/D1/teacher-focus-group.md": text.encode("cp1252")})
    t, problems = load(root, "transcripts/D1/teacher-focus-group.md")
    assert [p.type for p in problems] == ["not-utf8"] and problems[0].severity == "warning"
    assert "It\u2019s \u201cchanged\u201d" in t.turns[2].text


def test_unknown_speaker_and_empty_transcript(make_study):
    root = make_study({
        "transcripts/D1/teacher-focus-group.md": MINI_TRANSCRIPT + "Carla: I was not listed.\n",
        "transcripts/D1/student-focus-group.md": MINI_TRANSCRIPT.split("---\n", 2)[1].join(["---\n", "---\n"])
        .replace("teacher_focus_group", "student_focus_group"),
    })
    t, problems = load(root, "transcripts/D1/teacher-focus-group.md")
    assert [(p.type, p.line) for p in problems] == [("unknown-speaker", 17)]
    _, problems = load(root, "transcripts/D1/student-focus-group.md")
    assert [p.type for p in problems] == ["empty-transcript"]


def test_malformed_front_matter_names_the_line(make_study):
    root = make_study({"transcripts/D1/teacher-focus-group.md": MINI_TRANSCRIPT.replace("date: 2023-10-01", "date: [2023")})
    t, problems = load(root, "transcripts/D1/teacher-focus-group.md")
    assert t is None
    assert problems[0].type == "bad-yaml" and problems[0].line in (6, 7)


SIDE = """\
district: D1
school: School One
source_type: student_focus_group
date: 2023-10-02
facilitator: Facilitator
participants:
  Facilitator: facilitator
  Zoe: student
synthetic: true
"""

VTT = """\
WEBVTT

00:00:01.000 --> 00:00:04.000
<v Facilitator>What helps you learn?</v>

00:00:04.500 --> 00:00:07.000
<v Zoe>The help stick. I ask three people</v>

00:00:07.000 --> 00:00:09.000
<v Zoe>before the teacher.</v>
"""

SRT = """\
1
00:00:01,000 --> 00:00:04,000
Facilitator: What helps you learn?

2
00:00:04,500 --> 00:00:07,000
Zoe: The help stick. I ask three people

3
00:00:07,000 --> 00:00:09,000
before the teacher.
"""


@pytest.mark.parametrize("ext,body", [("vtt", VTT), ("srt", SRT)])
def test_caption_files_join_cues_into_turns(make_study, ext, body):
    root = make_study({f"transcripts/D1/student-focus-group.{ext}": body, "transcripts/D1/student-focus-group.meta.yaml": SIDE})
    t, problems = load(root, f"transcripts/D1/student-focus-group.{ext}")
    assert problems == []
    assert [(turn.speaker, turn.text) for turn in t.turns] == [
        ("Facilitator", "What helps you learn?"), ("Zoe", "The help stick. I ask three people before the teacher.")]
    assert t.turns[1].line == 7  # the line of the first cue's text in the original file
    assert [s.text for s in t.sentences][1:] == ["The help stick.", "I ask three people before the teacher."]


def test_docx_reader(make_study):
    import docx

    document = docx.Document()
    document.add_paragraph("Facilitator: What helps you learn?")
    document.add_paragraph("Zoe: The \u201chelp stick\u201d\u00a0\u2013 I ask three people.")
    document.add_paragraph("Then the teacher.")
    root = make_study({"transcripts/D1/student-focus-group.meta.yaml": SIDE})
    document.save(root / "transcripts/D1/student-focus-group.docx")
    t, problems = load(root, "transcripts/D1/student-focus-group.docx")
    assert problems == []
    assert t.turns[1].text == "The \u201chelp stick\u201d \u2013 I ask three people. Then the teacher."
    assert t.turns[1].line == 2


def test_missing_sidecar_is_reported(make_study):
    root = make_study({"transcripts/D1/student-focus-group.vtt": VTT})
    t, problems = load(root, "transcripts/D1/student-focus-group.vtt")
    assert t is None and [p.type for p in problems] == ["missing-metadata"]


def test_unknown_extension_lists_known_readers():
    with pytest.raises(UsageError, match=r"\.docx.*\.md.*\.srt.*\.txt.*\.vtt"):
        get_reader(".pdf")


def test_sample_study_has_all_formats(sample_study):
    formats = {t.format for t in sample_study.transcripts}
    assert {"md", "docx", "vtt", "srt"} <= formats
    assert any(t.encoding == "cp1252" for t in sample_study.transcripts)
    for t in sample_study.transcripts:
        for s in t.sentences:
            assert t.text[s.start:s.end] == s.text


def test_sample_study_loads_without_errors(sample_root):
    study = load_study(sample_root)
    assert [p for p in study.problems if p.severity == "error"] == []
