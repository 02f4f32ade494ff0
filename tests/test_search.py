"""Keyword-in-context search: phrases, prefixes, filters, user text with FTS syntax, and an
index that rebuilds itself when a transcript changes or the file is damaged."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from casestudy import coding, search
from casestudy.errors import UsageError
from casestudy.study import load_study

DATA = Path(__file__).resolve().parent / "data"
STUDY = """\
name: Search test study
districts:
  D1: {name: District One, label: D1}
  D2: {name: District Two, label: D2}
source_types:
  teacher_focus_group: Teacher Focus Group
  student_focus_group: Student Focus Group
roles:
  facilitator: Facilitator
  teacher: Teacher
  student: Student
"""
TEACHERS = "transcripts/D1/teacher-focus-group.md"


@pytest.fixture
def root(make_study):
    return make_study({
        "study.yaml": STUDY,
        TEACHERS: (DATA / "search_teacher_focus_group.md").read_text(encoding="utf-8"),
        "transcripts/D2/student-focus-group.md": (DATA / "search_student_focus_group.md").read_text(encoding="utf-8"),
    })


@pytest.fixture
def study(root):
    loaded = load_study(root)
    assert [p for p in loaded.problems if p.severity == "error"] == []
    return loaded


def texts(result):
    return [(h.source, h.match) for h in result.hits]


def test_phrase_query(study):
    result = search.search(study, '"help stick"')
    assert texts(result) == [("D1/teacher-focus-group", "help stick"), ("D2/student-focus-group", "help stick")]
    words = search.search(study, "help stick")  # both words, anywhere in the sentence
    assert words.total == 3 and "I help them stick with it, honestly." in [h.left + h.match + h.right for h in words.hits]


def test_keyword_in_context(study):
    hit = search.search(study, '"help stick"').hits[0]
    transcript = study.source("D1/teacher-focus-group")
    assert (hit.left, hit.match) == ("They put the ", "help stick")
    assert hit.right == " up when they are stuck. The help sticks"  # context runs on in the turn, 40 characters
    assert transcript.text[hit.start:hit.end] == "help stick"
    assert (hit.line, hit.role, hit.speaker, hit.source_type, hit.district) == (14, "teacher", "Ana", "teacher_focus_group", "D1")
    wall = search.search(study, '"data wall"', district="D1").hits[0]
    assert wall.line == 16  # a continuation line of Ben's turn


def test_prefix_query(study):
    result = search.search(study, "assess*")
    assert [h.match for h in result.hits] == ["assess", "Assessment", "assessment"]  # not "reassessing"


def test_filters(study):
    assert texts(search.search(study, '"help stick"', district="D2")) == [("D2/student-focus-group", "help stick")]
    assert texts(search.search(study, "stuck", source_type="teacher_focus_group")) == [("D1/teacher-focus-group", "stuck")]
    with pytest.raises(UsageError, match="unknown source type"):
        search.search(study, "stuck", source_type="parent_focus_group")
    with pytest.raises(UsageError, match="unknown district"):
        search.search(study, "stuck", district="D9")
    limited = search.search(study, "the", limit=2)
    assert len(limited.hits) == 2 and limited.total > 2


def test_code_filter(study):
    wall = next(s for s in study.source("D1/teacher-focus-group").sentences if "data wall" in s.text)
    coding.apply_code_to_sentence(study, "ana", "data-walls", wall.id, at="2026-11-24T12:00:00Z")
    coding.apply_code_to_sentence(study, "bob", "culture", wall.id, at="2026-11-24T12:00:00Z")
    assert texts(search.search(study, '"data wall"')) == [("D1/teacher-focus-group", "data wall"), ("D2/student-focus-group", "data wall")]
    assert texts(search.search(study, '"data wall"', code="data-walls")) == [("D1/teacher-focus-group", "data wall")]
    assert search.search(study, '"data wall"', code="data-walls", coder="bob").hits == ()
    assert search.search(study, '"data wall"', code="data-walls", coder="ana").total == 1
    with pytest.raises(UsageError, match="not in the codebook"):
        search.search(study, "wall", code="data-wall")
    with pytest.raises(UsageError, match="no coder 'carl'"):
        search.search(study, "wall", code="data-walls", coder="carl")


@pytest.mark.parametrize("query", ['"', "*", "NEAR", "(", ")", "NEAR(help stick)", '"help stick', 'help"', "stick)",
                                   '"help" AND', "help OR stuck", "text:help", "^help", "-help", "help NOT stuck",
                                   '""', "'", "help*)", "NEAR/2", "“help stick”", '"(" help'])
def test_fts_syntax_typed_by_a_user_never_fails(root, run, query):
    result = run("search", "--study", root, "--format", "json", "--", query)  # "--": a query may start with "-"
    assert result.code in (0, 2), result.err
    assert "sqlite" not in result.err.lower() and "fts5" not in result.err.lower() and "Traceback" not in result.err
    if result.code == 2:
        assert "nothing to search for" in result.err
    else:
        json.loads(result.out)


def test_fts_words_are_literal(study):
    assert [h.match for h in search.search(study, "NEAR").hits] == ["near"]  # the word, not the operator
    assert search.search(study, '"help stick').total == 3  # the lone quote is literal: two words
    with pytest.raises(UsageError, match="nothing to search for"):
        search.search(study, '" * ( )')


def test_parse_query():
    parse = search.parse_query
    assert search.fts_expression(parse('"help stick" assess* NEAR (x)')) == '"help stick" "assess"* "NEAR" "(x)"'
    assert parse('say "hi') == [search.Term("word", "say"), search.Term("word", '"hi')]
    assert search.fts_expression(parse('say "hi')) == '"say" """hi"'
    assert parse('"data wall"*') == [search.Term("prefix", "data wall")]
    assert parse("* ( ) \"\"") == []


