"""Resolving models and tokenizers given as objects, Hub ids, local folders or GGUF files."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoTokenizer

from huggingface_hub.utils import validate_repo_id

from .errors import MismatchError, ModelError, PathNotFoundError, TokenizerError
from .gguf import gguf_tokenizer, is_gguf, load_gguf

logger = logging.getLogger(__name__)

TASK_AUTO_CLASSES = {
    "masked": "AutoModelForMaskedLM",
    "causal": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
    "base": "AutoModel",
}


_FILE_SUFFIXES = (".gguf", ".json", ".safetensors", ".bin", ".model", ".txt", ".pt", ".pth")


def looks_like_path(text: str) -> bool:
    """Whether a string that names nothing on disk was meant as a path rather than a Hub id
    (``owner/name``): absolute or relative markers, backslashes, several slashes, file suffixes."""
    if text.startswith(("/", "./", "../", "~", ".")) or "\\" in text or text.count("/") > 1 or text.endswith(_FILE_SUFFIXES):
        return True
    try:
        validate_repo_id(text)
    except Exception:  # noqa: BLE001 - HFValidationError: not a repo id, so a path
        return True
    return False


def check_source_path(source, *, what: str, files: tuple[str, ...] = (".gguf",), needs: str | None = "config.json") -> None:
    """Fail early, with a message saying so, when ``source`` is a path that cannot be what is asked.

    A string is taken as a Hub id only when it names nothing on disk and looks like one
    (:func:`looks_like_path`). Objects are left alone.

    Args:
        source: what the user gave.
        what: what it should be, for the message ("model", "source tokenizer", "target tokenizer").
        files: file suffixes that are accepted as such (a model: ``.gguf``).
        needs: the file a folder must hold (a model folder: ``config.json``), or None.

    Raises:
        PathNotFoundError: the path does not exist, or is a file where a folder is expected
            (e.g. ``model.safetensors`` or ``tokenizer.json`` given instead of their folder).
        ModelError: ``what`` is a model and the folder holds no ``needs`` file.
        TokenizerError: ``what`` is a tokenizer and the folder holds no tokenizer file.
    """
    if not isinstance(source, (str, os.PathLike)):
        return
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_file():
        if text.endswith(files):
            return
        raise PathNotFoundError(
            f"The {what} {text!r} is a file ({path.name}); pass the folder that holds it ({str(path.parent)!r})"
            + (" or a .gguf file." if ".gguf" in files else "."),
            path=text,
        )
    if path.is_dir():
        if what.endswith("tokenizer"):
            if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json")):
                raise TokenizerError(f"The {what} folder {text!r} holds no tokenizer (no tokenizer.json or tokenizer_config.json). Pass a folder saved by tokenizer.save_pretrained, or a Hub id.")
        elif needs and not (path / needs).is_file():
            raise ModelError(f"The {what} folder {text!r} is not a model folder: it has no {needs}. Pass a folder written by save_pretrained, a Hub id or a .gguf file.")
        return
    if looks_like_path(text):
        raise PathNotFoundError(f"The {what} {text!r} does not exist (no such file or folder). Check the path, or pass a Hub id (owner/name).", path=text)


def load_model(source, task: str | None = None, **kwargs):
    """Load a model from a Hub id or local folder, with the class its config names.

    Args:
        source: Hub id or folder.
        task: "masked", "causal", "seq2seq" or "base" to force an Auto class; by default
            the first class of ``config.architectures`` is used.

    Raises:
        ModelError: the source cannot be loaded.
    """
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


def load_tokenizer(source, *, what: str = "tokenizer", **kwargs):
    """Fast tokenizer from an object, Hub id, folder or GGUF file.

    Raises:
        PathNotFoundError: a path that does not exist, or a file that is not a GGUF file.
        TokenizerError: a folder without a tokenizer, or one that cannot be loaded.
    """
    if source is None:
        return None
    if hasattr(source, "backend_tokenizer") or hasattr(source, "convert_ids_to_tokens"):
        return source
    check_source_path(source, what=what)
    if is_gguf(source):
        return gguf_tokenizer(source)
    try:
        return AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as e:  # noqa: BLE001 - re-raised with the fix
        raise TokenizerError(f"Cannot load a tokenizer from {source!r}: {e}. Pass a tokenizer object, Hub id or folder.") from e


@dataclass
class SourceModel:
    """The source of a transplant, loaded.

    Attributes:
        model: the model to transplant (a copy of a given object unless asked otherwise; on the
            meta device but for its vocabulary tensors when streamed).
        tokenizer: the tokenizer the model was trained with.
        provenance: ``source`` (id, path or object name) and ``source_sha256`` or ``source_revision``.
        checkpoint: the :class:`hf_vocabswap.streaming.SafetensorsCheckpoint` whose other weights
            stay on disk (streamed sources), else None.
        own_tokenizer: the tokenizer saved with the model, when another one was given as its
            tokenizer (checked against it, see :func:`check_pair`), else None.
    """

    model: Any
    tokenizer: Any
    provenance: dict = field(default_factory=dict)
    checkpoint: Any = None
    own_tokenizer: Any = None


def open_source(model, source_tokenizer=None, *, task: str | None = None, inplace: bool = False) -> SourceModel:
    """Load the source of a transplant (see :func:`resolve_source`); a given model object is
    deep-copied unless ``inplace``, so the transplant never changes the caller's model.

    Raises:
        ModelError, TokenizerError: see :func:`resolve_source`.
    """
    given_object = not isinstance(model, (str, bytes, os.PathLike)) and hasattr(model, "get_input_embeddings")
    loaded, tokenizer, provenance = resolve_source(model, source_tokenizer, task=task)
    if given_object and not inplace:
        loaded = copy.deepcopy(loaded)
    own = None
    if not given_object and source_tokenizer is not None:
        own = gguf_tokenizer(model) if is_gguf(model) else own_tokenizer(model)
    return SourceModel(loaded, tokenizer, provenance, own_tokenizer=own)


def resolve_source(model, source_tokenizer, task: str | None = None):
    """(model, source tokenizer, provenance dict) for any accepted form of the source.

    Raises:
        ModelError: the source cannot be loaded or is not a transformers model.
        TokenizerError: a model object without a name was given without its tokenizer.
    """
    provenance: dict = {}
    if isinstance(model, (str, os.PathLike)):
        check_source_path(model, what="model")
        provenance["source"] = str(model)
        if is_gguf(model):
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
    source_tokenizer = load_tokenizer(source_tokenizer, what="source tokenizer")
    return model, source_tokenizer, provenance


_CHECKED_IDS = ("bos", "eos", "pad", "unk")


def check_pair(model, tokenizer, what: str = "source", *, own_tokenizer=None, rows_only: bool = False) -> None:
    """Raise MismatchError when a tokenizer cannot belong to a model.

    Checked: the vocabulary fits the embedding rows (and is not far smaller); the special ids
    the model's config names (bos, eos, pad, unk) are the tokenizer's; and, when the model came
    with a tokenizer of its own (``own_tokenizer``), the vocabularies are the same.
    ``rows_only`` checks the rows alone (``allow_mismatch=True``).

    Raises:
        MismatchError: one of these does not hold (the message says which, and what to pass;
            ``allow_mismatch=True`` / ``--allow-mismatch`` accepts the tokenizer anyway).
    """
    if not rows_only:
        _check_special_ids(model, tokenizer, what)
    if not rows_only and own_tokenizer is not None and own_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise MismatchError(
            f"The {what} tokenizer given is not the one saved with the model (their vocabularies differ), so the "
            "model's rows would be read for the wrong tokens. Leave source_tokenizer unset to use the model's own, or "
            "pass allow_mismatch=True (CLI: --allow-mismatch) if this is intended."
        )
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


def _check_special_ids(model, tokenizer, what: str) -> None:
    config = getattr(model, "config", None)
    for role in _CHECKED_IDS:
        expected = getattr(config, f"{role}_token_id", None)
        actual = getattr(tokenizer, f"{role}_token_id", None)
        if isinstance(expected, int) and isinstance(actual, int) and expected != actual:
            raise MismatchError(
                f"The model's config gives {role}_token_id={expected}, but the {what} tokenizer's {role} token "
                f"{getattr(tokenizer, f'{role}_token', None)!r} has id {actual}: the tokenizer does not belong to the model. "
                "Pass the tokenizer the model was trained with, or allow_mismatch=True (CLI: --allow-mismatch)."
            )


def own_tokenizer(source):
    """The tokenizer saved with a model folder or Hub repo, or None when there is none."""
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception:  # noqa: BLE001 - a model without tokenizer files: nothing to compare
        return None


def file_sha256(path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_weights_sha256(path: Path) -> str | None:
    """SHA-256 over the names and hashes of a folder's weight files (None when it has none)."""
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
