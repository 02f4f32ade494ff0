"""Adjudication: settling disagreements into a consensus coder, the report's coder, the panel,
the notebook, and the sample consensus file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from casestudy import agreement, coding
from casestudy.adjudication import Adjudication, AdjudicationPanel, report_coder
from casestudy.errors import UsageError
from casestudy.study import load_study

from .helpers import committed_notebook_code

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "adjudicate.ipynb"
T = "D1/teacher-focus-group"
AT = "2026-01-05T09:00:00Z"
WALLS = f"data-walls@{T}#t002.s01"
AGENCY = f"agency@{T}#t003.s02"
CULTURE_BEN = f"culture@{T}#t002.s02"
CULTURE_ANA = f"culture@{T}#t003.s02"


@pytest.fixture
def coded(make_study):
    """ana and ben code the teacher session: they agree on data walls (t002.s01) and on agency on
    t003.s01; ana's whole-turn agency also covers t003.s02; each puts culture on another sentence."""
    study = load_study(make_study())
    coding.apply_code_to_sentence(study, "ana", "data-walls", f"{T}#t002.s01", at=AT)
    coding.apply_code_to_turn(study, "ana", "agency", f"{T}#t003", memo="the whole turn", at=AT)
    coding.apply_code_to_sentence(study, "ana", "culture", f"{T}#t003.s02", at=AT)
    coding.apply_code_to_sentence(study, "ben", "data-walls", f"{T}#t002.s01", at=AT)
    coding.apply_code_to_sentence(study, "ben", "agency", f"{T}#t003.s01", at=AT)
    coding.apply_code_to_sentence(study, "ben", "culture", f"{T}#t002.s02", at=AT)
    return study


def consensus_lines(study) -> list[dict]:
    path = study.root / "codings" / "consensus.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def spans(study) -> set[tuple[str, str]]:
    return {(c.code, c.text) for c in coding.load_codings(study, "consensus")}


def test_disagreements_and_seeding_of_agreed_codings(coded):
    adj = Adjudication(coded)
    assert adj.coders == ("ana", "ben") and adj.origin == "consensus:ana,ben"
    assert [d.id for d in adj.disagreements] == [CULTURE_BEN, AGENCY, CULTURE_ANA]
    assert adj.progress() == (0, 3) and not (coded.root / "codings" / "consensus.jsonl").exists()
    assert adj.seed(at=AT) == 2
    assert spans(coded) == {("data-walls", "They track goals on the data walls."), ("agency", "Um, and they get voice and choice.")}
    lines = consensus_lines(coded)
    assert all(e["event"] == "apply" and e["origin"] == "consensus:ana,ben" and e["reason"] == "agreed: ana and ben both applied it"
               for e in lines)
    assert Adjudication(coded).seed(at=AT) == 0  # idempotent
    assert [p for p in coding.validate_codings(coded) if p.severity == "error"] == []


def test_apply_reject_recode(coded):
    adj = Adjudication(coded, ["ana", "ben"])
    made = adj.apply(AGENCY, "the sentence is still about choosing", at="2026-01-06T10:00:00Z")
    assert (made.code, made.sentence, made.text) == ("agency", f"{T}#t003.s02", "It changed the culture of the room.")
    assert made.origin == "consensus:ana,ben" and made.reason == "the sentence is still about choosing"
    assert len(spans(coded)) == 3  # the two agreed codings were copied in first
    adj.reject(CULTURE_ANA, "about the room, not the culture", at="2026-01-06T10:01:00Z")
    new = adj.recode(CULTURE_BEN, "agency", "trust in their own tracking: agency, the whole turn", scope="turn",
                     at="2026-01-06T10:02:00Z")
    assert (new.code, new.sentence, new.turn) == ("agency", None, f"{T}#t002")
    decisions = adj.decisions()
    assert {k: (d.action, d.code) for k, d in decisions.items()} == {
        AGENCY: ("apply", "agency"), CULTURE_ANA: ("reject", "culture"), CULTURE_BEN: ("recode", "agency")}
    assert adj.progress() == (3, 3) and adj.pending() == []
    lines = consensus_lines(coded)
    assert [e["event"] for e in lines[2:]] == ["accept", "reject", "reject", "accept"]
    assert {e["suggestion"] for e in lines[2:]} == {AGENCY, CULTURE_ANA, CULTURE_BEN}
    assert all(e["reason"] for e in lines)
    assert [p for p in coding.validate_codings(coded) if p.severity == "error"] == []
    rows = {r["code"]: r for r in adj.progress_rows()}
    assert rows["culture"] == {"code": "culture", "label": "Culture", "disagreements": 2, "applied": 0, "rejected": 1,
                               "recoded": 1, "pending": 0}


