"""Resolving models and tokenizers given as objects, Hub ids, local folders or GGUF files."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from .errors import MismatchError, ModelError, TokenizerError
from .gguf import is_gguf

logger = logging.getLogger(__name__)

TASK_AUTO_CLASSES = {
    "masked": "AutoModelForMaskedLM",
    "causal": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "base": "AutoModel",
}


def load_model(source, task: str | None = None, **kwargs):
    """Load a model from a Hub id or local folder, with the class its config names.

    Args:
        source: Hub id or folder.
        task: "masked", "causal", "seq2seq" or "base" to force an Auto class; by default
            the first class of ``config.architectures`` is used.

    Raises:
        ModelError: the source cannot be loaded.
    """
    import transformers

    if task is not None:
        if task not in TASK_AUTO_CLASSES:
            raise ModelError(f"task must be one of {sorted(TASK_AUTO_CLASSES)}, not {task!r}")
        cls = getattr(transformers, TASK_AUTO_CLASSES[task])
    else:
        try:
            config = transformers.AutoConfig.from_pretrained(source)
        except Exception as e:  # noqa: BLE001 - re-raised with the fix
            raise ModelError(f"Cannot load a model config from {source!r}: {e}. Pass a Hub id, a local model folder or a .gguf file.") from e
        archs = getattr(config, "architectures", None) or []
        cls = getattr(transformers, archs[0], None) if archs else None
        if cls is None:
            cls = transformers.AutoModelForMaskedLM if getattr(config, "model_type", "") in ("bert",) else transformers.AutoModel
    return cls.from_pretrained(source, **kwargs)


def load_tokenizer(source, **kwargs):
    """Fast tokenizer from an object, Hub id, folder or GGUF file."""
    if source is None:
        return None
    if hasattr(source, "backend_tokenizer") or hasattr(source, "convert_ids_to_tokens"):
        return source
    if is_gguf(source):
        from .gguf import gguf_tokenizer

        return gguf_tokenizer(source)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise TokenizerError(f"Cannot load a tokenizer from {source!r}: {e}. Pass a tokenizer object, Hub id or folder.") from e


def resolve_source(model, source_tokenizer, task: str | None = None):
    """(model, source tokenizer, provenance dict) for any accepted form of the source."""
    provenance: dict = {}
    if isinstance(model, (str, os.PathLike)):
        provenance["source"] = str(model)
        if is_gguf(model):
            from .gguf import load_gguf

            loaded, gguf_tok = load_gguf(model)
            provenance["source_sha256"] = file_sha256(model)
            model = loaded
            source_tokenizer = source_tokenizer if source_tokenizer is not None else gguf_tok
        else:
            if source_tokenizer is None:
                source_tokenizer = load_tokenizer(model)
            path = Path(model)
            model = load_model(model, task=task)
            if path.is_dir():
                provenance["source_sha256"] = folder_weights_sha256(path)
            else:
                provenance["source_revision"] = getattr(model.config, "_commit_hash", None)
    else:
        name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
        provenance["source"] = name or f"<{type(model).__name__}>"
        if source_tokenizer is None:
            if not name:
                raise TokenizerError(
                    "The source model was given as an object without a name_or_path, so its tokenizer "
                    "cannot be found. Pass source_tokenizer=... (the tokenizer the model was trained with)."
                )
            source_tokenizer = load_tokenizer(name)
    if not hasattr(model, "get_input_embeddings"):
        raise ModelError(f"{type(model).__name__} is not a transformers model. Pass a PreTrainedModel, a Hub id, a folder or a .gguf file.")
    source_tokenizer = load_tokenizer(source_tokenizer)
    return model, source_tokenizer, provenance


def check_pair(model, tokenizer, what: str = "source") -> None:
    """Raise MismatchError when a tokenizer cannot belong to a model."""
    emb = model.get_input_embeddings()
    rows = getattr(getattr(emb, "weight", None), "shape", [None])[0]
    if rows is None:
        return
    n = len(tokenizer)
    if n > rows:
        raise MismatchError(
            f"The {what} tokenizer has {n} tokens but the model's embedding matrix has only {rows} rows, "
            f"so they do not belong together. Pass the tokenizer the model was trained with "
            f"({'source_tokenizer=...' if what == 'source' else 'the matching tokenizer'})."
        )
    if n < rows // 2:
        raise MismatchError(
            f"The {what} tokenizer has {n} tokens but the model has {rows} embedding rows: "
            "this looks like a tokenizer from another model. Pass the tokenizer the model was trained with."
        )


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_weights_sha256(path: Path) -> str | None:
    files = sorted(p for p in Path(path).iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of the tokenizer's full tokenizer.json (vocabulary and pipeline)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
