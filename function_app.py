"""The Functions app: builds the FunctionApp and registers the blueprints. No I/O, no settings at import."""

import azure.functions as func

from triggers import maintenance, notifications, operations, subscriptions, users_api

app = func.FunctionApp()
app.register_functions(maintenance.bp)
app.register_functions(users_api.bp)
app.register_functions(notifications.bp)
app.register_functions(subscriptions.bp)
app.register_functions(operations.bp)
