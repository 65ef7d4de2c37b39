"""Canonical token forms, special-token roles and vocabulary overlap.

Tokenizer families mark word boundaries differently (byte-level BPE ``Ġ``, SentencePiece
``▁`` with ``<0xNN>`` byte fallback, WordPiece ``##``). To compare vocabularies across
families every token is mapped to its *canonical form*: the exact bytes it stands for plus
a flag saying whether it starts a word (it is preceded by a space / is word-initial). Two
tokens of different tokenizers are the same token when their canonical forms are equal.
Special tokens are matched by role (bos, eos, pad, ...), never by string.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np
from transformers.tokenization_utils_base import PreTrainedTokenizerBase
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from .tokenizer_json import BYTE_TO_CHAR, CHAR_TO_BYTE, ROLES, tokenizer_family, tokenizer_spec

logger = logging.getLogger(__name__)

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def decode_each(tokenizer, ids: list[int]) -> list[str]:
    """``[tokenizer.decode(i) for i in ids]``, computed in one batched backend call.

    Reproduces transformers' single-id decode of a tokenizers-backed tokenizer (special
    tokens kept, ``clean_up_tokenization_spaces`` applied except for BPE models). A
    tokenizer class that overrides decoding is called id by id, so results always equal
    ``tokenizer.decode(i)``.
    """
    cls = type(tokenizer)
    standard = (
        isinstance(tokenizer, TokenizersBackend)
        and cls._decode is TokenizersBackend._decode
        and cls.decode is PreTrainedTokenizerBase.decode
    )
    if not standard:
        return [tokenizer.decode(i) for i in ids]
    backend = tokenizer.backend_tokenizer
    texts = backend.decode_batch([[i] for i in ids], skip_special_tokens=False)
    cleanup = bool(tokenizer.clean_up_tokenization_spaces) and not (
        type(backend.model).__name__ == "BPE"
        and not tokenizer.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output
    )
    if cleanup:
        texts = [tokenizer.clean_up_tokenization(t) for t in texts]
    return texts



class CanonicalForm(NamedTuple):
    """What a token stands for: ``word_start`` (preceded by a space / word-initial) and bytes."""

    word_start: bool
    text: bytes

    def display(self) -> str:
        """Human-readable form: ``▁`` marks word start, undecodable bytes become ``<0xNN>``."""
        try:
            body = self.text.decode("utf-8")
        except UnicodeDecodeError:
            body = "".join(f"<0x{b:02X}>" for b in self.text)
        return ("▁" if self.word_start else "") + body


@dataclass
class TokenizerProfile:
    """How one tokenizer writes its tokens, and every token's canonical form.

    Build it with :meth:`from_tokenizer`. ``forms[i]`` is the canonical form of id ``i``,
    or ``None`` for special tokens; ``added[i]`` holds the content of added tokens.
    """

    tokenizer: object
    family: str  # "byte_level", "metaspace", "wordpiece" or "plain"
    model_type: str  # BPE, Unigram, WordPiece, WordLevel
    byte_fallback: bool
    continuing_prefix: str | None
    forms: list[CanonicalForm | None]
    added: dict[int, str]
    special_ids: set[int]
    byte_fallback_ids: set[int] = field(default_factory=set)

    @classmethod
    def from_tokenizer(cls, tokenizer) -> "TokenizerProfile":
        """The profile of a fast tokenizer.

        Raises:
            TokenizerError: ``tokenizer`` is not tokenizers-backed.
        """
        spec = tokenizer_spec(tokenizer)  # also rejects slow tokenizers
        model = spec["model"]
        model_type = model["type"]
        family = tokenizer_family(spec)
        prefix = model.get("continuing_subword_prefix") if model_type == "WordPiece" else None
        byte_fallback = bool(model.get("byte_fallback", False))

        n = len(tokenizer)
        id_to_token = tokenizer.convert_ids_to_tokens(list(range(n)))
        added = {int(i): t.content for i, t in tokenizer.added_tokens_decoder.items()}
        special_ids = {int(i) for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        special_ids |= set(int(i) for i in tokenizer.all_special_ids)
        forms: list[CanonicalForm | None] = []
        byte_ids: set[int] = set()
        for i, tok in enumerate(id_to_token):
            if i in special_ids or tok is None:
                forms.append(None)
                continue
            if i in added:
                # Non-special added tokens are matched as whole units on raw text, before
                # pre-tokenization: they stand for their content as a word of its own.
                forms.append(CanonicalForm(True, added[i].strip().encode("utf-8")) if added[i].strip() else None)
                continue
            form, is_byte = _canonical(tok, family, prefix, byte_fallback)
            if is_byte:
                byte_ids.add(i)
            forms.append(form)
        return cls(tokenizer, family, model_type, byte_fallback, prefix, forms, added, special_ids, byte_ids)

    # -- canonical form -> this tokenizer's own spelling ---------------------------------
    def spell(self, form: CanonicalForm) -> str:
        """The string this tokenizer's model would see for ``form`` (after pre-tokenization)."""
        text = (b" " if form.word_start and self.family in ("byte_level", "metaspace") else b"") + form.text
        if self.family == "byte_level":
            return "".join(BYTE_TO_CHAR[b] for b in text)
        decoded = text.decode("utf-8", errors="replace")
        if self.family == "metaspace":
            return decoded.replace(" ", "▁")
        if self.family == "wordpiece" and not form.word_start:
            return (self.continuing_prefix or "##") + decoded
        return decoded

    def segment(self, form: CanonicalForm) -> list[int]:
        """Token ids this tokenizer uses for the text of ``form``, keeping word-start information.

        The tokenizer's model is run on the token's own spelling, so a continuation piece is
        segmented as a continuation (no word-start marker is invented) and a word-initial
        piece keeps its marker. Returns ``[]`` when nothing can represent the text.
        """
        backend = self.tokenizer.backend_tokenizer
        if self.family == "wordpiece":
            normalizer = backend.normalizer
            text = form.text.decode("utf-8", errors="replace")
            if normalizer is not None:
                text = normalizer.normalize_str(text)
            if not text:
                return []
            if form.word_start:
                ids = [p.id for p in backend.model.tokenize(text)]
                return [i for i in ids if i != self.tokenizer.unk_token_id]
            return self._continuation_pieces(text)
        spelled = self.spell(form)
        if not spelled:
            return []
        if self.family != "byte_level":
            try:
                form.text.decode("utf-8")
            except UnicodeDecodeError:
                # Partial UTF-8 cannot be written as text: use byte-fallback pieces if any.
                if not self.byte_fallback:
                    return []
                prefix = self.segment(CanonicalForm(True, b"")) if form.word_start else []
                ids = [self.tokenizer.convert_tokens_to_ids(f"<0x{b:02X}>") for b in form.text]
                return prefix + [i for i in ids if i is not None]
        ids = [p.id for p in backend.model.tokenize(spelled)]
        unk = self.tokenizer.unk_token_id
        return [i for i in ids if i != unk]

    def _continuation_pieces(self, text: str) -> list[int]:
        """WordPiece's greedy longest match, with every piece a continuation (``##``) piece."""
        vocab = self._vocab
        prefix = self.continuing_prefix or "##"
        ids, i = [], 0
        while i < len(text):
            for j in range(len(text), i, -1):
                tid = vocab.get(prefix + text[i:j])
                if tid is not None:
                    ids.append(tid)
                    i = j
                    break
            else:
                return []
        return ids

    @cached_property
    def _vocab(self) -> dict[str, int]:
        return self.tokenizer.get_vocab()

    @cached_property
    def roles(self) -> dict[str, int]:
        """Role name -> token id for the special tokens this tokenizer defines."""
        out = {}
        for role in ROLES:
            tid = getattr(self.tokenizer, f"{role}_token_id", None)
            if isinstance(tid, int) and tid >= 0:
                out[role] = tid
        return out


