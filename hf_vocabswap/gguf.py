"""Load GGUF checkpoints (llama.cpp format) as Hugging Face models with a correct tokenizer.

transformers can dequantize a GGUF file into a PyTorch model
(``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``), but:

* converting takes long (about 50 s for Gemma-3-270m on 2 CPU cores), so
  :func:`load_gguf` converts once and caches a ``save_pretrained`` copy;
* its tokenizer conversion has been wrong for Gemma in some transformers releases (the
  vocabulary read as a Unigram model, the GGUF scores taken as log-probabilities, while for
  Gemma they are BPE merge ranks, ``score = -(id - 494)``: " Hello world" then becomes
  ``▁H el lo ▁w or ld``; 3.1 instead of 1.8 bits per character on Ukrainian). transformers
  5.24 rebuilds it correctly (its output is identical to ours), but :func:`gguf_tokenizer`
  rebuilds SentencePiece-BPE vocabularies of the Gemma family itself, so the result does not
  depend on the installed release, and uses transformers' conversion for the other
  tokenizers (byte-level BPE such as SmolLM2/Llama-3, ...).

Every tokenizer returned is a generic :class:`transformers.PreTrainedTokenizerFast`
(``TokenizersBackend`` in transformers 5), never a model-specific class, so that its saved
``tokenizer.json`` reloads as is.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
from tokenizers.models import BPE

from .errors import ModelError, ResourceError, TokenizerError

logger = logging.getLogger(__name__)

__all__ = [
    "is_gguf",
    "read_gguf_tokenizer_metadata",
    "gguf_tokenizer",
    "gguf_cache_dir",
    "gguf_cache_key",
    "load_gguf",
]

# Bump when the conversion below changes, so that stale cached conversions are not reused.
CACHE_FORMAT_VERSION = 1
CACHE_MARKER = "hf_vocabswap_gguf.json"
CACHE_ENV = "HF_VOCABSWAP_CACHE"

# llama.cpp token types (gguf.TokenType)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6

# Architectures whose GGUF tokenizer ("tokenizer.ggml.model" == "llama", i.e. SentencePiece)
# is a SentencePiece BPE vocabulary without merges, scores being merge ranks, and whose
# pipeline is Gemma's: spaces replaced by "▁", no dummy prefix, byte fallback.
_GEMMA_SENTENCEPIECE_ARCHS = {"gemma", "gemma2", "gemma3", "gemma3n", "gemma-embedding", "gemma_embedding"}

_SPIECE_SPACE = "\u2581"  # ▁


def is_gguf(path) -> bool:
    """True when ``path`` (a string or path; anything else gives False) names an existing file
    ending in ``.gguf`` (any case)."""
    try:
        p = Path(path)
    except TypeError:
        return False
    return p.suffix.lower() == ".gguf" and p.is_file()


def _require_gguf_package():
    try:
        import gguf  # noqa: F401  # optional: the gguf package is only needed for .gguf inputs
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ResourceError(
            "Reading GGUF files needs the `gguf` package, which is not installed. "
            "Install it with `pip install gguf` (or `pip install 'hf-vocabswap[gguf]'`)."
        ) from exc
    return gguf


def _check_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ResourceError(f"GGUF file {str(p)!r} does not exist. Pass the path of a .gguf file.")
    if p.suffix.lower() != ".gguf":
        raise ResourceError(
            f"{str(p)!r} does not end in .gguf. Pass a GGUF checkpoint (llama.cpp format), or load "
            "a Hugging Face folder with AutoModelForCausalLM.from_pretrained instead."
        )
    return p


def _field_value(field) -> Any:
    """Decode a scalar or array field of a GGUFReader without going through slow generic code."""
    from gguf import GGUFValueType  # optional: the gguf package is only needed for .gguf inputs

    types = field.types
    if not types:
        return None
    if types[0] == GGUFValueType.ARRAY:
        if len(types) > 1 and types[1] == GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8", errors="replace") for i in field.data]

        if not field.data:
            return []
        return np.concatenate([field.parts[i] for i in field.data]).tolist()
    if types[0] == GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", errors="replace")
    value = field.parts[field.data[0]]
    return value.tolist()[0] if hasattr(value, "tolist") else value


def read_gguf_tokenizer_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The tokenizer metadata of a GGUF file, read with ``gguf.GGUFReader``.

    ``GGUFReader`` takes seconds on a 262k-token vocabulary, so the last two files read are
    remembered (keyed by resolved path, size and mtime); every call returns fresh lists.

    Returns a dict with the keys ``architecture``, ``model`` (``tokenizer.ggml.model``:
    "llama" for SentencePiece, "gpt2" for byte-level BPE, ...), ``pre``, ``tokens``,
    ``scores``, ``token_type``, ``merges`` (or None), ``bos_token_id``, ``eos_token_id``,
    ``unk_token_id``, ``pad_token_id``, ``add_bos_token``, ``add_eos_token``,
    ``context_length`` and ``chat_template`` (missing values are None).
    """
    p = _check_path(path)
    st = p.stat()
    meta = _read_metadata_cached(str(p.resolve()), st.st_size, st.st_mtime_ns)
    return {k: (list(v) if isinstance(v, list) else v) for k, v in meta.items()}


