"""Cold start: ``import function_app`` as a whole process vs a naive app that imports its SDKs eagerly.

The Functions host indexes the app by importing it in a fresh worker; everything imported at module top
is paid on every cold start. Runs are interleaved so disk caches favour neither side.
Usage: ``python -m bench.cold_start [--runs 9] [--write]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import write_section

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "python -c pass (interpreter only)": "pass",
    "ours: import function_app": "import function_app",
    "eager baseline": (
        "import azure.functions; from msgraph import GraphServiceClient; import azure.identity.aio; "
        "import azure.data.tables.aio; import azure.storage.queue.aio"
    ),
}


def run_once(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--write", action="store_true", help="record the results in docs/benchmarks.md")
    args = parser.parse_args()

    for code in CASES.values():  # warm the OS file cache and .pyc files once
        run_once(code)
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, code in CASES.items():
            samples[name].append(run_once(code))

    medians = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    ratio = medians["ours: import function_app"] / medians["eager baseline"]
    lines = ["| Process | median ms | min ms | max ms |", "| --- | ---: | ---: | ---: |"]
    for name, values in samples.items():
        lines.append(f"| {name} | {medians[name]:.0f} | {min(values) * 1000:.0f} | {max(values) * 1000:.0f} |")
    verdict = "meets" if ratio <= 0.4 else "misses"
    lines.append("")
    lines.append(
        f"Ratio ours / eager baseline (medians, {args.runs} runs each): **{ratio:.2f}** (target ≤ 0.40: {verdict})."
    )
    report = "\n".join(lines)
    print(report)
    if args.write:
        write_section("cold_start", "python -m bench.cold_start --write", report)


if __name__ == "__main__":
    main()
