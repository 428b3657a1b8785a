"""The documentation's links lead somewhere: every relative link in the README and the Markdown
files under ``docs/`` and ``benchmarks/`` names a file that exists and, with ``#anchor``, a
heading of that file (GitHub's anchors). A renamed heading or a section moved to another page
otherwise leaves links that open the top of a 4000-line page, or nothing."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "benchmarks").glob("*.md")]
)
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation dropped (letters of any
    script, digits, ``_`` and ``-`` kept), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@lru_cache
def anchors(page: Path) -> set[str]:
    """Every anchor GitHub gives the headings of ``page`` (a repeated one gets ``-1``, ``-2``…)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``page`` whose file or heading does not exist (paths in the
    messages relative to ``root``)."""
    bad = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                bad.append(f"{target} (no file {dest.relative_to(root)})")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{target} (no heading #{anchor} in {dest.relative_to(root)})")
    return bad


def test_slug_follows_github() -> None:
    assert slug("Where the learning engine stands (2026-12-07)") == (
        "where-the-learning-engine-stands-2026-12-07"
    )
    assert slug("Ensembles: `unet+rf` and `unet+patch-cnn`") == "ensembles-unetrf-and-unetpatch-cnn"
    assert slug("the Lovász loss — six seeds") == "the-lovász-loss--six-seeds"


def test_broken_links_finds_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("# B\n\n## Real part\n", encoding="utf-8")
    page.write_text(
        "# A\n\n[ok](b.md#real-part) [gone](b.md#old-part) [self](#a) [file](c.md)\n"
        "```\n[in code](#nowhere)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "b.md#old-part (no heading #old-part in b.md)",
        "c.md (no file c.md)",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_resolve(page: Path) -> None:
    assert broken_links(page) == []
