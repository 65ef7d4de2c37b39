"""TransplantResult and its report: what was done, saving, pushing."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .errors import OutputExistsError
from .methods.base import COMBINED, COPIED, KIND_NAMES, MEAN, RANDOM, MixingPlan

logger = logging.getLogger(__name__)

RECORD_FILE = "vocabswap.json"
PLAN_FILE = "vocabswap_plan.safetensors"


@dataclass
class TransplantReport:
    """How every target token was made, and everything needed to reproduce the transplant.

    Attributes:
        method, options, seed: what was run.
        overlap: target tokens whose canonical form (or role) exists in the source.
        counts: {"copied", "combined", "random", "mean"} -> number of target tokens.
        ids: the same keys -> sorted lists of target ids.
        alignment: vocabulary alignment summary (mode, families, match counts).
        method_stats: numbers the method reported (anchors, ...).
        surgery: what surgery changed (rows, tied, biases, config ids).
        provenance: source model id/path and revision or sha256, target tokenizer, corpus.
    """

    method: str
    options: dict
    seed: int
    overlap: int
    counts: dict
    ids: dict = field(repr=False)
    alignment: dict = field(default_factory=dict)
    method_stats: dict = field(default_factory=dict)
    surgery: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    model_kind: str = ""
    seconds: float = 0.0
    version: str = __version__

    @classmethod
    def build(cls, *, method, options, seed, alignment, plan: MixingPlan, surgery, provenance, model_kind, seconds):
        return cls(
            method=method,
            options=options,
            seed=seed,
            overlap=alignment.overlap_size,
            counts=plan.counts(),
            ids={name: plan.ids_of(k) for k, name in KIND_NAMES.items()},
            alignment=alignment.summary(),
            method_stats=dict(plan.stats),
            surgery=surgery,
            provenance=provenance,
            model_kind=model_kind,
            seconds=round(seconds, 3),
        )

    @property
    def fallback(self) -> int:
        return self.counts.get("random", 0) + self.counts.get("mean", 0)

    def headline(self) -> str:
        c = self.counts
        return (
            f"{self.method}: {c['copied']} copied, {c['combined']} combined, "
            f"{self.fallback} fallback ({c['random']} random, {c['mean']} mean); overlap {self.overlap}"
        )

    def __str__(self) -> str:
        total = sum(self.counts.values())
        lines = [
            f"hf_vocabswap transplant ({self.model_kind} model, {self.alignment.get('mode', 'replace')} mode)",
            f"  source:           {self.provenance.get('source')}",
            f"  target tokenizer: {self.provenance.get('target_tokenizer')} ({total} tokens)",
            f"  method:           {self.method} {json.dumps(self.options, ensure_ascii=False)}  seed={self.seed}",
            f"  overlap:          {self.overlap} of {total} target tokens ({100 * self.overlap / max(total, 1):.1f}%)",
        ]
        for name in ("copied", "combined", "random", "mean"):
            n = self.counts.get(name, 0)
            lines.append(f"  {name + ':':<18}{n:>8}  ({100 * n / max(total, 1):5.1f}%)")
        if self.method_stats:
            lines.append(f"  method stats:     {json.dumps(self.method_stats, ensure_ascii=False)}")
        lines.append(f"  embedding rows:   {self.surgery.get('rows')}  tied head: {self.surgery.get('tied')}  time: {self.seconds:.1f}s")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TransplantResult:
    """The transplanted model and tokenizer, with the report and the mixing plan."""

    model: object
    tokenizer: object
    report: TransplantReport
    plan: MixingPlan
    alignment: object = None
    source_tokenizer: object = None

    def explain(self, token: str | int, top: int = 5) -> str:
        """How one target token's embedding was made, e.g. ``0.62 x ▁кіт + 0.38 x ▁кот``."""
        tid = token if isinstance(token, int) else self.tokenizer.convert_tokens_to_ids(token)
        return explain_row(self.plan, tid, self.tokenizer, self.source_tokenizer, top=top)

    def save_pretrained(self, save_directory, *, overwrite: bool = False, card: bool = True) -> Path:
        """Write model (safetensors), config, tokenizer, ``vocabswap.json`` and a model card.

        The folder is written to a temporary sibling first and renamed when complete, so a
        failure leaves nothing half-written.

        Raises:
            OutputExistsError: the folder exists and ``overwrite`` is False.
        """
        target = Path(save_directory)
        if target.exists() and not overwrite:
            raise OutputExistsError(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self._write_model(tmp)
            self.tokenizer.save_pretrained(tmp)
            record = self.report.to_dict()
            (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
            save_plan(self.plan, tmp / PLAN_FILE)
            if card:
                from .card import write_model_card

                write_model_card(tmp, self)
            if target.exists():
                backup = target.with_name(f".{target.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                os.replace(target, backup)
                os.replace(tmp, target)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        logger.info("saved transplanted model to %s", target)
        return target

    def _write_model(self, folder: Path) -> None:
        """Write weights, config and generation config (streaming results override this)."""
        self.model.save_pretrained(folder)

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: str | None = None, commit_message: str | None = None, **kwargs):
        """Save to a temporary folder and upload everything in one commit (private by default)."""
        from .hub import push_folder

        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "model")
            return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message or f"hf_vocabswap: {self.report.headline()}", **kwargs)


