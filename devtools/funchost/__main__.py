"""``python -m devtools.funchost``: run a v2 function app locally without Core Tools.

Loads ``local.settings.json`` Values (real environment wins), imports the app, reads host.json, serves
until SIGINT/SIGTERM, then shuts down cleanly (stop taking work, drain, run the app's close hook on the
same loop) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
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

# The attribute of the app's module the harness runs at shutdown when --close-hook is not given.
DEFAULT_CLOSE_HOOK = "on_shutdown"
CloseHook = Callable[[], Awaitable[None]]


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
    parser.add_argument(
        "--close-hook",
        default=None,
        help=f"module:attribute of an async callable run once at shutdown, after the last invocation "
        f"(default: '{DEFAULT_CLOSE_HOOK}' in the app's module, if it defines one)",
    )
    return parser.parse_args(argv)


def load_app(app_dir: Path, spec: str) -> FunctionSource:
    """Import ``module:attribute`` with the app dir first on sys.path, as the worker does."""
    module_name, _, attribute = spec.partition(":")
    sys.path.insert(0, str(app_dir))
    module = importlib.import_module(module_name)
    app: FunctionSource = getattr(module, attribute or "app")
    return app


def load_close_hook(app_spec: str, hook_spec: str | None) -> CloseHook | None:
    """The app's close hook: ``--close-hook module:attr``, else ``on_shutdown`` in the app's module if any.

    The Python worker has no shutdown callback for v2 apps, so this is the harness's convention; it is
    looked up after ``load_app`` (the app dir is on sys.path then).
    """
    if hook_spec is None:
        module = importlib.import_module(app_spec.partition(":")[0])
        hook = getattr(module, DEFAULT_CLOSE_HOOK, None)
    else:
        module_name, _, attribute = hook_spec.partition(":")
        hook = getattr(importlib.import_module(module_name), attribute or DEFAULT_CLOSE_HOOK)
    if hook is not None and not callable(hook):
        raise TypeError(f"the close hook {hook!r} is not callable")
    return hook


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
        close_hook = load_close_hook(args.app, args.close_hook)
        host = FuncHost(
            app,
            app_dir=app_dir,
            host_json=load_host_json(app_dir),
            host=args.host,
            port=args.port,
            on_stop=close_hook,
        )
    except (ConfigError, ImportError, AttributeError, TypeError, OSError) as exc:
        logger.error("funchost cannot start: %s", exc)
        return 2
    return asyncio.run(serve(host))


if __name__ == "__main__":
    sys.exit(main())
