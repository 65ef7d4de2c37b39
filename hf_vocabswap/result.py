"""TransplantResult: the transplanted model and tokenizer, with their report; saving and pushing."""

from __future__ import annotations

import difflib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .card import write_model_card
from .errors import TokenizerError
from .hub import push_folder
from .output import OutputClaim, write_output
from .plan import MixingPlan, save_plan
from .record import PLAN_FILE, TransplantReport

logger = logging.getLogger(__name__)

__all__ = ["TransplantResult"]


@dataclass
class TransplantResult:
    """The transplanted model and tokenizer, with the report and the mixing plan.

    Attributes:
        model: the transplanted model (a copy of the given one unless ``inplace=True``).
        tokenizer: the target tokenizer, with the source's limits (``model_max_length``).
        report: the :class:`~hf_vocabswap.record.TransplantReport` (saved as ``vocabswap.json``).
        plan: the :class:`~hf_vocabswap.plan.MixingPlan` every new row was built by.
        alignment: the :class:`~hf_vocabswap.vocab.VocabAlignment` of the two tokenizers.
        source_tokenizer: the source model's tokenizer (names the source tokens in ``explain``).
    """

    model: object
    tokenizer: object
    report: TransplantReport
    plan: MixingPlan
    alignment: object = None
    source_tokenizer: object = None

    def explain(self, token: str | int, top: int = 5) -> str:
        """How one target token's embedding was made, e.g. ``▁кіт: 0.62 x ▁кі + 0.38 x т``.

        Args:
            token: a target token (its string, as ``tokenizer.convert_ids_to_tokens`` spells it) or id.
            top: at most this many terms are shown.

        Raises:
            TokenizerError: ``token`` is not in the target vocabulary (the message suggests the
                nearest spellings that are).
        """
        if isinstance(token, int):
            return self.plan.explain(token, self.tokenizer, self.source_tokenizer, top=top) + self._romanized_note(token)
        vocab = self.tokenizer.get_vocab()
        if token not in vocab:
            near = difflib.get_close_matches(token, list(vocab), n=5, cutoff=0.5)
            hint = f" Nearest target tokens: {', '.join(map(repr, near))}." if near else ""
            raise TokenizerError(
                f"{token!r} is not a token of the target vocabulary, so no row was made for it.{hint} "
                "Pass a token as the target tokenizer spells it (tokenizer.tokenize(text) shows the pieces) or its id."
            )
        return self.plan.explain(vocab[token], self.tokenizer, self.source_tokenizer, top=top) + self._romanized_note(vocab[token])

    def _romanized_note(self, target_id: int) -> str:
        """``"; from `kit` by romanization"`` when the token's row was built from its romanized form."""
        forms = getattr(self.alignment, "romanized", None) or {}
        form = forms.get(target_id)
        if form is None:
            return ""
        pieces = set(self.alignment.source.segment(form))
        row = {s for s, _ in self.plan.row(target_id)} if 0 <= target_id < self.plan.num_target else set()
        if not pieces or not pieces <= row:
            return ""  # the method built this row from something else (e.g. FOCUS's fastText neighbours)
        return f"; from `{form.text.decode('utf-8')}` by romanization"

    def save_pretrained(self, save_directory, *, overwrite: bool = False, card: bool = True, claim: OutputClaim | None = None) -> Path:
        """Write model (safetensors), config, tokenizer, ``vocabswap.json``, the plan and a model card.

        The folder is claimed first, written to a temporary sibling and moved into place when
        complete (:mod:`hf_vocabswap.output`): a failure or an interrupt leaves nothing half-written,
        and a second writer of the same folder fails at once.

        Args:
            save_directory: the output folder.
            overwrite: replace an existing hf_vocabswap output there (never a folder of other files).
            card: write the model card ``README.md``.
            claim: an :class:`~hf_vocabswap.output.OutputClaim` taken before the transplant (the CLI does).

        Returns:
            The folder's path.

        Raises:
            OutputExistsError: the folder exists and ``overwrite`` is False, is being written by
                another run, or holds files that are not an hf_vocabswap output.
            OutputError: the path is a file or cannot be written (permissions, a full disk).
        """
        target = write_output(save_directory, lambda tmp: self._write_folder(tmp, card=card), overwrite=overwrite, claim=claim)
        logger.info("saved transplanted model to %s", target)
        return target

    def _write_folder(self, folder: Path, *, card: bool) -> None:
        self._write_model(folder)
        self.tokenizer.save_pretrained(folder)
        self.report.write(folder)
        save_plan(self.plan, folder / PLAN_FILE)
        if card:
            write_model_card(folder, self)

    def _write_model(self, folder: Path) -> None:
        """Write weights, config and generation config (streaming results override this)."""
        self.model.save_pretrained(folder)

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: str | None = None, commit_message: str | None = None, **kwargs):
        """Save to a temporary folder and upload everything in one commit (private by default).

        Args:
            repo_id: ``"owner/name"``, or ``"name"`` for a repo of the logged-in user.
            private: create the repo private.
            token: a token with write access (default: ``HF_TOKEN`` or the stored login).
            commit_message: defaults to the record's headline, as ``hf-vocabswap push`` uses.
            **kwargs: further arguments of :func:`hf_vocabswap.hub.push_folder`.

        Returns:
            The ``huggingface_hub.CommitInfo`` of the commit.

        Raises:
            HubError: see :func:`hf_vocabswap.hub.push_folder`.
        """
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message, **kwargs)
