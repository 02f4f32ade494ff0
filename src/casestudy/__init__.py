"""casestudy: a workbench for qualitative case-study research."""

import sys

__version__ = "0.1.0"

# Measured (python -X importtime -c "import altair"; benchmarks/report.py): when the optional
# package rfc3987-syntax is installed (JupyterLab's jupyter-events pulls it in), jsonschema,
# which Altair imports, compiles 38 parser grammars at import time: 1.5 to 3 s of every report
# kernel's start, for an IRI format check that neither Altair nor casestudy ever uses. Marking
# the module as absent makes jsonschema skip that check, as it does when the package is not
# installed. Only done when jsonschema has not been imported yet, so nothing already loaded changes.
if "jsonschema" not in sys.modules and "rfc3987_syntax" not in sys.modules:
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]
