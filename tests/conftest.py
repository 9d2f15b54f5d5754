"""Shared test helpers: the PRiSM fixtures and tiny configs."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
# In the repository (scripts/make_prism_fixtures.py writes them), so parity runs in any
# clone; the shared folder beside the checkout is the fallback for older branches.
PRISM_FIXTURE_DIRS = (REPO / 'tests' / 'testdata' / 'prism',
                      REPO.parent / 'shared' / 'fixtures' / 'prism')


def prism_case(name: str) -> pathlib.Path:
  for root in PRISM_FIXTURE_DIRS:
    if (root / name).is_dir():
      return root / name
  pytest.skip(f'PRiSM fixture {name} not found in {[str(r) for r in PRISM_FIXTURE_DIRS]}')


@pytest.fixture
def tiny_config():
  from configs import tiny
  return tiny.get_config()
