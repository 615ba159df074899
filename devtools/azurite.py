"""Start and stop Azurite (the real Azure Storage emulator) for local runs and tests.

Shared by the run command (``python -m devtools.azurite``) and the test suite's session fixture, so both
use the same flags, the same readiness check and the same connection string.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"

# Azurite's documented development account. The key is public (it ships in Microsoft's docs), not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def connection_string(host: str, blob_port: int, queue_port: int, table_port: int, scheme: str = "http") -> str:
    """The Storage connection string for an Azurite listening on these ports."""
    base = f"{scheme}://{host}"
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={base}:{blob_port}/{ACCOUNT_NAME};"
        f"QueueEndpoint={base}:{queue_port}/{ACCOUNT_NAME};"
        f"TableEndpoint={base}:{table_port}/{ACCOUNT_NAME};"
    )


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


@dataclass
class Azurite:
    """One Azurite process on loopback. Ports are chosen once and kept across restarts.

    ``location`` keeps data on disk so a stop/start cycle (a simulated storage outage) loses nothing;
    without it a temporary folder is used and removed on ``stop``. ``tls`` (certificate and key PEM files)
    serves HTTPS; ``oauth`` also accepts bearer tokens (Azurite's ``--oauth basic``, which needs HTTPS),
    as identity-based connections send them. Shared-key requests keep working in both modes.
    """

    host: str = "127.0.0.1"
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    location: Path | None = None
    log_path: Path | None = None
    tls: tuple[Path, Path] | None = None
    oauth: bool = False
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _tmpdir: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.blob_port = self.blob_port or free_port(self.host)
        self.queue_port = self.queue_port or free_port(self.host)
        self.table_port = self.table_port or free_port(self.host)
        if self.oauth and self.tls is None:
            raise ValueError("Azurite accepts OAuth tokens only over HTTPS: pass tls=(cert, key)")

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.blob_port, self.queue_port, self.table_port, self.scheme)

    def service_uri(self, service: str) -> str:
        """The ``blob``/``queue``/``table`` endpoint (path-style, with the account), as identity settings take it."""
        port = {"blob": self.blob_port, "queue": self.queue_port, "table": self.table_port}[service]
        return f"{self.scheme}://{self.host}:{port}/{ACCOUNT_NAME}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start Azurite and return once all three services accept connections."""
        if self.running:
            return
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `npm ci` in {ROOT}")
        if self.location is None:
            self._tmpdir = tempfile.mkdtemp(prefix="azurite-")
            self.location = Path(self._tmpdir)
        self.location.mkdir(parents=True, exist_ok=True)
        log = self.log_path or (self.location / "azurite.log")
        args = [
            str(AZURITE_BIN),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
            "--silent",
            "--location", str(self.location),
            "--blobHost", self.host, "--blobPort", str(self.blob_port),
            "--queueHost", self.host, "--queuePort", str(self.queue_port),
            "--tableHost", self.host, "--tablePort", str(self.table_port),
        ]  # fmt: skip
        if self.tls is not None:
            args += ["--cert", str(self.tls[0]), "--key", str(self.tls[1])]
        if self.oauth:
            args += ["--oauth", "basic"]
        with open(log, "ab") as out:
            self._process = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, cwd=self.location, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        ports = (self.blob_port, self.queue_port, self.table_port)
        while not all(_port_open(self.host, p) for p in ports):
            if self._process.poll() is not None:
                raise RuntimeError(f"Azurite exited with {self._process.returncode}; see {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Azurite did not open ports {ports} within {timeout}s; see {log}")
            time.sleep(0.05)

    def stop(self, remove_data: bool = True) -> None:
        """Stop the process (SIGTERM, then SIGKILL); with ``remove_data`` drop a temporary location."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        if remove_data and self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self.location = None

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run Azurite in the foreground until interrupted, printing its connection string."""
    parser = argparse.ArgumentParser(prog="python -m devtools.azurite", description=main.__doc__)
    parser.add_argument("--location", type=Path, default=ROOT / ".azurite")
    parser.add_argument("--blob-port", type=int, default=10000)
    parser.add_argument("--queue-port", type=int, default=10001)
    parser.add_argument("--table-port", type=int, default=10002)
    args = parser.parse_args(argv)
    azurite = Azurite(
        blob_port=args.blob_port, queue_port=args.queue_port, table_port=args.table_port, location=args.location
    )
    azurite.start()
    print(f"azurite ready: {azurite.connection_string}", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop and azurite.running:
        time.sleep(0.2)
    azurite.stop(remove_data=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
