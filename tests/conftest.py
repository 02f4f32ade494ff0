"""Shared fixtures: the bundled sample study, small studies built in tmp_path, and a CLI runner."""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from casestudy.cli import main

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(capsys):
    """Run the CLI in-process: ``run("validate", "--study", path)`` -> Result(code, out, err)."""

    def _run(*args: object) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The bundled sample study (the repository's top level). Read-only: copy before writing."""
    return REPO


@pytest.fixture(scope="session")
def sample_study(sample_root):
    from casestudy.study import load_study

    return load_study(sample_root)


@pytest.fixture
def sample_copy(tmp_path, sample_root) -> Path:
    """A writable copy of the sample study's files (no outputs, no derived folders)."""
    dest = tmp_path / "study"
    dest.mkdir()
    for name in ("study.yaml", "codebook.yaml", "survey.yaml"):
        if (sample_root / name).exists():
            shutil.copy2(sample_root / name, dest / name)
    for folder in ("transcripts", "codings", "findings", "surveys", "suggestions"):
        if (sample_root / folder).exists():
            shutil.copytree(sample_root / folder, dest / folder)
    return dest


MINI_STUDY = """\
name: Mini study
districts:
  D1:
    name: District One
    label: D1
source_types:
  teacher_focus_group: Teacher Focus Group
  student_focus_group: Student Focus Group
roles:
  facilitator: Facilitator
  teacher: Teacher
  student: Student
"""

MINI_CODEBOOK = """\
name: Mini codebook
groups:
  conditions: Conditions
codes:
  - id: agency
    label: Agency
    group: conditions
    definition: Students owning their learning.
    patterns: [ownership, voice and choice]
  - id: data-walls
    label: Data walls
    parent: agency
    definition: Progress shown on walls.
    patterns: [data wall]
  - id: culture
    label: Culture
    group: conditions
    definition: Norms and trust.
    patterns: [trust]
"""

MINI_TRANSCRIPT = """\
---
district: D1
school: School One
source_type: teacher_focus_group
date: 2023-10-01
facilitator: Facilitator
participants:
  Facilitator: facilitator
  Ana: teacher
  Ben: teacher
synthetic: true
---
Facilitator: How do students show ownership? Tell me more.
Ana: They track goals on the data walls. It builds trust.
Ben: Um, and they get voice and choice.
It changed the culture of the room.
"""


@pytest.fixture
def make_study(tmp_path):
    """Build a small valid study in tmp_path; pass overrides as {relative path: text or bytes}."""

    def _make(files: dict[str, str | bytes | None] | None = None) -> Path:
        root = tmp_path / "mini"
        base = {
            "study.yaml": MINI_STUDY,
            "codebook.yaml": MINI_CODEBOOK,
            "transcripts/D1/teacher-focus-group.md": MINI_TRANSCRIPT,
        }
        base.update(files or {})
        for rel, content in base.items():
            path = root / rel
            if content is None:
                if path.exists():
                    path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(textwrap.dedent(content) if content.startswith(" ") else content, encoding="utf-8")
        return root

    return _make
