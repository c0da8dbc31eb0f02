"""Exact match of generated answers: one documented normalisation for prediction and gold.

:func:`normalize` applies, in order:

1. ``answer_pattern`` (optional regex): the **last** match in the text is the answer (its first
   group when the pattern has groups, else the whole match). A prediction with no match is the
   empty answer (wrong); a gold answer with no match is kept whole.
2. Unicode case folding (``str.casefold``) and whitespace collapsing (runs of whitespace become
   one space; leading and trailing whitespace go).
3. Leading and trailing punctuation and quotes (``. , ; : ! ? " ' `` and backticks) go, so
   ``"Paris."`` matches ``paris``.

``exact_match`` is the fraction of examples whose normalised prediction equals the normalised
gold answer. Example: with ``answer_pattern: '-?\\d+(?:\\.\\d+)?'`` the text
``"3 + 4 = 7, so the answer is 7."`` normalises to ``7``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PUNCT = ".,;:!?\"'`"
_SPACE = re.compile(r"\s+")


def normalize(text: str, pattern: re.Pattern[str] | None = None, *, gold: bool = False) -> str:
    """``text`` normalised as the module docstring says (``gold``: keep it whole on no match)."""
    if pattern is not None:
        matches = list(pattern.finditer(text))
        if matches:
            last = matches[-1]
            text = last.group(1) if pattern.groups else last.group(0)
            text = text or ""
        elif not gold:
            return ""
    text = _SPACE.sub(" ", text.casefold()).strip()
    return text.strip(_PUNCT).strip()


def exact_match(
    predictions: Sequence[str], answers: Sequence[str], pattern: str | None = None
) -> float:
    """The fraction of ``predictions`` equal to their ``answers`` after :func:`normalize`."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        return 0.0
    compiled = re.compile(pattern) if pattern else None
    hits = sum(
        normalize(p, compiled) == normalize(a, compiled, gold=True)
        for p, a in zip(predictions, answers, strict=True)
    )
    return hits / len(answers)
