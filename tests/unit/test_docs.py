"""The reference site (docs/, mkdocs.yml) builds with --strict, and README's links into it resolve.

A moved heading or renamed page must fail here, not leave a dead link on the entry page or the site.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# Inline links, skipping images; the target up to the first space or ')'.
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def _mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    # Never --quiet: it drops the warnings before strict mode counts them, and the build passes.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2, not ours
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "--config-file", str(project / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=project, env=env, capture_output=True, text=True, timeout=120,
    )


def _links(markdown: str) -> list[str]:
    return _LINK.findall(_FENCE.sub("", markdown))


def _anchors(page: Path) -> set[str]:
    """The ids MkDocs' toc extension gives the page's headings (permalink slugs)."""
    anchors: set[str] = set()
    for line in _FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"`([^`]*)`", r"\1", match.group(1))
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
            anchors.add(slugify(text, "-"))
    return anchors


def _nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def _nav() -> list[str]:
    # mkdocs.yml holds a !!python/name tag (the mermaid fence); the nav needs no such constructor.
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)
    return _nav_pages(yaml.load((REPO / "mkdocs.yml").read_text(), Loader=Loader)["nav"])


def test_site_builds_strict(tmp_path: Path) -> None:
    result = _mkdocs_build(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    for page in _nav():
        html = (tmp_path / "site" / page).with_suffix(".html")
        assert html.is_file(), page
        # The README check below computes heading ids itself: they must be the ones the site has.
        ids = set(re.findall(r'\bid="([^"]+)"', html.read_text()))
        assert _anchors(DOCS / page) - ids == set(), page


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    """The guard itself: a dead anchor in a copy of the docs must fail the build, naming the link."""
    project = tmp_path / "project"
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(REPO / "mkdocs.yml", project / "mkdocs.yml")
    with (project / "docs" / "data.md").open("a") as page:
        page.write("\nSee [exit codes](cli.md#no-such-heading).\n")
    result = _mkdocs_build(project, tmp_path / "site")
    assert result.returncode != 0
    assert "cli.md#no-such-heading" in result.stderr


def test_every_docs_page_is_in_the_nav() -> None:
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert pages == set(_nav())


def test_readme_links_resolve() -> None:
    """Every relative README link names a file that exists, and a heading that the page has."""
    broken = []
    for target in _links((REPO / "README.md").read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (REPO / path) if path else REPO / "README.md"
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert broken == []


def test_readme_links_every_reference_page() -> None:
    linked = {target.partition("#")[0] for target in _links((REPO / "README.md").read_text())}
    assert {f"docs/{page}" for page in _nav()} - linked == set()


@pytest.mark.parametrize("text, expected", [
    ("## Exit codes", {"exit-codes"}),
    ("# Promotion (`flows/deploy.py`)", {"promotion-flowsdeploypy"}),
    ("```\n## not a heading\n```\n### Post-deployment watch", {"post-deployment-watch"}),
])
def test_anchors_follow_mkdocs_slugs(tmp_path: Path, text: str, expected: set[str]) -> None:
    page = tmp_path / "page.md"
    page.write_text(text + "\n")
    assert _anchors(page) == expected
