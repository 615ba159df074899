"""Write a benchmark's latest results into docs/benchmarks.md, between markers named after the benchmark."""

from __future__ import annotations

import datetime as dt
import platform
import re
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    import os

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{python}, {os.cpu_count()} cores, {platform.machine()}"


def write_section(name: str, command: str, body: str) -> None:
    """Replace (or append) the section for ``name`` with the figures and the command that produced them."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"{start}\nCommand: `{command}` — run {stamp} on {machine()}.\n\n{body.strip()}\n{end}"
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + f"\n\n## {name}\n\n{section}\n"
    BENCHMARKS_MD.write_text(text, encoding="utf-8")
