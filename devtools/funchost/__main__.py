"""``python -m devtools.funchost``: run a v2 function app locally without Core Tools.

Loads ``local.settings.json`` Values (real environment wins), imports the app, reads host.json, serves
until SIGINT/SIGTERM, then shuts down cleanly and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from pathlib import Path

from devtools.funchost.config import (
    FUNCTION_KEY_SETTING,
    ConfigError,
    load_host_json,
    load_settings_file,
)
from devtools.funchost.host import FuncHost
from devtools.funchost.indexing import FunctionSource

logger = logging.getLogger("funchost")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devtools.funchost", description=__doc__)
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="the function app's folder (default: cwd)")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default: 7071, as func start)")
    parser.add_argument(
        "--settings", type=Path, default=Path("local.settings.json"), help="settings file, relative to the app dir"
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    return parser.parse_args(argv)


def load_app(app_dir: Path, spec: str) -> FunctionSource:
    """Import ``module:attribute`` with the app dir first on sys.path, as the worker does."""
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, str(app_dir))
    module = importlib.import_module(module_name)
    app: FunctionSource = getattr(module, attribute or "app")
    return app


async def serve(host: FuncHost) -> int:
    """Run until SIGINT/SIGTERM; 0 after a clean stop, 1 if the host could not start."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await host.start()
    except OSError as exc:  # typically the port is taken
        logger.error("funchost cannot start: %s", exc)
        await host.stop()
        return 1
    for name in host.keys.generated:
        key = host.keys.function_key if name == FUNCTION_KEY_SETTING else host.keys.master_key
        print(f"funchost generated {name}={key} (set {name} to choose it)", flush=True)
    print(f"funchost listening on {host.base_url}", flush=True)
    await stop.wait()
    logger.info("funchost stopping")
    await host.stop()
    logger.info("funchost stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    app_dir = args.app_dir.resolve()
    settings = args.settings if args.settings.is_absolute() else app_dir / args.settings
    try:
        applied = load_settings_file(settings, os.environ)
        if applied:
            logger.info("Loaded %d settings from %s", len(applied), settings)
        os.chdir(app_dir)  # the host's working directory is the script root
        app = load_app(app_dir, args.app)
        host = FuncHost(app, app_dir=app_dir, host_json=load_host_json(app_dir), host=args.host, port=args.port)
    except (ConfigError, ImportError, AttributeError, OSError) as exc:
        logger.error("funchost cannot start: %s", exc)
        return 2
    return asyncio.run(serve(host))


if __name__ == "__main__":
    sys.exit(main())
