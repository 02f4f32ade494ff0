"""Write notebooks/report.ipynb: a thin template of one call per section (no outputs).

Run after changing the list of sections: `.venv/bin/python scripts/make_report_notebook.py`.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

PARAMETERS = '''\
# District case-study report: a template in which each cell calls the casestudy library for one
# section. Render it with `casestudy report --district D`.
# Parameters (papermill replaces this cell's values; see `casestudy report --help`).
study_dir = "."
district = "SCV35"
coder = ""  # empty: the consensus coder if there is one, else the only or first coder
static_charts = False
allow_unverified = False'''

SECTIONS = ["title", "introduction", "key_findings", "district_context", "district_systems", "survey_evidence",
            "on_the_ground", "successes_challenges_lessons", "joint_display", "code_frequencies", "methods", "notes"]


def build() -> nbformat.NotebookNode:
    cells = [
        new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]}),
        new_code_cell("from casestudy.sections import Report\n\n"
                      "report = Report(study_dir, district, coder=coder, static_charts=static_charts, "
                      "allow_unverified=allow_unverified)"),
    ]
    cells += [new_code_cell(f"report.{name}()") for name in SECTIONS]
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    for index, cell in enumerate(nb.cells, start=1):
        cell["id"] = f"cell-{index}"
    return nb


if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "notebooks" / "report.ipynb"
    nbformat.write(build(), path)
    print(f"wrote {path}")
