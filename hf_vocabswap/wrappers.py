"""AutoModel-style classes that transplant a tokenizer while loading, cached on disk.

::

    from hf_vocabswap.wrappers import VocabSwapAutoModelForMaskedLM

    model, tokenizer = VocabSwapAutoModelForMaskedLM.from_pretrained(
        "FacebookAI/xlm-roberta-base", target_tokenizer="my-org/uk-32k",
        corpus="uk_train.txt", return_tokenizer=True,       # method="auto", as the library
    )

The first call runs :func:`hf_vocabswap.transplant.transplant_tokenizer` and saves the
result in a cache folder; later calls with the same inputs load that folder with the stock
transformers Auto class and compute nothing. The folder is keyed by everything that decides
the weights: the source's identity (Hub commit, or the files of a local folder or GGUF file),
the fingerprints of the target (and given source) tokenizer, the method and all its options
(defaults filled in), the corpus content hash, the seed, the task, the padding multiple, the
device and the hf_vocabswap version. Change any of them and the transplant is recomputed.

The cache lives in ``cache_dir``, else ``$HF_VOCABSWAP_CACHE/transplants``, else
``~/.cache/hf_vocabswap/transplants``. Every cached folder is a normal hf_vocabswap output
(weights, tokenizer, ``vocabswap.json``, model card): ``hf-vocabswap push`` accepts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, ClassVar

import transformers
from filelock import FileLock
from huggingface_hub import HfApi, constants

from .version import __version__
from . import transplant as orchestration  # looked up at call time: one entry point, patchable in tests
from .corpus import Corpus
from .loading import load_tokenizer, tokenizer_fingerprint
from .methods import get_method
from .methods.base import recorded_value
from .record import RECORD_FILE

logger = logging.getLogger(__name__)

CACHE_ENV = "HF_VOCABSWAP_CACHE"
CACHE_SUBDIR = "transplants"
KEY_FORMAT = 1


def default_cache_dir() -> Path:
    """``$HF_VOCABSWAP_CACHE/transplants``, or ``~/.cache/hf_vocabswap/transplants``."""
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "hf_vocabswap"
    return base / CACHE_SUBDIR


# ------------------------------------------------------------------------ cache keys


def source_identity(source) -> dict:
    """What identifies a source model for the cache.

    * a local folder: its resolved path and the name, size and modification time of every
      file in it (editing or replacing a file changes the key);
    * a ``.gguf`` file: its resolved path, size and modification time;
    * a Hub id: the id and the commit it resolves to (from the Hub, or from the local
      Hugging Face cache when offline); without a known commit the id alone.

    Raises:
        TypeError: ``source`` is a model object (pass its Hub id or folder instead).
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"The source must be a Hub id, a model folder or a .gguf file to be cached, not a "
            f"{type(source).__name__}. For a model object call hf_vocabswap.transplant_tokenizer directly."
        )
    path = Path(source).expanduser()
    if path.is_dir():
        return {"kind": "folder", "path": str(path.resolve()), "files": _file_stats(path)}
    if path.is_file():
        st = path.stat()
        return {"kind": "file", "path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"kind": "hub", "repo_id": str(source), "commit": _hub_commit(str(source))}


def _file_stats(folder: Path) -> list:
    return [
        [p.name, p.stat().st_size, p.stat().st_mtime_ns]
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".")
    ]


def _hub_commit(repo_id: str) -> str | None:
    if not constants.HF_HUB_OFFLINE:
        try:
            return HfApi().model_info(repo_id).sha
        except Exception as e:  # noqa: BLE001 - fall back to the local cache
            logger.debug("cannot resolve %s on the Hub: %s", repo_id, e)
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    if ref.is_file():
        return ref.read_text(encoding="utf-8").strip()
    logger.warning("cannot tell which commit of %s would be loaded: the transplant cache cannot notice updates of it", repo_id)
    return None


