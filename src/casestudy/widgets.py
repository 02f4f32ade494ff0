"""The interactive side: the coding panel of ``notebooks/code_transcripts.ipynb`` and the
launcher of ``casestudy lab``.

:class:`CodingPanel` is built with ipywidgets. Every button calls one function of
:mod:`casestudy.coding`, which writes the event to the coder's file at once; the panel then
re-reads the file, so what it shows is always what is on disk. Errors are shown in the panel,
never raised into the notebook.
"""

from __future__ import annotations

import html
import importlib.resources
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from . import coding
from .errors import CasestudyError, UsageError
from .files import atomic_write_bytes, check_name

if TYPE_CHECKING:
    from .codebook import Codebook
    from .study import Study
    from .transcripts import Transcript, Turn

log = logging.getLogger("casestudy")

WHOLE_TURN = "__turn__"
LAB_NOTEBOOK = "code_transcripts.ipynb"


def code_options(codebook: Codebook) -> list[tuple[str, str]]:
    """(label, code id) for a dropdown, each code under its parent, groups in codebook order."""
    options: list[tuple[str, str]] = []

    def add(code_id: str, depth: int, seen: set[str]) -> None:
        if code_id in seen:
            return
        seen.add(code_id)
        code = codebook.codes[code_id]
        indent = "\u00a0\u00a0\u00a0" * depth + ("\u2514 " if depth else "")
        options.append((f"{indent}{code.label}", code.id))
        for child in codebook.children(code_id):
            add(child, depth + 1, seen)

    seen: set[str] = set()
    for group in codebook.groups:
        for code in codebook.roots(group):
            add(code.id, 0, seen)
    for code_id in codebook.codes:  # anything left (a code in an unlisted group)
        add(code_id, 0, seen)
    return options


_PATTERN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*/\d+$")


def _evidence(suggestion: dict[str, Any], codebook: Codebook | None = None) -> str:
    """Why a suggestion was made, in words: for each match, which pattern matched which words,
    with the pattern's id and its line in ``codebook.yaml`` when the codebook has it::

        phrase "data wall" matched "data walls" (data-walls/1, line 391); tokens [...] matched "the trackers" (...)

    The explanation stored with the match is used when there is one (it describes the pattern
    as it was when the suggestion was made); otherwise it is made from the codebook's pattern
    of that id and the words. Never a raw record."""
    patterns = {p.id: p for p in codebook.patterns()} if codebook is not None else {}
    evidence = suggestion.get("evidence")
    items = evidence if isinstance(evidence, list) else [evidence] if evidence else []
    parts = []
    for item in items:
        if not isinstance(item, dict):
            parts.append(str(item))
            continue
        pattern_id = str(item.get("pattern") or suggestion.get("pattern") or "")
        pattern = patterns.get(pattern_id)
        words = item.get("words")
        explanation = item.get("explanation")
        if not explanation:
            if pattern is not None:
                what = pattern.describe()
            elif _PATTERN_ID.match(pattern_id):
                what = f"pattern {pattern_id}"
            else:
                what = pattern_id or "a pattern"  # an older file that described the pattern in 'pattern'
            explanation = f'{what} matched "{words}"' if words else what
        where = [pattern_id] if _PATTERN_ID.match(pattern_id) else []
        if pattern is not None and pattern.line:
            where.append(f"line {pattern.line}")
        parts.append(f"{explanation} ({', '.join(where)})" if where else str(explanation))
    if parts:
        return "; ".join(parts)
    pattern_id = str(suggestion.get("pattern", "?"))
    pattern = patterns.get(pattern_id)
    return f"{pattern.describe()} ({pattern_id})" if pattern is not None else f"pattern {pattern_id}"


