"""Render one case-study report per district with papermill, reproducibly and offline.

For each district: papermill runs ``notebooks/report.ipynb`` in a fresh kernel (districts in
parallel, one process each), the executed notebook is normalised (no timestamps, sequential
cell ids), exported to HTML with code hidden and the chart library inlined, the quotes in the
HTML are audited against their sources, and ``provenance.json`` and ``manifest.json`` are
written beside it. Everything is written into a temporary folder first and swapped into
``<out>/<DISTRICT>/`` only when complete; a failed district's partial notebook is kept under
``<out>/<DISTRICT>/failed/`` and never at the report's path.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .errors import UsageError
from .files import atomic_write_text, check_name

log = logging.getLogger("casestudy")

PACKAGES_IN_MANIFEST = (
    "casestudy", "altair", "vl-convert-python", "pandas", "spacy", "papermill", "nbconvert", "nbformat",
    "rapidfuzz", "pyyaml", "scikit-learn", "statsmodels",
)
# The kernel's own log (a warning about local TCP, a KeyboardInterrupt at shutdown) is noise on a
# researcher's terminal; cell errors still reach the notebook and the results table.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]
PARAMETER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EXTERNAL_URL_RE = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@dataclass(frozen=True)
class RenderOptions:
    coder: str | None = None
    allow_unverified: bool = False
    static_charts: bool = False
    pdf: bool = False
    template: Path | None = None


@dataclass
class DistrictResult:
    district: str
    status: str  # ok | unverified | failed
    seconds: float
    message: str = ""
    outputs: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unverified")


# --------------------------------------------------------------------------- parameters


def template_path(study_root: Path, template: Path | None = None) -> Path:
    """The report notebook: ``--template``, else the study's ``notebooks/report.ipynb``, else
    the one shipped with casestudy."""
    candidates = [template] if template else [study_root / "notebooks" / "report.ipynb", _shipped_notebooks() / "report.ipynb"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise UsageError(f"report template not found: {candidates[0]}")


def _shipped_notebooks() -> Path:
    return Path(__file__).resolve().parent.parent.parent / "notebooks"


def validate_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """Names must be identifiers; values plain strings, numbers, booleans or None."""
    for name, value in parameters.items():
        if not isinstance(name, str) or not PARAMETER_RE.match(name):
            raise UsageError(f"report parameter name {name!r} is not an identifier")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise UsageError(f"report parameter {name!r} must be a string, number or boolean, not {type(value).__name__}")
        if isinstance(value, str) and ("\x00" in value or len(value) > 4096):
            raise UsageError(f"report parameter {name!r} has an unusable value")
    return parameters


def district_parameters(study_root: Path, district: str, options: RenderOptions) -> dict[str, Any]:
    return validate_parameters({
        "study_dir": str(study_root),
        "district": district,
        "coder": options.coder or "",
        "static_charts": options.static_charts,
        "allow_unverified": options.allow_unverified,
    })


# --------------------------------------------------------------------------- normalising


def normalise_notebook(nb: Any) -> Any:
    """Remove everything that changes from run to run: timestamps, durations, random ids."""
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    for index, cell in enumerate(nb.cells, start=1):
        cell["id"] = f"cell-{index}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
    return nb


# --------------------------------------------------------------------------- HTML


def vega_bundle(cache_dir: Path | None = None) -> str:
    """Vega, Vega-Lite and vega-embed as one inline script (from vl-convert; no network).
    Cached under the study's derived folder because building it takes a second."""
    import vl_convert

    version = f"{vl_convert.get_vega_embed_version()}-{vl_convert.get_vega_version()}"
    path = cache_dir / f"vega-bundle-{version}.js" if cache_dir else None
    if path is not None and path.exists():
        return path.read_text(encoding="utf-8")
    bundle = vl_convert.javascript_bundle()
    if path is not None:
        atomic_write_text(path, bundle)
    return bundle


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:">
<title>{title}</title>
<style>{css}</style>
{scripts}
</head>
<body>
<main class="cs-report">
{body}
</main>
</body>
</html>
"""

CSS = """
body { font-family: Georgia, 'Times New Roman', serif; color: #1d1d1f; background: #fff; margin: 0; }
main.cs-report { max-width: 58rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; line-height: 1.5; }
h1, h2, h3, h4 { font-family: 'Helvetica Neue', Arial, sans-serif; color: #12355b; }
h1 { font-size: 2rem; margin-bottom: .2rem; } h2 { border-bottom: 2px solid #12355b; padding-bottom: .2rem; margin-top: 2.5rem; }
table { border-collapse: collapse; margin: 1rem 0; font-family: 'Helvetica Neue', Arial, sans-serif; font-size: .85rem; }
th, td { border: 1px solid #c8ced6; padding: .3rem .5rem; vertical-align: top; text-align: left; }
th { background: #eef2f7; }
blockquote.cs-quote { margin: .5rem 0 .5rem 1.5rem; padding-left: .8rem; border-left: 3px solid #c8ced6; font-style: italic; }
blockquote.cs-quote sup { font-style: normal; }
.cs-finding { margin: 1rem 0 1.5rem; }
.cs-quotes { margin: .4rem 0 .4rem 1.2rem; }
.cs-warning { background: #fff3cd; border: 1px solid #d39e00; padding: .1rem .3rem; font-family: Arial, sans-serif; font-size: .8rem; }
.cs-footnotes { font-size: .85rem; } .cs-meta { color: #555; font-family: Arial, sans-serif; font-size: .9rem; }
.cs-synthetic { background: #e7f1ff; border-left: 4px solid #12355b; padding: .5rem .8rem; font-family: Arial, sans-serif; font-size: .9rem; }
.cs-wide { overflow-x: auto; max-width: 100%; } .cs-wide table { min-width: 60rem; }
.cs-chart { margin: 1rem 0; } .cs-chart svg { max-width: 100%; height: auto; }
.jp-OutputArea-output pre { white-space: pre-wrap; }
"""


def export_html(nb: Any, title: str, bundle: str | None) -> str:
    """Notebook -> one self-contained HTML page: code hidden, no external resources."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True, anchor_link_text="")
    body, _ = exporter.from_notebook_node(nb)
    body = _strip_external_scripts(body)
    scripts = f"<script>{bundle}</script>" if bundle and "cs-vega" in body else ""
    return PAGE.format(title=html.escape(title), css=CSS, scripts=scripts, body=body)


def _strip_external_scripts(body: str) -> str:
    return re.sub(r"<script[^>]+src=[\"']?(?:https?:)?//[^>]*>\s*</script>", "", body, flags=re.IGNORECASE)


def external_urls(page: str) -> list[str]:
    """Every ``src``/``href`` attribute that points off the page (must be empty for a report)."""
    return [m.group(0) for m in EXTERNAL_URL_RE.finditer(page)]


# --------------------------------------------------------------------------- one district


def render_district(study_root: Path, district: str, out_dir: Path, options: RenderOptions,
                    study: Any = None) -> DistrictResult:
    """Render one district end to end; never raises for the district's own failures. ``study``:
    the study already loaded in this process (worker processes load their own)."""
    import nbformat
    import papermill

    from .study import load_study

    started = time.perf_counter()
    timings: dict[str, float] = {}
    final = out_dir / district
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{district}-", dir=out_dir))
    try:
        study = study if study is not None else load_study(study_root)
        study.district(district)
        parameters = district_parameters(study.root, district, options)
        template = template_path(study.root, options.template)
        executed = tmp / "report.ipynb"
        mark = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(template), str(executed), parameters=parameters, kernel_name="python3",
                progress_bar=False, cwd=str(study.root), request_save_on_cell_execute=False, start_timeout=120,
                extra_arguments=KERNEL_ARGUMENTS,
            )
        except Exception as exc:  # papermill.PapermillExecutionError and kernel failures
            timings["execute"] = time.perf_counter() - mark
            return _fail(final, tmp, district, started, timings, _short_error(exc), executed)
        timings["execute"] = time.perf_counter() - mark

        mark = time.perf_counter()
        nb = normalise_notebook(nbformat.read(executed, as_version=4))
        nbformat.write(nb, executed)
        title = f"{study.district(district).name}: case study"
        bundle = None if options.static_charts else vega_bundle(study.root / ".casestudy")
        page = export_html(nb, title, bundle)
        (tmp / "report.html").write_text(page, encoding="utf-8")
        timings["export"] = time.perf_counter() - mark

        mark = time.perf_counter()
        status, message = _audit(study, tmp, district, options)
        timings["audit"] = time.perf_counter() - mark
        if status == "failed":
            return _fail(final, tmp, district, started, timings, message, executed)
        _write_manifest(study, district, tmp, parameters, template)
        if options.pdf:
            print_pdf(tmp / "report.html", tmp / "report.pdf")
        outputs = sorted(p.name for p in tmp.iterdir())
        _swap_into_place(tmp, final)
        return DistrictResult(district, status, time.perf_counter() - started, message, outputs, timings)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return DistrictResult(district, "failed", time.perf_counter() - started, _short_error(exc), [], timings)


def _short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = getattr(exc, "ename", None) or type(exc).__name__
    evalue = getattr(exc, "evalue", None)
    return f"{name}: {evalue}" if evalue else f"{name}: {text[-1] if text else ''}"


def _audit(study: Any, tmp: Path, district: str, options: RenderOptions) -> tuple[str, str]:
    """Audit the rendered quotes; write provenance.json. Returns (status, message)."""
    from . import provenance

    report = provenance.audit_report(study, tmp / "report.html")
    records = provenance.audit(study, district=district)
    provenance.write_provenance(records, tmp / "provenance.json")
    failing = [r for r in report.results if not r.ok]
    if not report.results:
        return "ok", "no quotes in the report"
    if failing or not report.ok:
        message = f"{len(failing)} quote(s) failed the audit" + (f": {failing[0].summary()}" if failing else "")
        if options.allow_unverified:
            log.warning("%s: %s (rendered anyway: --allow-unverified)", district, message)
            return "unverified", message
        return "failed", message
    return "ok", f"{len(report.results)} quotes verified"


def _write_manifest(study: Any, district: str, tmp: Path, parameters: dict[str, Any], template: Path) -> None:
    inputs = {}
    for path in input_files(study, district) + [template]:
        rel = path.relative_to(study.root).as_posix() if path.is_relative_to(study.root) else path.name
        inputs[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = {
        "district": district,
        "parameters": {k: v for k, v in parameters.items() if k != "study_dir"},
        "inputs": dict(sorted(inputs.items())),
        "packages": package_versions(),
        "outputs": {name: hashlib.sha256((tmp / name).read_bytes()).hexdigest()
                    for name in ("report.ipynb", "report.html", "provenance.json") if (tmp / name).exists()},
    }
    atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")


def input_files(study: Any, district: str) -> list[Path]:
    """Every file a district's report reads."""
    root = study.root
    files = [root / "study.yaml", root / "codebook.yaml", root / "survey.yaml"]
    files += [root / t.path for t in study.sources(district)]
    files += [root / t.meta_path for t in study.sources(district) if t.meta_path != t.path]
    for folder, pattern in (("findings", f"{district}.yaml"), ("surveys", f"{district}/*.csv"), ("codings", "*.jsonl")):
        files += sorted((root / folder).glob(pattern))
    return [f for f in files if f.is_file()]


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES_IN_MANIFEST:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Replace ``final`` with the complete folder ``tmp`` (two renames; never half-written).
    A previous run's failed/ folder is dropped once the district renders."""
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fail(final: Path, tmp: Path, district: str, started: float, timings: dict[str, float], message: str,
          notebook: Path) -> DistrictResult:
    """Keep the partial notebook (with papermill's error marker) under ``failed/`` for diagnosis."""
    outputs = []
    if notebook.exists():
        failed = final / "failed"
        failed.mkdir(parents=True, exist_ok=True)
        os.replace(notebook, failed / "report.ipynb")
        outputs.append("failed/report.ipynb")
        html_file = tmp / "report.html"
        if html_file.exists():
            os.replace(html_file, failed / "report.html")
            outputs.append("failed/report.html")
    shutil.rmtree(tmp, ignore_errors=True)
    return DistrictResult(district, "failed", time.perf_counter() - started, message, outputs, timings)


# --------------------------------------------------------------------------- PDF


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def print_pdf(html_path: Path, pdf_path: Path) -> None:
    import subprocess

    chromium = find_chromium()
    if chromium is None:
        raise UsageError("--pdf needs headless Chromium, which is not installed (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="casestudy-chromium-") as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
             "--virtual-time-budget=10000",  # let the charts draw before printing
             f"--print-to-pdf={pdf_path}", html_path.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )


# --------------------------------------------------------------------------- many districts


def render(study_root: Path, districts: Iterable[str], out_dir: Path, options: RenderOptions, jobs: int = 1,
           on_done: Callable[[DistrictResult], None] | None = None, study: Any = None) -> list[DistrictResult]:
    """Render districts, ``jobs`` at a time, each in its own process. A failing district does
    not stop the others. Ctrl-C cancels the batch and leaves no half-written report in place."""
    districts = [check_name(d, "district") for d in districts]
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as exc:
        raise UsageError(f"cannot write to the output folder {str(out_dir)!r}: {exc.strerror or exc}") from None
    results: list[DistrictResult] = []
    if jobs <= 1 or len(districts) == 1:
        for district in districts:
            result = render_district(study_root, district, out_dir, options, study)
            results.append(result)
            if on_done:
                on_done(result)
        return results
    executor = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_quiet_after_ctrl_c)
    try:
        pending: dict[Future, str] = {executor.submit(render_district, study_root, d, out_dir, options): d for d in districts}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                district = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # a worker that died (e.g. killed) is a failed district
                    result = DistrictResult(district, "failed", 0.0, _short_error(exc))
                results.append(result)
                if on_done:
                    on_done(result)
    except KeyboardInterrupt:
        executor.shutdown(wait=False, cancel_futures=True)
        cleanup_temporary(out_dir)
        raise
    executor.shutdown(wait=True)
    order = {d: i for i, d in enumerate(districts)}
    return sorted(results, key=lambda r: order[r.district])


def _quiet_after_ctrl_c() -> None:
    """In a worker: Ctrl-C stops the district as usual (its temporary folder is removed), but
    what papermill and the kernel client print while they are torn down is dropped; the batch's
    own process says what happened."""
    import signal

    def on_sigint(signum: int, frame: Any) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)


def cleanup_temporary(out_dir: Path) -> None:
    for leftover in list(out_dir.glob(".tmp-*")) + list(out_dir.glob(".old-*")):
        shutil.rmtree(leftover, ignore_errors=True)


def result_rows(results: list[DistrictResult]) -> list[dict[str, Any]]:
    return [{"district": r.district, "status": r.status, "seconds": f"{r.seconds:.1f}", "message": r.message}
            for r in results]


def results_json(results: list[DistrictResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=2)