def test_deciding_again_replaces_the_decision(coded):
    adj = Adjudication(coded)
    adj.apply(AGENCY, "first thought", at="2026-01-06T10:00:00Z")
    adj.reject(AGENCY, "on reflection, no", at="2026-01-06T10:05:00Z")
    assert adj.decisions()[AGENCY].action == "reject" and adj.progress() == (1, 3)
    assert ("agency", "It changed the culture of the room.") not in spans(coded)
    adj.apply(AGENCY, "yes after all", at="2026-01-06T10:06:00Z")
    assert [c for c in coding.load_codings(coded, "consensus") if c.sentence == f"{T}#t003.s02"][0].reason == "yes after all"


def test_refusals_write_nothing(coded):
    adj = Adjudication(coded)
    with pytest.raises(UsageError, match="needs a reason"):
        adj.apply(AGENCY, "  ")
    with pytest.raises(UsageError, match="not in the codebook"):
        adj.recode(AGENCY, "agenzy", "typo")
    with pytest.raises(UsageError, match="no disagreement"):
        adj.reject(f"culture@{T}#t001.s01", "not a disagreement")
    with pytest.raises(UsageError, match="use apply"):
        adj.recode(AGENCY, "agency", "same thing")
    assert not (coded.root / "codings" / "consensus.jsonl").exists()
    with pytest.raises(UsageError, match="two coders"):
        Adjudication(coded, ["ana"])
    with pytest.raises(UsageError, match="cannot also be one of the coders"):
        Adjudication(coded, ["ana", "ben"], consensus="ana")
    with pytest.raises(UsageError, match="unknown decision"):
        adj.decide(AGENCY, "maybe", "hm")


def test_agreement_with_the_consensus_coder(coded, run):
    adj = Adjudication(coded)
    for d in adj.disagreements:
        adj.decide(d, "apply", "ana's reading", at="2026-01-06T10:00:00Z")
    result = agreement.study_agreement(coded, ["ana", "consensus"])
    assert result.pooled.alpha.alpha is not None
    assert run("agree", "--study", coded.root, "--coders", "ana,consensus").code == 0
    summary = agreement.study_agreement_summary(coded, "D1")
    assert "All 3 disagreements were then settled" in summary


def test_report_coder(coded):
    assert report_coder(coded) == "ana"  # no consensus: the first human coder alphabetically
    assert report_coder(coded, "ben") == "ben"
    assert report_coder(coded, "nobody") == "ana"
    Adjudication(coded).seed(at=AT)
    assert report_coder(coded) == "consensus" and report_coder(coded, "nobody") == "consensus"
    assert report_coder(coded, "ben") == "ben"
    with pytest.raises(UsageError):
        report_coder(coded, "../x")


def test_report_coder_without_codings(make_study):
    study = load_study(make_study({"codings/ana.jsonl": ""}))
    assert report_coder(study) is None and report_coder(study, "ana") is None


def test_report_coder_skips_an_empty_consensus(coded):
    made = coding.apply_code_to_sentence(coded, "consensus", "agency", f"{T}#t003.s01", origin="consensus:ana,ben", at=AT)
    coding.remove_coding(coded, "consensus", made.id, at=AT)
    assert report_coder(coded) == "ana"


