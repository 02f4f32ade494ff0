"""Adjudication: settle two coders' disagreements into a ``consensus`` coder.

A disagreement is one unit (a sentence or a turn) on which one coder applied a code and the
other, who coded the same session, did not (:meth:`StudyAgreement.disagreements`). Each is
settled with a reason, by one of three decisions, written at once to ``codings/consensus.jsonl``
through :mod:`casestudy.coding` (the usual checks, lock and fsync):

- **apply**: the code applies here, as the coder who applied it coded it (clipped to the unit);
  an ``accept`` event naming the disagreement (``suggestion: "<code>@<unit id>"``);
- **reject**: the code does not apply here; a ``reject`` event naming the disagreement;
- **recode**: a new coding instead (another code and/or the whole turn); a ``reject`` of the
  disputed code when the code differs, and an ``accept`` of the new coding.

Every consensus coding has the origin ``consensus:<coderA>,<coderB>`` and a ``reason``. Before
the first decision the units both coders coded with the same code are copied in as agreed
codings (reason ``agreed: ...``), so the consensus coder is a complete coding of the sessions
both coded: agreed codings plus settled disagreements (unsettled ones are left out until
settled). Deciding a disagreement again replaces the earlier decision (its codings are removed).

:func:`report_coder` picks whose codings a report counts. :class:`AdjudicationPanel` is the
ipywidgets front end of ``notebooks/adjudicate.ipynb``; each button is one call of
:class:`Adjudication`.
"""

from __future__ import annotations

import html
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import coding
from .agreement import CONSENSUS, Disagreement, StudyAgreement, human_coders, study_agreement
from .coding import AcceptEvent, Coding, RejectEvent, RemoveEvent
from .errors import CasestudyError, UsageError
from .files import check_name

if TYPE_CHECKING:
    from .study import Study

log = logging.getLogger("casestudy")

ACTIONS = ("apply", "reject", "recode")
SCOPES = ("unit", "turn")


# --------------------------------------------------------------------------- which coder a report counts


def _has_codings(study: Study, coder: str, district: str | None = None) -> bool:
    path = coding.coder_path(study, coder)
    if not path.exists():
        return False
    events, _ = coding.read_events(path)
    codings = coding.replay(events).values()
    if district is None:
        return bool(codings)
    sources = {t.id for t in study.sources(district)}
    return any(c.source in sources for c in codings)


def report_coder(study: Study, requested: str | None = None, district: str | None = None) -> str | None:
    """The coder whose codings a report counts: ``requested`` if given and it has codings, else
    ``consensus`` if it has codings, else the first other coder with codings in alphabetical
    order, else ``None``. With ``district``, only codings of that district's sessions count,
    so a district the team has not adjudicated yet is reported from a coder who coded it."""
    if requested:
        check_name(requested, "coder")
        if _has_codings(study, requested, district):
            return requested
        log.warning("coder %r has no codings%s; choosing the report's coder as usual", requested,
                    f" in {district}" if district else "")
    if _has_codings(study, CONSENSUS, district):
        return CONSENSUS
    for coder in human_coders(study):
        if _has_codings(study, coder, district):
            return coder
    return None


# --------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """How one disagreement was settled (the latest decision on it)."""

    disagreement: str
    action: str  # apply | reject | recode
    code: str  # the code applied (apply, recode) or rejected (reject)
    reason: str | None
    at: str
    codings: tuple[str, ...] = ()  # consensus coding ids it wrote


def _reason(reason: str | None) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError("a decision needs a reason (why the code does or does not apply here)")
    return " ".join(reason.split())


