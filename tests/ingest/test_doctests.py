"""The examples in the ingest modules' docstrings are true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["ingest.urls", "ingest.normalise", "ingest.service"]


@pytest.mark.parametrize("name", MODULES, ids=MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0 and result.attempted > 0
