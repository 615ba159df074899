"""A local harness that serves a Python v2 ``function_app.py`` without Azure Functions Core Tools.

Production runs on the Azure Functions host (``func start`` locally, Azure in the cloud); this package
exists only so the app can be run and tested end to end where Core Tools cannot be installed. The app
never imports it. See ``docs/local-harness.md`` for what it honours and where it differs from the host.
"""

from devtools.funchost.config import HostConfig, QueueOptions, load_host_json
from devtools.funchost.host import FuncHost

__all__ = ["FuncHost", "HostConfig", "QueueOptions", "load_host_json"]
