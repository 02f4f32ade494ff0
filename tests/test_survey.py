"""Surveys: the declaration, validation of every problem in a file, scores checked by an
independent computation, Cronbach's alpha against a published example, charts, the CLI, the
sample data and the notebook."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pandas as pd
import pytest

from casestudy.errors import DataError, UsageError
from casestudy.study import load_study
from casestudy.survey import (
    cronbach_alpha,
    load_survey_spec,
    load_waves,
    n_range_text,
    read_survey_spec,
    score_surveys,
    validate_surveys,
)

DATA = Path(__file__).resolve().parent / "data"
REPO = Path(__file__).resolve().parent.parent
SPEC = (DATA / "survey_spec.yaml").read_text(encoding="utf-8")


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def small(make_study):
    """The mini study with the small survey declaration and two hand-made waves of district D1."""

    def _make(extra: dict | None = None):
        files = {
            "survey.yaml": SPEC,
            "surveys/D1/students-2022.csv": fixture("survey_wave_2022.csv"),
            "surveys/D1/students-2023.csv": fixture("survey_wave_2023.csv"),
        }
        files.update(extra or {})
        return load_study(make_study(files))

    return _make


def problems_of(study, type_: str | None = None):
    found = list(validate_surveys(study))
    return [p for p in found if type_ is None or p.type == type_]


# --------------------------------------------------------------------------- Cronbach's alpha


def test_alpha_matches_published_example():
    """Zach Bobbitt, "How to Calculate Cronbach's Alpha in Python", Statology, 17 August 2021
    (https://www.statology.org/cronbachs-alpha-in-python/): ten customers rate three items on
    1-3; pingouin.cronbach_alpha gives 0.7734375."""
    data = pd.DataFrame({"Q1": [1, 2, 2, 3, 2, 2, 3, 3, 2, 3],
                         "Q2": [1, 1, 1, 2, 3, 3, 2, 3, 3, 3],
                         "Q3": [1, 1, 2, 1, 2, 3, 3, 3, 2, 3]})
    assert cronbach_alpha(data) == pytest.approx(0.7734375, abs=1e-12)


def test_alpha_is_listwise_and_undefined_when_it_must_be():
    rows = [[1, 2, 2], [2, 3, 3], [4, 4, 3], [3, None, 1], [2, 2, 1]]
    complete = [r for r in rows if None not in r]
    frame = pd.DataFrame(rows, dtype=float)
    k = 3
    covariances = [statistics.covariance([r[i] for r in complete], [r[j] for r in complete])
                   for i in range(k) for j in range(k) if i != j]
    variances = [statistics.variance([r[i] for r in complete]) for i in range(k)]
    c, v = statistics.mean(covariances), statistics.mean(variances)
    assert cronbach_alpha(frame) == pytest.approx(k * c / (v + (k - 1) * c))  # the covariance form of alpha
    assert pd.isna(cronbach_alpha(pd.DataFrame({"only": [1.0, 2.0, 3.0]})))  # one item
    assert pd.isna(cronbach_alpha(pd.DataFrame([[1.0, 2.0], [None, 3.0]])))  # one complete respondent
    assert pd.isna(cronbach_alpha(pd.DataFrame([[2.0, 2.0], [2.0, 2.0]])))  # no variance


# --------------------------------------------------------------------------- scores


# The hand-made waves as numbers (None: missing), before reverse-keying. v3 is reverse-keyed.
WAVE_2022 = {"v1": [3, 3, 2, 4, 1], "v2": [3, 4, None, 2, 1], "v3": [2, 1, 4, None, 3],
             "t1": [4, 3, 2, None, 2], "t2": [4, None, 3, None, 2]}
WAVE_2023 = {"v1": [4, 3, 3, 2], "v2": [4, 3, 2, None], "v3": [1, 2, 2, None], "t1": [4, 3, None, 2], "t2": [3, 3, None, 2]}
CONSTRUCTS = {"voice": ["v1", "v2", "v3"], "trust": ["t1", "t2"]}


def expected(wave: dict, construct: str) -> dict:
    """Scores computed independently, in plain Python, from the numbers above."""
    items = CONSTRUCTS[construct]
    columns = {i: [None if x is None else (5 - x if i == "v3" else x) for x in wave[i]] for i in items}
    answered = {i: [x for x in columns[i] if x is not None] for i in items}
    item_means = [statistics.mean(answered[i]) for i in items]
    people = list(zip(*(columns[i] for i in items), strict=True))
    scores = [statistics.mean([x for x in p if x is not None]) for p in people
              if sum(x is not None for x in p) >= len(items) / 2]
    return {"item_means": statistics.mean(item_means), "respondent_means": statistics.mean(scores),
            "sd": statistics.stdev(scores), "n_min": min(map(len, answered.values())),
            "n_max": max(map(len, answered.values())), "scored": len(scores)}


def test_scores_match_an_independent_computation(small):
    study = small()
    scores = score_surveys(study).set_index(["construct", "wave"])
    by_method = score_surveys(study, method="respondent-means").set_index(["construct", "wave"])
    for wave, numbers in ((2022, WAVE_2022), (2023, WAVE_2023)):
        for construct in CONSTRUCTS:
            want = expected(numbers, construct)
            row = scores.loc[(construct, wave)]
            assert row["score"] == pytest.approx(want["item_means"])
            assert by_method.loc[(construct, wave), "score"] == pytest.approx(want["respondent_means"])
            assert row["sd"] == pytest.approx(want["sd"])
            assert (row["n_min"], row["n_max"], row["n_scored"]) == (want["n_min"], want["n_max"], want["scored"])
    # by hand: v1 13/5, v2 10/4, reversed v3 10/4 -> (2.6 + 2.5 + 2.5) / 3
    assert scores.loc[("voice", 2022), "score"] == pytest.approx(38 / 15)
    assert scores.loc[("voice", 2022), "n_range"] == "4-5"
    assert scores.loc[("voice", 2023), "change"] == pytest.approx(expected(WAVE_2023, "voice")["item_means"] - 38 / 15)
    assert pd.isna(scores.loc[("voice", 2022), "change"])
    assert scores.loc[("voice", 2023), "previous_wave"] == 2022
    assert scores.loc[("voice", 2022), "band"] == "moderate to strong"
    assert scores.loc[("voice", 2023), "band"] == "strong"  # 3.11


def test_missing_answers_are_never_zero(small):
    scores = score_surveys(small()).set_index(["construct", "wave"])
    # r4 answered only v1 and v2 of voice and nothing of trust; zeros would pull trust below 2.5
    assert scores.loc[("trust", 2022), "score"] == pytest.approx((11 / 4 + 3) / 2)
    assert scores.loc[("trust", 2022), "n_scored"] == 4


def test_alpha_of_a_construct_uses_reversed_items(small):
    scores = score_surveys(small()).set_index(["construct", "wave"])
    complete = [[3, 3, 3], [3, 4, 4], [1, 1, 2]]  # r1, r2, r5 with v3 reversed
    assert scores.loc[("voice", 2022), "alpha"] == pytest.approx(cronbach_alpha(pd.DataFrame(complete, dtype=float)))


def test_min_answered_is_configurable(small):
    study = small({"survey.yaml": SPEC.replace("min_answered: 0.5", "min_answered: 1")})
    scores = score_surveys(study, method="respondent-means").set_index(["construct", "wave"])
    assert scores.loc[("voice", 2022), "n_scored"] == 3  # only r1, r2 and r5 answered all three
    assert scores.loc[("voice", 2022), "score"] == pytest.approx(statistics.mean([3, 11 / 3, 4 / 3]))


def test_bands_are_configurable(small):
    bands = "evidence_bands:\n  - label: weak\n  - {label: fair, from: 2.6}\n  - {label: good, from: 3.5}\n"
    text = SPEC.split("evidence_bands:")[0] + bands + "scales:" + SPEC.split("scales:", 1)[1]
    spec = load_survey_spec(small({"survey.yaml": text}))
    assert [spec.band(x) for x in (1.0, 2.59, 2.6, 3.49, 3.5)] == ["weak", "weak", "fair", "fair", "good"]
    assert spec.bands_sentence() == ("A score below 2.6 is read as weak, 2.6 to below 3.5 as fair and "
                                     "3.5 and above as good evidence of implementation.")
    bad = SPEC.replace("{label: strong, from: 3}", "{label: strong, from: 1.5}")
    assert [p.type for p in problems_of(small({"survey.yaml": bad}), "bad-bands")] == ["bad-bands"]


def test_default_bands_follow_the_reference():
    spec = load_survey_spec(REPO)
    assert [spec.band(x) for x in (1.99, 2.0, 2.99, 3.0)] == ["limited", "moderate to strong", "moderate to strong", "strong"]
    assert spec.cutoffs() == [(2.0, "moderate to strong"), (3.0, "strong")]


# --------------------------------------------------------------------------- bad input


def test_every_bad_value_in_a_file_is_reported(small):
    study = small({"surveys/D1/students-2023.csv": fixture("survey_bad_values.csv")})
    found = {(p.line, p.type): p.message for p in problems_of(study)}
    rel = "surveys/D1/students-2023.csv"
    assert all(p.path == rel for p in problems_of(study))
    assert "column 'v1': 5 is outside the scale" in found[(2, "out-of-scale")]
    assert "column 'v1': 2.5 is outside the scale" in found[(5, "out-of-scale")]
    assert "column 't2': 0 is outside" in found[(3, "out-of-scale")]
    assert "column 'v1': 'Agree'" in found[(3, "unknown-label")] and "did you mean 'agree'?" in found[(3, "unknown-label")]
    line4 = [p for p in problems_of(study, "unknown-label") if p.line == 4]
    assert {m.message.split(":")[0] for m in line4} == {"column 'v2'", "column 't1'"}
    assert any("'agree '" in p.message and "did you mean 'agree'?" in p.message for p in line4)  # a stray space
    assert any("'sometimes'" in p.message for p in line4)
    assert "'strongly agree' is a label of scale 'agreement'" in found[(5, "wrong-scale-label")]
    assert len(problems_of(study)) == 7  # all of them, not the first


def test_bad_columns(small):
    study = small({"surveys/D1/students-2023.csv": fixture("survey_bad_columns.csv")})
    unknown = {p.message.split(" is ")[0]: p for p in problems_of(study, "unknown-column")}
    assert "did you mean 'v2'?" in unknown["column 'V2'"].message  # another case
    assert "did you mean" not in unknown["column 'extra'"].message
    assert {p.line for p in unknown.values()} == {1}
    missing = sorted(p.message for p in problems_of(study, "missing-item"))
    assert missing == ["declared item 't2' has no column", "declared item 'v2' has no column"]
    assert len(problems_of(study, "unknown-column")) == 2  # V2 and extra


def test_duplicate_and_missing_respondent_ids(small):
    study = small({"surveys/D1/students-2023.csv": fixture("survey_duplicate_ids.csv")})
    dups = problems_of(study, "duplicate-respondent")
    assert [(p.line, p.message) for p in dups] == [
        (4, "column 'respondent_id': respondent id 'r1' is already used on line 2"),
        (6, "column 'respondent_id': respondent id 'r1' is already used on line 2")]
    assert [p.line for p in problems_of(study, "missing-respondent-id")] == [5]


def test_single_item_construct_is_said_to_have_no_alpha(small):
    text = SPEC.replace("          t2: I can make mistakes in class.\n", "")
    study = small({"survey.yaml": text, "surveys/D1/students-2022.csv": fixture("survey_wave_2022.csv").replace(b",t2", b"")
                   .replace(b",4,4\n", b",4\n").replace(b",3,\n", b",3\n").replace(b",2,3\n", b",2\n")
                   .replace(b",,\n", b",\n").replace(b",2,2\n", b",2\n"),
                   "surveys/D1/students-2023.csv": None})
    warning = problems_of(study, "single-item-construct")
    assert len(warning) == 1 and warning[0].severity == "warning"
    assert "alpha is undefined" in warning[0].message
    row = score_surveys(study).set_index("construct").loc["trust"]
    assert pd.isna(row["alpha"]) and row["alpha_note"] == "undefined: one item"
    assert row["score"] == pytest.approx(11 / 4)


def test_wave_without_respondents(small):
    study = small({"surveys/D1/students-2023.csv": fixture("survey_empty_wave.csv")})
    [problem] = problems_of(study)
    assert problem.type == "empty-wave" and problem.path == "surveys/D1/students-2023.csv"
    assert "no respondents" in problem.message
    with pytest.raises(DataError):
        load_waves(study)


def test_file_in_an_unexpected_encoding(small):
    study = small({"surveys/D1/students-2023.csv": fixture("survey_cp1252_encoding.csv")})
    [problem] = problems_of(study)
    assert (problem.type, problem.line) == ("bad-encoding", 3)
    assert "not UTF-8" in problem.message and "0xf1" in problem.message
    utf16 = "respondent_id,school,v1\n".encode("utf-16")
    [problem] = problems_of(small({"surveys/D1/students-2023.csv": utf16}))
    assert problem.type == "bad-encoding" and "UTF-16" in problem.message


def test_ragged_rows_and_misnamed_files(small):
    study = small({"surveys/D1/students-2023.csv": b"respondent_id,school,v1,v2,v3,t1,t2\nr1,North,3,3,2\n",
                   "surveys/D1/pupils-2023.csv": b"respondent_id\n", "surveys/D1/notes.txt": b"x",
                   "surveys/D9/students-2023.csv": b"respondent_id\n"})
    types = {(p.path, p.type) for p in problems_of(study)}
    assert ("surveys/D1/students-2023.csv", "ragged-row") in types
    assert ("surveys/D1/pupils-2023.csv", "unknown-population") in types
    assert ("surveys/D1/notes.txt", "bad-survey-file") in types
    assert ("surveys/D9", "unknown-district") in types


def test_links_to_the_codebook_are_checked_both_ways(small, make_study):
    study = small({"survey.yaml": SPEC.replace("conditions: [culture]", "conditions: [culture, cultrue]")})
    [problem] = problems_of(study, "unknown-condition")
    assert problem.path == "survey.yaml" and problem.line == SPEC.splitlines().index("        conditions: [culture]") + 1
    assert "did you mean 'culture'?" in problem.message
    from tests.conftest import MINI_CODEBOOK

    codebook = MINI_CODEBOOK.replace("    patterns: [trust]\n", "    patterns: [trust]\n    survey_constructs: [students/trust, students/trusts]\n")
    study = small({"codebook.yaml": codebook})
    [problem] = problems_of(study, "unknown-construct")
    assert problem.path == "codebook.yaml" and problem.line == codebook.splitlines().index(
        "    survey_constructs: [students/trust, students/trusts]") + 1
    assert "'students/trusts'" in problem.message and "did you mean 'students/trust'?" in problem.message


def test_bad_declarations(small):
    text = SPEC.replace("v2: {text: I set my own goals., scale: frequency}", "v2: {text: I set my own goals., scale: often}")
    text = text.replace("    responses: {none of the time: 1,", "    responses: {none of the time: one,")
    types = sorted(p.type for p in problems_of(small({"survey.yaml": text})))
    assert "unknown-scale" in types and "bad-scale" in types
    [problem] = problems_of(small({"survey.yaml": "scales: [\n"}))
    assert problem.type == "bad-yaml" and problem.line is not None
    dup = SPEC.replace("          t1: Adults here listen to me.", "          t1: Adults here listen to me.\n          v1: Again.")
    assert [p.type for p in problems_of(small({"survey.yaml": dup}), "duplicate-item")] == ["duplicate-item"]


def test_unusable_arguments(small):
    study = small()
    with pytest.raises(UsageError, match="unknown population 'teachers'"):
        load_waves(study, population="teachers")
    with pytest.raises(UsageError, match="unknown district"):
        load_waves(study, district="D9")


def test_no_survey_yaml_means_no_surveys(make_study):
    study = load_study(make_study())
    spec = load_survey_spec(study)
    assert not spec.exists and score_surveys(study, spec).empty
    assert list(validate_surveys(study)) == []


# --------------------------------------------------------------------------- CLI


def test_cli_survey_table_csv_json(run, small, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    root = small().root
    result = run("survey", "--study", root)
    assert result.code == 0, result.err
    assert "D1 students: construct scores (mean of item means)" in result.out
    assert "n=4-5" in result.out and "+0.58" in result.out and "strong" in result.out
    records = json.loads(run("survey", "--study", root, "--format", "json").out)
    assert [(r["construct"], r["wave"]) for r in records] == [("voice", 2022), ("voice", 2023), ("trust", 2022), ("trust", 2023)]
    assert records[0]["score"] == pytest.approx(38 / 15, abs=1e-4) and records[0]["change"] is None
    by_respondent = json.loads(run("survey", "--study", root, "--format", "json", "--score", "respondent-means").out)
    assert by_respondent[0]["score"] == pytest.approx(2.5, abs=1e-4) and by_respondent[0]["method"] == "respondent-means"
    csv_out = run("survey", "--study", root, "--format", "csv").out.splitlines()
    assert csv_out[0].startswith("district,population,construct,construct_label,wave,method")
    assert len(csv_out) == 5


def test_cli_survey_exits_1_with_every_problem(run, small):
    root = small({"surveys/D1/students-2023.csv": fixture("survey_bad_values.csv")}).root
    result = run("survey", "--study", root)
    assert result.code == 1
    assert result.err.count("surveys/D1/students-2023.csv:") == 7
    assert "surveys/D1/students-2023.csv:2: out-of-scale: column 'v1'" in result.err


def test_cli_survey_bad_arguments_exit_2(run, small, make_study):
    root = small().root
    assert run("survey", "--study", root, "--population", "teachers").code == 2
    assert run("survey", "--study", root, "--district", "D9").code == 2
    assert run("survey", "--study", root, "--score", "median").code == 2
    assert run("survey", "--study", make_study({"survey.yaml": None})).code == 2


# --------------------------------------------------------------------------- charts


def test_chart_is_deterministic_with_n_ranges_and_cutoffs(small):
    from casestudy.charts import chart_svg, survey_chart

    study = small()
    spec = load_survey_spec(study)
    scores = score_surveys(study, spec)
    first = survey_chart(scores, spec, "students", district_label="D1").to_dict()
    second = survey_chart(score_surveys(study, spec), spec, "students", district_label="D1").to_dict()
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["title"]["subtitle"] == "n=3-5 (2022); n=3-4 (2023)" == n_range_text(scores)  # t2 2022: 3
    marks = [layer["mark"]["type"] for layer in first["layer"]]
    assert marks == ["bar", "text", "rule", "text"]
    datasets = list(first["datasets"].values())
    assert [row["at"] for row in datasets[-1]] == [2.0, 3.0]
    assert {row["label"] for row in datasets[0]} >= {"2.53", "3.11"}
    assert "param_" not in json.dumps(first) and first["layer"][0]["encoding"]["xOffset"]["field"] == "wave"
    svg = chart_svg(survey_chart(scores, spec, "students"))
    assert svg.lstrip().startswith("<svg") and "2.53" in svg and "n=3-5 (2022)" in svg


# --------------------------------------------------------------------------- the sample study


def test_sample_surveys_are_valid_and_reproducible(sample_root):
    study = load_study(sample_root)
    assert [p for p in validate_surveys(study) if p.severity == "error"] == []
    path = sample_root / "scripts" / "make_sample_surveys.py"
    module_spec = importlib.util.spec_from_file_location("make_sample_surveys", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    spec, _ = read_survey_spec(sample_root)
    for district in ("SCV35", "AUSD", "MPS", "YUHSD"):
        for population in ("students", "staff"):
            for wave in (2022, 2023):
                committed = (sample_root / "surveys" / district / f"{population}-{wave}.csv").read_text(encoding="utf-8")
                assert module.make_wave(spec, district, population, wave) == committed, (district, population, wave)


def test_sample_surveys_follow_the_reference_pattern(sample_root):
    study = load_study(sample_root)
    scores = score_surveys(study)
    students = scores[scores["population"] == "students"]
    staff = scores[scores["population"] == "staff"]
    assert set(scores["district"]) == {"SCV35", "AUSD", "MPS", "YUHSD"}
    assert students["respondents"].between(1200, 1750).all() and staff["respondents"].between(80, 125).all()
    for district, group in students.groupby("district"):
        lowest = group.loc[group.groupby("wave")["score"].idxmin(), "construct"]
        assert set(lowest) == {"student-agency"}, district  # agency the lowest student construct
        assert (group["score"] > 2).all() and (group["score"] < 3).all()
    assert staff["score"].mean() > students["score"].mean()
    changes = staff["change"].dropna()
    assert (changes > 0).mean() >= 0.9  # staff mostly improving
    agency = students[(students["construct"] == "student-agency")].groupby("district")["score"].mean()
    assert agency.idxmax() == "SCV35"  # SCV35 strongest on student agency
    scv = scores[scores["district"] == "SCV35"]
    assert n_range_text(scv[scv["population"] == "students"]).startswith("n=1")


def test_cli_survey_on_the_sample(run, sample_copy, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no wrapping in the table
    result = run("survey", "--study", sample_copy, "--district", "SCV35")
    assert result.code == 0, result.err
    for text in ("SCV35 students", "SCV35 staff", "Student agency", "Family and community partnerships",
                 "2022", "2023", "n=1", "moderate to strong", "strong", "+0."):
        assert text in result.out


@pytest.mark.slow
def test_notebook_runs_on_the_sample(sample_copy, tmp_path):
    import nbformat
    import papermill

    output = tmp_path / "survey_constructs.ipynb"
    source = REPO / "notebooks" / "survey_constructs.ipynb"
    committed = nbformat.read(source, as_version=4)
    assert all(not cell.get("outputs") for cell in committed.cells if cell.cell_type == "code")
    assert "parameters" in committed.cells[1].metadata.get("tags", [])
    papermill.execute_notebook(str(source), str(output), parameters={"study_dir": str(sample_copy), "district": "MPS"},
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    executed = nbformat.read(output, as_version=4)
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    svgs = [o for o in outputs if "image/svg+xml" in o.get("data", {})]
    assert len(svgs) == 2  # students and staff
    assert "Mesa: Students survey" in svgs[0]["data"]["image/svg+xml"]
    tables = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert tables and "Competency-based assessment" in tables[-1]
    assert "https://" not in output.read_text(encoding="utf-8")
