"""The coding panel (every button writes through casestudy.coding), `casestudy lab`, and the
coding notebook run headless with papermill."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from casestudy import coding, widgets
from casestudy.errors import UsageError
from casestudy.study import load_study

from .helpers import committed_notebook_code

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "code_transcripts.ipynb"
SOURCE = "D1/teacher-focus-group"


@pytest.fixture
def study(make_study):
    return load_study(make_study())


def events_of(study, coder="ana"):
    path = coding.coder_path(study, coder)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def test_code_options_follow_the_hierarchy(sample_study):
    options = widgets.code_options(sample_study.codebook)
    ids = [value for _, value in options]
    assert sorted(ids) == sorted(sample_study.codebook.codes)
    agency = ids.index("agency")
    assert ids[agency + 1: agency + 6] == list(sample_study.codebook.children("agency"))
    assert options[agency][0] == "Agency" and options[agency + 1][0].endswith("\u2514 Learner profiles")


def test_panel_steps_through_turns(study):
    panel = widgets.CodingPanel(study, "ana")
    assert "<b>Facilitator</b> <i>(Facilitator)</i>" in panel.turn_view.value and "turn 1 of 3" in panel.turn_view.value
    panel.next_button.click()
    assert "<b>Ana</b> <i>(Teacher)</i>" in panel.turn_view.value and "They track goals on the data walls." in panel.turn_view.value
    assert [v for _, v in panel.target.options] == [f"{SOURCE}#t002.s01", f"{SOURCE}#t002.s02", widgets.WHOLE_TURN]
    panel.next_button.click()
    panel.next_button.click()  # stays on the last turn
    assert panel.turn_index.value == 3
    panel.prev_button.click()
    assert panel.turn.id == f"{SOURCE}#t002"


def test_panel_buttons_write_through_the_library(study):
    panel = widgets.CodingPanel(study, "ana", source=SOURCE)
    panel.go_to(f"{SOURCE}#t002")
    panel.code.value = "data-walls"
    panel.target.value = f"{SOURCE}#t002.s01"
    panel.memo.value = "a wall of goals"
    panel.apply_button.click()
    written = events_of(study)
    assert [(e["event"], e["code"], e["anchor"]["sentence"], e.get("memo")) for e in written] == [
        ("apply", "data-walls", f"{SOURCE}#t002.s01", "a wall of goals")]
    assert "applied data-walls" in panel.status.value and "[Data walls]" in panel.turn_view.value

    panel.code.value = "culture"
    panel.target.value = widgets.WHOLE_TURN
    panel.apply_button.click()
    whole = events_of(study)[-1]
    assert whole["anchor"]["sentence"] is None and whole["anchor"]["turn"] == f"{SOURCE}#t002"

    coding_id = written[0]["coding"]
    memo_box, save, remove = panel.coding_rows[coding_id]
    memo_box.value = "goals and stickers"
    save.click()
    assert events_of(study)[-1] == {**events_of(study)[-1], "event": "memo", "coding": coding_id, "memo": "goals and stickers"}
    remove.click()
    assert events_of(study)[-1]["event"] == "remove"
    assert [c.code for c in coding.load_codings(study, "ana")] == ["culture"]
    assert set(panel.coding_rows) == {whole["coding"]}

    # a refused action shows its message in the panel instead of raising
    save.click()
    assert "has no coding" in panel.status.value and events_of(study)[-1]["event"] == "remove"


def test_panel_accepts_and_rejects_suggestions(study):
    transcript = study.source(SOURCE)
    lines = []
    for sid, code, sentence_id in (("s-1", "data-walls", f"{SOURCE}#t002.s01"), ("s-2", "culture", f"{SOURCE}#t002.s02")):
        s = next(x for x in transcript.sentences if x.id == sentence_id)
        lines.append(json.dumps({"id": sid, "code": code, "source": SOURCE, "anchor": coding.make_anchor(transcript, s.start, s.end).to_dict(),
                                 "pattern": f"{code}/1", "evidence": {"words": "data walls", "pattern": 'phrase "data wall"'}}))
    (study.root / "suggestions").mkdir()
    (study.root / "suggestions" / "auto.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    panel = widgets.CodingPanel(study, "ana", district="D1")
    assert panel.suggestion_rows == {}  # none on the facilitator's turn
    panel.step(1)
    assert set(panel.suggestion_rows) == {"s-1", "s-2"}
    shown = panel.suggestions_box.children[0].children[0].value
    assert "phrase &quot;data wall&quot; matched &quot;data walls&quot;" in shown and "{" not in shown
    accept, _ = panel.suggestion_rows["s-1"]
    accept.click()
    _, reject = panel.suggestion_rows["s-2"]
    reject.click()
    assert [(e["event"], e.get("origin")) for e in events_of(study)] == [("accept", "auto:data-walls/1"), ("reject", None)]
    assert panel.suggestion_rows == {}


def test_evidence_says_which_pattern_matched_which_words(sample_study):
    listed = {"pattern": "data-walls/1",
              "evidence": [{"pattern": "data-walls/1", "words": "data walls", "start": 5, "end": 15,
                            "explanation": 'phrase "data wall" matched "data walls"'},
                           {"pattern": "data-walls/2", "words": "trackers", "start": 20, "end": 28}]}
    line = {p.id: p.line for p in sample_study.codebook.patterns()}
    assert widgets._evidence(listed, sample_study.codebook) == (
        f'phrase "data wall" matched "data walls" (data-walls/1, line {line["data-walls/1"]}); '
        f'phrase "tracker" matched "trackers" (data-walls/2, line {line["data-walls/2"]})')
    # without the codebook: the stored explanation, or the pattern id and the words; never a raw record
    assert widgets._evidence(listed) == ('phrase "data wall" matched "data walls" (data-walls/1); '
                                         'pattern data-walls/2 matched "trackers" (data-walls/2)')
    assert widgets._evidence({"pattern": "agency/3"}) == "pattern agency/3"
    assert widgets._evidence({"pattern": "agency/1"}, sample_study.codebook) == 'phrase "agency" (agency/1)'
    we_learned = next(p for p in sample_study.codebook.patterns() if p.kind == "tokens" and p.value[0] == {"LOWER": {"IN": ["we", "i"]}})
    tokens = {"pattern": we_learned.id, "evidence": [{"pattern": we_learned.id, "words": "We learned"}]}
    assert widgets._evidence(tokens, sample_study.codebook) == (
        f'tokens [{{LOWER: {{IN: [we, i]}}}}, {{LOWER: {{IN: [learned, learnt]}}}}] matched "We learned" '
        f'({we_learned.id}, line {we_learned.line})')


def test_panel_refuses_a_bad_coder_name(study):
    with pytest.raises(UsageError, match="is not a valid name"):
        widgets.CodingPanel(study, "../ana")


# --------------------------------------------------------------------------- casestudy lab


def test_lab_starts_jupyterlab_on_the_study(run, make_study, monkeypatch):
    root = make_study()
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    result = run("lab", "--study", root, "--no-browser", "--port", "8899")
    assert result.code == 0, result.err
    [(command, kwargs)] = calls
    assert command[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={root.resolve()}" in command
    assert {"--no-browser", "--ServerApp.port=8899", "--ServerApp.ip=127.0.0.1", "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly"} <= set(command)
    assert kwargs["cwd"] == root.resolve()
    assert (root / "notebooks" / "code_transcripts.ipynb").read_bytes() == NOTEBOOK.read_bytes()

    # a notebook the team changed is never overwritten
    (root / "notebooks" / "code_transcripts.ipynb").write_text("{}", encoding="utf-8")
    assert run("lab", "--study", root).code == 0
    assert "--no-browser" not in calls[-1][0]
    assert (root / "notebooks" / "code_transcripts.ipynb").read_text(encoding="utf-8") == "{}"


@pytest.mark.parametrize(("uid", "allowed"), [(1000, False), (0, True)])
def test_lab_allows_root_only_when_run_as_root(tmp_path, monkeypatch, uid, allowed):
    monkeypatch.setattr(widgets.os, "geteuid", lambda: uid, raising=False)
    command = widgets.lab_command(tmp_path, port=None, browser=True)
    assert ("--allow-root" in command) is allowed
    assert not any(arg.startswith("--ServerApp.port") for arg in command) and "--no-browser" not in command


def test_lab_passes_on_jupyterlab_exit_code_and_refuses_a_non_study(run, tmp_path, make_study, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda command, **kw: subprocess.CompletedProcess(command, 3))
    assert run("lab", "--study", make_study()).code == 3
    called = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: called.append(a))
    result = run("lab", "--study", tmp_path / "nowhere")
    assert result.code == 2 and "does not exist" in result.err and called == []


# --------------------------------------------------------------------------- the notebook


def test_notebook_is_committed_without_outputs():
    committed_notebook_code(NOTEBOOK)


@pytest.mark.slow
def test_notebook_runs_headless(sample_copy, tmp_path):
    import papermill

    output = tmp_path / "out.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(output), kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                               parameters={"study_dir": str(sample_copy), "coder": "ana", "district": "AUSD", "interactive": False})
    executed = nbformat.read(output, as_version=4)
    cells = {c.get("id"): c for c in executed.cells}
    assert cells["coding-panel"].outputs == []  # the widgets are skipped
    for chart in ("frequency-chart", "cooccurrence-chart"):
        data = [o for o in cells[chart].outputs if o.output_type == "execute_result"]
        assert data, cells[chart].outputs
        rendered = json.dumps(data[0]["data"])
        assert "vega" in rendered and "agency" in rendered
    assert not any(o.output_type == "error" for c in executed.cells if c.cell_type == "code" for o in c.outputs)
