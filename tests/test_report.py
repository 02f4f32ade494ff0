"""The report: parameters, normalisation, offline HTML, reproducibility, batches that fail well.

Rendering starts Jupyter kernels, so the end-to-end tests share one rendering of the sample
study per session where they can.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from casestudy.errors import UsageError
from casestudy.report import (
    RenderOptions,
    external_urls,
    find_chromium,
    normalise_notebook,
    render,
    validate_parameters,
)

pytestmark = pytest.mark.slow


def test_parameters_are_validated():
    assert validate_parameters({"district": "SCV35", "static_charts": False, "n": 2})
    with pytest.raises(UsageError, match="not an identifier"):
        validate_parameters({"bad-name": 1})
    with pytest.raises(UsageError, match="must be a string"):
        validate_parameters({"district": ["SCV35"]})


def test_normalise_removes_timing_and_random_ids():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("2")])
    nb.metadata["papermill"] = {"start_time": "2026-01-01T00:00:00"}
    nb.cells[0].metadata["papermill"] = {"duration": 0.1}
    nb.cells[0].metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    out = normalise_notebook(nb)
    assert "papermill" not in out.metadata
    assert [c["id"] for c in out.cells] == ["cell-1", "cell-2"]
    assert out.cells[0].metadata == {}


def test_external_urls_are_found():
    assert external_urls('<script src="https://cdn.example/x.js"></script><a href="//x.org">') != []
    assert external_urls('<a href="#fn-1">1</a><img src="data:image/png;base64,AAA">') == []


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, sample_root):
    """The sample study copied once, every district rendered once (two at a time)."""
    root = tmp_path_factory.mktemp("rendered") / "study"
    shutil.copytree(sample_root, root, ignore=shutil.ignore_patterns(".venv", ".git", "reports", ".casestudy", "private",
                                                                     "__pycache__", "*.egg-info", ".pytest_cache"))
    results = render(root, ["SCV35", "AUSD", "MPS", "YUHSD"], root / "reports", RenderOptions(), jobs=2)
    return root, results


def test_all_districts_render(rendered):
    root, results = rendered
    assert [r.status for r in results] == ["ok"] * 4, [r.message for r in results]
    for district in ("SCV35", "AUSD", "MPS", "YUHSD"):
        folder = root / "reports" / district
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "provenance.json", "report.html", "report.ipynb"]
    assert not list((root / "reports").glob(".tmp-*"))


def test_report_content_differs_by_district_and_has_every_section(rendered):
    root, _ = rendered
    pages = {d: (root / "reports" / d / "report.html").read_text(encoding="utf-8") for d in ("SCV35", "YUHSD")}
    for district, page in pages.items():
        for heading in ("Key findings by condition", "District context", "Survey evidence", "Joint display",
                        "Methods", "Successes, challenges and lessons", "Notes"):
            assert heading in page, (district, heading)
        assert page.count('class="cs-quote"') >= 5
        assert page.count("cs-vega") >= 2  # student and staff charts
        assert "Teacher Focus Group" in page
        assert external_urls(page) == []
        assert "<script src=" not in page
    assert "Santa Cruz Valley" in pages["SCV35"] and "Yuma Union" in pages["YUHSD"]
    assert pages["SCV35"].split("<h2>Key findings")[1][:3000] != pages["YUHSD"].split("<h2>Key findings")[1][:3000]


def test_manifest_records_inputs_and_versions(rendered):
    root, _ = rendered
    manifest = json.loads((root / "reports/SCV35/manifest.json").read_text())
    assert manifest["district"] == "SCV35"
    assert "codebook.yaml" in manifest["inputs"] and any(k.startswith("transcripts/SCV35/") for k in manifest["inputs"])
    assert not any(k.startswith("transcripts/AUSD/") for k in manifest["inputs"])
    assert "papermill" in manifest["packages"] and "casestudy" in manifest["packages"]
    assert len(manifest["outputs"]["report.html"]) == 64


def test_rendered_report_passes_the_audit(rendered, run):
    root, _ = rendered
    result = run("audit", "--study", root, "--report", root / "reports/SCV35/report.html")
    assert result.code == 0, result.out + result.err


def test_rendering_twice_gives_identical_bytes(rendered):
    root, _ = rendered
    before = {name: (root / "reports/MPS" / name).read_bytes() for name in ("report.html", "report.ipynb", "manifest.json")}
    results = render(root, ["MPS"], root / "reports", RenderOptions())
    assert results[0].status == "ok"
    after = {name: (root / "reports/MPS" / name).read_bytes() for name in before}
    assert before == after


def test_participant_names_never_reach_the_report(rendered):
    root, _ = rendered
    from casestudy.study import load_study

    study = load_study(root)
    page = (root / "reports/AUSD/report.html").read_text(encoding="utf-8")
    for transcript in study.sources("AUSD"):
        for label, role in transcript.participants.items():
            if role != "facilitator":
                assert f"{label}:" not in page


@pytest.mark.skipif(find_chromium() is None, reason="headless Chromium is not installed (Debian package chromium)")
def test_report_draws_charts_offline_in_chromium(rendered, tmp_path):
    root, _ = rendered
    page = root / "reports/SCV35/report.html"
    chromium = find_chromium()
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    dom = result.stdout
    assert dom.count('data-drawn="1"') >= 2, result.stderr[-2000:]
    assert "<svg" in dom


def test_failed_district_does_not_stop_the_others(run, sample_copy):
    survey = sample_copy / "surveys/AUSD/students-2023.csv"
    lines = survey.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    broken = lines[1].split(",")
    broken[-1] = "banana"
    survey.write_text("\n".join([lines[0], ",".join(broken), *lines[2:]]) + "\n", encoding="utf-8")
    result = run("report", "--study", sample_copy, "--all", "--jobs", "2")
    assert result.code == 1, result.out + result.err
    assert "AUSD" in result.out and "failed" in result.out
    for district in ("SCV35", "MPS", "YUHSD"):
        assert (sample_copy / "reports" / district / "report.html").exists()
    assert not (sample_copy / "reports/AUSD/report.html").exists()
    assert (sample_copy / "reports/AUSD/failed/report.ipynb").exists()
    assert header[0]


def test_cell_error_keeps_partial_notebook_under_failed(sample_copy, tmp_path):
    template = tmp_path / "broken.ipynb"
    nb = nbformat.read(Path(__file__).resolve().parent.parent / "notebooks" / "report.ipynb", as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('boom in ' + district)"))
    nbformat.write(nb, template)
    results = render(sample_copy, ["MPS", "YUHSD"], sample_copy / "reports", RenderOptions(template=template), jobs=2)
    assert [r.status for r in results] == ["failed", "failed"]
    assert "boom in MPS" in results[0].message
    for district in ("MPS", "YUHSD"):
        folder = sample_copy / "reports" / district
        assert not (folder / "report.html").exists()
        failed = nbformat.read(folder / "failed" / "report.ipynb", as_version=4)
        assert any(o.get("ename") == "RuntimeError" for c in failed.cells for o in c.get("outputs", []))


def test_failing_quote_blocks_publication_unless_allowed(run, sample_copy):
    path = sample_copy / "findings" / "YUHSD.yaml"
    text = path.read_text(encoding="utf-8")
    import yaml

    data = yaml.safe_load(text)
    quote = data["findings"][0]["quotes"][0]["text"]
    words = quote.split()
    words[len(words) // 2] = "zebra"
    assert quote in text
    path.write_text(text.replace(quote, " ".join(words), 1), encoding="utf-8")
    result = run("report", "--study", sample_copy, "--district", "YUHSD")
    assert result.code == 1
    assert "not-found" in result.err + result.out
    assert not (sample_copy / "reports/YUHSD/report.html").exists()
    assert (sample_copy / "reports/YUHSD/failed/report.html").exists()  # kept for diagnosis, never at the report's path
    result = run("report", "--study", sample_copy, "--district", "YUHSD", "--allow-unverified")
    assert result.code == 0
    page = (sample_copy / "reports/YUHSD/report.html").read_text(encoding="utf-8")
    assert "cs-warning" in page and "WARNING" in result.err


def test_bad_arguments_exit_2(run, sample_copy, tmp_path):
    assert run("report", "--study", sample_copy, "--district", "NOPE").code == 2
    result = run("report", "--study", sample_copy, "--district", "../x")
    assert result.code == 2 and "not a valid name" in result.err
    assert run("report", "--study", sample_copy).code == 2
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): cannot make a folder unwritable")
        result = run("report", "--study", sample_copy, "--district", "MPS", "--out", locked)
        assert result.code == 2 and "cannot write" in result.err
    finally:
        locked.chmod(0o700)


def test_unwritable_output_is_exit_2_even_as_root(run, sample_copy, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run("report", "--study", sample_copy, "--district", "MPS", "--out", blocker / "reports")
    assert result.code == 2 and "cannot write" in result.err


def test_ctrl_c_leaves_no_half_written_report(sample_copy):
    out = sample_copy / "reports"
    proc = subprocess.Popen(
        [sys.executable, "-m", "casestudy.cli", "report", "--study", str(sample_copy), "--all", "--jobs", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (out.exists() and list(out.glob(".tmp-*"))):
        time.sleep(0.1)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in stderr
    assert not list(out.glob(".tmp-*"))
    for folder in out.iterdir() if out.exists() else []:
        if folder.is_dir():
            html_file = folder / "report.html"
            if html_file.exists():  # a district that finished before Ctrl-C is complete
                assert (folder / "manifest.json").exists()
                assert html_file.read_text(encoding="utf-8").rstrip().endswith("</html>")


def test_static_charts_are_inline_svg_without_the_chart_library(run, sample_copy):
    result = run("report", "--study", sample_copy, "--district", "MPS", "--static-charts")
    assert result.code == 0, result.err
    page = (sample_copy / "reports/MPS/report.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 2 and "cs-vega" not in page and "vegaEmbed" not in page
    assert external_urls(page) == []


def test_pdf_is_printed_with_chromium_or_refused_clearly(run, sample_copy, monkeypatch):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (.ci/run installs Debian's chromium)")
    result = run("report", "--study", sample_copy, "--district", "AUSD", "--pdf")
    assert result.code == 0, result.err
    assert (sample_copy / "reports/AUSD/report.pdf").read_bytes().startswith(b"%PDF")
    monkeypatch.setattr("casestudy.report.find_chromium", lambda: None)
    result = run("report", "--study", sample_copy, "--district", "AUSD", "--pdf")
    assert result.code == 2 and "Chromium, which is not installed" in result.err
