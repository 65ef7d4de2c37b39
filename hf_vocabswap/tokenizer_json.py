"""Reading and editing a tokenizer's ``tokenizer.json`` (the ``tokenizers`` serialization).

Training (:mod:`hf_vocabswap.tokenizer_training`), trimming
(:mod:`hf_vocabswap.tokenizer_trimming`) and expansion (:mod:`hf_vocabswap.tokenizer_expansion`)
all build a new tokenizer the same way: take the source's ``tokenizer.json`` as a dict (its
*spec*), change the model's vocabulary (and merges), renumber the special tokens the
post-processor and padding refer to, and wrap the result in a
``transformers.PreTrainedTokenizerFast`` that keeps the source's special-token roles and
settings. The pieces they share live here:

- :func:`fast_backend`, :func:`tokenizer_spec`: the ``tokenizers.Tokenizer`` of a fast
  tokenizer and its spec;
- :func:`tokenizer_family`, :func:`word_marker`, :func:`visible_text`, :func:`to_model_chars`:
  how a pipeline spells words (byte-level BPE ``Ġ``, SentencePiece ``▁``, WordPiece ``##``);
- :func:`required_special_tokens`, :func:`processor_tokens`, :func:`remap_special_ids`: the
  special tokens a tokenizer cannot lose and their ids in a rebuilt spec;
- :func:`merge_pairs`, :func:`merge_result`, :func:`merges_among`: BPE merge rules;
- :func:`build_tokenizer`, :func:`tokenizer_kwargs` (:func:`role_kwargs`,
  :func:`source_attributes`): the rebuilt tokenizer.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from .errors import TokenizerError

__all__ = [
    "BYTE_PIECES",
    "BYTE_TO_CHAR",
    "CHAR_TO_BYTE",
    "ROLES",
    "build_tokenizer",
    "fast_backend",
    "merge_pairs",
    "merge_result",
    "merges_among",
    "processor_tokens",
    "remap_special_ids",
    "required_special_tokens",
    "role_kwargs",
    "source_attributes",
    "to_model_chars",
    "tokenizer_family",
    "tokenizer_kwargs",
    "tokenizer_spec",
    "visible_text",
    "walk_pipeline",
    "word_marker",
]

ROLES = ("bos", "eos", "pad", "unk", "mask", "cls", "sep")
BYTE_PIECES = [f"<0x{b:02X}>" for b in range(256)]  # SentencePiece byte-fallback pieces
FAMILIES = ("byte_level", "metaspace", "wordpiece", "plain")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


BYTE_TO_CHAR = _bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


# ----------------------------------------------------------------------------- reading
def fast_backend(tokenizer):
    """The ``tokenizers.Tokenizer`` behind a fast ``transformers`` tokenizer.

    Raises:
        TokenizerError: ``tokenizer`` is not tokenizers-backed (a slow or foreign tokenizer).
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(
            f"{type(tokenizer).__name__} is not a fast (tokenizers-backed) tokenizer. Load it "
            "with AutoTokenizer.from_pretrained(..., use_fast=True) or convert it first."
        )
    return backend


def tokenizer_spec(tokenizer) -> dict:
    """The ``tokenizer.json`` of a fast tokenizer (or of a ``tokenizers.Tokenizer``) as a dict.

    Raises:
        TokenizerError: ``tokenizer`` is not tokenizers-backed.
    """
    backend = tokenizer if hasattr(tokenizer, "to_str") else fast_backend(tokenizer)
    return json.loads(backend.to_str())


def walk_pipeline(component: dict | None):
    """Yield a tokenizer.json pipeline component and, for Sequences, its members."""
    if not component:
        return
    yield component
    for key in ("pretokenizers", "normalizers", "decoders", "processors"):
        for sub in component.get(key) or []:
            yield from walk_pipeline(sub)