def _canonical(token: str, family: str, prefix: str | None, byte_fallback: bool) -> tuple[CanonicalForm, bool]:
    """Canonical form of one vocabulary entry and whether it is a byte-fallback piece."""
    if family == "wordpiece":
        p = prefix or "##"
        if token.startswith(p) and len(token) > len(p):
            return CanonicalForm(False, token[len(p):].encode("utf-8")), False
        return CanonicalForm(True, token.encode("utf-8")), False
    if byte_fallback or family == "metaspace":
        m = _BYTE_FALLBACK.match(token)
        if m:
            return CanonicalForm(False, bytes([int(m.group(1), 16)])), True
    if family == "byte_level":
        if all(c in CHAR_TO_BYTE for c in token):
            raw = bytes(CHAR_TO_BYTE[c] for c in token)
        else:  # not a byte-level spelling (e.g. an added token): take its text
            raw = token.encode("utf-8")
    elif family == "metaspace":
        raw = token.replace("▁", " ").encode("utf-8")
    else:
        raw = token.encode("utf-8")
        return CanonicalForm(True, raw), False
    if raw.startswith(b" "):
        return CanonicalForm(True, raw[1:]), False
    return CanonicalForm(False, raw), False


# How each target token was matched to a source token.
# MATCH_ROMANIZED: a new token whose romanized form is one whole source token
# (:mod:`hf_vocabswap.romanize`); it stays out of ``target_to_source`` and the overlap.
MATCH_NONE, MATCH_ROLE, MATCH_ADDED, MATCH_EXACT, MATCH_IDENTITY, MATCH_ROMANIZED = 0, 1, 2, 3, 4, 5
MATCH_NAMES = {
    MATCH_NONE: "none", MATCH_ROLE: "role", MATCH_ADDED: "added", MATCH_EXACT: "exact", MATCH_IDENTITY: "extend",
    MATCH_ROMANIZED: "romanized",
}


