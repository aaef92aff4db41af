"""Fixtures of the update tier (helpers.py says how projects and template releases are made here)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.update.helpers import CHAIN_SPEC, DAG_SPEC, Tier, clone


@pytest.fixture(scope="session")
def tier(tmp_path_factory) -> Tier:
    root = tmp_path_factory.mktemp("update-tier")
    home = root / "home"
    home.mkdir()
    templates = root / "templates-v1"
    # OPEA_NEW_TEST_TEMPLATES: snapshot another templates folder (e.g. `git archive HEAD templates` while
    # the checkout's templates are half-edited).
    source = Path(os.environ.get("OPEA_NEW_TEST_TEMPLATES") or REPO / "templates")
    shutil.copytree(source, templates, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return Tier(root, home, templates)


@pytest.fixture(scope="session")
def dag_origin(tier) -> Path:
    return tier.generate(DAG_SPEC, tier.root / "origins" / "grow-dag")


@pytest.fixture(scope="session")
def chain_origin(tier) -> Path:
    return tier.generate(CHAIN_SPEC, tier.root / "origins" / "grow-chain")


@pytest.fixture
def dag(dag_origin, tmp_path) -> Path:
    """A fresh clone of the DAG project: a user's checkout, clean, one commit."""
    return clone(dag_origin, tmp_path / "grow-dag")


@pytest.fixture
def chain(chain_origin, tmp_path) -> Path:
    return clone(chain_origin, tmp_path / "grow-chain")
