"""Bad inputs through the CLI and what the user sees: the table the README's Development section shows.

Each case is run by tests/test_reliability.py, which asserts the exit code, that stderr is one
``error:`` line holding ``shown``, and that nothing was written. ``python -m tests.bad_inputs``
prints the markdown table (paste it into the README between the ``bad-inputs`` markers; a test
checks the README holds every row).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BadInput:
    """One bad input: the ``hf-vocabswap`` arguments (placeholders {model} = splade-tiny folder,
    {target} = a target tokenizer folder, {tmp} = a temporary folder, {corpus} = a text file),
    what it is, the exit code, and a fragment of the one error line the user sees."""

    name: str
    argv: tuple[str, ...]
    exit_code: int
    shown: str


TRANSPLANT = ("transplant", "{model}", "{target}", "--method", "fvt", "--out", "{tmp}/out")

CASES = (
    BadInput("a misspelt method", ("transplant", "{model}", "{target}", "--method", "fcous", "--out", "{tmp}/out"), 2, "Unknown method 'fcous'"),
    BadInput("a model folder that does not exist", ("transplant", "{tmp}/no-such-model", "{target}", "--out", "{tmp}/out"), 2, "does not exist (no such file or folder)"),
    BadInput("a missing .gguf file", ("transplant", "{tmp}/gemma.gguf", "{target}", "--out", "{tmp}/out"), 2, "does not exist (no such file or folder)"),
    BadInput("model.safetensors given as the model", ("transplant", "{model}/model.safetensors", "{target}", "--out", "{tmp}/out"), 2, "is a file (model.safetensors); pass the folder that holds it"),
    BadInput("a folder that is not a model", ("transplant", "{tmp}", "{target}", "--out", "{tmp}/out"), 2, "is not a model folder: it has no config.json"),
    BadInput("tokenizer.json given as the target", ("transplant", "{model}", "{target}/tokenizer.json", "--out", "{tmp}/out"), 2, "is a file (tokenizer.json); pass the folder that holds it"),
    BadInput("a source tokenizer of another model", TRANSPLANT + ("--source-tokenizer", "{target}"), 2, "is not the one saved with the model"),
    BadInput("an unknown device", TRANSPLANT + ("--device", "tpu9"), 2, "device 'tpu9' is not a torch device"),
    BadInput("a negative padding multiple", TRANSPLANT + ("--pad-to-multiple-of", "-8"), 2, "pad_to_multiple_of must be a positive integer"),
    BadInput("an option value the method does not know", TRANSPLANT + ("--output-rule", "last"), 2, "output_rule must be one of ('mean', 'first')"),
    BadInput("an option of another method", TRANSPLANT + ("--global-weight", "0.5"), 2, "--global-weight is an option of hybrid, not of --method fvt"),
    BadInput("a misspelt file among several corpus files", TRANSPLANT + ("--corpus", "{corpus}", "{tmp}/typo.txt"), 2, "does not exist"),
    BadInput("--out that is a file", ("transplant", "{model}", "{target}", "--method", "fvt", "--out", "{corpus}"), 2, "is a file, not a folder"),
    BadInput("--out . --overwrite", ("transplant", "{model}", "{target}", "--method", "fvt", "--out", ".", "--overwrite"), 2, "is the current folder"),
    BadInput("--overwrite on a folder of the user's own files", ("transplant", "{model}", "{target}", "--method", "fvt", "--out", "{tmp}/mine", "--overwrite"), 2, "holds files that are not an hf_vocabswap output"),
    BadInput("a batch size of 0 in evaluate", ("evaluate", "{model}", "--text", "{corpus}", "--batch-size", "0"), 2, "batch_size must be at least 1, not 0"),
    BadInput("a batch size of 0 in train", ("train", "{model}", "--text", "{corpus}", "--batch-size", "0", "--out", "{tmp}/lapt"), 2, "batch_size must be at least 1, not 0"),
    BadInput("0 steps in train", ("train", "{model}", "--text", "{corpus}", "--steps", "0", "--out", "{tmp}/lapt"), 2, "max_steps must be at least 1, not 0"),
    BadInput("a held-out file for train-tokenizer that does not exist", ("train-tokenizer", "{model}", "--corpus", "{corpus}", "--vocab-size", "300", "--heldout", "{tmp}/missing.txt", "--out", "{tmp}/tok"), 2, "does not exist"),
    BadInput("--out that exists, without --overwrite", ("transplant", "{model}", "{target}", "--method", "fvt", "--out", "{tmp}/mine"), 2, "already exists"),
)


def markdown_rows() -> list[str]:
    """The table's rows, as the README shows them."""
    return [f"| {c.name} | {c.exit_code} | `error: ...{c.shown}...` |" for c in CASES]


def markdown() -> str:
    """The whole table (header and rows)."""
    return "\n".join(["| input | exit code | what the user sees |", "|---|---:|---|", *markdown_rows()])


if __name__ == "__main__":  # pragma: no cover
    print(markdown())
