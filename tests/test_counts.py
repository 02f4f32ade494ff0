"""Code frequencies and co-occurrence on a small hand-made study whose answers are known."""

import csv
import io
import json

import altair as alt
import pytest

from casestudy import coding, counts
from casestudy.errors import UsageError
from casestudy.study import load_study

from .helpers import session_text

T = "D1/teacher-focus-group"
S = "D1/student-focus-group"
AT = "2026-01-05T09:00:00Z"

STUDENT_TRANSCRIPT = session_text("student_focus_group", {"Kim": "student"}, """\
    Facilitator: What do you like about class?
    Kim: I pick my own station. The data wall shows my goals. We trust our teacher.
""")


@pytest.fixture
def coded(make_study):
    """Teacher focus group: t002 "They track goals on the data walls. | It builds trust.",
    t003 "Um, and they get voice and choice. | It changed the culture of the room."
    Student focus group: t002 "I pick my own station. | The data wall shows my goals. | We trust our teacher."."""
    root = make_study({"transcripts/D1/student-focus-group.md": STUDENT_TRANSCRIPT})
    study = load_study(root)
    assert [s.text for s in study.source(S).sentences][1:] == [
        "I pick my own station.", "The data wall shows my goals.", "We trust our teacher."]
    ana = [("data-walls", f"{T}#t002.s01"), ("culture", f"{T}#t002.s02"), ("culture", f"{T}#t003.s02"),
           ("agency", f"{S}#t002.s01"), ("data-walls", f"{S}#t002.s02"), ("culture", f"{S}#t002.s03")]
    for code, sentence_id in ana:
        coding.apply_code_to_sentence(study, "ana", code, sentence_id, at=AT)
    coding.apply_code_to_turn(study, "ana", "agency", f"{T}#t003", at=AT)  # a whole turn: two sentences
    coding.apply_code_to_sentence(study, "ben", "agency", f"{T}#t002.s01", at=AT)
    removed = coding.apply_code_to_sentence(study, "ben", "culture", f"{S}#t002.s01", at=AT)
    coding.remove_coding(study, "ben", removed.id, at=AT)  # removed codings are not counted
    return study


def records(frame, *columns):
    return [tuple(row) for row in frame[list(columns)].itertuples(index=False)]


def test_frequencies(coded):
    freq = counts.code_frequencies(coded, counts.gather_codings(coded))
    assert records(freq, "code", "codings", "sessions") == [("agency", 3, 2), ("data-walls", 2, 2), ("culture", 3, 2)]
    assert list(freq.columns) == ["code", "label", "group", "codings", "sessions"]
    only_ben = counts.code_frequencies(coded, counts.gather_codings(coded, ["ben"]))
    assert records(only_ben, "code", "codings", "sessions") == [("agency", 1, 1), ("data-walls", 0, 0), ("culture", 0, 0)]
    assert counts.code_frequencies(coded, coder="ben").equals(only_ben)  # gathers the codings itself
    assert counts.code_frequencies(coded, counts.gather_codings(coded), coder="ben").equals(only_ben)
    assert counts.code_frequencies(coded, district="D1").equals(freq)


def test_frequencies_rolled_up_to_conditions(coded):
    freq = counts.code_frequencies(coded, counts.gather_codings(coded), rollup=True)
    assert records(freq, "code", "codings", "sessions") == [("agency", 5, 2), ("culture", 3, 2)]


def test_frequencies_by_source_type_and_role(coded):
    codings = counts.gather_codings(coded)
    by_type = counts.code_frequencies(coded, codings, by="source-type")
    assert records(by_type, "code", "source_type", "codings", "sessions") == [
        ("agency", "student_focus_group", 1, 1), ("agency", "teacher_focus_group", 2, 1),
        ("data-walls", "student_focus_group", 1, 1), ("data-walls", "teacher_focus_group", 1, 1),
        ("culture", "student_focus_group", 1, 1), ("culture", "teacher_focus_group", 2, 1)]
    by_role = counts.code_frequencies(coded, codings, by="speaker-role", rollup=True)
    assert records(by_role, "code", "speaker_role", "codings") == [
        ("agency", "student", 2), ("agency", "teacher", 3), ("culture", "student", 1), ("culture", "teacher", 2)]
    by_district = counts.code_frequencies(coded, codings, by="district")
    assert set(by_district["district"]) == {"D1"} and by_district["codings"].sum() == 8
    with pytest.raises(UsageError, match="cannot break counts down by 'school'"):
        counts.code_frequencies(coded, codings, by="school")


