"""The record of an output folder: its file names, the transplant report, reading and checking it.

Every folder hf_vocabswap writes (a transplant, and a trained model made from one) holds, beside
the stock transformers files, ``vocabswap.json`` (the :class:`TransplantReport`: what was run and
how every token was made), ``vocabswap_plan.safetensors`` (the mixing plan, see
:mod:`hf_vocabswap.plan`) and a model card ``README.md``. ``card``, ``hub``, ``result``,
``train`` and the Space read a folder through this module; it imports nothing above it.

Records are read tolerantly, as peft reads its configs: keys this version does not know (from a
newer version) are kept aside and reported once, never an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from safetensors import safe_open

from .version import __version__
from .errors import NotAnOutputFolderError
from .plan import KIND_NAMES, MixingPlan

logger = logging.getLogger(__name__)

__all__ = [
    "CARD_FILE", "FRONTIER_FILE", "HISTORY_FILE", "PLAN_FILE", "RECORD_FILE", "TOKENIZER_FILES", "WEIGHT_FILES", "TransplantReport",
    "check_output_folder", "commit_message", "read_record",
]

RECORD_FILE = "vocabswap.json"
PLAN_FILE = "vocabswap_plan.safetensors"
CARD_FILE = "README.md"
HISTORY_FILE = "lapt_history.json"
FRONTIER_FILE = "frontier.json"  # hf_vocabswap.frontier's results
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass
class TransplantReport:
    """How every target token was made, and everything needed to reproduce the transplant.

    Attributes:
        method: the method that ran (``auto`` resolved; its reason is in ``method_stats["auto"]``).
        options: the method's options, every field of its config.
        seed: the seed of every random choice.
        overlap: target tokens whose canonical form (or role) exists in the source.
        counts: {"copied", "combined", "random", "mean"} -> number of target tokens.
        ids: the same keys -> sorted lists of target ids.
        alignment: vocabulary alignment summary (mode, families, match counts).
        method_stats: numbers the method reported (anchors, ...), and calibration's.
        surgery: what surgery changed (rows, tied, biases, config ids).
        provenance: source model id/path and revision or sha256, target tokenizer, corpus.
        model_kind: "masked", "causal", "seq2seq" or "base".
        seconds: wall time of the transplant.
        version: the hf_vocabswap version that wrote the record.
        language: ISO 639 code(s) of the target language, when given (the card's ``language:``).
        datasets: Hub dataset ids the transplant learned from (the card's ``datasets:``).
        example_text: a short sample of the corpus, for the card's usage example.
        training: continued pretraining done after the transplant (``hf_vocabswap.train``): the
            recipe, the held-out curve's first, best and last points, the teacher if distilled.
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
    language: str | list[str] | None = None
    datasets: list[str] = field(default_factory=list)
    example_text: str | None = None
    training: dict | None = None

    @classmethod
    def build(cls, *, method, options, seed, alignment, plan: MixingPlan, surgery, provenance, model_kind, seconds) -> "TransplantReport":
        """The report of a finished transplant, from its alignment and plan."""
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

    @classmethod
    def from_dict(cls, record: dict) -> "TransplantReport":
        """The report of a ``vocabswap.json`` dict; keys this version does not know are ignored (logged once).

        Raises:
            ValueError: a required key (method, options, seed, overlap, counts) is missing.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            logger.info("vocabswap.json has keys this hf_vocabswap version does not know (ignored): %s", ", ".join(unknown))
        missing = [name for name in ("method", "options", "seed", "overlap", "counts") if name not in record]
        if missing:
            raise ValueError(f"the record lacks {', '.join(missing)}")
        values = {k: v for k, v in record.items() if k in known}
        values.setdefault("ids", {})
        return cls(**values)

    @property
    def fallback(self) -> int:
        """Tokens that got a fallback row (random or mean)."""
        return self.counts.get("random", 0) + self.counts.get("mean", 0)

    def headline(self) -> str:
        """One line: the method and its counts (log lines and the Hub commit message use it)."""
        c = self.counts
        return (
            f"{self.method}: {c.get('copied', 0)} copied, {c.get('combined', 0)} combined, "
            f"{self.fallback} fallback ({c.get('random', 0)} random, {c.get('mean', 0)} mean); overlap {self.overlap}"
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
        roman = self.alignment.get("romanization")
        if roman:
            lines.append(f"  romanization:     {romanization_line(roman)}")
        if self.method_stats:
            lines.append(f"  method stats:     {json.dumps(self.method_stats, ensure_ascii=False)}")
        lines.append(f"  embedding rows:   {self.surgery.get('rows')}  tied head: {self.surgery.get('tied')}  time: {self.seconds:.1f}s")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The record as written to ``vocabswap.json``."""
        return asdict(self)

    def write(self, folder) -> Path:
        """Write ``folder/vocabswap.json``; returns its path."""
        path = Path(folder) / RECORD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        return path


def commit_message(report: TransplantReport) -> str:
    """The Hub commit message of a pushed output folder (``push_to_hub`` and ``hf-vocabswap push`` alike)."""
    return f"hf_vocabswap: {report.headline()}"


def read_record(folder) -> TransplantReport:
    """The :class:`TransplantReport` of an output folder.

    Raises:
        NotAnOutputFolderError: the folder does not exist, has no ``vocabswap.json``, or its
            record is damaged (not JSON, or lacking the method and counts).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotAnOutputFolderError(folder, [], "it is not a folder" if folder.exists() else "it does not exist")
    path = folder / RECORD_FILE
    if not path.is_file():
        raise NotAnOutputFolderError(folder, [RECORD_FILE], f"it has no {RECORD_FILE}, so it was not written by hf_vocabswap")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return TransplantReport.from_dict(record)
    except (ValueError, UnicodeDecodeError, TypeError) as e:
        raise NotAnOutputFolderError(folder, [RECORD_FILE], f"its {RECORD_FILE} is damaged ({e})") from None


def check_output_folder(folder) -> list[Path]:
    """The files to upload from a complete hf_vocabswap output folder, relative to it.

    A complete folder has ``vocabswap.json`` (the transplant record), ``config.json``, a
    tokenizer (``tokenizer.json`` or ``tokenizer_config.json``) and readable weights (every
    shard its index names, with intact safetensors headers). Hidden files and folders
    (``.cache``, ``.git``), training checkpoints (``checkpoint-*``), tracker logs (``runs``)
    and pickle files (``training_args.bin``, ``*.pt``) are skipped.

    Raises:
        NotAnOutputFolderError: the folder does not exist, is not an hf_vocabswap output,
            or is incomplete (the error lists what is missing).
    """
    folder = Path(folder)
    read_record(folder)
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    weights = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        missing.append("model weights (model.safetensors)")
    for index_name in [w for w in weights if w.endswith(".index.json")]:
        try:
            shards = set(json.loads((folder / index_name).read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, KeyError) as e:
            raise NotAnOutputFolderError(folder, [index_name], f"its {index_name} is damaged ({e})") from None
        missing += sorted(s for s in shards if not (folder / s).is_file())
    if missing:
        raise NotAnOutputFolderError(folder, missing)
    files = sorted(
        p.relative_to(folder) for p in folder.rglob("*")
        if p.is_file() and not _left_behind(p.relative_to(folder))
    )
    _check_safetensors(folder, [f for f in files if f.suffix == ".safetensors"])
    return files


PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _left_behind(rel: Path) -> bool:
    """Files an upload skips: hidden ones, training checkpoints and tracker logs (they hold
    optimizer state and pickles the Hub flags), and pickle files such as ``training_args.bin``."""
    if any(part.startswith(".") for part in rel.parts):
        return True
    if rel.parts[0].startswith("checkpoint-") or rel.parts[0] == "runs":
        return True
    return rel.suffix in PICKLE_SUFFIXES or rel.name == "training_args.bin"


def _check_safetensors(folder: Path, files: list[Path]) -> None:
    for rel in files:
        try:
            with safe_open(str(folder / rel), framework="numpy") as f:
                f.keys()
        except Exception as e:  # noqa: BLE001 - any failure means the file is unusable
            raise NotAnOutputFolderError(folder, [str(rel)], f"{rel} is truncated or damaged ({e})") from None


def romanization_line(roman: dict) -> str:
    """What romanization did, in one line (the report and the model card say it so)."""
    scripts = ", ".join(
        f"{s} ({100 * roman['coverage'][s]['covered']:.0f}% covered)" for s in roman.get("poor_scripts", ())
    ) or "none"
    left = roman.get("empty", 0) + roman.get("unsegmented", 0)
    return (
        f"{roman.get('romanized', 0)} new tokens romanized by {roman.get('romanizer')} (scripts the source covers poorly: "
        f"{scripts}); {roman.get('matched', 0)} match a source token by romanization; {left} left to the method's own rule"
    )
