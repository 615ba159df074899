"""The test command's Bicep fallback (no CLI): every infra file parses, a broken one is named and fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.bicep_parse import main, parse_all

pytest.importorskip("pycep")  # requirements-dev.txt; absent only in a venv older than that line

INFRA = Path(__file__).resolve().parents[2] / "infra"


def test_every_infra_file_parses_and_names_its_resource_api_versions() -> None:
    resources, errors = parse_all(INFRA)
    assert errors == []
    assert "Microsoft.Web/sites@2024-11-01" in resources
    assert all("@" in r and not r.endswith("@None") for r in resources)


def test_a_file_that_does_not_parse_fails_with_its_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.bicep").write_text("param name string\n", encoding="utf-8")
    (tmp_path / "broken.bicep").write_text("param name string =\n", encoding="utf-8")
    assert main([str(tmp_path)]) == 1
    output = capsys.readouterr().out
    assert "broken.bicep" in output
    assert "good.bicep" not in output
