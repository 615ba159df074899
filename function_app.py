"""The Functions app: builds the FunctionApp and registers the blueprints. No I/O, no settings at import."""

import azure.functions as func

from shared.wiring import registry
from triggers import eventhubs, maintenance, mirror, notifications, operations, subscriptions, users_api

app = func.FunctionApp()
app.register_functions(maintenance.bp)
app.register_functions(users_api.bp)
app.register_functions(notifications.bp)
app.register_functions(subscriptions.bp)
app.register_functions(operations.bp)
app.register_functions(mirror.bp)
app.register_functions(eventhubs.bp)


async def on_shutdown() -> None:
    """Close the per-process clients (Storage, Graph, credential) once the host stops invoking.

    The Python worker has no app shutdown callback for v2 apps (azure-functions-python-worker #1521,
    #1904), so in Azure the process just ends; a host that can call one (``devtools.funchost``) calls
    this on the invocations' event loop after the last one finished, so no session is left unclosed.
    """
    await registry.aclose()
