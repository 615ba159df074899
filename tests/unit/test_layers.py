"""The layering contract stays complete: every module of shared/ is either part of the composition root
(or an entry point) or listed as a feature that must not import it (pyproject.toml, import-linter)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSITION_ROOT = {
    "shared.container",
    "shared.wiring",
    "shared.wiring_mirror",
    "shared.wiring_rich",
    "shared.invocation",
    "shared.ops",
}


def test_every_shared_module_is_a_feature_or_part_of_the_composition_root() -> None:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layering,) = [c for c in contracts if "shared.invocation" in c.get("forbidden_modules", [])]
    features = set(layering["source_modules"])
    top_level = {
        f"shared.{p.stem if p.is_file() else p.name}"
        for p in (ROOT / "shared").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert top_level - COMPOSITION_ROOT == features