def _option_files(options: dict) -> dict:
    """Options naming existing files (fastText models, dictionaries): their size and mtime.

    Folders are left out: they are caches or outputs (``cache_dir``), whose contents change
    without changing the result.
    """
    out = {}
    for name, value in sorted(options.items()):
        if isinstance(value, str) and value and len(value) < 4096 and not name.endswith("cache_dir"):
            path = Path(value).expanduser()
            if path.is_file():
                out[name] = [path.stat().st_size, path.stat().st_mtime_ns]
    return out


def transplant_cache_key(
    source,
    target_tokenizer,
    method: str,
    *,
    corpus=None,
    seed: int = 42,
    task: str | None = None,
    source_tokenizer=None,
    pad_to_multiple_of: int | None = None,
    device: str = "cpu",
    method_options: dict | None = None,
) -> dict | None:
    """The inputs that decide a transplant's weights, as a JSON-ready dict.

    ``target_tokenizer`` and ``source_tokenizer`` must be tokenizer objects and ``corpus`` a
    :class:`~hf_vocabswap.corpus.Corpus` (or None). Returns None when an option is an object
    that cannot be keyed (e.g. a fastText model instance): such transplants are not cached.

    Raises:
        UnknownMethodError, MethodOptionError: as :func:`~hf_vocabswap.transplant.transplant_tokenizer`.
    """
    options = _keyed_options(method, dict(method_options or {}))
    opaque = sorted(k for k, v in options.items() if isinstance(v, str) and v.startswith("<") and v.endswith(">") and v != (method_options or {}).get(k))
    if opaque:
        logger.info("not caching: option(s) %s are objects, which cannot be keyed; pass paths instead", ", ".join(opaque))
        return None
    return {
        "format": KEY_FORMAT,
        "hf_vocabswap": __version__,
        "source": source_identity(source),
        "source_tokenizer": tokenizer_fingerprint(source_tokenizer) if source_tokenizer is not None else None,
        "target_tokenizer": tokenizer_fingerprint(target_tokenizer),
        "method": method,
        "options": options,
        "option_files": _option_files(options),
        "corpus": corpus.content_hash() if corpus is not None else None,
        "seed": seed,
        "task": task,
        "pad_to_multiple_of": pad_to_multiple_of,
        "device": device,
    }


def _keyed_options(method: str, options: dict) -> dict:
    """The options that decide the weights: every field of the method's config (defaults filled
    in); for a dispatcher such as ``auto`` whose pick is not known yet, the given ones.

    Raises:
        MethodOptionError: an option that neither the method nor any method it may pick has.
    """
    cls = get_method(method)
    cls.check_options(options)
    if cls.candidates() == (cls.name,):
        return cls.config_class.from_options(method, options).to_dict()
    return {k: recorded_value(options[k]) for k in sorted(options)}


def keyed_method(method: str, task: str | None, corpus) -> str:
    """The method a cache key names: a dispatcher (``auto``) resolved when the model kind is known
    (``task``), so that ``auto`` and the method it picks share one cached folder."""
    cls = get_method(method)
    if task is None or cls.candidates() == (cls.name,):
        return method
    return cls.resolve(model_kind=task, has_corpus=corpus is not None)[0].name


