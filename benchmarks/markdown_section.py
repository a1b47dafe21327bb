"""Write one benchmark's section of BENCHMARKS.md between its ``<!-- name:start -->`` / ``<!-- name:end -->`` markers."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> Path:
    """Replace the section named ``name`` with ``body`` (appended at the end the first time)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text()
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end) + r"\n?", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)
    return path