def test_index_rebuilds_when_a_transcript_changes(root, study):
    assert search.search(study, "zebra").total == 0
    assert search.stale_reason(study) is None
    path = root / TEACHERS
    path.write_text(path.read_text(encoding="utf-8") + "Ben: A zebra walked in.\n", encoding="utf-8")
    changed = load_study(root)
    assert "changed: D1/teacher-focus-group" in search.stale_reason(changed)
    assert texts(search.search(changed, "zebra")) == [("D1/teacher-focus-group", "zebra")]
    (root / "transcripts/D2/student-focus-group.md").unlink()
    fewer = load_study(root)
    assert "removed: D2/student-focus-group" in search.stale_reason(fewer)
    assert texts(search.search(fewer, '"help stick"')) == [("D1/teacher-focus-group", "help stick")]


def test_index_rebuilds_when_sentences_are_split_differently(root, study, monkeypatch):
    """Same files, new segmentation (a casestudy upgrade): the sentences the index holds are stale."""
    from casestudy import nlp, transcripts

    search.ensure_index(study)
    assert search.stale_reason(study) is None
    monkeypatch.setattr(transcripts, "sentence_spans", lambda doc: [(0, len(doc.text))])  # one sentence a turn
    resplit = load_study(root)
    assert "changed: D1/teacher-focus-group" in search.stale_reason(resplit)
    hit = search.search(resplit, '"help stick"').hits[0]
    assert hit.sentence.endswith(".s01")
    monkeypatch.setattr(transcripts, "sentence_spans", nlp.sentence_spans)
    assert "changed" in search.stale_reason(load_study(root))


def test_corrupt_or_missing_index_is_rebuilt(study):
    path = search.ensure_index(study)
    path.write_bytes(b"this is not a database" * 50)
    assert "cannot be read" in search.stale_reason(study)
    assert search.search(study, '"help stick"').total == 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sources").fetchone()[0] == 2
    path.unlink()
    assert search.stale_reason(study) == "there is no index yet"
    assert search.search(study, '"help stick"').total == 2


def test_index_is_derived_and_ignored(root, study):
    search.search(study, "stuck")
    folder = root / ".casestudy"
    assert (folder / "index.sqlite").is_file()
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"
    assert sorted(p.name for p in folder.iterdir()) == [".gitignore", "index.sqlite"]  # no temporary files left


def test_search_command_prints_kwic(root, run):
    result = run("search", '"help stick"', "--study", root)
    assert result.code == 0, result.err
    assert "D1/teacher-focus-group (teacher_focus_group, D1)" in result.out
    assert "They put the help stick up when" in result.out  # left, match and right: the text as it reads
    assert "2 of 2 matching sentence(s)" in result.out
    csv_out = run("search", "assess*", "--study", root, "--format", "csv", "--limit", "1")
    assert csv_out.out.splitlines()[0].startswith("source,source_type,district,speaker,role,line,left,match,right")
    assert len(csv_out.out.splitlines()) == 2
    assert run("search", "stuck", "--study", root, "--district", "D9").code == 2
