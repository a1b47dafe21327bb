"""The error every dataset reader raises for a missing or malformed file, and the checked integer they share."""

from __future__ import annotations

import operator
import os


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


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a UTF-8 text file (universal newlines, as iterating the file gives them, without the line
    ends), or a :class:`DatasetFormatError` naming the file: missing, unreadable, or not UTF-8."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise DatasetFormatError(f"{path}: missing") from None
    except UnicodeDecodeError as e:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DatasetFormatError(f"{path}: cannot be read ({e.strerror or e})") from None
    lines = text.split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines
