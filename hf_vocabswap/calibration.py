"""Output calibration of new tokens: make the adapted model predict each new token about as
often as the target-language corpus uses it.

Why. A new token's output row made from its source subwords (FVT) or from similar tokens
(FOCUS) scores it in the right contexts, but not with the right overall frequency. Measured
on Gemma-3-270m adapted to a 32k Ukrainian tokenizer with FVT: the 25k new tokens received
76% of the predicted probability mass while only 37% of the corpus tokens are new, and
almost all of FOCUS's zero-shot lead over FVT came from its smaller, more uniform output rows
(benchmarks/README.md). Fixing the frequencies directly helps every method.

How. On a sample of the corpus, the hidden states ``H`` that feed the output layer are
collected once. The mean predicted distribution ``p̄`` is compared with the corpus frequency
``f`` (add-0.5 smoothed counts of the target tokenizer on the whole corpus), and each new
token's logit is shifted by ``log f - log p̄``; this is iterated (iterative proportional
fitting) on the cached ``H``, which needs no further forward passes. The shift goes into

- the output bias, when the model has one (BERT-style heads, BART's ``final_logits_bias``):
  exact, input and output rows untouched;
- otherwise a per-token multiple of one direction ``v`` with ``h · v ≈ 1`` for every hidden
  state (least squares with a small ridge; transformer hidden states have a dominant common
  direction, so ``v`` is short and ``h · v`` nearly constant: on Gemma-3-270m
  ``|v| = 0.07`` and ``h · v = 1 ± 0.02``). With tied embeddings the input rows move by the
  same small amount, so the hidden states are collected again and the fit repeated
  (``rounds``).

Copied tokens are never changed. Causal, masked and encoder-decoder LMs are supported; the
hidden states are read where :func:`~hf_vocabswap.evaluate.bits_per_character` scores: next-token
positions (causal), masked positions (masked), or the decoder's positions predicting the text
from the decoder start token, with the encoder given the template of an empty text (seq2seq).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .corpus import Corpus, first_chars
from .errors import CorpusError, MethodOptionError, ModelError, MissingSpecialTokenError
from .evaluate import batched, causal_prefix, max_sequence_length, pad_batch, pad_token_id, seq2seq_inputs, special_template
from .fields import check_option_types
from .plan import MixingPlan
from .progress import progress_bar
from .surgery import find_embeddings, model_kind
from .tokenizer_trimming import token_counts

logger = logging.getLogger(__name__)

__all__ = ["CalibrationConfig", "calibrate_new_tokens", "new_token_ids"]


@dataclass
class CalibrationConfig:
    """The settings of output calibration; each field is also a ``--calibration-*`` CLI option."""

    max_chars: int = field(default=50_000, metadata={"help": "characters of the corpus whose hidden states are read (token frequencies count all of it)"})
    max_length: int = field(default=512, metadata={"help": "tokens per window when reading hidden states (capped at the model's positions)"})
    batch_size: int = field(default=8, metadata={"help": "windows per forward pass"})
    iterations: int = field(default=10, metadata={"help": "proportional-fitting steps per round, on the cached hidden states"})
    rounds: int | None = field(default=None, metadata={"help": "hidden-state collections (default: 2 when the shift moves tied input rows, else 1)"})
    ridge: float = field(default=1e-3, metadata={"help": "ridge strength of the shift direction, relative to the mean of diag(HᵀH)"})
    max_shift: float = field(default=10.0, metadata={"help": "largest shift of one token's logit, in nats (for tokens the corpus lacks)"})
    mlm_probability: float = field(default=0.15, metadata={"help": "share of positions masked when reading a masked LM's predictions"})
    seed: int = field(default=0, metadata={"help": "seeds the masked positions"})
    device: str | None = field(default=None, metadata={"help": "where the fit runs (default: the model's device)"})
    cache_bytes: int = field(default=1 << 31, metadata={"help": "memory for the cached logits of the fit (positions are thinned beyond it)"})
    progress: bool = field(default=True, metadata={"help": "show progress bars"})

    def __post_init__(self):
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        check_option_types(type(self), values, owner="calibration option", error=MethodOptionError)
        if self.iterations < 1 or (self.rounds is not None and self.rounds < 1) or self.max_chars < 1:
            raise MethodOptionError("calibration needs iterations >= 1, rounds >= 1 and max_chars >= 1")

    @classmethod
    def from_options(cls, config: "CalibrationConfig | None" = None, **options) -> "CalibrationConfig":
        """``config`` (default: the defaults) with ``options`` replacing its fields.

        Raises:
            MethodOptionError: an option that is not a field, or a value out of range.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise MethodOptionError(f"calibration has no option {', '.join(map(repr, unknown))}; its options are {', '.join(sorted(names))}.")
        check_option_types(cls, options, owner="calibration option", error=MethodOptionError)
        return dataclasses.replace(config if config is not None else cls(), **options)


