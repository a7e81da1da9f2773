"""README.md is the short front door: the two commands, at most 250 lines, and every file it links to
exists (the docs site's own links are checked by `mkdocs build --strict` in scripts/test.sh)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_readme_is_short_and_gives_the_two_commands():
    assert len(README.splitlines()) <= 250
    assert "bash scripts/demo.sh" in README and "bash scripts/test.sh" in README


def test_every_file_the_readme_links_to_exists():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if "://" not in link]
    assert local, "the README links to the docs"
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing


def test_every_docs_page_is_in_the_site_nav():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = {p.name for p in (REPO / "docs").glob("*.md")}
    assert pages, "docs/ has pages"
    assert not [p for p in sorted(pages) if p not in nav]