def test_cooccurrence_by_sentence(coded):
    matrix = counts.cooccurrence(coded, counts.gather_codings(coded), unit="sentence")
    assert list(matrix.index) == list(matrix.columns) == ["agency", "data-walls", "culture"]
    # units of ana: T t002.s01 {data-walls}; T t002.s02 {culture}; T t003.s01 {agency(turn)};
    # T t003.s02 {agency(turn), culture}; S s01 {agency}; S s02 {data-walls}; S s03 {culture};
    # of ben: T t002.s01 {agency}: ana's data wall and ben's agency there do not go together
    assert matrix.loc["agency"].tolist() == [4, 0, 1]
    assert matrix.loc["data-walls"].tolist() == [0, 2, 0]
    assert matrix.loc["culture"].tolist() == [1, 0, 3]
    assert (matrix.values == matrix.values.T).all()
    pairs = counts.cooccurrence_pairs(matrix)
    assert records(pairs, "code_a", "code_b", "both", "units_a", "units_b") == [("agency", "culture", 1, 4, 3)]
    # one coder's codings alone
    ana = counts.cooccurrence(coded, counts.gather_codings(coded, ["ana"]), unit="sentence")
    assert ana.loc["agency"].tolist() == [3, 0, 1]


def test_cooccurrence_by_turn_and_rolled_up(coded):
    codings = counts.gather_codings(coded)
    turns = counts.cooccurrence(coded, codings, unit="turn")
    # ana: T t002 {data-walls, culture}; T t003 {agency, culture}; S t002 {agency, data-walls, culture}; ben: T t002 {agency}
    assert turns.loc["agency"].tolist() == [3, 1, 2]
    assert turns.loc["data-walls"].tolist() == [1, 2, 2]
    assert turns.loc["culture"].tolist() == [2, 2, 3]
    rolled = counts.cooccurrence(coded, codings, unit="sentence", rollup=True)
    assert list(rolled.index) == ["agency", "culture"]  # data walls count as agency, their condition
    assert rolled.loc["agency"].tolist() == [6, 1] and rolled.loc["culture"].tolist() == [1, 3]
    with pytest.raises(UsageError, match="unknown unit 'word'"):
        counts.cooccurrence(coded, codings, unit="word")


def test_stale_codings_are_left_out(coded):
    path = coded.root / "transcripts/D1/student-focus-group.md"
    path.write_text(path.read_text(encoding="utf-8").replace("We trust our teacher.", "We like our teacher."), encoding="utf-8")
    edited = load_study(coded.root)
    codings = counts.gather_codings(edited, ["ana"])
    assert len(codings) == 6  # the culture coding of "We trust our teacher." is stale
    assert counts.code_frequencies(edited, codings).set_index("code").loc["culture", "codings"] == 2


def test_charts(coded):
    codings = counts.gather_codings(coded)
    bars = counts.frequency_chart(counts.code_frequencies(coded, codings, by="speaker-role"))
    assert isinstance(bars, alt.Chart)
    spec = bars.to_dict()
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["color"]["field"] == "speaker_role"
    assert spec["encoding"]["y"]["sort"] == "-x"
    in_codebook_order = counts.frequency_chart(counts.code_frequencies(coded, codings), coded).to_dict()
    assert in_codebook_order["encoding"]["y"]["sort"] == ["Agency", "Data walls", "Culture"]
    heat = counts.cooccurrence_chart(counts.cooccurrence(coded, codings))
    spec = heat.to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rect", "text"]
    values = next(iter(spec["datasets"].values()))
    assert {"code_a": "agency", "code_b": "culture", "units": 1} in values and len(values) == 9
    empty = counts.cooccurrence(coded, [])
    assert empty.empty and counts.cooccurrence_chart(empty).to_dict()


