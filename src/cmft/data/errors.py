"""The error every dataset reader raises for a missing or malformed file, and the checked integer they share."""

from __future__ import annotations

import operator


class DatasetFormatError(ValueError):
    """A dataset file is missing or malformed; the message names the file (and line) and the problem."""


def checked_int(value: object, what: str, low: int, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int in ``low..high`` (no bools, no floats), or a :class:`DatasetFormatError` naming ``what``."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bound = f">= {low}" if high is None else f"in {low}..{high}"
        raise DatasetFormatError(f"{what} must be an integer {bound}{hint}, got {value!r}")
    return number