def save_plan(plan: MixingPlan, path: Path) -> None:
    """The mixing plan as safetensors (explains every token; read back by :func:`load_plan`)."""
    import torch
    from safetensors.torch import save_file

    tensors = {
        "indptr": torch.from_numpy(plan.indptr),
        "indices": torch.from_numpy(plan.indices),
        "weights": torch.from_numpy(plan.weights),
        "kinds": torch.from_numpy(plan.kinds),
    }
    if plan.output is not None:
        tensors.update({f"output.{k}": v for k, v in {
            "indptr": torch.from_numpy(plan.output.indptr),
            "indices": torch.from_numpy(plan.output.indices),
            "weights": torch.from_numpy(plan.output.weights),
            "kinds": torch.from_numpy(plan.output.kinds),
        }.items()})
    metadata = {"num_source": str(plan.num_source)}
    cal = getattr(plan, "calibration", None)
    if cal:
        metadata["calibration_mode"] = str(cal["mode"])
        for key in ("ids", "shifts", "directions"):
            if key in cal:
                tensors[f"calibration.{key}"] = torch.from_numpy(np.ascontiguousarray(cal[key]))
    save_file(tensors, str(path), metadata=metadata)


def load_plan(path) -> MixingPlan:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
        num_source = int(meta["num_source"])
        t = {k: f.get_tensor(k) for k in f.keys()}
    output = None
    if "output.kinds" in t:
        output = MixingPlan(num_source, t["output.indptr"], t["output.indices"], t["output.weights"], t["output.kinds"])
    plan = MixingPlan(num_source, t["indptr"], t["indices"], t["weights"], t["kinds"], output)
    if "calibration.ids" in t:
        plan.calibration = {"mode": meta.get("calibration_mode", "direction"),
                            **{k.split(".", 1)[1]: v for k, v in t.items() if k.startswith("calibration.")}}
    return plan


def explain_row(plan: MixingPlan, tid: int, tokenizer, source_tokenizer=None, top: int = 5) -> str:
    if tid is None or not 0 <= tid < plan.num_target:
        raise KeyError(f"token {tid!r} is not in the target vocabulary")
    kind = int(plan.kinds[tid])
    name = tokenizer.convert_ids_to_tokens(tid)
    if kind in (RANDOM, MEAN):
        return f"{name}: {KIND_NAMES[kind]} fallback"
    pairs = plan.row(tid)
    def label(sid):
        return source_tokenizer.convert_ids_to_tokens(sid) if source_tokenizer is not None else f"#{sid}"
    if kind == COPIED:
        return f"{name}: copied from {label(pairs[0][0])}"
    body = " + ".join(f"{w:.2f} x {label(s)}" for s, w in pairs[:top])
    more = f" + {len(pairs) - top} more" if len(pairs) > top else ""
    cal = getattr(plan, "calibration", None)
    if cal and len(cal.get("ids", ())):
        hit = np.flatnonzero(np.asarray(cal["ids"]) == tid)
        if len(hit):
            more += f"; output score shifted by {float(np.asarray(cal['shifts'])[:, hit[0]].sum()):+.2f} (calibration)"
    return f"{name}: {body}{more}"


__all__ = ["TransplantReport", "TransplantResult", "load_plan", "save_plan", "COPIED", "COMBINED"]
