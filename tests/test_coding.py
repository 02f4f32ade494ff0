"""Coder files: writing events safely, refusing bad ones, reading torn files, replay and re-anchoring."""

import json
import multiprocessing
from pathlib import Path

import pytest
from filelock import FileLock

from casestudy import coding
from casestudy.coding import AcceptEvent, ApplyEvent, MemoEvent, RejectEvent, RemoveEvent
from casestudy.errors import DataError, UsageError
from casestudy.study import load_study

SOURCE = "D1/teacher-focus-group"
TRANSCRIPT = "transcripts/D1/teacher-focus-group.md"
T0 = "2026-01-05T09:00:00Z"


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def study(make_study):
    return load_study(make_study())


def sentence(study, sentence_id):
    return next(s for s in study.source(sentence_id.split("#")[0]).sentences if s.id == sentence_id)


# --------------------------------------------------------------------------- writing and replay


def test_apply_memo_remove_replay(study):
    walls = coding.apply_code_to_sentence(study, "ana", "data-walls", f"{SOURCE}#t002.s01", memo="walls", at=T0)
    turn = coding.apply_code_to_turn(study, "ana", "agency", f"{SOURCE}#t003", at="2026-01-05T09:01:00Z")
    coding.edit_memo(study, "ana", turn.id, "the whole turn is about choice", at="2026-01-05T09:02:00Z")
    coding.remove_coding(study, "ana", walls.id, at="2026-01-05T09:03:00Z")

    path = study.root / "codings" / "ana.jsonl"
    raw = [json.loads(line) for line in lines_of(path)]
    assert [e["event"] for e in raw] == ["apply", "apply", "memo", "remove"]
    assert all(e["v"] == 1 and e["coder"] == "ana" for e in raw)
    first = raw[0]
    assert first["at"] == T0 and first["code"] == "data-walls" and first["origin"] == "human" and first["memo"] == "walls"
    assert first["anchor"] == {"start": walls.start, "end": walls.end, "sentence": f"{SOURCE}#t002.s01",
                               "turn": f"{SOURCE}#t002", "sha256": study.source(SOURCE).sha256,
                               "text": "They track goals on the data walls."}
    assert raw[1]["anchor"]["sentence"] is None  # a whole turn spans two sentences

    events, problems = coding.read_events(path)
    assert problems == []
    assert [type(e) for e in events] == [ApplyEvent, ApplyEvent, MemoEvent, RemoveEvent]
    assert [e.line for e in events] == [1, 2, 3, 4]
    state = coding.replay(events)
    assert list(state) == [turn.id]
    assert state[turn.id].memo == "the whole turn is about choice"
    assert coding.replay(events[:1])[walls.id].memo == "walls"

    loaded = coding.load_codings(study, "ana")
    assert [(c.code, c.text, c.status) for c in loaded] == [
        ("agency", "Um, and they get voice and choice.\nIt changed the culture of the room.", "ok")]
    text = study.source(SOURCE).text
    assert text[loaded[0].start:loaded[0].end] == loaded[0].text


def test_applying_the_same_span_twice_keeps_one_coding(study):
    first = coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    again = coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02")
    assert again == first
    assert len(lines_of(study.root / "codings" / "ana.jsonl")) == 1


def test_memo_or_remove_of_unknown_coding_is_refused(study):
    coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    path = study.root / "codings" / "ana.jsonl"
    before = path.read_bytes()
    with pytest.raises(UsageError, match="has no coding c-000000000000"):
        coding.remove_coding(study, "ana", "c-000000000000")
    with pytest.raises(UsageError, match="has no coding"):
        coding.edit_memo(study, "ana", "c-000000000000", "memo")
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- bad input is refused, nothing written


def apply_event(study, code="agency", start=None, end=None, text=None, sha=None, source=SOURCE, coder="ana", coding_id="c-0123456789ab"):
    s = sentence(study, f"{SOURCE}#t002.s01")
    start = s.start if start is None else start
    end = s.end if end is None else end
    anchor = coding.Anchor(start=start, end=end, sentence=s.id, turn=s.turn_id,
                           sha256=sha or study.source(SOURCE).sha256, text=s.text if text is None else text)
    return ApplyEvent(coder=coder, at=T0, coding=coding_id, code=code, source=source, anchor=anchor)


