"""Agreement statistics against published worked examples, edge cases and bad input, and
agreement on a study's codings (the unit of analysis, sessions, disagreements)."""

from __future__ import annotations

import json
import math
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from casestudy import agreement, coding
from casestudy.agreement import alpha_from_units, cohen_kappa, fleiss_kappa, krippendorff_alpha
from casestudy.errors import UsageError
from casestudy.study import load_study

from .helpers import session_text

DATA = Path(__file__).resolve().parent / "data"
T = "D1/teacher-focus-group"
S = "D1/student-focus-group"
AT = "2026-01-05T09:00:00Z"
N = None

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers x 12 units
KRIPPENDORFF_4X12 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
                     [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
                     [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
                     [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N]]
# the 3-coder, 15-unit computational example of the Wikipedia article "Krippendorff's alpha"
EXAMPLE_3X15 = [[N, N, N, N, N, 3, 4, 1, 2, 1, 1, 3, 3, N, 3],
                [1, N, 2, 1, 3, 3, 4, 3, N, N, N, N, N, N, N],
                [N, N, 2, 1, 3, 4, 4, N, 2, 1, 1, 3, 3, N, 4]]

STUDENT_TRANSCRIPT = session_text("student_focus_group", {"Kim": "student", "Lee": "student"}, """\
    Facilitator: What do you like about class?
    Lee: Kim and I get to pick our own station every single morning.
    Kim: I pick my own station every single morning. We trust our teacher.
""")


# --------------------------------------------------------------------------- published worked examples


PUBLISHED = [
    # file, level, key, published value
    ("agreement_krippendorff_4x12.csv", "nominal", "alpha", 0.743),
    ("agreement_krippendorff_4x12.csv", "ordinal", "alpha", 0.815),
    ("agreement_krippendorff_4x12.csv", "interval", "alpha", 0.849),
    ("agreement_krippendorff_4x12.csv", "ratio", "alpha", 0.797),
    ("agreement_krippendorff_3x15.csv", "nominal", "alpha", 0.691),
    ("agreement_krippendorff_3x15.csv", "interval", "alpha", 0.811),
    ("agreement_cohen_50.csv", "nominal", "cohen_kappa", 0.400),  # Wikipedia "Cohen's kappa": 50 grant proposals
    ("agreement_cohen_3x3.csv", "nominal", "cohen_kappa", 0.484),  # SAS PROC FREQ example (0.4842), as in statsmodels' tests
    ("agreement_fleiss_10x14.csv", "nominal", "fleiss_kappa", 0.210),  # Wikipedia "Fleiss' kappa": 10 subjects, 14 raters
    ("agreement_fleiss_1971_diagnoses.csv", "nominal", "fleiss_kappa", 0.430),  # Fleiss (1971): 30 patients, 6 psychiatrists
]


@pytest.mark.parametrize(("name", "level", "key", "value"), PUBLISHED)
def test_agree_data_reproduces_published_values(run, name, level, key, value):
    result = run("agree", "--data", DATA / name, "--level", level, "--format", "json")
    assert result.code == 0, result.err
    assert round(json.loads(result.out)[key], 3) == pytest.approx(value, abs=1e-9)


def test_counts_of_the_4x12_example(run):
    record = json.loads(run("agree", "--data", DATA / "agreement_krippendorff_4x12.csv", "--format", "json").out)
    assert {k: record[k] for k in ("units", "coders", "pairable_values", "cohen_kappa", "fleiss_kappa", "level")} == {
        "units": 12, "coders": 4, "pairable_values": 40, "cohen_kappa": None, "fleiss_kappa": None, "level": "nominal"}
    assert record["pairable_units"] == 11  # unit 12 has one value only
    assert "does not apply" in record["notes"]["cohen_kappa"] and "does not apply" in record["notes"]["fleiss_kappa"]


def test_the_3x15_example_by_hand():
    """The coincidence matrix written out by hand: o11=6, o13=o31=1, o22=4, o33=7, o34=o43=2, o44=3 (n=26)."""
    o = {(1, 1): 6, (1, 3): 1, (3, 1): 1, (2, 2): 4, (3, 3): 7, (3, 4): 2, (4, 3): 2, (4, 4): 3}
    totals = {v: sum(n for (c, _k), n in o.items() if c == v) for v in (1, 2, 3, 4)}
    n = sum(totals.values())
    assert n == 26 and totals == {1: 7, 2: 4, 3: 10, 4: 5}
    nominal = 1 - Fraction(n - 1) * sum(v for (c, k), v in o.items() if c != k) / (n * n - sum(t * t for t in totals.values()))
    interval = 1 - Fraction(n - 1) * sum(v * (c - k) ** 2 for (c, k), v in o.items()) / sum(
        totals[c] * totals[k] * (c - k) ** 2 for c in totals for k in totals)
    assert nominal == 1 - Fraction(150, 486) and interval == 1 - Fraction(300, 1586)
    assert krippendorff_alpha(EXAMPLE_3X15, "nominal").alpha == pytest.approx(float(nominal), abs=1e-12)
    assert krippendorff_alpha(EXAMPLE_3X15, "interval").alpha == pytest.approx(float(interval), abs=1e-12)
    result = krippendorff_alpha(EXAMPLE_3X15, "nominal")
    assert (result.units, result.pairable_values) == (12, 26)


def test_binary_alpha_by_hand():
    """Krippendorff (2011), section A: two observers, ten units, binary: alpha = 1 - 19 * 4 / (14 * 6) = 0.095."""
    mary = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    dave = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert krippendorff_alpha([mary, dave]).alpha == pytest.approx(1 - 19 * 4 / 84)


def test_cohen_and_fleiss_by_hand():
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx((0.7 - 0.5) / 0.5)  # p_o 0.7, p_e 0.5*0.6 + 0.5*0.4
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                      [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    p_i = ((table * (table - 1)).sum(axis=1) / (14 * 13)).mean()
    p_e = ((table.sum(axis=0) / table.sum()) ** 2).sum()
    assert fleiss_kappa(table) == pytest.approx((p_i - p_e) / (1 - p_e))


@pytest.mark.parametrize("level", agreement.LEVELS)
def test_alpha_matches_the_krippendorff_package(level):
    """Test-time cross-check only: the krippendorff package is GPL and not a dependency."""
    krippendorff = pytest.importorskip("krippendorff")
    rng = random.Random(7)
    datasets = [KRIPPENDORFF_4X12, EXAMPLE_3X15]
    for _ in range(20):
        coders, units = rng.randint(2, 5), rng.randint(3, 30)
        datasets.append([[rng.choice([N, 1, 2, 3, 4, 5, 5, 5]) for _u in range(units)] for _c in range(coders)])
    for data in datasets:
        ours = krippendorff_alpha(data, level)
        if ours.alpha is None:
            continue
        theirs = krippendorff.alpha(reliability_data=np.array(data, dtype=float), level_of_measurement=level)
        assert ours.alpha == pytest.approx(theirs, abs=1e-9)


@pytest.mark.parametrize("level", ["nominal", "interval"])
def test_alpha_matches_nltk(level):
    """NLTK's AnnotationTask takes a distance between two labels: nominal and interval only."""
    from nltk.metrics.agreement import AnnotationTask
    from nltk.metrics.distance import binary_distance, interval_distance

    rng = random.Random(11)
    datasets = [KRIPPENDORFF_4X12, EXAMPLE_3X15]
    datasets += [[[rng.choice([N, 1, 2, 3, 3]) for _u in range(12)] for _c in range(3)] for _ in range(10)]
    for data in datasets:
        ours = krippendorff_alpha(data, level)
        if ours.alpha is None:
            continue
        triples = [(str(c), str(u), v) for c, row in enumerate(data) for u, v in enumerate(row) if v is not None]
        task = AnnotationTask(triples, distance=binary_distance if level == "nominal" else interval_distance)
        assert ours.alpha == pytest.approx(task.alpha(), abs=1e-9)


def test_alpha_undefined_is_none_with_a_reason():
    same = krippendorff_alpha([[1, 1, 1], [1, 1, N]])
    assert same.alpha is None and "every pairable value is 1" in same.note and same.pairable_values == 4
    lonely = krippendorff_alpha([[1, N, 2], [N, 3, N]])
    assert lonely.alpha is None and lonely.units == 0 and "nothing can be compared" in lonely.note
    assert krippendorff_alpha([[1, 2], [1, 2]]).alpha == 1.0
    assert cohen_kappa([1, 1], [1, 1]) is None and cohen_kappa([], []) is None
    assert fleiss_kappa(np.array([[3, 0], [3, 0]])) is None
    assert alpha_from_units([[1, 2], [3]], "interval").units == 1


def test_alpha_needs_numbers_above_the_nominal_level():
    with pytest.raises(ValueError, match="needs numbers"):
        krippendorff_alpha([["a", "b"], ["a", "c"]], "interval")
    with pytest.raises(ValueError, match="0 or more"):
        krippendorff_alpha([[-1, 2], [1, 2]], "ratio")
    with pytest.raises(UsageError, match="unknown level"):
        krippendorff_alpha([[1, 2], [1, 2]], "cardinal")


def test_data_table_output_says_undefined_not_nan(run, tmp_path):
    path = tmp_path / "same.csv"
    path.write_text("unit,coder,value\n1,A,x\n1,B,x\n2,A,x\n2,B,x\n", encoding="utf-8")
    result = run("agree", "--data", path)
    assert result.code == 0, result.err
    assert "Krippendorff's alpha (nominal): undefined" in result.out and "no variation" in result.out
    assert "nan" not in result.out.lower()
    record = json.loads(run("agree", "--data", path, "--format", "json").out)
    assert record["alpha"] is None and record["cohen_kappa"] is None and "undefined" in record["notes"]["cohen_kappa"]


def test_data_with_one_coder_and_missing_cells(run, tmp_path):
    path = tmp_path / "one.csv"
    path.write_text("unit,coder,value,comment\n1,A,2,first\n2,A,*,\n3,A,NA,\n", encoding="utf-8")
    record = json.loads(run("agree", "--data", path, "--format", "json").out)
    assert (record["alpha"], record["units"], record["coders"], record["pairable_values"]) == (None, 1, 1, 0)
    csv_out = run("agree", "--data", DATA / "agreement_cohen_50.csv", "--format", "csv").out.splitlines()
    assert csv_out[0].startswith("file,level,alpha,units,coders,pairable_values,cohen_kappa")
    assert ",nominal,0.4,50,2,100,0.4," in csv_out[1]


# --------------------------------------------------------------------------- bad input: each a clear error, exit 2


def test_csv_without_the_columns(run):
    result = run("agree", "--data", DATA / "agreement_bad_columns.csv")
    assert result.code == 2
    assert "agreement_bad_columns.csv:1: bad-columns: the header needs columns unit, coder and value; missing unit, coder, value" in result.err
    assert "Traceback" not in result.err


def test_non_numeric_value_at_the_interval_level(run):
    result = run("agree", "--data", DATA / "agreement_not_numeric.csv", "--level", "interval")
    assert result.code == 2
    assert "agreement_not_numeric.csv:4: not-a-number: value 'high' is not a number; the interval level needs numbers" in result.err
    assert run("agree", "--data", DATA / "agreement_not_numeric.csv").code == 0  # nominal: categories may be words


def test_duplicate_rows_with_different_values(run):
    result = run("agree", "--data", DATA / "agreement_duplicates.csv")
    assert result.code == 2
    assert "agreement_duplicates.csv:6: duplicate-value: coder 'A' has two values for unit '1': '1' (line 2) and '3'" in result.err
    assert ":7:" not in result.err  # a repeated identical row is harmless


def test_other_bad_arguments(run, tmp_path, make_study):
    negative = tmp_path / "negative.csv"
    negative.write_text("unit,coder,value\n1,A,-2\n1,B,2\n", encoding="utf-8")
    result = run("agree", "--data", negative, "--level", "ratio")
    assert result.code == 2 and "negative.csv:2: negative-value" in result.err
    assert run("agree", "--data", tmp_path / "missing.csv").code == 2
    assert run("agree", "--data", negative, "--coders", "a,b").code == 2
    root = make_study()
    result = run("agree", "--study", root, "--level", "interval")
    assert result.code == 2 and "--level applies to --data" in result.err


# --------------------------------------------------------------------------- a study's codings


@pytest.fixture
def root(make_study):
    return make_study({"transcripts/D1/student-focus-group.md": STUDENT_TRANSCRIPT})


def code(study, coder, code_id, target, when=AT):
    if "." in target.rsplit("#", 1)[-1]:
        return coding.apply_code_to_sentence(study, coder, code_id, target, at=when)
    return coding.apply_code_to_turn(study, coder, code_id, target, at=when)


@pytest.fixture
def coded(root):
    """ana and ben code the teacher session; agency is a whole turn for ana, one sentence for ben."""
    study = load_study(root)
    code(study, "ana", "data-walls", f"{T}#t002.s01")
    code(study, "ana", "agency", f"{T}#t003")
    code(study, "ana", "culture", f"{T}#t003.s02")
    code(study, "ben", "data-walls", f"{T}#t002.s01")
    code(study, "ben", "agency", f"{T}#t003.s01")
    code(study, "ben", "culture", f"{T}#t002.s02")
    return study


def by_code(result):
    return {c.code: c for c in result.codes}


def test_sentence_units_by_hand(coded):
    result = agreement.study_agreement(coded)
    assert result.coders == ["ana", "ben"] and result.unit == "sentence"
    assert result.sessions == {"ana": [T], "ben": [T]} and result.compared == 6
    codes = by_code(result)
    assert codes["data-walls"].alpha.alpha == 1.0 and codes["data-walls"].kappa[("ana", "ben")] == 1.0
    agency = codes["agency"]  # ana: s01+s02 of turn 3 (a whole turn counts for both), ben: s01
    assert agency.applied == {"ana": 2, "ben": 1} and agency.percent_agreement == pytest.approx(500 / 6)
    assert agency.kappa[("ana", "ben")] == pytest.approx(8 / 14)  # p_o 5/6, p_e 2/6*1/6 + 4/6*5/6
    assert agency.alpha.alpha == pytest.approx(1 - 11 * 2 / (2 * 9 * 3))  # n=12, n1=3, n0=9, o01=o10=1
    assert "rare: 2 sentences" in agency.flags
    culture = codes["culture"]
    assert culture.applied == {"ana": 1, "ben": 1} and culture.kappa[("ana", "ben")] == pytest.approx(-0.2)
    pooled = result.pooled
    assert pooled.units == 18 and result.pooled_codes == ["agency", "data-walls", "culture"]  # codebook order
    assert pooled.applied == {"ana": 4, "ben": 3}


def test_turn_units(coded):
    result = agreement.study_agreement(coded, unit="turn")
    codes = by_code(result)
    assert result.compared == 3
    assert codes["agency"].applied == {"ana": 1, "ben": 1} and codes["agency"].alpha.alpha == 1.0
    assert codes["culture"].applied == {"ana": 1, "ben": 1} and codes["culture"].percent_agreement == pytest.approx(100 / 3)
    with pytest.raises(UsageError, match="unknown unit"):
        agreement.study_agreement(coded, unit="paragraph")


def test_disagreements_name_who_applied_the_code(coded, run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = agreement.study_agreement(coded)
    found = [(d.code, d.unit.id, d.applied_by, d.not_applied_by) for d in result.disagreements()]
    assert found == [("culture", f"{T}#t002.s02", ("ben",), ("ana",)),
                     ("agency", f"{T}#t003.s02", ("ana",), ("ben",)),
                     ("culture", f"{T}#t003.s02", ("ana",), ("ben",))]
    agency = result.disagreements(["agency"])[0]
    assert [c.sentence for c in agency.codings] == [None]  # ana's whole-turn coding
    rows = json.loads(run("agree", "--study", coded.root, "--disagreements", "--format", "json").out)
    assert rows[0] == {"code": "culture", "label": "Culture", "unit": f"{T}#t002.s02", "applied_by": "ben",
                       "not_applied_by": "ana", "path": "transcripts/D1/teacher-focus-group.md", "line": 14,
                       "start": 302, "end": 318, "speaker": "Ana", "role": "teacher", "text": "It builds trust."}
    table = run("agree", "--study", coded.root, "--disagreements").out
    assert "3 disagreement(s)" in table and "It builds trust." in table and "unit of analysis: the sentence" in table


def test_cli_table_states_unit_coders_and_sessions(coded, run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = run("agree", "--study", coded.root)
    assert result.code == 0, result.err
    out = result.out
    assert "Agreement of ana and ben (all districts); unit of analysis: the sentence" in out
    assert "Sessions: ana: 1 session; ben: 1 session; coded by both: 1" in out
    assert "coded by both: D1 (1): teacher-focus-group" in out
    assert "Units compared: 6 sentences" in out
    assert "kappa ana-ben" in out and "alpha" in out and "(pooled)" in out
    assert "rare (2)" in out and "scikit-learn" in out
    rows = run("agree", "--study", coded.root, "--format", "csv", "--unit", "turn").out.splitlines()
    assert rows[0] == "unit,code,label,units,applied_ana,applied_ben,agreement,kappa_ana_ben,alpha,flags"
    assert rows[1].startswith("turn,agency,Agency,3,1,1,100.0,1.0,1.0,")
    record = json.loads(run("agree", "--study", coded.root, "--format", "json").out)
    assert record["unit"] == "sentence" and record["sessions"] == {"ana": [T], "ben": [T]}
    assert record["units"] == {"total": 6, "compared": 6, "single_coder": 0}


def test_a_code_no_one_applied_and_a_code_applied_everywhere(coded, run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for coder in ("ana", "ben"):
        for turn in ("t001", "t002", "t003"):
            code(coded, coder, "culture", f"{T}#{turn}", "2026-01-05T10:00:00Z")
    result = agreement.study_agreement(coded)
    culture = by_code(result)["culture"]
    assert culture.alpha.alpha is None and "no variation" in culture.alpha.note
    assert culture.flags == ["applied to every sentence"] and culture.kappa[("ana", "ben")] is None
    table = run("agree", "--study", coded.root).out
    line = next(x for x in table.splitlines() if "culture" in x)
    assert "undefined" in line and "nan" not in line.lower()
    record = json.loads(run("agree", "--study", coded.root, "--format", "json").out)
    codes = {c["code"]: c for c in record["codes"]}
    assert codes["culture"]["alpha"] is None and codes["culture"]["cohen_kappa"] == {"ana/ben": None}


def test_a_code_no_one_applied(root):
    study = load_study(root)
    code(study, "ana", "agency", f"{T}#t002.s01")
    code(study, "ben", "agency", f"{T}#t003.s01")
    codes = by_code(agreement.study_agreement(study))
    assert codes["culture"].flags == ["never applied"] and codes["culture"].alpha.alpha is None
    assert codes["culture"].applied == {"ana": 0, "ben": 0}


def test_one_coder_only(root, run):
    study = load_study(root)
    code(study, "ana", "agency", f"{T}#t002.s01")
    result = run("agree", "--study", root)
    assert result.code == 2 and "agreement needs two or more coders" in result.err and "ana" in result.err
    assert run("agree", "--study", root, "--coders", "ana").code == 2
    assert agreement.study_agreement_summary(study) is None


def test_a_coder_without_codings(coded, run):
    result = run("agree", "--study", coded.root, "--coders", "ana,carl")
    assert result.code == 2 and "coder 'carl' has no codings: codings/carl.jsonl does not exist" in result.err
    code(coded, "cleo", "agency", f"{T}#t002.s01")
    coding.remove_coding(coded, "cleo", coding.load_codings(coded, "cleo")[0].id, at=AT)
    result = run("agree", "--study", coded.root, "--coders", "ana,cleo")
    assert result.code == 2 and "coder 'cleo' has no codings" in result.err
    assert run("agree", "--study", coded.root, "--coders", "ana,ana").code == 2
    assert run("agree", "--study", coded.root, "--coders", "ana,../x").code == 2


def test_a_unit_seen_by_one_coder_only_is_not_pairable(coded):
    code(coded, "ana", "agency", f"{S}#t002.s01")  # only ana coded the student session
    result = agreement.study_agreement(coded)
    assert result.sessions == {"ana": [S, T], "ben": [T]}  # study order
    assert result.compared == 6 and result.single_coder_units == 4
    assert by_code(result)["agency"].applied == {"ana": 2, "ben": 1}  # the student sentence is not compared
    assert "only ana coded: D1/student-focus-group" in "\n".join(result.header_lines())


def test_coders_with_disjoint_sessions(root, run):
    study = load_study(root)
    code(study, "ana", "agency", f"{T}#t002.s01")
    code(study, "ben", "agency", f"{S}#t002.s01")
    result = agreement.study_agreement(study)
    assert result.compared == 0 and result.pooled.alpha.alpha is None
    assert by_code(result)["agency"].flags == ["no sentence coded by two coders"]
    out = run("agree", "--study", root)
    assert out.code == 0 and "Nothing to compare" in out.out and "kappa and alpha are undefined" in out.out
    assert agreement.study_agreement_summary(study) is None


def test_sessions_count_removed_codings_and_rejections(coded):
    made = code(coded, "ben", "culture", f"{S}#t002.s01")
    coding.remove_coding(coded, "ben", made.id, at=AT)
    assert agreement.coder_sessions(coded, "ben") == [S, T]  # ben read the student session and took the coding back


def test_consensus_is_not_a_default_coder_and_summary(coded):
    code(coded, "consensus", "agency", f"{T}#t003.s01")
    assert agreement.study_agreement(coded).coders == ["ana", "ben"]
    summary = agreement.study_agreement_summary(coded, "D1")
    assert summary.startswith("Two coders (ana and ben) coded the same 1 session independently")
    assert "the sentence as the unit of analysis" in summary and "6 sentences compared" in summary
    assert "Krippendorff's alpha (nominal) pooled over the 3 codes applied was" in summary
    assert "Cohen's kappa averaged" in summary
    assert agreement.study_agreement_summary(coded, "D1", unit="turn").count("3 turns compared") == 1


# --------------------------------------------------------------------------- the sample study


def sentences_of(study, codings, code_id):
    """The sentences a coder's codings of one code cover, counted independently of agreement.py."""
    found = set()
    for c in codings:
        if c.code != code_id or c.status == "stale":
            continue
        for s in study.source(c.source).sentences:
            if s.start < c.end and c.start < s.end:
                found.add(s.id)
    return found


def test_sample_study_agreement(sample_study, run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = agreement.study_agreement(sample_study, ["ana", "ben"], "AUSD")
    ana, ben = (coding.load_codings(sample_study, c) for c in ("ana", "ben"))
    ana = [c for c in ana if c.source.startswith("AUSD/")]
    ben = [c for c in ben if c.source.startswith("AUSD/")]
    sentences = {s.id for t in sample_study.sources("AUSD") for s in t.sentences}
    assert result.compared == len(sentences)
    for item in result.codes:
        a, b = sentences_of(sample_study, ana, item.code), sentences_of(sample_study, ben, item.code)
        assert item.applied == {"ana": len(a), "ben": len(b)}
        assert len(result.disagreements([item.code])) == len(a ^ b)
        if item.alpha.alpha is not None:
            data = [[int(s in a) for s in sorted(sentences)], [int(s in b) for s in sorted(sentences)]]
            assert item.alpha.alpha == pytest.approx(krippendorff_alpha(data).alpha)
    assert any(f.startswith("rare") for c in result.codes for f in c.flags)
    out = run("agree", "--district", "AUSD", "--study", sample_study.root)
    assert out.code == 0 and "unit of analysis: the sentence" in out.out and "Data walls" not in out.out
    assert "data-walls" in out.out and "kappa ana-ben" in out.out
    listed = json.loads(run("agree", "--district", "AUSD", "--study", sample_study.root, "--disagreements", "--format", "json").out)
    assert len(listed) == len(result.disagreements()) > 50
    assert all(r["applied_by"] and r["not_applied_by"] and r["text"] for r in listed)
    table = run("agree", "--district", "AUSD", "--study", sample_study.root, "--disagreements").out
    bracketed = [r["text"] for r in listed if "[" in r["text"] and len(r["text"]) < 60]
    assert bracketed, "the sample's disagreements include a sentence with a [note]"
    flat = " ".join(table.split())
    assert " ".join(bracketed[0].split()[:3]) in flat  # transcript text such as "[laughter]", not console markup
    assert not math.isnan(result.pooled.alpha.alpha) and 0.5 < result.pooled.alpha.alpha < 0.95