@dataclass
class VocabAlignment:
    """Which target tokens exist in the source vocabulary, and as which source token.

    Attributes:
        source, target: the two :class:`TokenizerProfile`.
        target_to_source: int64 array of length ``len(target)``, the source id of every
            matched target token and -1 for new tokens.
        match: int8 array, how each target token was matched (``MATCH_*``).
        roles: role -> (target id, source id or None) for the target's special tokens.
        mode: "extend" when the target is the source plus added tokens, else "replace".
        collisions: how many source canonical forms were shared by several source ids
            (the lowest id, i.e. the most frequent merge, represents the form).
        romanized: target id -> the romanized canonical form of a new token in a script the
            source covers poorly (empty unless :func:`hf_vocabswap.romanize.romanize_alignment` ran).
        romanized_source: int64 array, the source id a romanized form is as a whole (-1: none),
            or None; such tokens have ``match == MATCH_ROMANIZED`` and no ``target_to_source`` entry.
        romanization: what romanization measured and did (the report's numbers), or None.
    """

    source: TokenizerProfile
    target: TokenizerProfile
    target_to_source: np.ndarray
    match: np.ndarray
    roles: dict[str, tuple[int, int | None]]
    mode: str
    collisions: int
    romanized: dict[int, CanonicalForm] = field(default_factory=dict)
    romanized_source: np.ndarray | None = None
    romanization: dict | None = None

    def decomposition_form(self, target_id: int) -> CanonicalForm | None:
        """The form a method splits with the source tokenizer: the romanized one when there is one."""
        return self.romanized.get(target_id, self.target.forms[target_id])

    @property
    def overlap_size(self) -> int:
        return int((self.target_to_source >= 0).sum())

    @property
    def target_special_ids(self) -> set[int]:
        return self.target.special_ids

    def source_to_target_special(self) -> dict[int, int]:
        """Source special id -> target id, for translating config ids."""
        out: dict[int, int] = {}
        for role, (tid, sid) in self.roles.items():
            if sid is not None:
                out.setdefault(sid, tid)
        for t, s in enumerate(self.target_to_source):
            if s >= 0 and self.match[t] in (MATCH_ADDED, MATCH_ROLE, MATCH_IDENTITY) and int(s) in self.source.special_ids:
                out.setdefault(int(s), t)
        return out

    def summary(self) -> dict:
        """The alignment in numbers, for the report: mode, families, overlap and matches by kind."""
        counts = {MATCH_NAMES[k]: int((self.match == k).sum()) for k in MATCH_NAMES}
        return {
            "mode": self.mode,
            "source_vocab_size": len(self.source.forms),
            "target_vocab_size": len(self.target.forms),
            "overlap": self.overlap_size,
            "matched_by": counts,
            "source_form_collisions": self.collisions,
            "families": [self.source.family, self.target.family],
            **({"romanization": self.romanization} if self.romanization is not None else {}),
        }