def test_code_not_in_codebook_is_refused(study):
    with pytest.raises(UsageError, match=r"code 'agenzy' is not in the codebook; did you mean agency"):
        coding.apply_code_to_sentence(study, "ana", "agenzy", f"{SOURCE}#t002.s01")
    with pytest.raises(UsageError, match="refused, nothing written: code 'walls' is not in the codebook"):
        coding.append_event(study.root, apply_event(study, code="walls"))  # from a path: the codebook is read from disk
    assert not (study.root / "codings" / "ana.jsonl").exists()


def test_offsets_outside_the_source_are_refused(study):
    coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    path = study.root / "codings" / "ana.jsonl"
    before = path.read_bytes()
    size = len(study.source(SOURCE).text)
    with pytest.raises(UsageError, match=rf"offsets {size}..{size + 9} are not a range of source 'D1/teacher-focus-group': its text has {size} characters"):
        coding.apply_code(study, "ana", "agency", SOURCE, size, size + 9)
    with pytest.raises(UsageError, match="the start must be below the end"):
        coding.apply_code(study, "ana", "agency", SOURCE, 40, 20)
    for start, end in ((size - 2, size + 5), (-3, 4)):
        with pytest.raises(UsageError, match="offsets-out-of-range|not a range of source"):
            coding.append_event(study, apply_event(study, start=start, end=end))
    assert path.read_bytes() == before


def test_copied_text_and_source_must_match(study):
    with pytest.raises(UsageError, match="is not what 'D1/teacher-focus-group' says"):
        coding.append_event(study, apply_event(study, text="They track goals on the data wall."))
    with pytest.raises(UsageError, match="another version of 'D1/teacher-focus-group'"):
        coding.append_event(study, apply_event(study, sha="0" * 64))
    with pytest.raises(UsageError, match="source 'D1/nope' is not in the study"):
        coding.append_event(study, apply_event(study, source="D1/nope"))
    with pytest.raises(UsageError, match="origin 'robot'"):
        coding.apply_code_to_sentence(study, "ana", "agency", f"{SOURCE}#t002.s01", origin="robot")
    assert not (study.root / "codings").exists() or not list((study.root / "codings").glob("*.jsonl"))


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "ana.jsonl", "x y", "", "/tmp/x", "a\\b"])
def test_coder_name_with_path_characters_is_a_usage_error(study, run, name):
    with pytest.raises(UsageError, match="is not a valid name"):
        coding.coder_path(study.root, name)
    with pytest.raises(UsageError, match="is not a valid name"):
        coding.apply_code_to_sentence(study, name, "agency", f"{SOURCE}#t002.s01")
    result = run("codes", "--study", study.root, "--coder", name)
    assert result.code == 2 and "is not a valid name" in result.err
    assert not (study.root / "codings").exists()
    assert sorted(p.name for p in study.root.parent.iterdir()) == ["mini"]


# --------------------------------------------------------------------------- torn and bad lines


