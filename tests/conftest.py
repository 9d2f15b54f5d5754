"""Shared test helpers: the fixtures folder beside the checkout and tiny configs."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PRISM_FIXTURES = REPO.parent / 'shared' / 'fixtures' / 'prism'


def prism_case(name: str) -> pathlib.Path:
  path = PRISM_FIXTURES / name
  if not path.is_dir():
    pytest.skip(f'PRiSM fixtures not found at {path}')
  return path


@pytest.fixture
def tiny_config():
  from configs import tiny
  return tiny.get_config()
