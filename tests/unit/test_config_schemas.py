"""host.json and azure.yaml match the schemas ./dev test validates them against, and those checks can fail
(the same check-jsonschema the test command runs, on the vendored schemas in schemas/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def check(schema: str, document: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "check_jsonschema", "--schemafile", str(ROOT / "schemas" / schema), str(document)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("schema", "document"), [("host.schema.json", "host.json"), ("azure.yaml.schema.json", "azure.yaml")]
)
def test_config_files_match_their_schema(schema: str, document: str) -> None:
    result = check(schema, ROOT / document)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_host_json_or_azure_yaml_is_rejected(tmp_path: Path) -> None:
    """A misspelled setting type in host.json and an unknown service host in azure.yaml both fail."""
    host = json.loads((ROOT / "host.json").read_text())
    host["extensions"]["queues"]["batchSize"] = "sixteen"
    (tmp_path / "host.json").write_text(json.dumps(host))
    assert check("host.schema.json", tmp_path / "host.json").returncode == 1
    azure = (ROOT / "azure.yaml").read_text().replace("host: function", "host: mainframe")
    (tmp_path / "azure.yaml").write_text(azure)
    result = check("azure.yaml.schema.json", tmp_path / "azure.yaml")
    assert result.returncode == 1
    assert "mainframe" in result.stdout