def new_token_ids(plan: MixingPlan, alignment) -> list[int]:
    """Target ids that were not copied from the source and are not special tokens: what calibration shifts."""
    return plan.uncopied_ids(alignment.target.special_ids)




def _corpus_frequencies(tokenizer, texts: list[str], vocab_size: int, exclude: list[int]) -> torch.Tensor:
    counts = np.zeros(vocab_size, dtype=np.float64)
    known = token_counts(tokenizer, texts)[:vocab_size]  # rows past the tokenizer (padding) count 0
    counts[: len(known)] = known
    counts[[i for i in exclude if i < vocab_size]] = 0.0
    if counts.sum() == 0:
        raise CorpusError("Calibration found no tokens in the corpus: pass non-empty target-language text.")
    smoothed = counts + 0.5
    smoothed[[i for i in exclude if i < vocab_size]] = 0.0
    return torch.from_numpy(smoothed / smoothed.sum())


def _windows(model_kind: str, tokenizer, texts, max_length: int, mlm_probability: float, seed: int, start_id: int | None = None):
    """(input ids, positions to read) per window: causal next-token positions, masked
    positions (with the input ids already masked), or, for seq2seq, the decoder input ids
    (``start_id`` then the window shifted right) and every position."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows = []
    if model_kind == "seq2seq":
        for ids in encoded:
            for start in range(0, len(ids), max_length):
                window = ids[start : start + max_length]
                if window:
                    rows.append(([start_id] + window[:-1], list(range(len(window)))))
        return rows
    if model_kind == "causal":
        prefix = causal_prefix(tokenizer)
        room = max(1, max_length - len(prefix))
        for ids in encoded:
            for start in range(0, len(ids), room):
                window = prefix + ids[start : start + room]
                first = max(len(prefix), 1)
                if len(window) > first:
                    rows.append((window, list(range(first - 1, len(window) - 1))))
        return rows
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if not isinstance(mask_id, int):
        raise MissingSpecialTokenError("mask", "calibrating a masked LM reads its predictions at masked positions")
    before, after = special_template(tokenizer)
    room = max(1, max_length - len(before) - len(after))
    rng = np.random.default_rng(seed)
    for ids in encoded:
        for start in range(0, len(ids), room):
            body = ids[start : start + room]
            if not body:
                continue
            picked = np.flatnonzero(rng.random(len(body)) < mlm_probability)
            if len(picked) == 0:
                picked = np.array([int(rng.integers(len(body)))])
            window = list(before) + list(body) + list(after)
            positions = [len(before) + int(p) for p in picked]
            for p in positions:
                window[p] = mask_id
            rows.append((window, positions))
    return rows


def _hidden_states(model, head, rows, pad_id: int, batch_size: int, device, progress: bool, encoder_ids=None) -> torch.Tensor:
    """The inputs of the output layer at the rows' positions, (N, d) float32. With
    ``encoder_ids`` the rows are decoder inputs and every row's encoder reads ``encoder_ids``."""
    captured: list[torch.Tensor] = []
    selector_box: dict = {}

    def pre_hook(module, args):
        x = args[0]
        sel = selector_box["sel"].to(x.device)
        picked = x[sel]
        captured.append(picked.detach().float())
        return (picked[:1].unsqueeze(0),) + tuple(args[1:])  # skip the vocabulary projection

    handle = head.register_forward_pre_hook(pre_hook)
    try:
        with torch.no_grad():
            for batch in progress_bar(list(batched(rows, batch_size)), group="calibration", desc="Calibration: hidden states", enabled=progress):
                ids, mask = pad_batch([r[0] for r in batch], pad_id, device)
                sel = torch.zeros(ids.shape, dtype=torch.bool)
                for i, (_, positions) in enumerate(batch):
                    sel[i, positions] = True
                selector_box["sel"] = sel
                if encoder_ids is None:
                    model(input_ids=ids, attention_mask=mask)
                else:
                    enc = torch.tensor([encoder_ids] * len(batch), dtype=torch.long, device=device)
                    model(input_ids=enc, attention_mask=torch.ones_like(enc), decoder_input_ids=ids, decoder_attention_mask=mask)
    finally:
        handle.remove()
    return torch.cat(captured)


