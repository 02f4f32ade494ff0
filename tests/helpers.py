"""Helpers for building small transcripts in tests."""

from __future__ import annotations

import textwrap


def session_text(source_type: str, participants: dict[str, str], body: str, *, district: str = "D1",
                 date: str = "2023-10-02", school: str = "School One") -> str:
    """A Markdown transcript: front matter (a Facilitator plus ``participants``), then ``body``."""
    people = "\n".join(f"  {name}: {role}" for name, role in {"Facilitator": "facilitator", **participants}.items())
    return (f"---\ndistrict: {district}\nschool: {school}\nsource_type: {source_type}\ndate: {date}\n"
            f"facilitator: Facilitator\nparticipants:\n{people}\nsynthetic: true\n---\n{textwrap.dedent(body).lstrip()}")


def committed_notebook_code(path):
    """Check a shipped notebook is valid and committed without outputs, with a ``parameters`` cell
    that has ``interactive = True`` and a ``python3`` kernel; return its code cells."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert code[0].metadata.get("tags") == ["parameters"] and "interactive = True" in code[0].source
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    return code