def test_torn_last_line_is_reported_and_earlier_events_survive(study):
    a = coding.apply_code_to_sentence(study, "ana", "data-walls", f"{SOURCE}#t002.s01", at=T0)
    b = coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    path = study.root / "codings" / "ana.jsonl"
    whole = json.dumps(apply_event(study, coding_id="c-aaaaaaaaaaaa").to_dict())
    with path.open("ab") as fh:  # a crash in the middle of writing the third event
        fh.write(whole[: len(whole) // 2].encode())

    events, problems = coding.read_events(path, study.root)
    assert [e.coding for e in events] == [a.id, b.id]
    assert [(p.path, p.line, p.type) for p in problems] == [("codings/ana.jsonl", 3, "torn-line")]
    assert "2 event(s) before it are intact" in problems[0].message
    assert [(p.path, p.line, p.type) for p in coding.validate_codings(study)] == [("codings/ana.jsonl", 3, "torn-line")]
    assert {c.id for c in coding.load_codings(study, "ana")} == {a.id, b.id}

    # the next append keeps the torn line on its own line: nothing earlier or later is lost
    c = coding.apply_code_to_turn(study, "ana", "agency", f"{SOURCE}#t003", at=T0)
    events, problems = coding.read_events(path, study.root)
    assert [e.coding for e in events] == [a.id, b.id, c.id]
    assert [(p.line, p.type) for p in problems] == [(3, "bad-event")]
    assert len(lines_of(path)) == 4


def test_bad_event_in_the_middle_is_reported(study):
    coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    path = study.root / "codings" / "ana.jsonl"
    good = lines_of(path)[0]
    bad = [
        '{"v": 1, "event": "apply", "coder": "ana", "at": "2026-01-05T09:00:00Z"}',
        '{"v": 2, "event": "apply"}',
        '{"v": 1, "event": "zap", "coder": "ana", "at": "2026-01-05T09:00:00Z"}',
        good.replace('"coder": "ana"', '"coder": "ben"'),
        good.replace('"at": "2026-01-05T09:00:00Z"', '"at": "yesterday"'),
        "not json at all",
        json.dumps({k: v for k, v in json.loads(good).items() if k != "code"}),
    ]
    path.write_text("\n".join([good, *bad, good]) + "\n", encoding="utf-8")
    events, problems = coding.read_events(path, study.root)
    assert len(events) == 2
    assert [(p.line, p.type) for p in problems] == [(n, "bad-event") for n in range(2, 9)]
    messages = " | ".join(p.message for p in problems)
    for expected in ("missing 'code'", "'coding' None is not a coding id", "unknown format version 2", "'event' is 'zap'", "coder 'ben' in the file of coder 'ana'",
                     "'at' 'yesterday'", "not a JSON event"):
        assert expected in messages


def test_validate_codings_names_file_line_and_type(study):
    good = apply_event(study).to_dict()
    size = len(study.source(SOURCE).text)
    rows = [
        {**good, "code": "walls"},
        {**good, "coding": "c-111111111111", "anchor": {**good["anchor"], "start": size + 1, "end": size + 8}},
        {**good, "coding": "c-222222222222", "source": "D1/gone"},
        {**good, "coding": "c-333333333333", "anchor": {**good["anchor"], "text": "something else"}},
        {"v": 1, "event": "remove", "coder": "ana", "at": T0, "coding": "c-999999999999"},
        {**good, "coding": "c-444444444444"},
    ]
    path = study.root / "codings" / "ana.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (study.root / "codings" / "my coder.jsonl").write_text("", encoding="utf-8")
    found = sorted((p.path, p.line, p.type) for p in coding.validate_codings(study))
    assert found == [
        ("codings/ana.jsonl", 1, "unknown-code"),
        ("codings/ana.jsonl", 2, "offsets-out-of-range"),
        ("codings/ana.jsonl", 3, "unknown-source"),
        ("codings/ana.jsonl", 4, "anchor-mismatch"),
        ("codings/ana.jsonl", 5, "unknown-coding"),
        ("codings/my coder.jsonl", None, "bad-coder-name"),
    ]


def test_list_coders_skips_lock_tmp_and_other_files(study):
    coding.apply_code_to_sentence(study, "ben", "culture", f"{SOURCE}#t002.s02", at=T0)
    folder = study.root / "codings"
    for name in (".ben.jsonl.abc123.tmp", "notes.txt", ".hidden.jsonl", "ana.jsonl"):
        (folder / name).write_text("", encoding="utf-8")
    assert (folder / ".ben.jsonl.lock").exists()
    assert coding.list_coders(study) == ["ana", "ben"]


# --------------------------------------------------------------------------- two writers at once


def _writer(root: str, worker: int, count: int) -> None:
    study_root = Path(root)
    transcript = load_study(study_root).source(SOURCE)
    spans = [(s.start, s.end) for s in transcript.sentences]
    for number in range(count):
        start, end = spans[number % len(spans)]
        anchor = coding.make_anchor(transcript, start, end)
        memo = f"worker {worker} event {number} " + "x" * (3000 + 37 * number)  # long lines: many pages per write
        event = ApplyEvent(coder="shared", at=T0, coding=f"c-{worker:06x}{number:06x}", code="agency", source=SOURCE,
                           anchor=anchor, memo=memo)
        coding.append_event(study_root, event)  # validated from disk, as a second process would


def test_two_processes_appending_lose_and_interleave_nothing(make_study):
    root = make_study()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_writer, args=(str(root), worker, 200)) for worker in (1, 2)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
    assert [p.exitcode for p in workers] == [0, 0]
    path = root / "codings" / "shared.jsonl"
    raw_lines = lines_of(path)
    assert len(raw_lines) == 400
    parsed = [json.loads(line) for line in raw_lines]  # every line parses on its own
    ids = [e["coding"] for e in parsed]
    assert sorted(ids) == sorted(f"c-{w:06x}{n:06x}" for w in (1, 2) for n in range(200))
    for e in parsed:
        worker, number = int(e["coding"][2:8], 16), int(e["coding"][8:], 16)
        assert e["memo"].startswith(f"worker {worker} event {number} ") and len(e["memo"]) > 3000 + 37 * number
    events, problems = coding.read_events(path)
    assert problems == [] and len(events) == 400
    # within one writer, events keep their order
    for worker in (1, 2):
        mine = [int(i[8:], 16) for i in ids if int(i[2:8], 16) == worker]
        assert mine == list(range(200))


def test_a_held_lock_blocks_the_writer(study, monkeypatch):
    monkeypatch.setattr(coding, "LOCK_TIMEOUT", 0.2)
    path = coding.coder_path(study, "ana")
    path.parent.mkdir()
    with FileLock(str(coding.lock_path(path))):
        with pytest.raises(DataError, match="is locked by another process"):
            coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02")
    assert not path.exists()
    coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02")
    assert len(lines_of(path)) == 1


# --------------------------------------------------------------------------- re-anchoring


def edit_transcript(root: Path, old: str, new: str) -> None:
    path = root / TRANSCRIPT
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_reanchor_after_the_transcript_is_edited(make_study):
    root = make_study()
    study = load_study(root)
    trust = coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    walls = coding.apply_code_to_sentence(study, "ana", "data-walls", f"{SOURCE}#t002.s01", at=T0)
    voice = coding.apply_code_to_sentence(study, "ana", "agency", f"{SOURCE}#t003.s01", at=T0)
    # a correction earlier in the file moves everything; a line break appears inside one coded sentence;
    # the words of another coded sentence change
    edit_transcript(root, "Tell me more.", "Tell me more, please, with examples.")
    edit_transcript(root, "on the data walls.", "on the\ndata walls.")
    edit_transcript(root, "Um, and they get voice and choice.", "And they get a voice.")
    edited = load_study(root)
    text = edited.source(SOURCE).text

    by_id = {c.id: c for c in coding.load_codings(edited, "ana")}
    moved = by_id[trust.id]
    assert moved.status == "re-anchored"
    assert moved.start == trust.start + len(", please, with examples") and text[moved.start:moved.end] == "It builds trust."
    assert moved.sha256 == edited.source(SOURCE).sha256 and moved.sentence == f"{SOURCE}#t002.s02"

    wrapped = by_id[walls.id]
    assert wrapped.status == "re-anchored"  # found again ignoring whitespace
    assert wrapped.text == "They track goals on the\ndata walls." == text[wrapped.start:wrapped.end]

    assert by_id[voice.id].status == "stale"
    assert (by_id[voice.id].start, by_id[voice.id].text) == (voice.start, voice.text)  # kept as coded, for review
    problems = list(coding.validate_codings(edited))
    assert [(p.type, p.severity, p.line) for p in problems] == [("stale-coding", "warning", 3)]
    assert "Um, and they get voice and choice." in problems[0].message


def test_reanchor_is_stale_when_the_text_is_found_twice(make_study):
    root = make_study()
    study = load_study(root)
    trust = coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    edit_transcript(root, "It changed the culture", "It builds trust. It changed the culture")
    edited = load_study(root)
    assert coding.load_codings(edited, "ana")[0].status == "stale"
    assert coding.reanchor(trust, study.source(SOURCE)).status == "ok"


# --------------------------------------------------------------------------- suggestions and consensus


def write_suggestions(study, items):
    folder = study.root / "suggestions"
    folder.mkdir(exist_ok=True)
    lines = []
    for sid, code, sentence_id, pattern in items:
        s = sentence(study, sentence_id)
        anchor = coding.make_anchor(study.source(SOURCE), s.start, s.end).to_dict()
        lines.append(json.dumps({"id": sid, "code": code, "source": SOURCE, "anchor": anchor, "pattern": pattern,
                                 "evidence": {"words": "data walls", "pattern": 'phrase "data wall"'}}))
    (folder / "auto.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_accept_and_reject_suggestions(study):
    write_suggestions(study, [("s-1", "data-walls", f"{SOURCE}#t002.s01", "data-walls/1"),
                              ("s-2", "culture", f"{SOURCE}#t002.s02", "culture/1"),
                              ("s-3", "agency", f"{SOURCE}#t003.s01", "agency/2")])
    suggestions = coding.load_suggestions(study)
    assert [s["id"] for s in suggestions] == ["s-1", "s-2", "s-3"]
    assert coding.load_suggestions(study, source="D1/other") == []
    accepted = coding.accept_suggestion(study, "ana", suggestions[0], at=T0)
    coding.reject_suggestion(study, "ana", suggestions[1], reason="trust among adults, not students", at=T0)
    coding.apply_code_to_sentence(study, "ana", "agency", f"{SOURCE}#t003.s01", at=T0)  # coded by hand the same way
    assert coding.pending_suggestions(study, "ana") == []
    assert [s["id"] for s in coding.pending_suggestions(study, "ben")] == ["s-1", "s-2", "s-3"]
    assert accepted.origin == "auto:data-walls/1" and accepted.code == "data-walls"

    events, problems = coding.read_events(study.root / "codings" / "ana.jsonl")
    assert problems == [] and [type(e) for e in events] == [AcceptEvent, RejectEvent, ApplyEvent]
    assert events[0].suggestion == "s-1" and events[1].suggestion == "s-2"
    assert [c.code for c in coding.load_codings(study, "ana")] == ["data-walls", "agency"]

    stale = {**suggestions[2], "anchor": {**suggestions[2]["anchor"], "sha256": "f" * 64}}
    with pytest.raises(UsageError, match="another version"):
        coding.accept_suggestion(study, "ben", stale)
    with pytest.raises(UsageError, match="not a suggestion: it has no pattern"):
        coding.accept_suggestion(study, "ben", {k: v for k, v in suggestions[2].items() if k != "pattern"})


def test_unreadable_suggestion_lines_are_skipped_and_named(study, caplog):
    write_suggestions(study, [("s-1", "data-walls", f"{SOURCE}#t002.s01", "data-walls/1"),
                              ("s-2", "culture", f"{SOURCE}#t002.s02", "culture/1")])
    path = study.root / "suggestions" / "auto.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    newer = json.dumps({**json.loads(lines[1]), "v": 2})
    path.write_text("\n".join([lines[0], newer, '{"id": "s-3"', ""]), encoding="utf-8")
    with caplog.at_level("WARNING", logger="casestudy"):
        assert [s["id"] for s in coding.load_suggestions(study)] == ["s-1"]
    assert "suggestions/auto.jsonl:2: skipped" in caplog.text and "format version 2" in caplog.text
    assert "suggestions/auto.jsonl:3: skipped" in caplog.text


def test_consensus_coder(study):
    agreed = coding.apply_code_to_sentence(study, "consensus", "culture", f"{SOURCE}#t002.s02", origin="consensus:ana,ben",
                                           reason="both read trust among students", at=T0)
    loaded = coding.load_codings(study, "consensus")
    assert loaded == [agreed] and agreed.origin == "consensus:ana,ben" and agreed.reason.startswith("both")
    with pytest.raises(UsageError, match="origin"):
        coding.apply_code_to_sentence(study, "consensus", "agency", f"{SOURCE}#t002.s01", origin="consensus:../x,ben")


def test_unknown_coder_lists_known_ones(study):
    coding.apply_code_to_sentence(study, "ana", "culture", f"{SOURCE}#t002.s02", at=T0)
    with pytest.raises(UsageError, match=r"no coder 'zoe'.*coders: ana"):
        coding.load_codings(study, "zoe")


def test_times_must_be_utc():
    from datetime import datetime, timedelta, timezone

    assert coding.format_time(datetime(2026, 1, 5, 10, 0, tzinfo=timezone(timedelta(hours=1)))) == T0
    with pytest.raises(UsageError, match="no time zone"):
        coding.format_time(datetime(2026, 1, 5, 9, 0))
    with pytest.raises(UsageError, match="not UTC ISO 8601"):
        coding.format_time("2026-01-05 09:00")


# --------------------------------------------------------------------------- the sample study's codings


def test_sample_codings_are_valid_and_differ(sample_study):
    assert {"ana", "ben"} <= set(coding.list_coders(sample_study))
    errors = [p for p in coding.validate_codings(sample_study) if p.severity == "error"]
    assert errors == []
    ana = coding.load_codings(sample_study, "ana")
    ben = coding.load_codings(sample_study, "ben")
    districts = {c.source.split("/")[0] for c in ana} & {c.source.split("/")[0] for c in ben}
    assert len(districts) >= 2
    spans = lambda codings: {(c.code, c.source, c.sentence) for c in codings}  # noqa: E731
    shared = spans(ana) & spans(ben)
    assert len(shared) >= 50 and spans(ana) - spans(ben) and spans(ben) - spans(ana)
    assert any(c.memo for c in ana) and any(c.sentence is None for c in ben)
