"""docs/ARCHITECTURE.md names every module of the service, and only modules that exist.

A row may name several files of one folder (`engine/strategies/uniform.py`,
`filter.py`, ...: later names inherit the folder of the first) or a glob
(`store/lua/*.lua`).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "service" / "src" / "knapsack_service"
DOC = ROOT / "docs" / "ARCHITECTURE.md"


def documented() -> set[str]:
    """Module paths named in the first cell of the "Modules of the service" table."""
    text = DOC.read_text()
    section = text.split("## Modules of the service", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        folder = ""
        for name in re.findall(r"`([^`]+)`", line.split("|")[1]):
            if "/" in name:
                folder = name.rsplit("/", 1)[0] + "/"
                full = name
            else:
                full = folder + name
            if "*" in full:
                names.update(str(p.relative_to(PACKAGE)) for p in PACKAGE.glob(full))
                assert any(PACKAGE.glob(full)), f"{full} matches nothing"
            else:
                names.add(full)
    return names


def modules() -> set[str]:
    found = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")}
    found |= {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.lua")}
    # Empty package markers carry nothing to document.
    return {name for name in found if (PACKAGE / name).stat().st_size > 0}


def test_every_service_module_is_in_the_table() -> None:
    missing = sorted(modules() - documented())
    assert not missing, f"add these to docs/ARCHITECTURE.md: {missing}"


def test_the_table_names_no_module_that_is_gone() -> None:
    gone = sorted(documented() - modules())
    assert not gone, f"docs/ARCHITECTURE.md lists modules that do not exist: {gone}"
