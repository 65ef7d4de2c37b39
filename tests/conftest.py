"""Shared fixtures: real texts and models from installed packages (no Hub access)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest

from hf_vocabswap import assets


@pytest.fixture(scope="session")
def ukrainian_train() -> list[str]:
    """About 300k characters of real Ukrainian training text (UA-GEC train essays)."""
    return assets.ukrainian_texts("train", max_chars=300_000)


@pytest.fixture(scope="session")
def ukrainian_heldout() -> list[str]:
    """About 30k characters of held-out Ukrainian (UA-GEC test essays, no shared essay)."""
    return assets.ukrainian_texts("heldout", max_chars=30_000)


@pytest.fixture(scope="session")
def splade_path():
    return assets.splade_tiny_path()