class Adjudication:
    """The disagreements of two coders in a district (or all), and the consensus decisions on them."""

    def __init__(self, study: Study, coders: Iterable[str] | None = None, district: str | None = None,
                 unit: str = "sentence", consensus: str = CONSENSUS, result: StudyAgreement | None = None):
        if isinstance(coders, str):
            coders = coders.split(",")
        names = [c.strip() for c in coders if c.strip()] if coders is not None else human_coders(study)
        if len(names) != 2:
            raise UsageError(f"adjudication settles the disagreements of two coders; got {len(names)} "
                             f"({', '.join(names) or 'none'}): name two with coders=[...]")
        self.consensus = check_name(consensus, "consensus coder")
        if self.consensus in names:
            raise UsageError(f"the consensus coder {self.consensus!r} cannot also be one of the coders it settles")
        self.study = study
        self.result = result if result is not None else study_agreement(study, names, district, unit)
        self.coders = tuple(self.result.coders)
        self.district = district
        self.unit = unit
        self.origin = f"consensus:{','.join(sorted(self.coders))}"
        self.disagreements = self.result.disagreements()
        self._by_id = {d.id: d for d in self.disagreements}
        self._unit_index = {u.id: i for i, u in enumerate(self.result.units)}
        self._seeded = False

    # ------------------------------------------------------------------ reading the consensus file

    def _events(self) -> list[coding.Event]:
        events, problems = coding.read_events(coding.coder_path(self.study, self.consensus), self.study.root)
        for problem in problems:
            log.warning("%s", problem)
        return events

    def consensus_codings(self) -> list[Coding]:
        events = self._events()
        return list(coding.replay(events).values())

    def decisions(self) -> dict[str, Decision]:
        """The latest decision on each disagreement of this adjudication, by disagreement id.

        Events name their disagreement in ``suggestion``; a ``reject`` directly followed by an
        ``accept`` with the same time and reason is one recode."""
        events = self._events()
        current = coding.replay(events)
        latest: dict[str, Decision] = {}
        previous: dict[str, coding.Event] = {}
        for event in events:
            if not isinstance(event, (AcceptEvent, RejectEvent)) or event.suggestion not in self._by_id:
                continue
            key = event.suggestion
            if isinstance(event, AcceptEvent):
                d = self._by_id[key]
                before = previous.get(key)
                paired = isinstance(before, RejectEvent) and before.at == event.at and before.reason == event.reason
                recode = paired or event.code != d.code or (event.anchor.start, event.anchor.end) != self._clip(d)
                latest[key] = Decision(key, "recode" if recode else "apply", event.code, event.reason, event.at, (event.coding,))
            else:
                latest[key] = Decision(key, "reject", event.code, event.reason, event.at, ())
            previous[key] = event
        return {key: Decision(d.disagreement, d.action, d.code, d.reason, d.at, tuple(c for c in d.codings if c in current))
                for key, d in latest.items()}

    def pending(self) -> list[Disagreement]:
        decided = self.decisions()
        return [d for d in self.disagreements if d.id not in decided]

    def progress(self) -> tuple[int, int]:
        """(settled, all) disagreements."""
        decided = self.decisions()
        return sum(1 for d in self.disagreements if d.id in decided), len(self.disagreements)

    def progress_rows(self) -> list[dict[str, Any]]:
        """Per code: disagreements, how many were applied, rejected, recoded, and how many are pending."""
        decided = self.decisions()
        rows: dict[str, Counter] = {}
        for d in self.disagreements:
            counter = rows.setdefault(d.code, Counter())
            counter["disagreements"] += 1
            counter[decided[d.id].action if d.id in decided else "pending"] += 1
        return [{"code": code, "label": self.result.labels.get(code, code), "disagreements": c["disagreements"],
                 "applied": c["apply"], "rejected": c["reject"], "recoded": c["recode"], "pending": c["pending"]}
                for code, c in rows.items()]

    # ------------------------------------------------------------------ context for a disagreement

    def unit_index(self, d: Disagreement) -> int:
        return self._unit_index[d.unit.id]

    def codes_on_unit(self, d: Disagreement) -> dict[str, list[str]]:
        """Every code each coder applied to the disagreement's unit (for context: a sibling code?)."""
        index = self.unit_index(d)
        found: dict[str, list[str]] = {c: [] for c in self.coders}
        for code in self.result.labels:
            matrix = self.result.applied.get(code)
            if matrix is None:
                continue
            for j, coder in enumerate(self.coders):
                if matrix[index, j] and self.result.seen[index, j]:
                    found[coder].append(code)
        return found

    def _clip(self, d: Disagreement) -> tuple[int, int]:
        """The span the applying coder's codings cover within the unit (the unit when they cover all of it)."""
        u = d.unit
        parts = [(max(c.start, u.start), min(c.end, u.end)) for c in d.codings if c.start < u.end and u.start < c.end]
        if not parts:
            return u.start, u.end
        return min(p[0] for p in parts), max(p[1] for p in parts)

    # ------------------------------------------------------------------ writing

    def _write_apply(self, d: Disagreement | None, code: str, source: str, start: int, end: int, reason: str,
                     when: str, memo: str | None = None) -> Coding:
        """Write one consensus coding (an ``apply`` for an agreed one, else an ``accept`` naming the
        disagreement). A decision that lands on a span the consensus already has with the same code
        replaces that coding, so there are never two of one code on one span."""
        transcript = self.study.source(source)
        anchor = coding.make_anchor(transcript, start, end)
        if d is not None:
            for existing in self.consensus_codings():
                if (existing.code, existing.source, existing.start, existing.end) == (code, source, start, end):
                    coding.append_event(self.study, RemoveEvent(coder=self.consensus, at=when, coding=existing.id))
        salt = d.id if d is not None else "agreed"
        coding_id = coding.new_coding_id(self.consensus, code, source, start, end, when, salt)
        if d is None:
            event: coding.ApplyEvent = coding.ApplyEvent(coder=self.consensus, at=when, coding=coding_id, code=code, source=source,
                                                         anchor=anchor, origin=self.origin, reason=reason, memo=memo)
        else:
            event = AcceptEvent(coder=self.consensus, at=when, coding=coding_id, code=code, source=source, anchor=anchor,
                                origin=self.origin, reason=reason, memo=memo, suggestion=d.id)
        coding.append_event(self.study, event)
        return coding._coding_of(event)

    def _write_reject(self, d: Disagreement, reason: str, when: str) -> RejectEvent:
        transcript = self.study.source(d.unit.source)
        anchor = coding.make_anchor(transcript, d.unit.start, d.unit.end)
        event = RejectEvent(coder=self.consensus, at=when, suggestion=d.id, code=d.code, source=d.unit.source,
                            anchor=anchor, reason=reason)
        return coding.append_event(self.study, event)  # type: ignore[return-value]

    def seed(self, at: datetime | str | None = None) -> int:
        """Copy every agreed (unit, code) into the consensus coder (once; idempotent); return how many were written."""
        when = coding.format_time(at)
        have = {(c.code, c.source, c.start, c.end) for c in self.consensus_codings()}
        written = 0
        both = " and ".join(self.coders)
        for code, index, codings in self.result.agreements():
            u = self.result.units[index]
            parts = [(max(c.start, u.start), min(c.end, u.end)) for c in codings]
            start, end = (min(p[0] for p in parts), max(p[1] for p in parts)) if parts else (u.start, u.end)
            if (code, u.source, start, end) in have:
                continue
            self._write_apply(None, code, u.source, start, end, f"agreed: {both} both applied it", when)
            have.add((code, u.source, start, end))
            written += 1
        self._seeded = True
        return written

    def _prepare(self, d: Disagreement | str, at: datetime | str | None) -> tuple[Disagreement, str]:
        if isinstance(d, str):
            if d not in self._by_id:
                raise UsageError(f"no disagreement {d!r} between {' and '.join(self.coders)} here")
            d = self._by_id[d]
        when = coding.format_time(at)
        if not self._seeded:
            self.seed(when)
        self._undo(d, when)
        return d, when

    def _undo(self, d: Disagreement, when: str) -> None:
        previous = self.decisions().get(d.id)
        if previous is None:
            return
        current = {c.id for c in self.consensus_codings()}
        for coding_id in previous.codings:
            if coding_id in current:
                coding.append_event(self.study, RemoveEvent(coder=self.consensus, at=when, coding=coding_id))

    def apply(self, d: Disagreement | str, reason: str, *, at: datetime | str | None = None) -> Coding:
        """The code applies: write it as the coder(s) who applied it coded it, within the unit."""
        reason = _reason(reason)
        d, when = self._prepare(d, at)
        start, end = self._clip(d)
        return self._write_apply(d, d.code, d.unit.source, start, end, reason, when)

    def reject(self, d: Disagreement | str, reason: str, *, at: datetime | str | None = None) -> RejectEvent:
        """The code does not apply to the unit."""
        reason = _reason(reason)
        d, when = self._prepare(d, at)
        return self._write_reject(d, reason, when)

    def recode(self, d: Disagreement | str, code: str, reason: str, scope: str = "unit",
               span: tuple[int, int] | None = None, *, at: datetime | str | None = None) -> Coding:
        """A new coding instead: ``code`` on the unit (``scope="unit"``), its whole turn
        (``"turn"``) or an exact ``span`` of the source; the disputed code is rejected when it differs."""
        reason = _reason(reason)
        if code not in self.study.codebook.codes:
            raise UsageError(f"code {code!r} is not in the codebook")
        if scope not in SCOPES:
            raise UsageError(f"scope {scope!r}: choose one of {', '.join(SCOPES)}")
        key = d.id if isinstance(d, Disagreement) else d
        target = self._by_id.get(key)
        if target is None:
            raise UsageError(f"no disagreement {key!r} between {' and '.join(self.coders)} here")
        u = target.unit
        if span is not None:
            start, end = span
        elif scope == "turn":
            turn = self.study.source(u.source).turn(u.turn)
            start, end = turn.start, turn.end
        else:
            start, end = u.start, u.end
        if (code, start, end) == (target.code, *self._clip(target)):
            raise UsageError("that is the disputed coding itself: use apply")
        coding.make_anchor(self.study.source(u.source), start, end)  # refuse a bad span before writing anything
        d, when = self._prepare(target, at)
        if code != d.code:
            self._write_reject(d, reason, when)
        return self._write_apply(d, code, u.source, start, end, reason, when)

    def decide(self, d: Disagreement | str, action: str, reason: str, code: str | None = None, scope: str = "unit",
               *, at: datetime | str | None = None) -> Any:
        """One entry point for scripts: ``action`` is apply, reject or recode (with ``code``)."""
        if action == "apply":
            return self.apply(d, reason, at=at)
        if action == "reject":
            return self.reject(d, reason, at=at)
        if action == "recode":
            if not code:
                raise UsageError("recode needs the new code")
            return self.recode(d, code, reason, scope, at=at)
        raise UsageError(f"unknown decision {action!r}; choose one of {', '.join(ACTIONS)}")


