"""README's "What we tested" table names tests that exist, so it stays current."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## What we tested", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")][2:]


def test_every_row_names_a_test_that_exists():
    rows = _rows()
    assert len(rows) >= 10
    for row in rows:
        cited = re.search(r"`(test_\w+\.py)::(test_\w+)`\s*\|\s*$", row)
        assert cited, f"row names no test: {row}"
        module, name = cited.groups()
        source = (ROOT / "tests" / module).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{module}::{name} is gone"
