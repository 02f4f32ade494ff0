"""Helpers for building small transcripts in tests."""

from __future__ import annotations

import textwrap


def session_text(source_type: str, participants: dict[str, str], body: str, *, district: str = "D1",
                 date: str = "2023-10-02", school: str = "School One") -> str:
    """A Markdown transcript: front matter (a Facilitator plus ``participants``), then ``body``."""
    people = "\n".join(f"  {name}: {role}" for name, role in {"Facilitator": "facilitator", **participants}.items())
    return (f"---\ndistrict: {district}\nschool: {school}\nsource_type: {source_type}\ndate: {date}\n"
            f"facilitator: Facilitator\nparticipants:\n{people}\nsynthetic: true\n---\n{textwrap.dedent(body).lstrip()}")
