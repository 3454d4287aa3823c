"""The README and docs/ stand alone: every link points inside the repository, at a file (and heading) that
exists, and every page of docs/ is reachable from the index."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "events" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Written on other branches of the same change (the spool's local setup, the fuzzing guides): linked already.
COMING = {"docs/spool.md", "docs/fuzzing.md", "docs/api-fuzzing.md", "docs/anomalies.md"}
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_stays_in_the_repository_and_arrives(page: Path) -> None:
    text = FENCE.sub("", page.read_text())
    assert "../shared" not in text
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
        relative = str(resolved.relative_to(ROOT))
        if relative in COMING:
            continue
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: no heading #{anchor} in {relative}"


def test_every_docs_page_is_in_the_index() -> None:
    index = (ROOT / "docs" / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"]({page.name})" in index, f"docs/README.md does not link {page.name}"
    for coming in COMING:
        assert f"]({Path(coming).name})" in index


def test_the_front_page_stays_a_front_page() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text) < 8_000, "the README is the front page: guides go to docs/"
    for heading in ("## Two commands", "## A first request", "## Where to go next"):
        assert heading in text