def align_vocabularies(source_tokenizer, target_tokenizer) -> VocabAlignment:
    """Match every target token to a source token by role, added-token content or canonical form.

    Args:
        source_tokenizer: the tokenizer the pretrained model was trained with (fast).
        target_tokenizer: the new tokenizer (fast).

    Returns:
        A :class:`VocabAlignment`.

    Raises:
        TokenizerError: when a tokenizer is not tokenizers-backed.
    """
    src = TokenizerProfile.from_tokenizer(source_tokenizer)
    tgt = TokenizerProfile.from_tokenizer(target_tokenizer)
    n_t = len(tgt.forms)
    t2s = np.full(n_t, -1, dtype=np.int64)
    match = np.zeros(n_t, dtype=np.int8)

    # Extend mode: the target is the source plus added tokens (same spelling at the same id).
    n_s = len(src.forms)
    mode = "replace"
    if n_t >= n_s:
        s_tokens = source_tokenizer.convert_ids_to_tokens(list(range(n_s)))
        t_tokens = target_tokenizer.convert_ids_to_tokens(list(range(n_s)))
        if s_tokens == t_tokens and (n_t > n_s or src.family == tgt.family):
            mode = "extend"
            t2s[:n_s] = np.arange(n_s)
            match[:n_s] = MATCH_IDENTITY

    roles: dict[str, tuple[int, int | None]] = {}
    for role, tid in tgt.roles.items():
        sid = src.roles.get(role)
        roles[role] = (tid, sid)
        if t2s[tid] < 0 and sid is not None:
            t2s[tid] = sid
            match[tid] = MATCH_ROLE

    # Added / special tokens without a role match by content (e.g. <start_of_turn>).
    src_added = {content: i for i, content in sorted(src.added.items(), reverse=True)}
    for tid, content in tgt.added.items():
        if t2s[tid] < 0 and content in src_added:
            t2s[tid] = src_added[content]
            match[tid] = MATCH_ADDED

    index: dict[CanonicalForm, int] = {}
    collisions = 0
    # Regular pieces win over byte-fallback pieces; among equals the lowest id wins.
    order = sorted(range(n_s), key=lambda i: (i in src.byte_fallback_ids, i))
    for i in order:
        form = src.forms[i]
        if form is None:
            continue
        if form in index:
            collisions += 1
            continue
        index[form] = i
    for tid, form in enumerate(tgt.forms):
        if form is None or t2s[tid] >= 0:
            continue
        sid = index.get(form)
        if sid is not None:
            t2s[tid] = sid
            match[tid] = MATCH_EXACT
    if collisions:
        logger.info("%d source tokens share a canonical form with a lower id; the lower id represents it", collisions)
    return VocabAlignment(src, tgt, t2s, match, roles, mode, collisions)
