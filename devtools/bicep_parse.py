"""Parse every ``.bicep`` file under a folder with pycep-parser: the test command's fallback when no Bicep CLI
is installed (NuGet, where the CLI comes from, is not reachable everywhere).

This checks syntax only. It does NOT compile: types, scopes, property names, module parameters and API
versions are not checked (the Bicep CLI does that, in CI). The resource types and API versions found are
printed so a reader can compare them with the current docs.

Usage: ``python -m devtools.bicep_parse infra`` (exit 1 with the file and error when one does not parse).
"""

from __future__ import annotations

import sys
from pathlib import Path


def parse_all(folder: Path) -> tuple[list[str], list[str]]:
    """(``type@apiVersion`` of every resource and existing reference, ``file: error`` of every failure)."""
    from pycep import BicepParser  # type: ignore[import-not-found, unused-ignore]  # (until .venv has it)

    parser = BicepParser()
    resources: set[str] = set()
    errors: list[str] = []
    for path in sorted(folder.rglob("*.bicep")):
        try:
            tree = parser.parse(file_path=path)
        except Exception as error:  # lark's parse errors have no common base worth naming here
            errors.append(f"{path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            continue
        for resource in tree.get("resources", {}).values():
            resources.add(f"{resource.get('type')}@{resource.get('api_version')}")
    return sorted(resources), errors


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv or sys.argv[1:] or ["infra"])[0])
    files = sorted(folder.rglob("*.bicep"))
    if not files:
        print(f"   no .bicep files under {folder}")
        return 1
    resources, errors = parse_all(folder)
    for error in errors:
        print(f"   !! {error}")
    if errors:
        return 1
    print(f"   {len(files)} .bicep files under {folder}/ parsed (pycep-parser): syntax only, NOT compiled")
    print("   resource API versions: " + ", ".join(resources))
    return 0


if __name__ == "__main__":
    sys.exit(main())
