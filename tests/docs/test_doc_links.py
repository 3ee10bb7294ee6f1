"""Relative links between README.md, CHANGELOG.md and docs/*.md point to files that exist, and
the pages a newcomer starts from are linked from the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(((?!https?://|mailto:|#)[\w./-]+(?:#[\w-]*)?)\)")


def test_relative_links_resolve() -> None:
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            path = target.split("#", 1)[0]
            if path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_links_the_newcomer_pages() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in ("getting-started", "troubleshooting", "compatibility"):
        assert f"(docs/{page}.md)" in readme
    assert "(CHANGELOG.md)" in readme