# --------------------------------------------------------------------------- the panel


def test_panel_buttons_decide_through_the_library(coded):
    panel = AdjudicationPanel(Adjudication(coded))
    assert panel.current.id == CULTURE_BEN and "It builds trust." in panel.view.value
    assert "applied by <b>ben</b>" in panel.view.value and "Definition: Norms and trust." in panel.view.value
    panel.apply_button.click()  # no reason yet: refused, shown in the panel
    assert "needs a reason" in panel.status.value and not (coded.root / "codings" / "consensus.jsonl").exists()
    panel.reason.value = "trust is the point"
    panel.apply_button.click()
    assert "apply" in panel.status.value and panel.current.id == AGENCY  # the settled one dropped out
    assert panel.reason.value == ""
    panel.reason.value = "not about choice"
    panel.reject_button.click()
    panel.reason.value = "the room: flexible environments would be closer, but agency will do"
    panel.new_code.value = "agency"
    panel.recode_button.click()
    assert panel.current is None and "No disagreement to show" in panel.view.value
    assert panel.adj.progress() == (3, 3)
    panel.pending_only.value = False
    assert len(panel.items) == 3 and "Settled: apply Culture" in panel.view.value
    panel.step(1)
    assert panel.current.id == AGENCY
    panel.filter_code.value = "culture"
    assert [d.id for d in panel.items] == [CULTURE_BEN, CULTURE_ANA]


# --------------------------------------------------------------------------- the notebook


def test_notebook_is_committed_without_outputs():
    code = committed_notebook_code(NOTEBOOK)
    assert all("def " not in c.source and "class " not in c.source for c in code)  # thin: logic lives in the library


@pytest.mark.slow
def test_notebook_runs_headless(coded, tmp_path):
    import papermill

    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(output), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                               parameters={"study_dir": str(coded.root), "coders": "ana,ben", "district": "D1",
                                           "interactive": False})
    executed = nbformat.read(output, as_version=4)
    cells = {c.get("id"): c for c in executed.cells}
    assert cells["adjudication-panel"].outputs == []
    table = json.dumps([o.get("data", {}) for o in cells["agreement-table"].outputs])
    assert "data-walls" in table and "kappa ana-ben" in table
    assert "0 of 3 disagreements settled" in json.dumps(cells["progress"].outputs)
    assert not any(o.output_type == "error" for c in executed.cells if c.cell_type == "code" for o in c.outputs)


# --------------------------------------------------------------------------- the sample consensus coder


def test_sample_consensus_file(sample_study):
    codings = coding.load_codings(sample_study, "consensus")
    assert len(codings) > 500
    assert all(c.origin == "consensus:ana,ben" and c.reason for c in codings)
    assert [p for p in coding.validate_codings(sample_study) if p.severity == "error" and "consensus" in p.path] == []
    ausd = Adjudication(sample_study, ["ana", "ben"], "AUSD")
    mps = Adjudication(sample_study, ["ana", "ben"], "MPS")
    assert ausd.progress() == (len(ausd.disagreements), len(ausd.disagreements))  # AUSD settled, MPS partly
    settled, total = mps.progress()
    assert 0 < settled < total
    actions = {d.action for d in ausd.decisions().values()}
    assert actions == {"apply", "reject", "recode"}
    assert report_coder(sample_study) == "consensus"


@pytest.mark.slow
def test_sample_consensus_script_is_deterministic(sample_copy):
    (sample_copy / "codings" / "consensus.jsonl").unlink()
    script = REPO / "scripts" / "make_sample_consensus.py"
    done = subprocess.run([sys.executable, str(script), "--study", str(sample_copy)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (sample_copy / "codings" / "consensus.jsonl").read_bytes() == (REPO / "codings" / "consensus.jsonl").read_bytes()
    assert not (sample_copy / "codings" / ".consensus.jsonl.lock").exists()
    again = subprocess.run([sys.executable, str(script), "--study", str(sample_copy)], capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr
