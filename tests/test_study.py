"""End-to-end: `casestudy validate` and `casestudy segments` on the sample study and on broken studies."""

import json

from .conftest import MINI_CODEBOOK, MINI_STUDY, MINI_TRANSCRIPT


def snapshot(root):
    return sorted((p.relative_to(root).as_posix(), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_validate_sample_study(run, sample_root):
    result = run("validate", "--study", sample_root, "--format", "json")
    assert result.code == 0, result.out
    summary = json.loads(result.out)["summary"]
    assert summary["districts"] == 4
    assert summary["sources"] >= 20
    assert summary["words"] >= 30_000
    assert all(d["sources"] >= 5 for d in summary["by_district"].values())


def test_validate_text_summary(run, make_study):
    result = run("validate", "--study", make_study())
    assert result.code == 0
    assert "1 districts, 1 sources, 3 speakers" in result.out


def check_one_problem(run, root, expected_type, expected_where, code=1):
    before = snapshot(root)
    result = run("validate", "--study", root)
    assert result.code == code, result.out + result.err
    lines = [line for line in result.out.splitlines() if ": warning: " not in line and expected_type in line]
    assert lines, result.out
    assert lines[0].startswith(expected_where), lines[0]
    assert "Traceback" not in result.out + result.err
    assert snapshot(root) == before  # nothing written
    return lines[0]


def test_malformed_study_yaml(run, make_study):
    root = make_study({"study.yaml": MINI_STUDY.replace("label: D1", "label: [D1")})
    check_one_problem(run, root, "bad-yaml", "study.yaml:6:")


def test_malformed_codebook_exits_1_with_file_and_line(run, make_study):
    root = make_study({"codebook.yaml": MINI_CODEBOOK.replace("label: Culture", "label: Culture: : [")})
    result = run("validate", "--study", root)
    assert result.code == 1
    assert "codebook.yaml:16: bad-yaml:" in result.err


def test_duplicate_code(run, make_study):
    root = make_study({"codebook.yaml": MINI_CODEBOOK.replace("id: culture", "id: agency")})
    check_one_problem(run, root, "duplicate-code", "codebook.yaml:15:")


def test_unknown_parent_and_cycle(run, make_study):
    root = make_study({"codebook.yaml": MINI_CODEBOOK.replace("parent: agency", "parent: agenzy")})
    check_one_problem(run, root, "unknown-parent", "codebook.yaml:12:")
    root = make_study({"codebook.yaml": MINI_CODEBOOK.replace("    group: conditions\n    definition: Students", "    parent: data-walls\n    definition: Students")})
    check_one_problem(run, root, "hierarchy-cycle", "codebook.yaml:")


def test_unknown_district_and_source_type(run, make_study):
    root = make_study({"transcripts/D1/teacher-focus-group.md": MINI_TRANSCRIPT.replace("district: D1", "district: D9")})
    check_one_problem(run, root, "unknown-district", "transcripts/D1/teacher-focus-group.md:2:")
    root = make_study({"transcripts/D1/teacher-focus-group.md": MINI_TRANSCRIPT.replace("teacher_focus_group", "janitor_focus_group")})
    check_one_problem(run, root, "unknown-source-type", "transcripts/D1/teacher-focus-group.md:4:")


def test_unknown_speaker(run, make_study):
    root = make_study({"transcripts/D1/teacher-focus-group.md": MINI_TRANSCRIPT.replace("Ben: Um", "Bob: Um")})
    line = check_one_problem(run, root, "unknown-speaker", "transcripts/D1/teacher-focus-group.md:15:")
    assert "'Bob'" in line


def test_empty_transcript(run, make_study):
    empty = MINI_TRANSCRIPT.split("Facilitator: How")[0]
    root = make_study({"transcripts/D1/teacher-focus-group.md": empty})
    check_one_problem(run, root, "empty-transcript", "transcripts/D1/teacher-focus-group.md:")


def test_bom_crlf_and_cp1252_are_read(run, make_study):
    root = make_study({
        "transcripts/D1/teacher-focus-group.md": b"\xef\xbb\xbf" + MINI_TRANSCRIPT.replace("\n", "\r\n").encode(),
        "transcripts/D1/student-focus-group.md": MINI_TRANSCRIPT.replace("teacher_focus_group", "student_focus_group")
        .replace("Um, and", "\u201cUm\u201d \u2013 and").encode("cp1252"),
    })
    result = run("validate", "--study", root)
    assert result.code == 0, result.out
    assert "transcripts/D1/student-focus-group.md: warning: not-utf8:" in result.out
    rows = run("segments", "--study", root, "--format", "jsonl").out.splitlines()
    texts = [json.loads(r)["text"] for r in rows]
    assert "\u201cUm\u201d \u2013 and they get voice and choice." in texts


def test_district_with_path_characters(run, make_study):
    root = make_study({"study.yaml": MINI_STUDY.replace("  D1:\n", "  ../x:\n    name: Evil\n  D1:\n")})
    check_one_problem(run, root, "bad-district-id", "study.yaml:3:")
    result = run("segments", "--study", make_study(), "--district", "../x")
    assert result.code == 2 and "not a valid name" in result.err and "Traceback" not in result.err


def test_missing_study_is_exit_2(run, tmp_path):
    result = run("validate", "--study", tmp_path / "nope")
    assert result.code == 2
    assert result.err.strip().startswith("error: study folder") and "does not exist" in result.err
    result = run("validate", "--study", tmp_path)
    assert result.code == 2 and "no codebook.yaml" in result.err


def test_bad_option_is_exit_2(run, make_study):
    assert run("validate", "--study", make_study(), "--format", "xml").code == 2
    assert run("segments", "--study", make_study(), "--district", "D7").code == 2
    assert run("segments", "--study", make_study(), "--source", "D1/nothing").code == 2


def test_segments_jsonl_has_stable_ids(run, sample_root):
    first = run("segments", "--study", sample_root, "--format", "jsonl").out.splitlines()
    second = run("segments", "--study", sample_root, "--format", "jsonl").out.splitlines()
    assert first == second and len(first) > 1000
    row = json.loads(first[0])
    assert set(row) >= {"sentence_id", "turn_id", "source_id", "district", "source_type", "speaker", "role",
                        "line", "start", "end", "text", "sha256"}
    assert len({json.loads(r)["sentence_id"] for r in first}) == len(first)


def test_segments_csv_filters(run, make_study):
    root = make_study()
    result = run("segments", "--study", root, "--district", "D1", "--source", "teacher-focus-group")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].startswith("sentence_id,turn_id,source_id")
    assert len(lines) == 1 + 6