# --------------------------------------------------------------------------- the command


def test_codes_command(run, coded):
    result = run("codes", "--study", coded.root, "--format", "json")
    assert result.code == 0, result.err
    assert [(r["code"], r["codings"], r["sessions"]) for r in json.loads(result.out)] == [
        ("agency", 3, 2), ("data-walls", 2, 2), ("culture", 3, 2)]

    result = run("codes", "--study", coded.root, "--coder", "ana", "--by", "source-type", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.out)))
    assert rows[0] == {"code": "agency", "label": "Agency", "group": "conditions", "source_type": "student_focus_group",
                       "codings": "1", "sessions": "1"}

    result = run("codes", "--study", coded.root, "--cooccurrence", "--unit", "turn", "--format", "csv")
    assert result.out.splitlines() == ["code,agency,data-walls,culture", "agency,3,1,2", "data-walls,1,2,2", "culture,2,2,3"]

    result = run("codes", "--study", coded.root, "--cooccurrence", "--unit", "turn")
    assert result.code == 0 and "Codes on the same turn (8 codings" in result.out
    pair_lines = [line for line in result.out.splitlines() if "agency" in line]
    assert len(pair_lines) == 2 and "│ 3 " in pair_lines[0]  # agency+culture on 3 turns, listed first

    result = run("codes", "--study", coded.root, "--district", "D1", "--rollup")
    assert result.code == 0 and "Codings per code (8 codings)" in result.out
    assert "agency" in result.out and "data-walls" not in result.out


def test_codes_command_bad_arguments(run, coded):
    result = run("codes", "--study", coded.root, "--district", "D9")
    assert result.code == 2 and "unknown district 'D9'" in result.err
    result = run("codes", "--study", coded.root, "--coder", "zoe")
    assert result.code == 2 and "no coder 'zoe'" in result.err and "coders: ana, ben" in result.err
    result = run("codes", "--study", coded.root, "--by", "school")
    assert result.code == 2


def test_codes_counts_suggestions_of_a_suggester(run, coded):
    sentence = next(s for s in coded.source(T).sentences if s.id == f"{T}#t002.s01")
    anchor = coding.make_anchor(coded.source(T), sentence.start, sentence.end).to_dict()
    (coded.root / "suggestions").mkdir()
    (coded.root / "suggestions" / "auto.jsonl").write_text(
        json.dumps({"id": "s-1", "code": "data-walls", "source": T, "anchor": anchor, "pattern": "data-walls/1",
                    "evidence": {"words": "data walls"}}) + "\n", encoding="utf-8")
    result = run("codes", "--study", coded.root, "--coder", "auto", "--format", "json")
    assert result.code == 0, result.err
    assert [(r["code"], r["codings"]) for r in json.loads(result.out)] == [("agency", 0), ("data-walls", 1), ("culture", 0)]


def test_codes_with_no_codings_yet(run, make_study):
    result = run("codes", "--study", make_study())
    assert result.code == 0 and "no codings to count yet" in result.err


def test_codes_on_the_sample_study(run, sample_root):
    result = run("codes", "--study", sample_root, "--cooccurrence", "--format", "json")
    assert result.code == 0, result.err
    matrix = {row.pop("code"): row for row in json.loads(result.out)}
    assert len(matrix) >= 10
    assert all(matrix[a][b] == matrix[b][a] and matrix[a][b] <= matrix[a][a] for a in matrix for b in matrix)


def test_default_counts_leave_out_the_consensus_coder(sample_study):
    """consensus restates ana's and ben's agreed codings: counting it by default would count them twice."""
    assert "consensus" in coding.list_coders(sample_study)
    assert {c.coder for c in counts.gather_codings(sample_study, district="AUSD")} == {"ana", "ben"}
    assert {c.coder for c in counts.gather_codings(sample_study, ["consensus"], "AUSD")} == {"consensus"}
