"""The one spaCy pipeline the package uses: ``blank("en")`` plus a sentencizer, and the
sentence boundaries the study uses (:func:`sentence_spans`).

No model is downloaded: tokenizer, sentencizer and the lookup lemmatizer tables all ship in
PyPI packages (spacy, spacy-lookups-data).
"""

from __future__ import annotations

import re
from functools import lru_cache

import spacy
from spacy.language import Language
from spacy.tokens import Doc

# A transcriber's note: "[laughter]", "[crosstalk]", "[inaudible 00:13:41]" (no nesting, one line).
NOTE_RE = re.compile(r"\[[^\[\]\n]*\]")
# Text that ends a sentence: end punctuation, then perhaps closing quotes or brackets.
_ENDS_SENTENCE = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")


@lru_cache(maxsize=1)
def blank_nlp() -> Language:
    """English tokenizer and rule-based sentencizer, shared and built once per process."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp


def sentence_spans(doc: Doc) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of a segmented doc, which cover its text.

    spaCy's sentencizer ends a sentence after end punctuation and the punctuation that
    follows it, so an opening bracket goes with the sentence before: "brutal. [laughter] We've"
    became "brutal. [" and "laughter] We've ...". A boundary never falls inside a square-bracket
    note: one inside a note moves to just before it when the text before the note ends a
    sentence ("brutal." and "[laughter] We've ..."), and is dropped otherwise (a period inside
    "[Dr. Smith joins]" or "We tried [inaudible. crosstalk] it" splits nothing). Everywhere else
    the boundaries are the sentencizer's, so sentence numbers only change in turns with notes
    that were split."""
    text = doc.text
    starts = [sent.start_char for sent in doc.sents]
    if len(starts) > 1 and "[" in text:
        notes = [m.span() for m in NOTE_RE.finditer(text)]
        if notes:
            fixed = starts[:1]
            for boundary in starts[1:]:
                note = next((n for n in notes if n[0] < boundary < n[1]), None)
                if note is None:
                    fixed.append(boundary)
                elif note[0] > fixed[-1] and _ENDS_SENTENCE.search(text[fixed[-1]:note[0]].rstrip()):
                    fixed.append(note[0])
                # else: merged into the sentence that holds the note's start
            starts = fixed
    if not starts:
        return []
    return list(zip(starts, [*starts[1:], len(text)], strict=True))
