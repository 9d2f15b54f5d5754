"""The README stays short and the docs site stays whole: pages, links, the commands shown.

CI builds the site with `mkdocs build --strict` (.ci/run), which also checks anchors; these
checks run without MkDocs installed.
"""

import pathlib
import re

import tomllib
import yaml

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / 'docs'
README_MAX_LINES = 320

# A Markdown link or image target, relative, without its #anchor: [text](target#anchor).
_LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)\s]*)?\)')


def _nav_pages(nav):
  """The Markdown files a mkdocs.yml nav names, in order."""
  for entry in nav:
    value = next(iter(entry.values())) if isinstance(entry, dict) else entry
    if isinstance(value, list):
      yield from _nav_pages(value)
    else:
      yield value


def _relative_links(text):
  return [t for t in _LINK.findall(text) if not re.match(r'[a-z]+:', t)]


def test_the_readme_is_short():
  lines = len((REPO / 'README.md').read_text().splitlines())
  assert lines <= README_MAX_LINES, (
    f'README.md has {lines} lines (at most {README_MAX_LINES}): move the detail to a page in docs/'
  )


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
  site = yaml.safe_load((REPO / 'mkdocs.yml').read_text())
  pages = list(_nav_pages(site['nav']))
  assert [p for p in pages if not (DOCS / p).is_file()] == []
  on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob('*.md')}
  assert on_disk - set(pages) == set(), 'pages missing from mkdocs.yml nav'


def test_the_readmes_links_into_docs_exist():
  targets = _relative_links((REPO / 'README.md').read_text())
  assert any(t.startswith('docs/') for t in targets)
  assert [t for t in targets if not (REPO / t).exists()] == []


def test_links_between_pages_stay_inside_docs_and_exist():
  broken = []
  for page in DOCS.rglob('*.md'):
    for target in _relative_links(page.read_text()):
      path = (page.parent / target).resolve()
      if not path.is_relative_to(DOCS) or not path.exists():
        broken.append(f'{page.relative_to(REPO)}: {target}')
  assert broken == []


def test_the_commands_the_readme_shows_exist():
  readme = (REPO / 'README.md').read_text()
  scripts = tomllib.loads((REPO / 'pyproject.toml').read_text())['project']['scripts']
  # A command starts a line of a code block, follows `&& ` or opens a code span.
  shown = set(re.findall(r'(?:^|&& |`)(samplernn-[a-z-]+[a-z])\b', readme, re.M))
  assert shown and shown <= set(scripts), shown - set(scripts)
  # Configs by path, or by the name of a shipped one (configs/NAME.py).
  paths = set(re.findall(r'--config=(configs/[\w/]+\.py)', readme))
  names = set(re.findall(r'--config=(\w+)\b', readme))
  assert 'demo' in names
  missing = [c for c in paths | {f'configs/{n}.py' for n in names} if not (REPO / c).is_file()]
  assert missing == []