class CodingPanel:
    """Step through one session's turns and code them as ``coder``."""

    def __init__(self, study: Study, coder: str, district: str | None = None, source: str | None = None,
                 suggester: str = "auto"):
        self.study = study
        self.coder = check_name(coder, "coder")
        self.suggester = check_name(suggester, "suggester")
        districts = [d for d in study.districts if study.sources(d)]
        if not districts:
            raise UsageError("the study has no transcripts to code")
        if source is not None:
            district = study.source(source).district
        if district is not None:
            study.district(district)
        self.district = w.Dropdown(description="District", options=districts,
                                   value=district if district in districts else districts[0])
        self.session = w.Dropdown(description="Session", layout=w.Layout(width="480px"))
        self.turn_index = w.BoundedIntText(description="Turn", min=1, max=1, value=1, layout=w.Layout(width="180px"))
        self.prev_button = w.Button(description="\u25c0 Previous")
        self.next_button = w.Button(description="Next \u25b6")
        self.turn_view = w.HTML()
        self.target = w.Dropdown(description="Code", layout=w.Layout(width="640px"))
        self.code = w.Dropdown(description="with", options=code_options(study.codebook), layout=w.Layout(width="420px"))
        self.memo = w.Textarea(placeholder="memo (optional)", layout=w.Layout(width="640px", height="48px"))
        self.apply_button = w.Button(description="Apply code", button_style="primary")
        self.codings_box = w.VBox()
        self.suggestions_box = w.VBox()
        self.status = w.HTML()
        self.coding_rows: dict[str, tuple[w.Textarea, w.Button, w.Button]] = {}
        self.suggestion_rows: dict[str, tuple[w.Button, w.Button]] = {}

        self._fill_sessions()
        if source is not None:
            self.session.value = source
        self.district.observe(lambda _change: self._fill_sessions(), names="value")
        self.session.observe(lambda _change: self._session_changed(), names="value")
        self.turn_index.observe(lambda _change: self.refresh(), names="value")
        self.prev_button.on_click(lambda _b: self.step(-1))
        self.next_button.on_click(lambda _b: self.step(1))
        self.apply_button.on_click(lambda _b: self._guard(self.apply))
        self._session_changed()

        self.widget = w.VBox([
            w.HTML(f"<b>Coding as {html.escape(self.coder)}</b> (writes to codings/{html.escape(self.coder)}.jsonl)"),
            w.HBox([self.district, self.session]),
            w.HBox([self.prev_button, self.turn_index, self.next_button]),
            self.turn_view,
            w.HTML("<b>Suggestions for this turn</b>"), self.suggestions_box,
            w.HTML("<b>Your codings on this turn</b>"), self.codings_box,
            w.HTML("<b>Apply a code</b>"), self.target, w.HBox([self.code, self.apply_button]), self.memo,
            self.status,
        ])

    # ------------------------------------------------------------------ navigation

    @property
    def transcript(self) -> Transcript:
        return self.study.source(self.session.value)

    @property
    def turn(self) -> Turn:
        return self.transcript.turns[self.turn_index.value - 1]

    def _fill_sessions(self) -> None:
        options = [(self.study.source_label(t) + f" ({t.id})", t.id) for t in self.study.sources(self.district.value)]
        self.session.options = options
        if options and self.session.value not in [v for _, v in options]:
            self.session.value = options[0][1]

    def _session_changed(self) -> None:
        if self.session.value is None:
            return
        turns = len(self.transcript.turns)
        self.turn_index.max = max(1, turns)
        if self.turn_index.value == 1:
            self.refresh()
        else:
            self.turn_index.value = 1  # refreshes through the observer

    def step(self, delta: int) -> None:
        self.turn_index.value = min(max(1, self.turn_index.value + delta), self.turn_index.max)

    def go_to(self, turn_id: str) -> None:
        source_id = turn_id.split("#", 1)[0]
        if self.session.value != source_id:
            transcript = self.study.source(source_id)
            self.district.value = transcript.district
            self.session.value = source_id
        turn = self.transcript.turn(turn_id)
        if turn is None:
            raise UsageError(f"unknown turn {turn_id!r}")
        self.turn_index.value = turn.index

    # ------------------------------------------------------------------ what is shown

    def codings_here(self) -> list[coding.Coding]:
        if not coding.coder_path(self.study, self.coder).exists():
            return []
        turn = self.turn
        return [c for c in coding.load_codings(self.study, self.coder)
                if c.source == self.transcript.id and c.status != "stale" and c.start < turn.end and turn.start < c.end]

    def suggestions_here(self) -> list[dict[str, Any]]:
        turn = self.turn
        return [s for s in coding.pending_suggestions(self.study, self.coder, self.suggester, self.transcript.id)
                if s["anchor"]["start"] < turn.end and turn.start < s["anchor"]["end"]]

    def refresh(self) -> None:
        turn = self.turn
        here = self.codings_here()
        labels = {c.id: c.label for c in self.study.codebook.codes.values()}
        role = self.study.config.roles.get(turn.role or "", turn.role or "unknown role")
        lines = [f"<div><b>{html.escape(turn.speaker)}</b> <i>({html.escape(role)})</i> &middot; turn {turn.index} of "
                 f"{len(self.transcript.turns)} &middot; {html.escape(self.transcript.path)}, line {turn.line}</div>"]
        for s in turn.sentences:
            codes = sorted({labels.get(c.code, c.code) for c in here if c.start < s.end and s.start < c.end})
            tag = f" <span style='color:#1565c0'>[{html.escape(', '.join(codes))}]</span>" if codes else ""
            lines.append(f"<div style='margin-left:1em'><code>{s.id.rsplit('.', 1)[-1]}</code> {html.escape(s.text)}{tag}</div>")
        self.turn_view.value = "".join(lines)
        self.target.options = [(f"{s.id.rsplit('.', 1)[-1]}: {s.text[:80]}", s.id) for s in turn.sentences] + \
                              [("the whole turn", WHOLE_TURN)]
        self._show_codings(here, labels)
        self._show_suggestions(labels)

    def _show_codings(self, here: list[coding.Coding], labels: dict[str, str]) -> None:
        rows = []
        self.coding_rows = {}
        for c in here:
            memo = w.Textarea(value=c.memo or "", placeholder="memo", layout=w.Layout(width="360px", height="36px"))
            save = w.Button(description="Save memo")
            remove = w.Button(description="Remove", button_style="danger")
            save.on_click(lambda _b, cid=c.id, box=memo: self._guard(lambda: self.save_memo(cid, box.value)))
            remove.on_click(lambda _b, cid=c.id: self._guard(lambda: self.remove(cid)))
            self.coding_rows[c.id] = (memo, save, remove)
            where = "turn" if c.sentence is None else c.sentence.rsplit(".", 1)[-1]
            text = f"<b>{html.escape(labels.get(c.code, c.code))}</b> on {where} <i>({html.escape(c.origin)})</i>"
            rows.append(w.HBox([w.HTML(text, layout=w.Layout(width="320px")), memo, save, remove]))
        self.codings_box.children = rows or [w.HTML("<i>none</i>")]

    def _show_suggestions(self, labels: dict[str, str]) -> None:
        rows = []
        self.suggestion_rows = {}
        for s in self.suggestions_here():
            accept = w.Button(description="Accept", button_style="success")
            reject = w.Button(description="Reject")
            accept.on_click(lambda _b, sug=s: self._guard(lambda: self.accept(sug)))
            reject.on_click(lambda _b, sug=s: self._guard(lambda: self.reject(sug)))
            self.suggestion_rows[s["id"]] = (accept, reject)
            where = (s["anchor"].get("sentence") or "turn").rsplit(".", 1)[-1]
            text = (f"<b>{html.escape(labels.get(s['code'], s['code']))}</b> on {where}: "
                    f"<span style='color:#555'>{html.escape(_evidence(s, self.study.codebook))}</span>")
            rows.append(w.HBox([w.HTML(text, layout=w.Layout(width="640px")), accept, reject]))
        self.suggestions_box.children = rows or [w.HTML("<i>none</i>")]

    # ------------------------------------------------------------------ actions (each one library call)

    def _guard(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except CasestudyError as exc:
            self.status.value = f"<span style='color:#b71c1c'>{html.escape(str(exc))}</span>"

    def _done(self, message: str) -> None:
        self.refresh()
        self.status.value = f"<span style='color:#2e7d32'>{html.escape(message)}</span>"

    def apply(self, code: str | None = None, target: str | None = None, memo: str | None = None) -> coding.Coding:
        code = code or self.code.value
        target = target or self.target.value
        memo = self.memo.value if memo is None else memo
        if target == WHOLE_TURN:
            result = coding.apply_code_to_turn(self.study, self.coder, code, self.turn.id, memo or None)
        else:
            result = coding.apply_code_to_sentence(self.study, self.coder, code, target, memo or None)
        self.memo.value = ""
        self._done(f"applied {code} ({result.id})")
        return result

    def remove(self, coding_id: str) -> None:
        coding.remove_coding(self.study, self.coder, coding_id)
        self._done(f"removed {coding_id}")

    def save_memo(self, coding_id: str, memo: str) -> None:
        coding.edit_memo(self.study, self.coder, coding_id, memo)
        self._done(f"memo saved on {coding_id}")

    def accept(self, suggestion: dict[str, Any]) -> coding.Coding:
        result = coding.accept_suggestion(self.study, self.coder, suggestion)
        self._done(f"accepted {suggestion['code']} ({result.id})")
        return result

    def reject(self, suggestion: dict[str, Any]) -> None:
        coding.reject_suggestion(self.study, self.coder, suggestion)
        self._done(f"rejected {suggestion['code']} on {suggestion['anchor'].get('sentence') or 'the turn'}")


def coding_panel(study: Study, coder: str, district: str | None = None, source: str | None = None,
                 suggester: str = "auto") -> w.VBox:
    """The coding panel's widget, ready to display in a notebook."""
    return CodingPanel(study, coder, district, source, suggester).widget


# --------------------------------------------------------------------------- casestudy lab


def notebook_templates() -> list[Path]:
    """The notebooks shipped with casestudy (in the package, or in a source checkout)."""
    found: dict[str, Path] = {}
    candidates = [Path(str(importlib.resources.files("casestudy") / "notebooks")),
                  Path(__file__).resolve().parents[2] / "notebooks"]
    for folder in candidates:
        if folder.is_dir():
            for path in sorted(folder.glob("*.ipynb")):
                found.setdefault(path.name, path)
    return list(found.values())


def prepare_notebooks(study_root: Path) -> list[Path]:
    """Copy the shipped notebooks into ``<study>/notebooks/`` where they are missing (never
    overwriting a notebook the team has changed); return the ones copied."""
    folder = Path(study_root) / "notebooks"
    folder.mkdir(exist_ok=True)
    copied = []
    for template in notebook_templates():
        target = folder / template.name
        if not target.exists():
            atomic_write_bytes(target, template.read_bytes())
            copied.append(target)
    return copied


def lab_command(study_root: Path, port: int | None = None, browser: bool = True) -> list[str]:
    """JupyterLab from this Python (so its kernel imports this casestudy: Jupyter starts the
    ``python3`` kernel with the Python that runs the server), rooted at the study, listening on
    localhost only, with the news feed, update check and extension manager off.

    Run as root (a container, most often), JupyterLab refuses to start unless told
    ``--allow-root``; the server listens on localhost only, so it is told, with a warning."""
    command = [
        sys.executable, "-m", "jupyterlab",
        f"--ServerApp.root_dir={Path(study_root).resolve()}",
        "--ServerApp.ip=127.0.0.1",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        f"--ServerApp.default_url=/lab/tree/notebooks/{LAB_NOTEBOOK}",
    ]
    if port is not None:
        command.append(f"--ServerApp.port={port}")
    if not browser:
        command.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        log.warning("running as root: JupyterLab is started with --allow-root (it listens on 127.0.0.1 only)")
        command.append("--allow-root")
    return command


def launch_lab(study_root: Path, port: int | None = None, browser: bool = True) -> int:
    """Prepare the notebooks and run JupyterLab until it is stopped; return its exit code."""
    for path in prepare_notebooks(study_root):
        log.info("copied %s", path)
    return subprocess.run(lab_command(study_root, port, browser), cwd=Path(study_root), check=False).returncode