# ----------------------------------------------------------------------------- word spelling
def tokenizer_family(spec: dict) -> str:
    """How a pipeline marks words: one of ``"byte_level"`` (GPT-2 style ``Ġ``), ``"metaspace"``
    (SentencePiece ``▁``, as a Metaspace component or a ``Replace`` to or from ``▁``),
    ``"wordpiece"`` (WordPiece models without either: ``##`` continuation pieces) or ``"plain"``.
    """
    parts = [c for key in ("normalizer", "pre_tokenizer", "decoder") for c in walk_pipeline(spec.get(key))]
    types = {c.get("type") for c in parts}
    if "ByteLevel" in types:
        return "byte_level"
    if "Metaspace" in types or any(
        c.get("type") == "Replace" and c.get("content") in ("▁", " ") and "▁" in json.dumps(c, ensure_ascii=False)
        for c in parts
    ):
        return "metaspace"
    if (spec.get("model") or {}).get("type") == "WordPiece":
        return "wordpiece"
    return "plain"


def word_marker(family: str) -> str | None:
    """The word-start marker as it appears in the *visible* text of a piece (None: no marker)."""
    return {"byte_level": " ", "metaspace": "▁"}.get(family)


def visible_text(token: str, family: str) -> str:
    """What a vocabulary entry stands for as text (byte-level entries are unmapped; an entry
    that is not a byte-level spelling, or not whole UTF-8, is returned as written or with
    replacement characters)."""
    if family == "byte_level":
        try:
            data = bytes(CHAR_TO_BYTE[c] for c in token)
        except KeyError:
            return token
        return data.decode("utf-8", errors="replace")
    return token


def to_model_chars(text: str, family: str) -> str:
    """``text`` spelled as the model's vocabulary spells it (byte-level: one character per byte)."""
    if family == "byte_level":
        return "".join(BYTE_TO_CHAR[b] for b in text.encode("utf-8"))
    return text


# ----------------------------------------------------------------------------- special tokens
def processor_tokens(proc: dict | None) -> list[str]:
    """Special tokens a post-processor inserts (they must be kept)."""
    out: list[str] = []
    for c in walk_pipeline(proc):
        t = c.get("type")
        if t == "TemplateProcessing":
            for entry in (c.get("special_tokens") or {}).values():
                out.extend(entry.get("tokens") or [])
        elif t in ("RobertaProcessing", "BertProcessing"):
            out.extend([c["sep"][0], c["cls"][0]])
    return out


def _remap_processor(proc: dict | None, ids: dict[str, int]) -> None:
    for c in walk_pipeline(proc):
        t = c.get("type")
        if t == "TemplateProcessing":
            for entry in (c.get("special_tokens") or {}).values():
                entry["ids"] = [ids[tok] for tok in entry.get("tokens") or []]
        elif t in ("RobertaProcessing", "BertProcessing"):
            c["sep"] = [c["sep"][0], ids[c["sep"][0]]]
            c["cls"] = [c["cls"][0], ids[c["cls"][0]]]


def remap_special_ids(new_spec: dict, spec: dict, ids: dict[str, int]) -> None:
    """Point the post-processor and padding of ``new_spec`` at the new ids of their tokens.

    Args:
        new_spec: the rebuilt spec, changed in place (its ``post_processor`` is replaced by a
            renumbered copy of ``spec``'s, its ``padding`` renumbered when the pad token is kept).
        spec: the source spec.
        ids: token string -> new id, holding at least every token the post-processor inserts.
    """
    post = json.loads(json.dumps(spec.get("post_processor")))
    _remap_processor(post, ids)
    new_spec["post_processor"] = post
    padding = spec.get("padding")
    if padding and padding.get("pad_token") in ids:
        new_spec["padding"] = dict(padding, pad_id=ids[padding["pad_token"]])


def required_special_tokens(tokenizer, spec: dict) -> list[str]:
    """The special tokens a rebuilt tokenizer must keep, in this order: the role tokens (bos,
    eos, pad, unk, mask, cls, sep), the model's unknown token (when it is in the vocabulary),
    and the tokens the post-processor inserts. Duplicates are left in."""
    wanted = [str(getattr(tokenizer, f"{role}_token")) for role in ROLES if getattr(tokenizer, f"{role}_token", None)]
    model = spec["model"]
    vocab = fast_backend(tokenizer).get_vocab(with_added_tokens=True)
    if model.get("unk_token") and model["unk_token"] in vocab:  # BPE / WordPiece
        wanted.append(model["unk_token"])
    if model.get("type") == "Unigram" and model.get("unk_id") is not None:
        wanted.append(model["vocab"][model["unk_id"]][0])
    wanted.extend(processor_tokens(spec.get("post_processor")))
    return wanted