def consensus_progress(study: Study, coders: Iterable[str] | None = None, district: str | None = None,
                       unit: str = "sentence", result: StudyAgreement | None = None) -> tuple[int, int]:
    """(settled, all) disagreements of two coders in the consensus coder's file."""
    return Adjudication(study, coders, district, unit, result=result).progress()


# --------------------------------------------------------------------------- the notebook's panel


class AdjudicationPanel:
    """Step through the disagreements and settle each one with a reason (ipywidgets)."""

    def __init__(self, adjudication: Adjudication, pending_only: bool = True):
        import ipywidgets as w

        from .widgets import code_options

        self.adj = adjudication
        self.study = adjudication.study
        self.labels = adjudication.result.labels
        codes = sorted({d.code for d in adjudication.disagreements}, key=list(self.labels).index)
        self.filter_code = w.Dropdown(description="Code", options=[("every code", "")] + [(self.labels[c], c) for c in codes])
        self.pending_only = w.Checkbox(value=pending_only, description="pending only")
        self.prev_button = w.Button(description="\u25c0 Previous")
        self.next_button = w.Button(description="Next \u25b6")
        self.position = w.HTML()
        self.view = w.HTML()
        self.reason = w.Textarea(placeholder="reason (required): why the code does or does not apply here",
                                 layout=w.Layout(width="640px", height="56px"))
        self.apply_button = w.Button(description="Apply", button_style="success", layout=w.Layout(width="auto"))
        self.reject_button = w.Button(description="Reject", button_style="warning", layout=w.Layout(width="auto"))
        self.new_code = w.Dropdown(description="New code", options=code_options(self.study.codebook), layout=w.Layout(width="420px"))
        self.scope = w.Dropdown(description="on", options=[(f"this {adjudication.unit}", "unit"), ("the whole turn", "turn")],
                                layout=w.Layout(width="220px"))
        self.recode_button = w.Button(description="Write new coding", button_style="primary")
        self.status = w.HTML()
        self.items: list[Disagreement] = []
        self.index = 0
        self.filter_code.observe(lambda _c: self._refilter(), names="value")
        self.pending_only.observe(lambda _c: self._refilter(), names="value")
        self.prev_button.on_click(lambda _b: self.step(-1))
        self.next_button.on_click(lambda _b: self.step(1))
        self.apply_button.on_click(lambda _b: self._guard(lambda: self.decide("apply")))
        self.reject_button.on_click(lambda _b: self._guard(lambda: self.decide("reject")))
        self.recode_button.on_click(lambda _b: self._guard(lambda: self.decide("recode")))
        self._refilter()
        coders = " and ".join(adjudication.coders)
        self.widget = w.VBox([
            w.HTML(f"<b>Adjudicating {html.escape(coders)}</b> (decisions go to codings/{html.escape(adjudication.consensus)}.jsonl, "
                   f"origin {html.escape(adjudication.origin)})"),
            w.HBox([self.filter_code, self.pending_only]),
            w.HBox([self.prev_button, self.position, self.next_button]),
            self.view, self.reason,
            w.HBox([self.apply_button, self.reject_button]),
            w.HBox([self.new_code, self.scope, self.recode_button]),
            self.status,
        ])

    @property
    def current(self) -> Disagreement | None:
        return self.items[self.index] if self.items else None

    def _refilter(self) -> None:
        decided = self.adj.decisions()
        code = self.filter_code.value
        self.items = [d for d in self.adj.disagreements
                      if (not code or d.code == code) and (not self.pending_only.value or d.id not in decided)]
        self.index = min(self.index, max(0, len(self.items) - 1))
        self.refresh(decided)

    def step(self, delta: int) -> None:
        if self.items:
            self.index = min(max(0, self.index + delta), len(self.items) - 1)
        self.refresh()

    def refresh(self, decided: dict[str, Decision] | None = None) -> None:
        decided = self.adj.decisions() if decided is None else decided
        settled, total = sum(1 for d in self.adj.disagreements if d.id in decided), len(self.adj.disagreements)
        d = self.current
        self.position.value = (f"&nbsp;{self.index + 1 if d else 0} of {len(self.items)} shown &middot; "
                               f"{settled} of {total} settled&nbsp;")
        if d is None:
            self.view.value = "<i>No disagreement to show (all settled, or none for this filter).</i>"
            self.apply_button.description = self.reject_button.description = "\u2014"
            return
        self.view.value = self.describe(d, decided.get(d.id))
        label = self.labels.get(d.code, d.code)
        self.apply_button.description = f"Apply {label} (as {', '.join(d.applied_by)})"
        self.reject_button.description = f"Not {label} (as {', '.join(d.not_applied_by)})"

    def describe(self, d: Disagreement, decision: Decision | None = None) -> str:
        u = d.unit
        transcript = self.study.source(u.source)
        turn = transcript.turn(u.turn)
        role = self.study.config.roles.get(u.role or "", u.role or "unknown role")
        context = html.escape(turn.text[: u.start - turn.start]) + "<mark>" + html.escape(u.text) + "</mark>" + \
            html.escape(turn.text[u.end - turn.start:]) if turn is not None and u.kind == "sentence" else f"<mark>{html.escape(u.text)}</mark>"
        code = self.study.codebook.codes.get(d.code)
        others = self.adj.codes_on_unit(d)
        parts = [
            f"<div><b>{html.escape(self.labels.get(d.code, d.code))}</b> on {html.escape(u.id)} &middot; "
            f"{html.escape(self.study.source_label(transcript))} &middot; {html.escape(u.path)}, line {u.line}</div>",
            f"<div>applied by <b>{html.escape(', '.join(d.applied_by))}</b>; not by <b>{html.escape(', '.join(d.not_applied_by))}</b></div>",
            f"<div style='margin:.4em 0 .4em 1em'><b>{html.escape(u.speaker)}</b> <i>({html.escape(role)})</i>: {context}</div>",
        ]
        if code is not None:
            parts.append(f"<div style='color:#555'>Definition: {html.escape(code.definition)}"
                         + (f" Use when: {html.escape(code.use_when)}" if code.use_when else "")
                         + (f" Not when: {html.escape(code.not_when)}" if code.not_when else "") + "</div>")
        for coder, codes in others.items():
            names = ", ".join(self.labels.get(c, c) for c in codes) or "nothing"
            parts.append(f"<div>{html.escape(coder)} coded this {u.kind} with: {html.escape(names)}</div>")
        for c in d.codings:
            extent = "the whole turn" if c.sentence is None else "the sentence" if c.sentence == u.id else f"{c.start}..{c.end}"
            memo = f" &middot; memo: {html.escape(c.memo)}" if c.memo else ""
            parts.append(f"<div style='color:#555'>{html.escape(c.coder)}'s coding {c.id}: {extent}{memo}</div>")
        if decision is not None:
            parts.append(f"<div style='color:#2e7d32'>Settled: {decision.action} {html.escape(self.labels.get(decision.code, decision.code))}"
                         f" ({html.escape(decision.reason or '')}); deciding again replaces it.</div>")
        return "".join(parts)

    def _guard(self, action: Callable[[], Any]) -> None:
        try:
            action()
        except CasestudyError as exc:
            self.status.value = f"<span style='color:#b71c1c'>{html.escape(str(exc))}</span>"

    def decide(self, action: str) -> Any:
        d = self.current
        if d is None:
            raise UsageError("no disagreement selected")
        result = self.adj.decide(d, action, self.reason.value, code=self.new_code.value, scope=self.scope.value)
        self.reason.value = ""
        message = f"{action}: {d.id}"
        if self.pending_only.value:
            self._refilter()  # the settled one drops out; the next one moves up
        else:
            self.step(1)
        self.status.value = f"<span style='color:#2e7d32'>{html.escape(message)}</span>"
        return result


def adjudication_panel(study: Study, coders: Iterable[str] | str | None = None, district: str | None = None,
                       unit: str = "sentence") -> Any:
    """The adjudication panel's widget, ready to display in a notebook."""
    return AdjudicationPanel(Adjudication(study, coders, district, unit)).widget
