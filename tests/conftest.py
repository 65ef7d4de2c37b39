"""Shared fixtures: real texts and models from installed packages (no Hub access)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import re

import pytest

from hf_vocabswap import assets

# An absolute POSIX or Windows path (not a URL's path: no ':', '/' or word character before it).
_LOCAL_PATH = re.compile(r"(?<![\w:/.\-])/(?:[\w.@+-]+/)+[\w.@+-]*|\b[A-Za-z]:\\[^\s`|]+")


def local_paths_in(text: str) -> list[str]:
    """The absolute paths of this machine a text names (a model card must name none)."""
    return _LOCAL_PATH.findall(text)


@pytest.fixture(scope="session", autouse=True)
def no_local_path_in_any_written_card(tmp_path_factory):
    """After the session: no model card that a test wrote (README.md with the hf-vocabswap tag under
    pytest's temporary folder) names an absolute path of this machine."""
    yield
    offenders = {}
    for readme in tmp_path_factory.getbasetemp().rglob("README.md"):
        text = readme.read_text(encoding="utf-8", errors="replace")
        if "- hf-vocabswap" in text and local_paths_in(text):
            offenders[str(readme)] = local_paths_in(text)[:3]
    assert not offenders, f"model cards naming local paths: {offenders}"


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