@functools.lru_cache(maxsize=2)
def _read_metadata_cached(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    gguf = _require_gguf_package()
    p = Path(path)
    try:
        reader = gguf.GGUFReader(str(p), "r")
    except Exception as exc:  # corrupt or truncated file
        raise ResourceError(
            f"Could not read {str(p)!r} as a GGUF file ({type(exc).__name__}: {exc}). The file is "
            "truncated or not a GGUF checkpoint; download or assemble it again."
        ) from exc
    fields = reader.fields

    def get(key, default=None):
        field = fields.get(key)
        return default if field is None else _field_value(field)

    arch = get("general.architecture")
    tokens = get("tokenizer.ggml.tokens")
    if not tokens:
        raise TokenizerError(
            f"GGUF file {str(p)!r} holds no tokenizer (no tokenizer.ggml.tokens). Load the tokenizer "
            "from the original Hugging Face repository instead."
        )
    meta = {
        "architecture": arch,
        "model": get("tokenizer.ggml.model"),
        "pre": get("tokenizer.ggml.pre"),
        "tokens": tokens,
        "scores": get("tokenizer.ggml.scores"),
        "token_type": get("tokenizer.ggml.token_type"),
        "merges": get("tokenizer.ggml.merges"),
        "bos_token_id": get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": get("tokenizer.ggml.eos_token_id"),
        "unk_token_id": get("tokenizer.ggml.unknown_token_id"),
        "pad_token_id": get("tokenizer.ggml.padding_token_id"),
        "add_bos_token": get("tokenizer.ggml.add_bos_token"),
        "add_eos_token": get("tokenizer.ggml.add_eos_token"),
        "add_space_prefix": get("tokenizer.ggml.add_space_prefix"),
        "chat_template": get("tokenizer.chat_template"),
        "context_length": get(f"{arch}.context_length") if arch else None,
    }
    del reader
    return meta


def _needs_sentencepiece_bpe_rebuild(meta: dict[str, Any]) -> bool:
    """Gemma-family SentencePiece vocabularies whose scores are merge ranks, without merges."""
    if meta.get("model") != "llama" or meta.get("merges"):
        return False
    arch = (meta.get("architecture") or "").lower()
    return arch in _GEMMA_SENTENCEPIECE_ARCHS


def _merge_ranks(meta: dict[str, Any]) -> dict[str, float]:
    """A score per mergeable token, higher = merged earlier.

    For Gemma, normal tokens carry ``score = -(id - 494)`` (merge ranks, strictly decreasing
    with the id); user-defined pieces (whitespace runs, ``<table>``...) carry a placeholder
    -1000 and are matched whole as added tokens anyway. When the scores of the normal tokens
    do not strictly decrease with the id the scores are not ranks, and the file order is used instead
    (SentencePiece writes BPE pieces in merge order).
    """
    tokens, scores, types = meta["tokens"], meta.get("scores"), meta.get("token_type")
    if types is None:
        types = [_NORMAL] * len(tokens)
    normal = [i for i, t in enumerate(types) if t == _NORMAL]
    use_scores = scores is not None and all(scores[a] > scores[b] for a, b in zip(normal, normal[1:]))
    if not use_scores:
        logger.info("GGUF scores are not merge ranks; ordering merges by token position instead.")
    ranks: dict[str, float] = {}
    for i in normal:
        ranks[tokens[i]] = float(scores[i]) if use_scores else float(-i)
    return ranks


def _generate_merges(vocab: dict[str, int], ranks: dict[str, float]) -> list[tuple[str, str]]:
    """Merges implied by a BPE vocabulary, best first, derived the way transformers'
    SentencePiece extractor does it: every split of a ranked piece into two pieces of the
    vocabulary is a merge; merges are sorted by the score of the merged piece (highest
    first), then by the lengths of the left and right parts (longest first), then by the ids
    of the two parts."""
    merges: list[tuple[float, int, int, str, str]] = []
    for piece, score in ranks.items():
        local = []
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            il = vocab.get(left)
            if il is None:
                continue
            ir = vocab.get(right)
            if ir is not None:
                local.append((il, ir, left, right))
        local.sort()
        merges.extend((score, len(left), len(right), left, right) for _, _, left, right in local)
    # stable sort: equal keys keep the (piece order, part ids) order built above
    merges.sort(key=lambda m: (m[0], m[1], m[2]), reverse=True)
    return [(m[3], m[4]) for m in merges]


def _build_sentencepiece_bpe(meta: dict[str, Any]):
    """A tokenizers.Tokenizer equivalent to Gemma's SentencePiece BPE model."""

    tokens = list(meta["tokens"])
    types = meta.get("token_type") or [_NORMAL] * len(tokens)
    # llama.cpp stores runs of spaces as real spaces; the model sees them as "▁" runs
    # (the normalizer turns every space into "▁" before the model or added tokens see it).
    for i, tok in enumerate(tokens):
        if tok and not tok.strip(" ") and " " in tok:
            tokens[i] = _SPIECE_SPACE * len(tok)
    vocab: dict[str, int] = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok, i)
    if len(vocab) != len(tokens):
        raise TokenizerError(
            f"The GGUF vocabulary has {len(tokens) - len(vocab)} duplicate token strings, so it cannot "
            "be rebuilt as a BPE model. Load the tokenizer from the original Hugging Face repository."
        )
    unk_id = meta.get("unk_token_id")
    if unk_id is None:
        unk_id = next((i for i, t in enumerate(types) if t == _UNKNOWN), None)
    if unk_id is None and "<unk>" in vocab:
        unk_id = vocab["<unk>"]
    unk_token = tokens[unk_id] if unk_id is not None else None

    ranks = _merge_ranks(dict(meta, tokens=tokens))
    merges = _generate_merges(vocab, ranks)
    model = BPE(
        vocab=vocab,
        merges=merges,
        unk_token=unk_token,
        fuse_unk=True,
        byte_fallback=True,
        dropout=None,
    )
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", _SPIECE_SPACE)
    tok.pre_tokenizer = None  # SentencePiece sees the whole (normalized) text as one sequence
    tok.decoder = decoders.Sequence(
        [decoders.Replace(_SPIECE_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    # Control tokens (<bos>, <start_of_turn>, <unusedN>, ...) are special; user-defined pieces
    # (newline/space/tab runs, <table>, ...) are matched whole in the normalized text, as
    # SentencePiece matches them before merging.
    control = [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t in (_CONTROL, _UNKNOWN)]
    user = [AddedToken(tokens[i], special=False, normalized=True) for i, t in enumerate(types) if t == _USER_DEFINED]
    tok.add_special_tokens(control)
    tok.add_tokens(user)

    bos_id = meta.get("bos_token_id")
    eos_id = meta.get("eos_token_id")
    add_bos = True if meta.get("add_bos_token") is None else bool(meta["add_bos_token"])
    add_eos = bool(meta.get("add_eos_token") or False)
    single, pair, specials = ["$A:0"], ["$A:0"], []
    if add_bos and bos_id is not None:
        bos = tokens[bos_id]
        single = [f"{bos}:0"] + single
        pair = [f"{bos}:0", "$A:0", f"{bos}:1", "$B:1"]
        specials.append((bos, bos_id))
    else:
        pair = ["$A:0", "$B:1"]
    if add_eos and eos_id is not None:
        eos = tokens[eos_id]
        single = single + [f"{eos}:0"]
        pair = pair[:pair.index("$B:1")] + [f"{eos}:0"] + pair[pair.index("$B:1"):] + [f"{eos}:1"]
        specials.append((eos, eos_id))
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    return tok, add_bos, add_eos


def _special_token_kwargs(tokens: list[str], meta: dict[str, Any]) -> dict[str, str]:
    kwargs = {}
    for role in ("bos", "eos", "unk", "pad"):
        idx = meta.get(f"{role}_token_id")
        if idx is not None and 0 <= int(idx) < len(tokens):
            kwargs[f"{role}_token"] = tokens[int(idx)]
    return kwargs


def gguf_tokenizer(path: str | os.PathLike):
    """A correct fast tokenizer for the vocabulary stored in a GGUF file.

    Gemma-family SentencePiece-BPE vocabularies (``tokenizer.ggml.model == "llama"``, no
    merges, scores = merge ranks) are rebuilt here as a BPE model: merges derived from the
    ranks, ``byte_fallback=True``, ``fuse_unk=True``, control tokens as special added tokens,
    user-defined pieces (whitespace runs, ``<table>``...) as added tokens, normalizer
    ``Replace(" ", "▁")``, no pre-tokenizer, decoder ``Replace("▁", " ")`` + ``ByteFallback`` +
    ``Fuse`` and a post-processor that prepends ``<bos>`` (as the file's ``add_bos_token``
    says). Every other vocabulary goes through transformers' own GGUF conversion.

    bos/eos/pad/unk come from the file's metadata and ``model_max_length`` from its context
    length. The result is a generic :class:`transformers.PreTrainedTokenizerFast`.

    Raises:
        ResourceError: the file is missing, not a GGUF, or the ``gguf`` package is missing.
        TokenizerError: the file holds no tokenizer, or one that cannot be converted.
    """
    from transformers import PreTrainedTokenizerFast  # lazy: transformers costs seconds at start-up; only GGUF inputs need it here

    p = _check_path(path)
    meta = read_gguf_tokenizer_metadata(p)
    ctx = meta.get("context_length")
    extra: dict[str, Any] = {}
    if ctx:
        extra["model_max_length"] = int(ctx)

    if _needs_sentencepiece_bpe_rebuild(meta):
        backend, add_bos, add_eos = _build_sentencepiece_bpe(meta)
        specials = _special_token_kwargs(meta["tokens"], meta)
        if meta.get("chat_template"):
            extra["chat_template"] = meta["chat_template"]
        tok = PreTrainedTokenizerFast(
            tokenizer_object=backend,
            add_bos_token=add_bos,
            add_eos_token=add_eos,
            clean_up_tokenization_spaces=False,
            **specials,
            **extra,
        )
        # The post-processor built above is authoritative (transformers may rebuild it from
        # add_bos_token/add_eos_token; both agree, but keep ours).
        tok.backend_tokenizer.post_processor = backend.post_processor
        tok.name_or_path = str(p)
        return tok

    try:
        tok = PreTrainedTokenizerFast.from_pretrained(str(p.parent), gguf_file=p.name, **extra)
    except Exception as exc:
        raise TokenizerError(
            f"transformers could not convert the tokenizer of {str(p)!r} "
            f"(architecture {meta.get('architecture')!r}, tokenizer model {meta.get('model')!r}): "
            f"{type(exc).__name__}: {exc}. Load the tokenizer from the original Hugging Face "
            "repository, or upgrade transformers."
        ) from exc
    return tok


# ----------------------------------------------------------------------------------------------
# model loading with a converted-copy cache


def gguf_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Root folder of the converted-GGUF cache: ``cache_dir``, else ``$HF_VOCABSWAP_CACHE``
    (its ``gguf`` subfolder), else ``~/.cache/hf_vocabswap/gguf``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / "gguf"
    return Path.home() / ".cache" / "hf_vocabswap" / "gguf"


def gguf_cache_key(path: str | os.PathLike) -> str:
    """Cache key of a GGUF file: sha256 of its file name, size and modification time (ns),
    plus this module's conversion format version.

    The file content is deliberately not hashed (that would read hundreds of MB on every
    load): replacing the file changes its size or mtime and so the key. Copying the file
    elsewhere under the same name with the same mtime (``cp -p``) reuses the cached copy.
    """
    p = Path(path)
    st = p.stat()
    text = f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\0v{CACHE_FORMAT_VERSION}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _cache_entry(path: Path, cache_dir) -> Path:
    return gguf_cache_dir(cache_dir) / f"{path.stem}-{gguf_cache_key(path)}"


def _cache_is_complete(folder: Path) -> bool:
    return (folder / CACHE_MARKER).is_file() and (folder / "config.json").is_file()


def _convert_gguf_model(path: Path, dtype: torch.dtype):
    """Dequantize the GGUF checkpoint into a PyTorch model with transformers (slow)."""
    _require_gguf_package()
    from transformers import AutoModelForCausalLM  # lazy: transformers costs seconds at start-up; only GGUF inputs need it here

    kwargs: dict[str, Any] = {}
    try:  # transformers >= 5.x can keep GGUF blocks packed; ask for a plain dense model
        from transformers import GgufConfig  # optional: only in transformers versions that have it

        kwargs["quantization_config"] = GgufConfig(gguf_file=str(path), dequantize=True)
    except ImportError:  # older releases always dequantize
        pass
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype, **kwargs)
    except ImportError as exc:
        raise ResourceError(
            f"Loading {str(path)!r} needs a package that is missing ({exc}). Install it with "
            "`pip install gguf accelerate`."
        ) from exc
    except Exception as exc:
        raise ModelError(
            f"transformers could not load the model in GGUF file {str(path)!r} "
            f"({type(exc).__name__}: {exc}). Check that transformers supports its architecture "
            "(upgrade transformers), or load the original Hugging Face checkpoint instead."
        ) from exc
    return _drop_gguf_quantizer(model, path)


def _drop_gguf_quantizer(model, path: Path):
    """Detach transformers' GGUF quantizer from a fully dequantized model.

    The weights are then plain tensors, but ``save_pretrained`` refuses any model that still
    carries a quantizer that is not serializable; without it the model saves and reloads as an
    ordinary checkpoint.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return model
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if str(getattr(method, "value", method)).lower() != "gguf":
        return model
    packed = [n for n, m in model.named_modules() if type(m).__name__.lower().startswith("gguf")]
    not_float = [n for n, t in model.state_dict().items() if not t.is_floating_point()]
    if packed or not_float:
        raise ModelError(
            f"transformers kept weights of {str(path)!r} in packed GGUF blocks ({(packed or not_float)[:3]} ...), "
            "so the model cannot be saved as an ordinary checkpoint. Uninstall the `kernels` package "
            "or upgrade hf_vocabswap."
        )
    quantizer.remove_quantization_config(model)
    model._weight_conversions = None
    return model


def _load_cached(folder: Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast  # lazy: start-up cost, GGUF inputs only

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    return model, tokenizer


def load_gguf(
    path: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    torch_dtype: torch.dtype = torch.float32,
):
    """Load a GGUF causal LM as ``(model, tokenizer)``, converting it once and caching the result.

    The first call dequantizes the file with
    ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`` (slow: about 50 s for
    Gemma-3-270m on 2 cores), builds the tokenizer with :func:`gguf_tokenizer`, and writes both
    with ``save_pretrained`` (weights in float32, whatever ``torch_dtype``) into
    ``<cache root>/<file stem>-<key>/`` (see :func:`gguf_cache_dir` and
    :func:`gguf_cache_key`), atomically: into a temporary folder that is then renamed. Later
    calls load that folder with plain ``from_pretrained`` and do not read the GGUF file.

    Args:
        path: the ``.gguf`` file.
        cache_dir: root of the cache (default: ``$HF_VOCABSWAP_CACHE/gguf`` or
            ``~/.cache/hf_vocabswap/gguf``).
        torch_dtype: dtype of the returned model.

    Returns:
        ``(model, tokenizer)``; the tokenizer is a generic ``PreTrainedTokenizerFast`` that
        prepends ``<bos>`` where the model expects it (Gemma degenerates without it).
    """
    p = _check_path(path)
    entry = _cache_entry(p, cache_dir)
    if _cache_is_complete(entry):
        logger.info("Loading converted GGUF from cache %s", entry)
        try:
            return _load_cached(entry, torch_dtype)
        except Exception as exc:  # broken cache entry: convert again
            logger.warning("Cached conversion %s is unusable (%s); converting %s again.", entry, exc, p)

    start = time.perf_counter()
    tokenizer = gguf_tokenizer(p)
    model = _convert_gguf_model(p, torch.float32)
    _check_model_matches_tokenizer(model, tokenizer, p)
    _sync_special_token_ids(model, tokenizer)
    logger.info("Converted %s in %.1f s", p, time.perf_counter() - start)

    try:
        _write_cache(entry, model, tokenizer, p)
    except Exception as exc:  # e.g. a read-only or full disk must not make loading fail
        logger.warning("Could not cache the converted GGUF in %s (%s); it will be converted again next time.", entry, exc)
    if torch_dtype is not None and model.dtype != torch_dtype:
        model = model.to(torch_dtype)
    return model, tokenizer


def _check_model_matches_tokenizer(model, tokenizer, path: Path) -> None:
    n_emb = model.get_input_embeddings().weight.shape[0]
    n_tok = len(tokenizer)
    if n_tok > n_emb:
        raise ModelError(
            f"The tokenizer of {str(path)!r} has {n_tok} tokens but the model only {n_emb} embedding "
            "rows; the GGUF file is inconsistent. Use the original Hugging Face checkpoint."
        )


def _sync_special_token_ids(model, tokenizer) -> None:
    """Make config and generation_config agree with the tokenizer's special tokens."""
    for role in ("bos", "eos", "pad"):
        tid = getattr(tokenizer, f"{role}_token_id", None)
        if tid is None:
            continue
        for cfg in (model.config, getattr(model, "generation_config", None)):
            if cfg is not None and getattr(cfg, f"{role}_token_id", None) is None:
                setattr(cfg, f"{role}_token_id", tid)


def _write_cache(entry: Path, model, tokenizer, source: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        st = source.stat()
        (tmp / CACHE_MARKER).write_text(
            json.dumps(
                {
                    "source": str(source.resolve()),
                    "name": source.name,
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "key": entry.name.rsplit("-", 1)[-1],
                    "format_version": CACHE_FORMAT_VERSION,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        try:
            os.rename(tmp, entry)
        except OSError:
            if _cache_is_complete(entry):  # another process finished first: keep its copy
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if entry.exists():  # an incomplete leftover: replace it
                shutil.rmtree(entry, ignore_errors=True)
            os.rename(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
