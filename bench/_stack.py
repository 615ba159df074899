"""Shared plumbing of the benchmarks that need the whole local stack: Azurite, the Graph simulator, the harness.

Everything listens on free loopback ports and is stopped on exit, also when the benchmark fails.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.azurite import Azurite, free_port
from devtools.graphsim.client import SimControl
from devtools.processes import stop_process
from tests.fixtures.graphsim import GRAPHSIM_TOKEN, GraphSimServer, start_graphsim, stop_graphsim

ROOT = Path(__file__).resolve().parent.parent
SHARED_CORES_NOTE = (
    "Client, harness, Azurite and the Graph simulator all share the machine's cores "
    f"({os.cpu_count()} here): every figure includes their competition for CPU."
)


@dataclass
class Stack:
    """A running Azurite and Graph simulator, and the app settings that point at them."""

    azurite: Azurite
    graphsim: GraphSimServer
    sim: SimControl

    def app_env(self, table_prefix: str | None = None, **overrides: str) -> dict[str, str]:
        """App settings of one instance: this stack's Storage and simulator, its own tables by default."""
        env = {
            "AzureWebJobsStorage": self.azurite.connection_string,
            "STORAGE_TABLE_PREFIX": table_prefix or new_table_prefix(),
            "GRAPH_BASE_URL": self.graphsim.base_url,
            "GRAPH_AUTH_MODE": "static_token",
            "GRAPH_STATIC_TOKEN": GRAPHSIM_TOKEN,
            "LOG_LEVEL": "WARNING",
        }
        env.update(overrides)
        return env


def new_table_prefix() -> str:
    return "b" + uuid.uuid4().hex[:12]


@contextlib.contextmanager
def running_stack(*graphsim_args: str) -> Iterator[Stack]:
    """Start Azurite and the simulator (extra simulator arguments as on its command line); stop both after."""
    azurite = Azurite()
    azurite.start()
    server: GraphSimServer | None = None
    try:
        server = start_graphsim(*graphsim_args)
        with SimControl(server.root_url) as sim:
            yield Stack(azurite, server, sim)
    finally:
        if server is not None:
            stop_graphsim(server.process)
        azurite.stop()


@dataclass
class Harness:
    """One ``python -m devtools.funchost`` process on a free port."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    started: float  # perf_counter() just before the process was spawned

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; the log file goes too (errors quote it before this)."""
        stop_process(self.process, timeout)
        self.log_path.unlink(missing_ok=True)


def spawn_harness(
    app_dir: Path,
    env: Mapping[str, str],
    log_dir: Path | None = None,
    port: int | None = None,
    python: str = sys.executable,
) -> Harness:
    """Start the harness on ``app_dir`` with ``env`` over ``os.environ`` (on ``port``, else a free one), run by
    ``python`` (another environment's interpreter, e.g. ``bench._fresh.production_python()``); does not wait."""
    merged = dict(os.environ)
    merged.update(env)
    merged["PYTHONUNBUFFERED"] = "1"
    merged["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), merged.get("PYTHONPATH", "")) if p)
    port = port or free_port()
    folder = log_dir or Path(tempfile.gettempdir())
    log_path = folder / f"bench-funchost-{port}.log"
    # The harness's own per-invocation INFO lines ("Executing ...") cost ~7% of its loop under load; in Azure
    # the host writes them from its own process, not the Python worker's, so benchmarks leave them out.
    args = [python, "-m", "devtools.funchost", "--app-dir", str(app_dir), "--port", str(port)]
    args += ["--log-level", "WARNING"]
    started = time.perf_counter()
    with open(log_path, "wb") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=merged, stdout=out, stderr=subprocess.STDOUT)
    return Harness(process, f"http://127.0.0.1:{port}", log_path, started)


@contextlib.contextmanager
def running_harness(
    app_dir: Path, env: Mapping[str, str], timeout: float = 30.0, port: int | None = None
) -> Iterator[Harness]:
    """A harness that reported Running (``/admin/host/status``); stopped on exit."""
    import httpx

    harness = spawn_harness(app_dir, env, port=port)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if harness.process.poll() is not None:
                raise RuntimeError(f"funchost exited with {harness.process.returncode}:\n{harness.output()}")
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.get(f"{harness.base_url}/admin/host/status", timeout=1.0)
                if status.status_code == 200 and status.json().get("state") == "Running":
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"funchost not Running within {timeout} s:\n{harness.output()}")
            time.sleep(0.05)
        yield harness
    finally:
        harness.stop()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool) -> str:
    return "meets" if ok else "misses"


def _cpu_seconds(stat: str) -> float:
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ... utime is the 12th
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far; NaN where /proc is missing."""
    try:
        return _cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return float("nan")


def _role(pid: int) -> str:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    for marker, role in (("devtools.funchost", "harness"), ("azurite", "Azurite"), ("devtools.graphsim", "simulator")):
        if marker in cmdline:
            return role
    return f"pid {pid}"


def cpu_by_process() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process ("client") and each direct child, by role.

    Linux only (reads /proc); empty elsewhere.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return {}
    usage = {"client": _cpu_seconds((proc / "self" / "stat").read_text())}
    me = str(os.getpid())
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[1] == me:
                role = _role(int(entry.name))
                usage[role] = usage.get(role, 0.0) + _cpu_seconds(stat)
    return usage


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot; busy includes kernel and softirq time."""
    with contextlib.suppress(OSError, ValueError):
        ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return sum(ticks[:8]) - idle, sum(ticks[:8])
    return 0, 0


@dataclass(frozen=True)
class CpuSnapshot:
    """Per-process CPU seconds and machine-wide ticks at one moment; ``since`` gives one phase's usage."""

    processes: dict[str, float]
    machine: tuple[int, int]

    @classmethod
    def take(cls) -> CpuSnapshot:
        return cls(cpu_by_process(), _machine_ticks())

    def since(self, earlier: CpuSnapshot) -> CpuUsage:
        by_role = {role: value - earlier.processes.get(role, 0.0) for role, value in self.processes.items()}
        busy, total = (now - then for now, then in zip(self.machine, earlier.machine, strict=True))
        return CpuUsage(by_role, busy / total if total else float("nan"))


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds per process role, and the share of the whole machine's CPU that was busy (0..1)."""

    by_role: dict[str, float]
    machine_busy: float


def background_note(seconds: float = 1.0) -> str:
    """One line on how busy the machine was for ``seconds`` before the benchmark started anything."""
    before = CpuSnapshot.take()
    time.sleep(seconds)
    busy = CpuSnapshot.take().since(before).machine_busy
    warning = " — other work was running: expect skewed figures" if busy > 0.2 else ""
    return f"Machine CPU busy before the run (1 s idle probe): {busy:.0%}{warning}."