def key_digest(key: dict) -> str:
    """SHA-256 of a cache key (sorted JSON)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()


def _slug(source) -> str:
    name = Path(str(source).rstrip("/\\")).name.removesuffix(".gguf") or "model"
    return re.sub(r"[^\w.-]+", "-", name)[:60].strip("-.") or "model"


# ------------------------------------------------------------------------ the cache


def cached_transplant(
    source,
    target_tokenizer,
    method: str = "auto",
    *,
    corpus=None,
    seed: int = 42,
    task: str | None = None,
    cache_dir=None,
    source_tokenizer=None,
    pad_to_multiple_of: int | None = None,
    device: str = "cpu",
    force: bool = False,
    **method_options,
) -> Path:
    """The folder holding the transplant of ``source`` to ``target_tokenizer``, computed only if missing.

    Args:
        source: Hub id, local model folder or ``.gguf`` file (not a model object).
        target_tokenizer: tokenizer object, Hub id or folder.
        method: a registered method name, or "auto" (the default, as ``transplant_tokenizer``).
        corpus: target-language text (path, list of strings, dataset or Corpus).
        seed: seed of every random choice.
        task: "masked", "causal", "seq2seq" or "base": the Auto class the source loads with.
        cache_dir: the cache folder (default: :func:`default_cache_dir`).
        source_tokenizer: the source's tokenizer when it cannot be found from ``source``.
        pad_to_multiple_of, device: as :func:`~hf_vocabswap.transplant.transplant_tokenizer`.
        force: recompute and replace the cached folder.
        **method_options: the method's options.

    Returns:
        The cached folder (a complete hf_vocabswap output).

    Raises:
        TypeError: ``source`` is a model object, or an option is an object (nothing to key).
        Everything :func:`~hf_vocabswap.transplant.transplant_tokenizer` raises.
    """
    folder, key, prepared = _prepare(source, target_tokenizer, method, corpus=corpus, seed=seed, task=task,
                                     cache_dir=cache_dir, source_tokenizer=source_tokenizer,
                                     pad_to_multiple_of=pad_to_multiple_of, device=device, method_options=method_options)
    if folder is None:
        raise TypeError("this transplant cannot be cached: an option is an object; pass a path, or call transplant_tokenizer")
    return _fill(folder, key, prepared, force=force)


def _prepare(source, target_tokenizer, method, *, corpus, seed, task, cache_dir, source_tokenizer, pad_to_multiple_of, device, method_options):
    target = load_tokenizer(target_tokenizer)
    src_tok = load_tokenizer(source_tokenizer) if source_tokenizer is not None else None
    corpus = Corpus.coerce(corpus)
    key = transplant_cache_key(source, target, keyed_method(method, task, corpus), corpus=corpus, seed=seed, task=task, source_tokenizer=src_tok,
                               pad_to_multiple_of=pad_to_multiple_of, device=device, method_options=method_options)
    prepared = dict(source=source, target=target, method=method, source_tokenizer=src_tok, corpus=corpus, seed=seed,
                    task=task, pad_to_multiple_of=pad_to_multiple_of, device=device, method_options=dict(method_options))
    if key is None:
        return None, None, prepared
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{_slug(source)}--{key['method']}--{key_digest(key)[:24]}", key, prepared


def _transplant(prepared, **extra):
    p = prepared
    return orchestration.transplant_tokenizer(
        p["source"], p["target"], p["method"], source_tokenizer=p["source_tokenizer"], corpus=p["corpus"],
        seed=p["seed"], task=p["task"], pad_to_multiple_of=p["pad_to_multiple_of"], device=p["device"],
        **extra, **p["method_options"],
    )


def _fill(folder: Path, key: dict, prepared: dict, *, force: bool) -> Path:
    if (folder / RECORD_FILE).is_file() and not force:
        logger.info("loading the cached transplant %s", folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One process computes; another asking for the same key waits and then loads.
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        if (folder / RECORD_FILE).is_file() and not force:
            return folder
        logger.info("transplanting %s (%s) into the cache: %s", prepared["source"], prepared["method"], folder)
        result = _transplant(prepared)
        result.save_pretrained(folder, overwrite=True)
        (folder.parent / f"{folder.name}.key.json").write_text(json.dumps(key, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------ Auto classes


class _VocabSwapAutoBase:
    """Shared ``from_pretrained`` of the VocabSwapAutoModel* classes (not instantiable)."""

    task: ClassVar[str | None] = None
    auto_class: ClassVar[str] = "AutoModel"

    def __init__(self, *args, **kwargs):
        raise OSError(f"{type(self).__name__} is designed to be instantiated with {type(self).__name__}.from_pretrained(...).")

    @classmethod
    def from_pretrained(
        cls,
        source,
        target_tokenizer,
        method: str = "auto",
        *,
        corpus=None,
        seed: int = 42,
        cache_dir=None,
        source_tokenizer=None,
        pad_to_multiple_of: int | None = None,
        device: str = "cpu",
        force: bool = False,
        return_tokenizer: bool = False,
        load_kwargs: dict[str, Any] | None = None,
        **method_options,
    ):
        """Transplant ``target_tokenizer`` into ``source`` (or reuse the cached result) and load it.

        Args:
            source: Hub id, local model folder or ``.gguf`` file.
            target_tokenizer: the new tokenizer (object, Hub id or folder).
            method: a registered method name (``hf_vocabswap.available_methods()``); "auto" (the
                default) picks as ``transplant_tokenizer`` does.
            corpus: target-language text for methods that learn from it.
            seed: seed of every random choice.
            cache_dir: where transplants are cached (default ``$HF_VOCABSWAP_CACHE/transplants``
                or ``~/.cache/hf_vocabswap/transplants``).
            source_tokenizer: the source's tokenizer, when it cannot be found from ``source``.
            pad_to_multiple_of, device: as :func:`~hf_vocabswap.transplant.transplant_tokenizer`.
            force: recompute even if the cache holds the result.
            return_tokenizer: also return the new tokenizer, as ``(model, tokenizer)``.
            load_kwargs: passed to the stock ``from_pretrained`` (``dtype``, ``device_map`` ...).
            **method_options: the method's options.

        Returns:
            A stock transformers model (e.g. ``BertForMaskedLM``) loaded from the cached folder,
            or ``(model, tokenizer)``. ``model.name_or_path`` is the cached folder.

        Raises:
            TypeError: ``source`` is a model object.
            Everything :func:`~hf_vocabswap.transplant.transplant_tokenizer` raises.
        """
        folder, key, prepared = _prepare(source, target_tokenizer, method, corpus=corpus, seed=seed, task=cls.task,
                                         cache_dir=cache_dir, source_tokenizer=source_tokenizer,
                                         pad_to_multiple_of=pad_to_multiple_of, device=device, method_options=method_options)
        if folder is None:  # options that cannot be keyed: compute, return the objects
            # In memory: a streamed result keeps its body on disk and could not run.
            result = _transplant(prepared, low_memory=False)
            return (result.model, result.tokenizer) if return_tokenizer else result.model
        folder = _fill(folder, key, prepared, force=force)
        model = getattr(transformers, cls.auto_class).from_pretrained(folder, **(load_kwargs or {}))
        if return_tokenizer:
            return model, transformers.AutoTokenizer.from_pretrained(folder)
        return model


class VocabSwapAutoModelForMaskedLM(_VocabSwapAutoBase):
    """Like ``AutoModelForMaskedLM``, with the vocabulary replaced while loading."""

    task = "masked"
    auto_class = "AutoModelForMaskedLM"


class VocabSwapAutoModelForCausalLM(_VocabSwapAutoBase):
    """Like ``AutoModelForCausalLM``, with the vocabulary replaced while loading."""

    task = "causal"
    auto_class = "AutoModelForCausalLM"


class VocabSwapAutoModelForSeq2SeqLM(_VocabSwapAutoBase):
    """Like ``AutoModelForSeq2SeqLM``, with the vocabulary replaced while loading."""

    task = "seq2seq"
    auto_class = "AutoModelForSeq2SeqLM"


class VocabSwapAutoModel(_VocabSwapAutoBase):
    """Like ``AutoModel`` (no head), with the vocabulary replaced while loading."""

    task = "base"
    auto_class = "AutoModel"


__all__ = [
    "VocabSwapAutoModel",
    "VocabSwapAutoModelForCausalLM",
    "VocabSwapAutoModelForMaskedLM",
    "VocabSwapAutoModelForSeq2SeqLM",
    "cached_transplant",
    "default_cache_dir",
    "source_identity",
    "transplant_cache_key",
]
