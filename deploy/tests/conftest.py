"""Fixtures: the repository's own deployment files, loaded fresh for every test (tests mutate them)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from validation import compose, k8s

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def _docs() -> list[dict]:
    return [doc for _, doc in k8s.load_listed(ROOT / "k8s")[1]]


@pytest.fixture
def docs(_docs: list[dict]) -> list[dict]:
    return copy.deepcopy(_docs)


@pytest.fixture
def compose_doc() -> dict:
    return compose.load(ROOT / "docker-compose.yml")


def find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
