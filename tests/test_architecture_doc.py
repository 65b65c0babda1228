"""docs/architecture.md's Layout names every product module in its own folder's entry, so the page cannot fall
behind the code: a module added, moved or renamed without the page fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("mcbench/base/", "mcbench/", "optimizer/", "bench/", "reports/")


def layout_entries() -> dict[str, str]:
    """Folder -> the text of its entry in the Layout block (an entry starts where a line starts with its folder)."""
    block = (ROOT / "docs" / "architecture.md").read_text().split("## Layout", 1)[1].split("```")[1]
    entries: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        head = next((f for f in FOLDERS if line.startswith(f)), None)
        if head is not None:
            current = head
            line = line[len(head):]
        elif line[:1] not in ("", " "):
            current = None  # another folder's entry (docs/, deploy/, ...)
        if current is not None:
            entries[current] = entries.get(current, "") + " " + line
    return entries


def product_modules() -> list[tuple[str, str]]:
    """(folder entry, file name) of every product module; the passes are described under optimizer/."""
    out = []
    for top in ("mcbench", "optimizer", "bench", "reports"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py" or "/templates/" in rel:
                continue
            folder = "mcbench/base/" if rel.startswith("mcbench/base/") else f"{top}/"
            out.append((folder, path.name))
    return out


def test_the_layout_names_every_product_module_under_its_folder():
    entries = layout_entries()
    assert set(entries) == set(FOLDERS)
    missing = [f"{folder}{name}" for folder, name in product_modules()
               if not re.search(rf"(?<![\w.]){re.escape(name)}\b", entries[folder])]
    assert not missing, f"docs/architecture.md's Layout does not name: {', '.join(missing)}"


def test_the_layout_names_no_module_that_is_gone():
    modules = set(product_modules())
    named = {(folder, name) for folder, text in layout_entries().items()
             for name in re.findall(r"(?<![\w.])(\w+\.py)\b", text) if name != "__init__.py"}
    assert not named - modules, f"the Layout names modules that do not exist: {sorted(named - modules)}"