# ----------------------------------------------------------------------------- BPE merges
def merge_pairs(model: dict) -> list[tuple[str, str]]:
    """The merges of a BPE model spec as pairs (both serializations: ``"a b"`` and ``["a", "b"]``)."""
    return [tuple(m) if not isinstance(m, str) else tuple(m.split(" ", 1)) for m in model.get("merges") or []]


def merge_result(a: str, b: str, prefix_len: int) -> str:
    """The token a merge of ``a`` and ``b`` builds, as tokenizers builds it: the right part's
    continuation prefix (``prefix_len`` characters, 0 without one) is dropped."""
    return a + b[prefix_len:]


def merges_among(pairs, vocab, prefix_len: int) -> list[list[str]]:
    """The merges (as ``[a, b]`` lists, in order) whose two parts and result are all in ``vocab``."""
    return [[a, b] for a, b in pairs if a in vocab and b in vocab and merge_result(a, b, prefix_len) in vocab]


# ----------------------------------------------------------------------------- rebuilding
def role_kwargs(source, present=None) -> dict[str, str]:
    """``{"bos_token": ..., ...}`` for the source's role tokens (only those in ``present`` when given)."""
    kwargs = {}
    for role in ROLES:
        value = getattr(source, f"{role}_token", None)
        if value is not None and (present is None or str(value) in present):
            kwargs[f"{role}_token"] = str(value)
    return kwargs


def source_attributes(source, names=("padding_side", "truncation_side", "clean_up_tokenization_spaces",
                                     "model_input_names", "chat_template")) -> dict:
    """The source tokenizer's settings among ``names`` that are set (not None)."""
    return {name: getattr(source, name) for name in names if getattr(source, name, None) is not None}


def tokenizer_kwargs(source, present=None) -> dict:
    """``PreTrainedTokenizerFast`` keyword arguments that keep what ``source`` says about its tokens.

    Args:
        source: the tokenizer a spec was derived from.
        present: the token strings of the new tokenizer; roles and extra special tokens
            outside it are left out (None: all kept).

    Returns:
        The role tokens, ``extra_special_tokens``, the settings of :func:`source_attributes`
        (chat template included) and ``add_bos_token``/``add_eos_token`` where the source set them.
    """
    kwargs = role_kwargs(source, present)
    extra = [str(t) for t in (getattr(source, "extra_special_tokens", None) or []) if present is None or str(t) in present]
    if extra:
        kwargs["extra_special_tokens"] = extra
    kwargs.update(source_attributes(source))
    for attr in ("add_bos_token", "add_eos_token"):
        if attr in getattr(source, "init_kwargs", {}):
            kwargs[attr] = source.init_kwargs[attr]
    return kwargs


def build_tokenizer(spec: dict, source, **kwargs):
    """A ``transformers.PreTrainedTokenizerFast`` for an edited spec.

    Args:
        spec: the new ``tokenizer.json`` as a dict.
        source: the tokenizer the spec was derived from; its ``model_max_length`` is kept.
        **kwargs: passed to ``PreTrainedTokenizerFast`` (roles, ``extra_special_tokens``,
            ``padding_side``, ``chat_template``, ...).

    Returns:
        The tokenizer, with exactly the spec's post-processor (transformers may rebuild one
        from ``add_bos_token``/``add_eos_token``; the renumbered one is authoritative).

    Raises:
        TokenizerError: ``tokenizers`` rejects the spec.
    """
    try:
        backend = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    except Exception as e:  # noqa: BLE001 - re-raised with the context
        raise TokenizerError(f"The rebuilt tokenizer.json is not valid ({e}); please report this.") from e
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=source.model_max_length, **kwargs)
    tokenizer.backend_tokenizer.post_processor = backend.post_processor
    return tokenizer
