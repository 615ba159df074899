"""The operator page: one self-contained HTML file (inline CSS/JS, no CDN) that renders ``/api/status``.

The page is served with the admin key in its query (``?code=``) and sends the same key when it fetches the
status document; the headers keep that URL from leaking (no referrer, never cached, never framed) and the
content policy allows only the page's own inline code and same-origin fetches.
"""

from __future__ import annotations

import functools
from importlib import resources

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


@functools.cache
def page() -> str:
    """The HTML, read once per process (it ships inside the ``shared`` package)."""
    return resources.files("shared").joinpath("dashboard.html").read_text(encoding="utf-8")
