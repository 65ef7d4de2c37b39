"""Model cards rendered from the templates in ``model_cards/`` with huggingface_hub."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

TEMPLATE_DIR = Path(__file__).resolve().parent / "model_cards"
_REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"

PIPELINE_TAGS = {"masked": "fill-mask", "causal": "text-generation", "seq2seq": "text2text-generation", "base": "feature-extraction"}
AUTO_CLASSES = {"masked": "AutoModelForMaskedLM", "causal": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM", "base": "AutoModel"}


def template_path(name: str = "default") -> Path:
    for folder in (TEMPLATE_DIR, _REPO_TEMPLATES):
        path = folder / f"{name}.md"
        if path.is_file():
            return path
    raise FileNotFoundError(f"model card template {name!r} not found in {TEMPLATE_DIR} or {_REPO_TEMPLATES}")


def render_model_card(result, repo_id: str | None = None) -> ModelCard:
    from .methods import get_method

    report = result.report
    kind = report.model_kind or "base"
    source = report.provenance.get("source") or "unknown"
    is_hub_id = isinstance(source, str) and source.count("/") == 1 and not Path(source).exists()
    total = sum(report.counts.values())
    method_cls = get_method(report.method)
    data = ModelCardData(
        base_model=source if is_hub_id else None,
        library_name="transformers",
        pipeline_tag=PIPELINE_TAGS.get(kind),
        tags=["hf-vocabswap", f"vocabswap-{report.method}", "tokenizer-transplant"],
        base_model_relation="finetune" if is_hub_id else None,
    )
    model_ref = repo_id or "path/to/this/folder"
    snippet = (
        f"from transformers import {AUTO_CLASSES[kind]}, AutoTokenizer\n\n"
        f"model = {AUTO_CLASSES[kind]}.from_pretrained({model_ref!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({model_ref!r})"
    )
    rows = [(name, report.counts.get(name, 0), f"{100 * report.counts.get(name, 0) / max(total, 1):.1f}%") for name in ("copied", "combined", "random", "mean")]
    return ModelCard.from_template(
        data,
        template_path=str(template_path()),
        model_name=repo_id.split("/")[-1] if repo_id else f"{Path(str(source)).name}-vocabswap-{report.method}",
        base_model=source,
        base_model_link=f"https://huggingface.co/{source}" if is_hub_id else "#",
        target_vocab_size=total,
        method=report.method,
        training_note=(
            "**This model has not been trained after the transplant.** New tokens start from an "
            "initialization; continue pretraining on target-language text (`hf-vocabswap train`) before use."
        ),
        count_rows=rows,
        overlap=report.overlap,
        mode=report.alignment.get("mode", "replace"),
        options=json.dumps(report.options, ensure_ascii=False),
        seed=report.seed,
        source=source,
        source_hash=report.provenance.get("source_sha256"),
        corpus=report.provenance.get("corpus"),
        snippet=snippet,
        citation=method_cls.citation,
    )


def write_model_card(folder, result, repo_id: str | None = None) -> Path:
    card = render_model_card(result, repo_id)
    path = Path(folder) / "README.md"
    card.save(path)
    return path
