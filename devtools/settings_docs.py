"""Bring README's settings table and local.settings.sample.json in line with ``shared/settings.py``.

Run after adding a setting: ``python -m devtools.settings_docs``. New settings enter the sample file with
their defaults (secrets empty); existing sample values are kept. A unit test checks both stay in sync.
"""

from __future__ import annotations

import json
import re

from devtools.azurite import ROOT
from shared.settings import Settings, settings_table

SAMPLE = ROOT / "local.settings.sample.json"
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

    text = README.read_text(encoding="utf-8")
    pattern = re.compile(r"(<!-- settings-table[^>]*-->\n).*?(\n<!-- /settings-table -->)", re.S)
    README.write_text(pattern.sub(lambda m: m.group(1) + settings_table() + m.group(2), text), encoding="utf-8")


if __name__ == "__main__":
    main()
