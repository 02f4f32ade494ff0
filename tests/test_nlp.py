"""Sentence boundaries: spaCy's sentencizer, never splitting inside a transcriber's [note]."""

from __future__ import annotations

import pytest

from casestudy.nlp import blank_nlp, sentence_spans
from casestudy.study import load_study

from .helpers import session_text


def sentences(text: str) -> list[str]:
    doc = blank_nlp()(text)
    return [text[a:b].strip() for a, b in sentence_spans(doc)]


def test_spacy_alone_splits_inside_a_note():
    """What the repair is for: the sentencizer keeps '[' with the sentence before."""
    doc = blank_nlp()("It is brutal. [laughter] We've visited.")
    assert [s.text.strip() for s in doc.sents] == ["It is brutal. [", "laughter] We've visited."]


@pytest.mark.parametrize(("text", "expected"), [
    ("I know November is brutal. [laughter] We've already visited Canyon Ridge.",
     ["I know November is brutal.", "[laughter] We've already visited Canyon Ridge."]),
    # a note at the end of a turn is a sentence of its own: same number of sentences as before
    ("Which is probably why I'm on this call. [laughter]", ["Which is probably why I'm on this call.", "[laughter]"]),
    ("Is it fair? [pause] I think so!", ["Is it fair?", "[pause] I think so!"]),
    ('She said "done." [crosstalk] Then we left.', ['She said "done."', "[crosstalk] Then we left."]),
    # a period inside a note is not the end of a sentence
    ("We met the principal. [Dr. Ruiz joins the call] She agreed.",
     ["We met the principal.", "[Dr. Ruiz joins the call] She agreed."]),
    ("We tried it [inaudible. crosstalk] and it worked. Then we stopped.",
     ["We tried it [inaudible. crosstalk] and it worked.", "Then we stopped."]),
    ("[laughter] I'll take that one. It is mine.", ["[laughter] I'll take that one.", "It is mine."]),
    # no notes, or an unmatched bracket: the sentencizer's boundaries as they are
    ("One thing. Another thing. A third.", ["One thing.", "Another thing.", "A third."]),
    ("It broke. [unclosed and. Then more.", ["It broke. [", "unclosed and.", "Then more."]),
])
def test_no_sentence_splits_inside_a_note(text, expected):
    assert sentences(text) == expected


def test_transcript_sentences_keep_notes_whole_and_ids_stable(make_study):
    transcript = session_text("teacher_focus_group", {"Ana": "teacher"}, """\
        Facilitator: November is brutal. [laughter] We've already visited. Shall we start?
        Ana: Which is probably why I'm here. [laughter]
    """, date="2023-10-01")
    study = load_study(make_study({"transcripts/D1/teacher-focus-group.md": transcript}))
    t = study.sources("D1")[0]
    got = [(s.id.split("#")[1], s.text) for s in t.sentences]
    assert got == [
        ("t001.s01", "November is brutal."),
        ("t001.s02", "[laughter] We've already visited."),
        ("t001.s03", "Shall we start?"),
        ("t002.s01", "Which is probably why I'm here."),
        ("t002.s02", "[laughter]"),
    ]
    for s in t.sentences:
        assert t.text[s.start:s.end] == s.text


def test_sample_study_has_no_sentence_split_inside_a_note(sample_study):
    for t in sample_study.transcripts:
        for s in t.sentences:
            assert s.text.count("[") == s.text.count("]"), (s.id, s.text)
