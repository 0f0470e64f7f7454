"""Docs and code stand on their own: they cite papers and the project's own files, never
planning documents outside the repository or tracker numbers, which users do not have."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"\b(METHODS|DESIGN|STYLE|GPU)\.md\b|\b[Ii]ssues? #?\d+")


def test_no_reference_to_documents_outside_the_repository() -> None:
    found = []
    for folder in ("medssl", "docs", "benchmarks", "scripts", "tests"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".md", ".yaml", "") or not path.is_file():
                continue
            if path == Path(__file__).resolve():
                continue
            for number, line in enumerate(path.read_text(errors="ignore").splitlines(), 1):
                if OUTSIDE.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    readme = (ROOT / "README.md").read_text()
    found += [f"README.md: {m.group(0)}" for m in OUTSIDE.finditer(readme)]
    assert not found, "cite the paper or the project's own file instead:\n" + "\n".join(found)
