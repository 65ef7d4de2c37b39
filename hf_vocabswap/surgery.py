"""Applying a mixing plan to a model of any family.

One code path for all methods and all families: input embeddings, untied output
embeddings and output biases (MLM bias, BART's ``final_logits_bias``) are rebuilt from the
plan by token, never by index; config, generation config and cached ``vocab_size``
attributes are updated; RoBERTa-style position tables are shifted when the pad id moves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from .errors import MissingSpecialTokenError, ModelError
from .plan import MixingPlan

logger = logging.getLogger(__name__)

# Config attributes holding token ids, and the role that should fill them if translation fails.
ID_ATTRIBUTES = {
    "bos_token_id": "bos",
    "eos_token_id": "eos",
    "pad_token_id": "pad",
    "sep_token_id": "sep",
    "cls_token_id": "cls",
    "mask_token_id": "mask",
    "unk_token_id": "unk",
    "decoder_start_token_id": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
}


@dataclass
class EmbeddingHandles:
    """The tensors a transplant rewrites, found on a model before surgery."""

    input_weight: torch.Tensor
    output_weight: torch.Tensor | None  # None when absent or tied to the input
    tied: bool
    biases: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (V,) tensor


def model_kind(model) -> str:
    """"masked", "causal", "seq2seq" or "base", from the model class and config."""
    name = type(model).__name__
    if getattr(model.config, "is_encoder_decoder", False):
        return "seq2seq"
    if "MaskedLM" in name:
        return "masked"
    if "CausalLM" in name or "LMHead" in name:
        return "causal"
    return "base"


def find_embeddings(model) -> EmbeddingHandles:
    """Locate input/output embedding tensors and output biases.

    Raises:
        ModelError: the model has no input embedding matrix.
    """
    inp = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(inp, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ModelError(
            f"{type(model).__name__} has no input embedding matrix (get_input_embeddings() returned "
            f"{type(inp).__name__}). Pass a transformers model with token embeddings, e.g. one loaded "
            "with AutoModelForMaskedLM / AutoModelForCausalLM / AutoModelForSeq2SeqLM."
        )
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out_weight = getattr(out, "weight", None) if out is not None else None
    tied = out_weight is not None and out_weight.data_ptr() == weight.data_ptr()
    biases: dict[str, torch.Tensor] = {}
    bias = getattr(out, "bias", None) if out is not None else None
    if isinstance(bias, torch.Tensor) and bias.dim() == 1 and bias.shape[0] == weight.shape[0]:
        biases["output"] = bias
    final_bias = getattr(model, "final_logits_bias", None)
    if isinstance(final_bias, torch.Tensor) and final_bias.shape[-1] == weight.shape[0]:
        biases["final_logits_bias"] = final_bias.reshape(-1)
    return EmbeddingHandles(weight.detach(), None if tied or out_weight is None else out_weight.detach(), tied, biases)


def check_required_roles(model, source_profile, target_profile) -> None:
    """Fail early when the target tokenizer lacks a special token the model relies on."""
    kind = model_kind(model)
    if kind == "masked" and "mask" not in target_profile.roles:
        raise MissingSpecialTokenError("mask", "the model is a masked LM, whose fill-mask and MLM training need one")
    config = model.config
    for attr, role in ID_ATTRIBUTES.items():
        if role is None or role == "unk":
            continue
        value = getattr(config, attr, None)
        if value is None or role in target_profile.roles:
            continue
        if role in source_profile.roles and source_profile.roles[role] in (value if isinstance(value, list) else [value]):
            raise MissingSpecialTokenError(role, f"the model's config uses one ({attr}={value})")


def _set_vocab_size_attributes(model, old: int, new: int) -> None:
    # Some model classes cache vocab_size when built (Gemma3ForCausalLM uses it in its
    # loss); a stale value breaks the labels path with a reshape error.
    for module in model.modules():
        if isinstance(getattr(module, "vocab_size", None), int) and module.vocab_size == old:
            module.vocab_size = new
    for config in {id(c): c for c in _configs(model.config)}.values():
        if getattr(config, "vocab_size", None) == old:
            config.vocab_size = new


def _configs(config):
    yield config
    for name in ("text_config", "decoder", "encoder"):
        sub = getattr(config, name, None)
        if sub is not None and hasattr(sub, "to_dict"):
            yield sub


def translate_special_ids(model, source_to_target: dict[int, int], target_roles: dict[str, int]) -> dict[str, object]:
    """Rewrite token ids in config and generation config from source ids to target ids.

    Returns the new values by attribute name (for the report).
    """
    changes: dict[str, object] = {}
    holders = list(_configs(model.config))
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        holders.append(gen)
    for holder in holders:
        for attr, role in ID_ATTRIBUTES.items():
            if not hasattr(holder, attr):
                continue
            value = getattr(holder, attr)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            mapped = [source_to_target[v] for v in values if v in source_to_target]
            if not mapped and role is not None and role in target_roles:
                mapped = [target_roles[role]]
            if len(mapped) < len(values):
                logger.warning("%s=%s: %d id(s) have no counterpart in the target tokenizer and were dropped", attr, value, len(values) - len(mapped))
            new_value = (mapped if isinstance(value, list) else (mapped[0] if mapped else None))
            setattr(holder, attr, new_value)
            changes[attr] = new_value
    return changes


def _shift_position_table(model, old_pad: int | None, new_pad: int | None) -> bool:
    """RoBERTa-style models number positions from pad_id + 1: keep each position's row."""
    if old_pad is None or new_pad is None or old_pad == new_pad:
        return False
    base = getattr(model, "base_model", model)
    embeddings = getattr(base, "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    if not isinstance(table, torch.nn.Embedding) or table.padding_idx != old_pad:
        return False
    shift = new_pad - old_pad
    with torch.no_grad():
        old = table.weight.detach().clone()
        n = old.shape[0]
        new = old.clone()
        # New index p holds what old index p - shift held (positions keep their vectors).
        lo, hi = max(0, shift), min(n, n + shift)
        new[lo:hi] = old[lo - shift : hi - shift]
        table.weight.copy_(new)
    table.padding_idx = new_pad
    if hasattr(embeddings, "padding_idx"):
        embeddings.padding_idx = new_pad
    if shift > 0:
        logger.warning("pad id moved from %d to %d: the last %d position rows were dropped", old_pad, new_pad, shift)
    return True


def apply_plan(
    model,
    plan: MixingPlan,
    *,
    seed: int,
    source_to_target_special: dict[int, int],
    target_roles: dict[str, int],
    pad_to_multiple_of: int | None = None,
) -> dict:
    """Rewrite ``model`` in place for the target vocabulary described by ``plan``.

    Args:
        model: a transformers PreTrainedModel.
        plan: the method's mixing plan (``plan.output`` is used for untied outputs and biases).
        seed: seeds the fallback draws (input and output matrices use seed and seed + 1).
        source_to_target_special: source special id -> target id, to translate config ids.
        target_roles: role -> target id.
        pad_to_multiple_of: round the embedding rows up to a multiple of this (padding
            rows get the mean row and the mean bias).

    Returns:
        A dict describing what was changed (for the report).
    """
    handles = find_embeddings(model)
    old_rows = handles.input_weight.shape[0]
    n_t = plan.num_target
    total = n_t if not pad_to_multiple_of else -(-n_t // pad_to_multiple_of) * pad_to_multiple_of
    out_plan = plan.output or plan
    if plan.output is not None and handles.tied:
        logger.warning("the method gave a separate output mixing, but this model ties its output to its input: using the input mixing")

    with torch.no_grad():
        new_in = plan.apply(handles.input_weight, seed=seed, num_rows=total)
        new_out = None
        if handles.output_weight is not None:
            new_out = out_plan.apply(handles.output_weight, seed=seed + 1, num_rows=total)
        new_biases = {name: out_plan.apply(b.detach(), seed=seed, fallback="mean", num_rows=total) for name, b in handles.biases.items()}

    old_pad = model.config.pad_token_id
    model.resize_token_embeddings(total, mean_resizing=False)
    with torch.no_grad():
        inp = model.get_input_embeddings()
        inp.weight.copy_(new_in)
        out_module = model.get_output_embeddings()
        if handles.tied:
            if out_module is not None and out_module.weight.data_ptr() != inp.weight.data_ptr():
                model.tie_weights()
        elif new_out is not None:
            out_module.weight.copy_(new_out)
        if "output" in new_biases:
            out_module.bias.copy_(new_biases["output"])
        if "final_logits_bias" in new_biases:
            fb = model.final_logits_bias
            fb.copy_(new_biases["final_logits_bias"].reshape(fb.shape))
    _set_vocab_size_attributes(model, old_rows, total)
    for config in _configs(model.config):
        if hasattr(config, "vocab_size"):
            config.vocab_size = total
    id_changes = translate_special_ids(model, source_to_target_special, target_roles)
    shifted = _shift_position_table(model, old_pad, model.config.pad_token_id)
    pad_idx = model.config.pad_token_id
    if isinstance(pad_idx, int) and hasattr(model.get_input_embeddings(), "padding_idx") and model.get_input_embeddings().padding_idx is not None:
        model.get_input_embeddings().padding_idx = pad_idx
    return {
        "rows": total,
        "padding_rows": total - n_t,
        "tied": handles.tied,
        "untied_output_rewritten": new_out is not None,
        "biases_rewritten": sorted(new_biases),
        "config_ids": id_changes,
        "position_table_shifted": shifted,
    }
