"""docs/rules.md carries the claims table exactly as the registry says."""

from __future__ import annotations

from pathlib import Path

from .conformance.table import known, reasons, table

PAGE = Path(__file__).parent.parent / "docs" / "rules.md"


def test_rules_page_table_is_current() -> None:
    text = PAGE.read_text()
    assert table() in text, "regenerate: python -m tests.conformance.table"
    assert reasons() in text, "regenerate: python -m tests.conformance.table"
    assert known() in text, "regenerate: python -m tests.conformance.table"