def _fit_shifts(H, W, bias, ids, freq, gain, iterations: int, max_shift: float, cache_bytes: int):
    """Per-token logit shifts ``s`` of ``ids`` such that the mean predicted probability of each
    matches ``freq``, where a shift changes the logit at position n by ``s * gain[n]`` (exactly
    what adding ``s * v`` to an output row, or ``s`` to a bias, does).

    The logits of ``ids`` and the log-normalizer of all other tokens are computed once (for at
    most ``cache_bytes`` of cached logits: more positions are thinned evenly), so each
    iteration costs one pass over (positions x ids). Returns (shifts, mass before, mass after).
    """
    n, k = H.shape[0], len(ids)
    if n * k * 4 > cache_bytes:
        keep = torch.linspace(0, n - 1, max(1, cache_bytes // (4 * k)), device=H.device).round().long().unique()
        H, gain = H[keep], gain[keep]
        n = H.shape[0]
    others = torch.ones(W.shape[0], dtype=torch.bool, device=W.device)
    others[ids] = False
    lse_other = torch.empty(n, device=H.device)
    cached = torch.empty(n, k, device=H.device)
    chunk = max(1, (1 << 26) // max(1, W.shape[0]))
    for i in range(0, n, chunk):
        logits = H[i : i + chunk] @ W.T
        if bias is not None:
            logits = logits + bias
        cached[i : i + chunk] = logits[:, ids]
        lse_other[i : i + chunk] = torch.logsumexp(logits[:, others], dim=1)
    target = torch.log(freq[ids]).float()
    shift = torch.zeros(k, device=H.device)

    def mean_prediction(s):
        total = torch.zeros(k, dtype=torch.float64, device=H.device)
        step = max(1, (1 << 24) // max(1, k))
        for i in range(0, n, step):
            z = cached[i : i + step] + gain[i : i + step, None] * s[None, :]
            log_norm = torch.logaddexp(lse_other[i : i + step], torch.logsumexp(z, dim=1))
            total += torch.exp(z - log_norm[:, None]).sum(0).double()
        return total / n

    p = mean_prediction(shift)
    before = float(p.sum())
    for _ in range(iterations):
        step = target - torch.log(p.float().clamp_min(1e-30))
        shift = (shift + step).clamp(-max_shift, max_shift)
        p = mean_prediction(shift)
    return shift.double(), before, float(p.sum())


def calibrate_new_tokens(model, tokenizer, corpus, token_ids, config: CalibrationConfig | None = None, *, record: dict | None = None, **options) -> dict:
    """Shift the output scores of ``token_ids`` so that the model predicts each about as often
    as ``corpus`` uses it (in place).

    Args:
        model: a causal, masked or encoder-decoder LM whose vocabulary is ``tokenizer``'s.
        tokenizer: the (target) tokenizer.
        corpus: target-language text (anything :class:`~hf_vocabswap.Corpus` accepts). Token
            frequencies are counted on all of it; hidden states are read on its first
            ``config.max_chars`` characters.
        token_ids: the tokens to calibrate (the new ones; copied tokens are left alone).
        config: the :class:`CalibrationConfig` (default: its defaults).
        record: a dict that receives the arrays that reproduce the change (``ids``, ``shifts``
            per round and, in "direction" mode, ``directions``; see ``MixingPlan.calibration``).
        **options: fields of :class:`CalibrationConfig` that replace ``config``'s.

    Returns:
        What was done: ``calibrated`` (tokens), ``mode`` ("bias" or "direction"), ``corpus_share``,
        ``mass_before`` / ``mass_after`` (the new tokens' predicted share), ``mean_abs_shift``,
        the per-round ``history``, ``seconds``, and a ``warning`` when the share is missed by more than 0.05.

    Raises:
        ModelError: the model has no LM head, or a token id is outside it.
        CorpusError: the corpus is empty or holds no token to predict.
        MethodOptionError: an unknown option or a value out of range.
        MissingSpecialTokenError: a masked LM's tokenizer has no mask token.
    """
    cfg = CalibrationConfig.from_options(config, **options)
    started = time.perf_counter()
    kind, head, weight, ids = _check_inputs(model, token_ids)
    texts = [t for t in Corpus.coerce(corpus) if t and t.strip()] if corpus is not None else []
    if not texts:
        raise CorpusError("Output calibration needs target-language text: pass a non-empty corpus.")
    if len(ids) == 0:
        return {"calibrated": 0, "reason": "no tokens to calibrate"}
    vocab = weight.shape[0]
    bias = _output_bias(model, head, vocab)
    tied = find_embeddings(model).tied
    mode = "bias" if bias is not None else "direction"
    rounds = cfg.rounds if cfg.rounds is not None else (2 if (mode == "direction" and tied) else 1)
    dev = torch.device(cfg.device) if cfg.device else weight.device
    special = [i for i in getattr(tokenizer, "all_special_ids", []) if isinstance(i, int)]
    freq = _corpus_frequencies(tokenizer, texts, vocab, special).to(dev)
    rows, encoder_ids = _calibration_windows(model, kind, tokenizer, texts, cfg)
    was_training = model.training
    model.eval()
    try:
        fit = _fit_rounds(model, head, weight, bias, ids, freq, rows, encoder_ids, rounds, mode, dev, tokenizer, cfg)
    finally:
        model.train(was_training)
    stats = _summary(fit, ids, freq, mode, tied, rounds, cfg, started)
    if record is not None:
        record.update(mode=mode, ids=ids.numpy(), shifts=np.stack(fit["shifts"]))
        if fit["directions"]:
            record["directions"] = np.stack(fit["directions"])
    logger.info("calibration: %s", {k: v for k, v in stats.items() if k != "history"})
    return stats


def _check_inputs(model, token_ids):
    """(kind, head, head weight, sorted unique ids) after checking the model can be calibrated."""
    kind = model_kind(model)
    if kind not in ("causal", "masked", "seq2seq"):
        raise ModelError(
            f"Output calibration supports causal, masked and encoder-decoder LMs; this model is {kind!r} "
            "(no LM head). Pass calibrate=False (or use the model without calibration)."
        )
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    if not isinstance(head, torch.nn.Module) or not isinstance(weight, torch.Tensor):
        raise ModelError(f"{type(model).__name__} has no output embedding layer to calibrate.")
    ids = torch.as_tensor(np.asarray(sorted(set(int(i) for i in token_ids)), dtype=np.int64))
    if len(ids) and int(ids.max()) >= weight.shape[0]:
        raise ModelError(f"token id {int(ids.max())} is outside the output layer ({weight.shape[0]} rows)")
    return kind, head, weight, ids


def _output_bias(model, head, vocab: int) -> torch.Tensor | None:
    """The (V,) output bias a shift can go into (the head's, or BART's ``final_logits_bias``), or None."""
    bias = getattr(head, "bias", None)
    if not isinstance(bias, torch.Tensor):
        bias = getattr(model, "final_logits_bias", None)  # BART/mBART: (1, V), added to the head's output
    if isinstance(bias, torch.Tensor) and bias.dim() != 1 and bias.numel() == vocab:
        bias = bias.view(-1)  # a view: shifting it shifts the buffer
    return bias if isinstance(bias, torch.Tensor) and bias.shape == (vocab,) else None


def _calibration_windows(model, kind: str, tokenizer, texts: list[str], cfg: CalibrationConfig):
    """(rows, encoder ids) of the hidden-state sample (see :func:`_windows`)."""
    max_length = cfg.max_length
    max_positions = max_sequence_length(model, tokenizer)
    if max_positions is not None and max_length > max_positions:
        max_length = max_positions  # as bits_per_character: longer windows overrun the position table
    start_id, encoder_ids = seq2seq_inputs(model, tokenizer) if kind == "seq2seq" else (None, None)
    rows = _windows(kind, tokenizer, first_chars(texts, cfg.max_chars), max_length, cfg.mlm_probability, cfg.seed, start_id)
    if not rows:
        raise CorpusError("The calibration sample holds no token to predict; pass more text.")
    return rows, encoder_ids


def _shift_direction(H: torch.Tensor, ridge: float, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """(v, h · v for every row of H): the ridge least-squares direction with ``H v ≈ 1``."""
    Hd = H.double()
    G = Hd.T @ Hd
    lam = ridge * float(G.diagonal().mean())
    v = torch.linalg.solve(G + lam * torch.eye(G.shape[0], dtype=G.dtype, device=dev), Hd.T @ torch.ones(len(Hd), dtype=Hd.dtype, device=dev))
    return v, (Hd @ v).float()


def _fit_rounds(model, head, weight, bias, ids, freq, rows, encoder_ids, rounds, mode, dev, tokenizer, cfg) -> dict:
    """Collect hidden states, fit the shifts and apply them, ``rounds`` times; what each round did."""
    ids_dev = ids.to(dev)
    out = {"total": torch.zeros(len(ids), dtype=torch.float64, device=dev), "history": [], "shifts": [], "directions": []}
    for r in range(rounds):
        H = _hidden_states(model, head, rows, pad_token_id(tokenizer, model), cfg.batch_size, weight.device, cfg.progress, encoder_ids).to(dev)
        W = weight.detach().to(dev, torch.float32)
        b_vec = None if bias is None else bias.detach().to(dev, torch.float32)
        if mode == "direction":
            v, gain = _shift_direction(H, cfg.ridge, dev)
        else:
            gain = torch.ones(H.shape[0], device=dev)
        shift, before, after = _fit_shifts(H, W, b_vec, ids_dev, freq, gain, cfg.iterations, cfg.max_shift, cfg.cache_bytes)
        if r == 0:
            out["mass_before"] = before
        out["history"].append({"round": r, "positions": int(H.shape[0]), "mass_after": round(after, 4)})
        if mode == "direction":
            out["history"][-1].update(direction_norm=round(float(v.norm()), 4), hv_std=round(float(gain.std()), 4))
        with torch.no_grad():
            if mode == "bias":
                bias[ids.to(bias.device)] += shift.to(bias.device, bias.dtype)
            else:
                weight[ids.to(weight.device)] += (shift.float()[:, None] * v.float()[None, :]).to(weight.device, weight.dtype)
        out["total"] += shift
        out["shifts"].append(shift.cpu().numpy())
        if mode == "direction":
            out["directions"].append(v.float().cpu().numpy())
        del H
    return out


def _summary(fit: dict, ids, freq, mode: str, tied: bool, rounds: int, cfg: CalibrationConfig, started: float) -> dict:
    history = fit["history"]
    stats = {
        "calibrated": int(len(ids)),
        "mode": mode,
        "tied": bool(tied),
        "rounds": rounds,
        "iterations": cfg.iterations,
        "corpus_share": round(float(freq[ids.to(freq.device)].sum()), 4),
        "mass_before": round(fit["mass_before"], 4),
        "mass_after": history[-1]["mass_after"],
        "mean_abs_shift": round(float(fit["total"].abs().mean()), 4),
        "history": history,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if not math.isfinite(stats["mean_abs_shift"]):
        raise RuntimeError("calibration diverged (non-finite shifts)")
    miss = abs(stats["mass_after"] - stats["corpus_share"])
    if miss > 0.05:
        why = (
            " The model's hidden states have no common direction (h · v varies by "
            f"{history[-1].get('hv_std', 0):.2f}), so one shared direction cannot shift scores evenly; an output "
            "bias or an untied output layer would."
            if mode == "direction" and history[-1].get("hv_std", 0) > 0.1 else ""
        )
        stats["warning"] = (
            f"calibration reached a new-token share of {stats['mass_after']:.3f} for a corpus share of "
            f"{stats['corpus_share']:.3f}.{why}"
        )
        logger.warning("%s", stats["warning"])
    return stats
