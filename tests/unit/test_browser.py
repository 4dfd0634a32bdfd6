"""The browser the page tests use starts and draws what it is given."""

from __future__ import annotations

from pathlib import Path

from tests.browser import chromium_page


def test_chromium_draws_a_local_page(tmp_path: Path) -> None:
    page_file = tmp_path / "page.html"
    page_file.write_text(
        "<!doctype html><title>t</title><table><tr><td id=c>clip A123456</td></tr></table>",
        encoding="utf-8",
    )
    with chromium_page() as page:
        page.goto(page_file.as_uri())
        cell = page.locator("#c")
        assert cell.inner_text() == "clip A123456"
        box = cell.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
