"""The one spaCy pipeline the package uses: ``blank("en")`` plus a sentencizer.

No model is downloaded: tokenizer, sentencizer and the lookup lemmatizer tables all ship in
PyPI packages (spacy, spacy-lookups-data).
"""

from __future__ import annotations

from functools import lru_cache

import spacy
from spacy.language import Language


@lru_cache(maxsize=1)
def blank_nlp() -> Language:
    """English tokenizer and rule-based sentencizer, shared and built once per process."""
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    return nlp
