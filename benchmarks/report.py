"""Benchmark: render the sample study's reports three ways and print wall times and ratios.

    .venv/bin/python benchmarks/report.py [--study DIR]

1. ours: ``casestudy report --all --jobs 2`` (one process per district, two at a time);
2. plain: for each district, the ``papermill`` command then ``jupyter nbconvert --to html``,
   one district after another (what a team would script by hand);
3. one district alone: ``casestudy report --district SCV35``.

Targets on a 2-core machine: (3) under 6 s; (2)/(1) at least 2. It also prints where one
district's time goes (kernel start and imports, the notebook's cells, export, audit), from
the timings ``casestudy report --format json`` records. Outputs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    study = args.study.resolve()
    sys.path.insert(0, str(study / "src"))
    from casestudy.study import load_study

    districts = list(load_study(study).districts)
    template = study / "notebooks" / "report.ipynb"
    casestudy = str(BIN / "casestudy")
    with tempfile.TemporaryDirectory(prefix="casestudy-bench-") as tmp:
        tmp_path = Path(tmp)
        # Warm-up: the first run builds the cached Vega bundle and warms the disk cache for every approach.
        run([casestudy, "report", "--study", str(study), "--district", districts[0], "--out", str(tmp_path / "warm")], study)

        ours, out = run([casestudy, "report", "--study", str(study), "--all", "--jobs", "2", "--out",
                         str(tmp_path / "ours"), "--format", "json"], study)
        results = json.loads(out)

        plain = 0.0
        for district in districts:
            notebook = tmp_path / "plain" / f"{district}.ipynb"
            notebook.parent.mkdir(parents=True, exist_ok=True)
            seconds, _ = run([str(BIN / "papermill"), str(template), str(notebook), "-p", "study_dir", str(study),
                              "-p", "district", district, "--no-progress-bar"], study)
            plain += seconds
            seconds, _ = run([str(BIN / "jupyter"), "nbconvert", "--to", "html", "--no-input", str(notebook)], study)
            plain += seconds

        one, out = run([casestudy, "report", "--study", str(study), "--district", districts[0], "--out",
                        str(tmp_path / "one"), "--format", "json"], study)
        timings = json.loads(out)[0]["timings"]

        import_seconds, _ = run([sys.executable, "-c", "import casestudy.sections, casestudy.provenance, casestudy.survey, "
                                 "casestudy.joint, casestudy.counts, altair, pandas"], study)

    print(f"districts: {len(districts)} ({', '.join(districts)})")
    print(f"ours  casestudy report --all --jobs 2:           {ours:6.1f} s")
    print(f"plain papermill + nbconvert, one at a time:      {plain:6.1f} s")
    print(f"one district alone (casestudy report --district): {one:6.1f} s   (target < 6 s)")
    print(f"speed-up of ours over plain:                     {plain / ours:6.2f}x  (target >= 2x)")
    print("where one district's time goes:")
    for name, seconds in timings.items():
        print(f"  {name:<10} {seconds:5.2f} s")
    print(f"  (of which importing the libraries in a fresh Python: {import_seconds:.2f} s)")
    statuses = {r['district']: r['status'] for r in results}
    print(f"statuses: {statuses}")


if __name__ == "__main__":
    main()
