r"""Answer extraction and verifiable rewards.

A completion's answer is found in the order a grader of math datasets looks for it:
GSM8K's `#### 42` marker, then the last LaTeX `\boxed{42}`, then the last number in
the text. Numbers compare numerically (`42`, `42.0` and `4,200`/`4200` are equal), so a
formatting difference is never scored as a wrong answer.
"""

from __future__ import annotations

import re

_HASH_ANSWER = re.compile(r"####\s*([^\n]*)")
_BOXED = re.compile(r"\\boxed\s*\{")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}`, with nested braces balanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    start = starts[-1]
    depth = 1
    for position in range(start, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[start:position].strip()
    return None


def last_number(text: str) -> str | None:
    """The last number in `text`, without thousands separators, or None."""
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return numbers[-1].replace(",", "")


def extract_answer(text: str) -> str | None:
    r"""Extract the final answer of a completion.

    Args:
        text: The generated completion.

    Returns:
        The text after `####`, else the last `\boxed{}` content, else the last number;
        None when none is present.

    """
    marked = _HASH_ANSWER.findall(text)
    if marked and marked[-1].strip():
        return marked[-1].strip()
    boxed = _last_boxed(text)
    if boxed:
        return boxed
    return last_number(text)


def normalize_answer(answer: str) -> str:
    """Canonical form used to compare answers: numbers as numbers, text lower-cased."""
    stripped = answer.strip().rstrip(".").replace("$", "").strip()
    number = stripped.replace(",", "")
    try:
        value = float(number)
    except ValueError:
        return " ".join(stripped.lower().split())
    if value.is_integer():
        return str(int(value))
    return repr(value)


def answers_match(predicted: str | None, reference: str) -> bool:
    """True when `predicted` equals `reference` after normalisation."""
    if predicted is None:
        return False
    if normalize_answer(predicted) == normalize_answer(reference):
        return True
    # `#### 42 apples` or `\\boxed{x = 42}`: compare the number inside when there is one.
    inner = last_number(predicted)
    return inner is not None and normalize_answer(inner) == normalize_answer(reference)


def exact_answer_reward(completion: str, reference: str) -> float:
    """1.0 when the extracted answer matches `reference`, else 0.0."""
    return 1.0 if answers_match(extract_answer(completion), reference) else 0.0
