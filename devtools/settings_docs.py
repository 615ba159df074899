"""Bring README's settings table and the sample settings files in line with ``shared/settings.py``.

Run after adding a setting: ``python -m devtools.settings_docs``. New settings enter the sample file with
their defaults (secrets empty); existing sample values are kept. ``local.settings.real-tenant.sample.json``
is the sample with ``REAL_TENANT`` applied: a local run against a real tenant (real Graph, client secret,
a public webhook URL). Unit tests check all three stay in sync.
"""

from __future__ import annotations

import json
import re
from typing import Any

from devtools.azurite import ROOT
from shared.settings import Settings

SAMPLE = ROOT / "local.settings.sample.json"
REAL_TENANT_SAMPLE = ROOT / "local.settings.real-tenant.sample.json"
# What differs from the simulator sample for a real tenant; placeholders are shaped so the file validates
# once GRAPH_CLIENT_SECRET is filled in.
REAL_TENANT = {
    "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
    "GRAPH_AUTH_MODE": "client_secret",
    "GRAPH_TENANT_ID": "contoso.onmicrosoft.com",
    "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-000000000000",
    "GRAPH_CLIENT_SECRET": "",
    "GRAPH_STATIC_TOKEN": "",
    "WEBHOOK_BASE_URL": "https://your-public-tunnel.example.net/api",
    "GRAPH_SUBSCRIPTIONS": "users=updated,deleted",
    "GRAPH_EVENTHUB__fullyQualifiedNamespace": "",  # the sample's names the harness's stand-in only
}
README = ROOT / "README.md"
HARNESS_KEYS = ("FUNCHOST_FUNCTION_KEY", "FUNCHOST_MASTER_KEY")


def main() -> None:
    sample = json.loads(SAMPLE.read_text(encoding="utf-8"))
    values: dict[str, str] = sample["Values"]
    for spec in Settings.specs():
        values.setdefault(spec.name, "" if spec.secret or spec.default is None else spec.default)
    for key in HARNESS_KEYS:  # harness settings last, apart from the app's
        if key in values:
            values[key] = values.pop(key)
    SAMPLE.write_text(json.dumps(sample, indent=2) + "\n", encoding="utf-8")
    REAL_TENANT_SAMPLE.write_text(real_tenant_sample(sample), encoding="utf-8")

    text = README.read_text(encoding="utf-8")
    pattern = re.compile(r"(<!-- settings-table[^>]*-->\n).*?(\n<!-- /settings-table -->)", re.S)
    README.write_text(pattern.sub(lambda m: m.group(1) + settings_table() + m.group(2), text), encoding="utf-8")


def settings_table() -> str:
    """README's settings table, generated from the declarations so the two cannot drift."""
    rows = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    for spec in Settings.specs():
        default = "(secret)" if spec.secret else (f"`{spec.default}`" if spec.default is not None else "—")
        rows.append(f"| `{spec.name}` | {default} | {spec.description} |")
    return "\n".join(rows)


def real_tenant_sample(sample: dict[str, Any]) -> str:
    """The real-tenant example file's text: the sample with ``REAL_TENANT``'s values."""
    values = {key: REAL_TENANT.get(key, value) for key, value in sample["Values"].items()}
    return json.dumps({**sample, "Values": values}, indent=2) + "\n"


if __name__ == "__main__":
    main()
