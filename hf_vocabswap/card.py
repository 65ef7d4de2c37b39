"""Model cards rendered from the templates in ``model_cards/`` with huggingface_hub.

A card is made of two parts, kept apart on purpose:

* :class:`CardInfo` is what the user tells the card: language, a license override, Hub
  datasets, extra tags, evaluation results, held-out text for tokenizer statistics.
* :class:`CardFacts` is filled automatically from the :class:`~hf_vocabswap.result.TransplantReport`
  (source, target tokenizer, method, options, seed, alignment counts), the model config and
  the source's own card (inherited license), plus library versions.

:func:`render_model_card` merges both into ``huggingface_hub.ModelCardData`` (the YAML
header) and the template's variables (the body). ``TransplantResult.save_pretrained`` writes
the card as ``README.md`` through :func:`write_model_card`; set ``result.card_info =
CardInfo(...)`` before saving or pushing to add what only the user knows.

Local inputs (a source folder or GGUF file, a target tokenizer folder, corpus files) are named
by their file or folder name and a sha256 of their content, never by a path of this machine
(``vocabswap.json`` keeps the full paths). :func:`update_card_with_evaluation` adds held-out
results (bits per character, tokens per word) to a saved card's ``model-index``; ``hf-vocabswap
evaluate DIR --text FILE --update-card`` calls it.

Example:
    >>> from hf_vocabswap.card import CardInfo
    >>> result.card_info = CardInfo(language="uk", heldout_texts=heldout, datasets=["me/uk-corpus"])
    >>> result.save_pretrained("xlmr-uk")     # README.md with YAML metadata and statistics
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import json
import logging
import mmap
import os
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import langcodes
from huggingface_hub import EvalResult, ModelCard, ModelCardData, try_to_load_from_cache
from transformers import AutoTokenizer

from .version import __version__
from .corpus import HubDatasetSpec
from .errors import CardError, CorpusError, NotAnOutputFolderError, UnknownMethodError
from .evaluate import tokenizer_stats
from .loading import folder_weights_sha256
from .methods import get_method
from .record import CARD_FILE, RECORD_FILE, read_record, romanization_line
from .summary import changed_options, flat_stats, format_value, is_local_path, public_name

logger = logging.getLogger(__name__)

# Templates live in the top-level ``model_cards/`` folder of the repository, and ship inside
# the wheel as ``hf_vocabswap/model_cards`` (a link to that folder, listed in package-data).
_PACKAGE_TEMPLATES = "model_cards"
_REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"

# The loading snippet of a card written to a local folder names this placeholder;
# hub.push_folder replaces it with the repo id in the uploaded README.md.
LOCAL_MODEL_ID = "path/to/this/folder"

PIPELINE_TAGS = {"masked": "fill-mask", "causal": "text-generation", "seq2seq": "text2text-generation", "base": "feature-extraction"}
AUTO_CLASSES = {"masked": "AutoModelForMaskedLM", "causal": "AutoModelForCausalLM", "seq2seq": "AutoModelForSeq2SeqLM", "base": "AutoModel"}
_LIBRARIES = ("transformers", "torch", "tokenizers", "huggingface_hub", "safetensors")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_SNAPSHOT = re.compile(r"models--([^/\\]+?)--([^/\\]+)[/\\]snapshots[/\\][0-9a-f]{40}")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_PUNCTUATION = ".,;:!?…\"'«»“”„()[]—–-"
# Values the Hub's `language:` field takes besides ISO 639 codes.
_HUB_LANGUAGE_VALUES = ("multilingual",)


def validate_language(value) -> str | list[str] | None:
    """ISO 639-1 or 639-3 code(s) for the card's ``language:`` field, checked and lower-cased.

    Args:
        value: a code (``"uk"``, ``"ukr"``), a list of codes, a comma-separated string, or None.

    Returns:
        The code, or the list of codes when several were given (None for None).

    Raises:
        CardError: a value is not a two- or three-letter ISO 639 code (``"Ukrainian"``,
            ``"uk-UA"`` and ``"xx"`` are refused; the message suggests the code to use).
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    if not any(str(item).strip() for item in items):
        raise CardError("language is empty: pass an ISO 639 code such as 'uk', or leave it out.")
    codes = []
    for item in items:
        code = str(item).strip().lower()
        if code in _HUB_LANGUAGE_VALUES or (_LANGUAGE.match(code) and langcodes.tag_is_valid(code)):
            codes.append(code)
            continue
        raise CardError(f"{str(item).strip()!r} is not an ISO 639 language code.{_language_hint(str(item).strip())} "
                        "Pass a two- or three-letter code, e.g. language='uk' (Ukrainian) or 'ukr'; several as a list or 'uk,en'.")
    return codes[0] if len(codes) == 1 else codes


def _language_hint(text: str) -> str:
    """`` Did you mean 'uk'?`` for a region tag (uk-UA) or a language name langcodes knows, else ""."""
    primary = re.split(r"[-_]", text, maxsplit=1)[0].lower()
    if primary != text.lower() and _LANGUAGE.match(primary) and langcodes.tag_is_valid(primary):
        return f" Did you mean {primary!r} (the card's language field takes the language without the region)?"
    if importlib.util.find_spec("language_data") is None:  # names need langcodes' optional data package
        return ""
    try:
        found = langcodes.find(text).language
    except LookupError:
        return ""
    return f" Did you mean {found!r}?" if found else ""


# --------------------------------------------------------------------------- user input


@dataclass
class TokenizerStats:
    """How a tokenizer splits a held-out text sample (see :func:`hf_vocabswap.evaluate.tokenizer_stats`).

    Attributes:
        texts, words, characters, tokens, unknown: totals over the sample (words are
            whitespace-separated; tokens exclude special tokens; unknown counts unk ids).
        continued_words: share of words cut into more than one token, when measured.
    """

    texts: int
    words: int
    characters: int
    tokens: int
    unknown: int = 0
    continued_words: float | None = None

    @classmethod
    def measure(cls, tokenizer, texts: list[str]) -> "TokenizerStats":
        """Tokenize ``texts`` (without special tokens) and count, as :mod:`hf_vocabswap.evaluate` does."""
        return cls.from_dict(tokenizer_stats(tokenizer, [t for t in texts if t]))

    @classmethod
    def from_dict(cls, stats: dict) -> "TokenizerStats":
        """From what :func:`hf_vocabswap.evaluate.tokenizer_stats` returns (``evaluate_model(...)["tokenizer"]``)."""
        return cls(
            texts=int(stats.get("num_texts", 0)),
            words=int(stats["num_words"]),
            characters=int(stats["num_characters"]),
            tokens=int(stats["num_tokens"]),
            unknown=int(stats.get("num_unknown", 0)),
            continued_words=stats.get("continued_words"),
        )

    @property
    def tokens_per_word(self) -> float:
        return self.tokens / max(self.words, 1)

    @property
    def characters_per_token(self) -> float:
        return self.characters / max(self.tokens, 1)

    @property
    def unknown_rate(self) -> float:
        return self.unknown / max(self.tokens, 1)


@dataclass
class EvalEntry:
    """One evaluation number for the card.

    Attributes:
        metric: metric id, e.g. ``"bpc"`` (bits per character) or ``"perplexity"``.
        value: the transplanted model's value.
        dataset: Hub dataset id it was measured on; entries with a dataset also go to the
            YAML ``model-index``.
        dataset_name: display name of the dataset (default: ``dataset``).
        split: dataset split.
        source_value: the source model's value on the same data, shown as "before".
    """

    metric: str
    value: float
    dataset: str | None = None
    dataset_name: str | None = None
    split: str | None = None
    source_value: float | None = None

    @classmethod
    def bits_per_character(cls, after: dict, before: dict | None = None, *, dataset: str | None = None, split: str | None = None) -> "EvalEntry":
        """From :func:`hf_vocabswap.evaluate.evaluate_model` results of the new and the source model."""
        return cls(
            metric="bpc",
            value=round(float(after["bits_per_character"]), 4),
            dataset=dataset,
            dataset_name=None if dataset else corpus_name(after.get("texts")),
            split=split,
            source_value=round(float(before["bits_per_character"]), 4) if before else None,
        )


@dataclass
class CardInfo:
    """What only the user knows; everything else is read from the transplant.

    Attributes:
        language: ISO 639 code(s) of the target language, e.g. ``"uk"``.
        license: overrides the license inherited from the source's card or config.
        license_name, license_link: with ``license="other"``.
        datasets: Hub dataset ids of the corpus or later training data (merged with the
            corpus when it was a Hub dataset).
        tags: extra tags.
        model_name: the card's title (default: source name, method and "vocabswap").
        base_model: overrides the Hub id detected from the source.
        description: a paragraph under the title.
        heldout_texts: held-out target-language text; tokenizer statistics before and
            after are measured on it when both tokenizers are at hand.
        tokenizer_stats: precomputed statistics, ``{"source": ..., "target": ...}``, each a
            :class:`TokenizerStats` or the dict :func:`hf_vocabswap.evaluate.tokenizer_stats` returns.
        eval_results: :class:`EvalEntry` items (``huggingface_hub.EvalResult`` also works).
        example_text: input text of the loading snippet.
        continued_pretraining: a sentence saying how the model was trained after the
            transplant; when set, the card no longer warns that training is needed.
    """

    language: str | list[str] | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    model_name: str | None = None
    base_model: str | None = None
    description: str | None = None
    heldout_texts: list[str] | None = field(default=None, repr=False)
    tokenizer_stats: dict[str, TokenizerStats | dict] = field(default_factory=dict)
    eval_results: list[EvalEntry | EvalResult] = field(default_factory=list)
    example_text: str | None = None
    continued_pretraining: str | None = None


# ----------------------------------------------------------------- filled automatically


@dataclass
class CardFacts:
    """Everything the card states that comes from the transplant itself.

    Built by :meth:`from_report` from a :class:`~hf_vocabswap.record.TransplantReport`
    and the model config (a ``PretrainedConfig`` or the ``config.json`` dict). Local inputs are
    named by their file or folder name (``source_local`` tells); the record keeps the paths.
    """

    source: str
    method: str
    options: dict
    seed: int
    model_kind: str
    overlap: int
    counts: dict
    target_vocab_size: int
    target_tokenizer: str | None = None
    target_tokenizer_sha256: str | None = None
    target_tokenizer_local: bool = False
    source_revision: str | None = None
    source_sha256: str | None = None
    source_local: bool = False
    corpus: str | None = None
    corpus_sha256: str | None = None
    corpus_datasets: list[str] = field(default_factory=list)
    alignment: dict = field(default_factory=dict)
    method_stats: dict = field(default_factory=dict)
    surgery: dict = field(default_factory=dict)
    architecture: str | None = None
    model_type: str | None = None
    base_model: str | None = None
    inherited_license: dict = field(default_factory=dict)
    method_summary: str = ""
    citation: str = ""
    hf_vocabswap_version: str = ""
    library_versions: dict = field(default_factory=dict)
    language: str | list[str] | None = None
    example_text: str | None = None

    @classmethod
    def from_report(cls, report, config=None) -> "CardFacts":
        """The facts of a :class:`~hf_vocabswap.record.TransplantReport` and the model config (object or ``config.json`` dict)."""
        prov = report.provenance or {}
        raw_source = str(prov.get("source") or "unknown")
        try:
            method_cls = get_method(report.method)
            summary, citation = method_cls.summary, method_cls.citation
        except UnknownMethodError:  # a record written by a method this install lacks
            summary, citation = "", ""
        config_dict = _config_dict(config)
        architectures = config_dict.get("architectures") or []
        base_model = hub_model_id(raw_source)
        local = base_model is None and ("source_sha256" in prov or is_local_path(raw_source))
        return cls(
            source=base_model or (public_name(raw_source) if local else raw_source),
            method=report.method,
            options=dict(report.options or {}),
            seed=report.seed,
            model_kind=report.model_kind or "base",
            overlap=report.overlap,
            counts=dict(report.counts),
            target_vocab_size=int(sum(report.counts.values())),
            target_tokenizer=_target_name(prov.get("target_tokenizer"), raw_source),
            target_tokenizer_sha256=prov.get("target_tokenizer_sha256"),
            target_tokenizer_local=is_local_path(prov.get("target_tokenizer")),
            source_revision=prov.get("source_revision"),
            source_sha256=prov.get("source_sha256") or (_folder_sha256(raw_source) if local else None),
            source_local=local,
            corpus=corpus_name(prov.get("corpus")),
            corpus_sha256=prov.get("corpus_sha256"),
            corpus_datasets=list(dict.fromkeys([*(getattr(report, "datasets", None) or []),
                                                *[d for d in [hub_dataset_id(prov.get("corpus"))] if d]])),
            alignment=dict(report.alignment or {}),
            method_stats=dict(report.method_stats or {}),
            surgery=dict(report.surgery or {}),
            architecture=architectures[0] if architectures else None,
            model_type=config_dict.get("model_type"),
            base_model=base_model,
            inherited_license=source_license(raw_source, config_dict),
            method_summary=summary,
            citation=citation.strip(),
            hf_vocabswap_version=getattr(report, "version", "") or "",
            library_versions=library_versions(),
            language=getattr(report, "language", None),
            example_text=getattr(report, "example_text", None),
        )

    @property
    def fallback(self) -> int:
        return self.counts.get("random", 0) + self.counts.get("mean", 0)

    @property
    def needs_training(self) -> bool:
        """True when some rows are not exact copies, i.e. the model has not seen them."""
        return self.counts.get("combined", 0) + self.fallback > 0


def _folder_sha256(path: str) -> str | None:
    """The weights hash of a local source folder the record has none for (a model object loaded from it)."""
    return folder_weights_sha256(Path(path)) if Path(path).is_dir() else None


def _target_name(name: str | None, source: str) -> str | None:
    # A tokenizer trained in memory keeps the name of the one it was trained from (often the
    # source's): that name would claim the model still uses the source's tokenizer.
    if not name or name.startswith("<") or name == source:
        return None
    return public_name(name)


def corpus_name(description: str | None) -> str | None:
    """How the card names a corpus: a Hub dataset by its id, files by their names (never their paths)."""
    if not description:
        return None
    if description.startswith("dataset:") or description.startswith("<"):
        return description
    return ", ".join(public_name(part) for part in description.split(", "))


def hub_model_id(source: str | None) -> str | None:
    """The Hub model id a source names: the id itself, or the repo of a cached snapshot folder."""
    if not source or source.startswith("<"):
        return None
    match = _SNAPSHOT.search(source)
    if match:
        return f"{match.group(1)}/{match.group(2)}"
    if is_local_path(source) or not _HUB_ID.match(source):
        return None
    return source


def hub_dataset_id(corpus: str | None) -> str | None:
    """The Hub dataset id of a corpus description (``dataset:owner/name[:config][@split]``, ``hf://datasets/owner/name/...``)."""
    if not corpus:
        return None
    try:
        spec = HubDatasetSpec.parse(corpus)
    except CorpusError:
        spec = None
    if spec is not None:
        return spec.name
    match = re.match(r"^hf://datasets/([\w.-]+/[\w.-]+?)(@[^/]*)?(/.*)?$", corpus)
    return match.group(1) if match else None


def source_license(source: str, config: dict | None = None) -> dict:
    """License fields (``license``, ``license_name``, ``license_link``) of the source, or {}.

    Read, without network access, from the source folder's README.md YAML, the cached
    README.md of a Hub source, the config (``license``), or a GGUF file's ``general.license``.
    """
    meta: dict = {}
    readme = _source_readme(source)
    if readme is not None:
        try:
            meta = ModelCard.load(readme, ignore_metadata_errors=True).data.to_dict()
        except Exception as e:  # noqa: BLE001 - a broken source card must not break ours
            logger.debug("cannot read the source card %s: %s", readme, e)
    if not meta.get("license") and config and isinstance(config.get("license"), str):
        meta = {"license": config["license"]}
    if not meta.get("license") and str(source).endswith(".gguf") and Path(source).is_file():
        meta = {"license": _gguf_license(source)}
    return {k: meta[k] for k in ("license", "license_name", "license_link") if meta.get(k)}


def _source_readme(source: str) -> Path | None:
    path = Path(source)
    if path.is_dir():
        return path / "README.md" if (path / "README.md").is_file() else None
    repo_id = hub_model_id(source)
    if repo_id is None:
        return None
    cached = try_to_load_from_cache(repo_id, "README.md")
    return Path(cached) if isinstance(cached, str) else None


_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _gguf_license(path) -> str | None:
    """``general.license`` of a GGUF file, read from its key-value header only.

    ``gguf.GGUFReader`` decodes every field (a 262k-token vocabulary takes a minute), so the
    header is walked directly and the walk stops at the key (general.* keys come first).
    """
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != b"GGUF" or struct.unpack_from("<I", buf, 4)[0] < 2:
                return None
            kv_count = struct.unpack_from("<Q", buf, 16)[0]
            pos = 24

            def string(at):
                n = struct.unpack_from("<Q", buf, at)[0]
                return bytes(buf[at + 8 : at + 8 + n]).decode("utf-8", "replace"), at + 8 + n

            def skip(kind, at):
                if kind == 8:
                    return string(at)[1]
                if kind == 9:
                    inner, count = struct.unpack_from("<IQ", buf, at)
                    at += 12
                    if inner in _GGUF_SIZES:
                        return at + count * _GGUF_SIZES[inner]
                    for _ in range(count):
                        at = skip(inner, at)
                    return at
                return at + _GGUF_SIZES[kind]

            for _ in range(kv_count):
                key, pos = string(pos)
                kind = struct.unpack_from("<I", buf, pos)[0]
                pos += 4
                if key == "general.license" and kind == 8:
                    return string(pos)[0]
                pos = skip(kind, pos)
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return None


def _config_dict(config) -> dict:
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    return config.to_dict() if hasattr(config, "to_dict") else {}


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries the model was made and is loaded with."""
    versions = {"hf_vocabswap": __version__}
    for name in _LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


# ------------------------------------------------------------------------- rendering


def template_path(name: str = "default") -> Path:
    """Path of the card template ``name`` (``model_cards/<name>.md``), or ``name`` if it is a file.

    Raises:
        FileNotFoundError: no such template, in the installed package or the source tree.
    """
    if Path(name).suffix == ".md" and Path(name).is_file():
        return Path(name)
    candidates = []
    try:
        packaged = importlib.resources.files("hf_vocabswap") / _PACKAGE_TEMPLATES / f"{name}.md"
        candidates.append(Path(str(packaged)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - zipimport without files()
        pass
    candidates.append(_REPO_TEMPLATES / f"{name}.md")
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Model card template {name!r} not found (looked in {', '.join(map(str, candidates))}). "
        "Reinstall hf-vocabswap, or pass template= the path of a .md template."
    )


def model_card_data(facts: CardFacts, info: CardInfo, *, model_name: str | None = None) -> ModelCardData:
    """The YAML header: user choices override what was inherited or detected.

    Raises:
        CardError: the language (of ``info`` or of the record) is not an ISO 639 code.
    """
    base_model = info.base_model or facts.base_model
    license_fields = {"license": info.license, "license_name": info.license_name, "license_link": info.license_link}
    if not info.license:
        license_fields = {k: facts.inherited_license.get(k) for k in license_fields}
    tags = ["hf-vocabswap", "tokenizer-transplant", f"vocabswap-{facts.method}"]
    if facts.model_type:
        tags.append(facts.model_type)
    tags += [t for t in info.tags if t not in tags]
    datasets = list(dict.fromkeys([*facts.corpus_datasets, *info.datasets]))
    eval_results = [r for e in info.eval_results for r in _hub_eval_results(e, facts)]
    extra = {"base_model_relation": "finetune"} if base_model else {}
    return ModelCardData(
        base_model=base_model,
        datasets=datasets or None,
        eval_results=eval_results or None,
        language=validate_language(info.language if info.language is not None else facts.language),
        library_name="transformers",
        model_name=model_name if eval_results else None,
        pipeline_tag=PIPELINE_TAGS.get(facts.model_kind),
        tags=tags,
        **license_fields,
        **extra,
    )


METRIC_NAMES = {
    "bpc": "bits per character",
    "tokens_per_word": "tokens per word",
    "characters_per_token": "characters per token",
}
SOURCE_PREFIX = "source_"


def _metric_name(metric: str) -> str:
    if metric.startswith(SOURCE_PREFIX):
        return f"source model {METRIC_NAMES.get(metric[len(SOURCE_PREFIX):], metric[len(SOURCE_PREFIX):])} (its own tokenizer)"
    return METRIC_NAMES.get(metric, metric)


def _hub_eval_results(entry, facts: CardFacts) -> list[EvalResult]:
    """The model-index entries of an :class:`EvalEntry` (its source value as ``source_<metric>``)."""
    if isinstance(entry, EvalResult):
        return [entry]
    if not entry.dataset:
        return []  # model-index needs a dataset; the body table still shows it
    pairs = [(entry.metric, entry.value)] + ([(SOURCE_PREFIX + entry.metric, entry.source_value)] if entry.source_value is not None else [])
    return [
        EvalResult(
            task_type=PIPELINE_TAGS.get(facts.model_kind, "feature-extraction"), dataset_type=entry.dataset,
            dataset_name=entry.dataset_name or entry.dataset, dataset_split=entry.split, metric_type=metric,
            metric_name=_metric_name(metric), metric_value=value,
        )
        for metric, value in pairs
    ]


def _eval_rows(info: CardInfo) -> list[dict]:
    rows = []
    for e in info.eval_results:
        if isinstance(e, EvalResult):
            rows += _rows_from_results([e])
        else:
            rows.append({"metric": e.metric, "value": e.value, "before": e.source_value,
                         "dataset": e.dataset_name or e.dataset, "split": e.split})
    return rows


def _rows_from_results(results: list[EvalResult]) -> list[dict]:
    """Body-table rows of model-index entries: ``source_<metric>`` goes to the "before" column of ``<metric>``."""
    rows: dict[tuple, dict] = {}
    for r in results:
        source = r.metric_type.startswith(SOURCE_PREFIX)
        metric = r.metric_type[len(SOURCE_PREFIX):] if source else r.metric_type
        key = (metric, r.dataset_type, r.dataset_split)
        label = metric if source or r.metric_name in (None, _metric_name(metric)) else r.metric_name
        row = rows.setdefault(key, {"metric": label, "value": None, "before": None, "dataset": r.dataset_name, "split": r.dataset_split})
        row["before" if source else "value"] = r.metric_value
    return list(rows.values())


def evaluation_section(rows: list[dict]) -> str:
    """The card's ``## Evaluation`` section (empty when there is nothing to show)."""
    if not rows:
        return ""
    show = lambda v: "" if v is None else str(v)  # noqa: E731
    lines = ["## Evaluation", "", "| metric | before (source) | after | dataset | split |", "|---|---:|---:|---|---|"]
    lines += [f"| {row['metric']} | {show(row['before'])} | {show(row['value'])} | {row['dataset'] or ''} | {row['split'] or ''} |" for row in rows]
    if any(str(row["metric"]) in METRIC_NAMES for row in rows):
        lines += ["", "*bpc*: bits per character of held-out text, lower is better; it compares models whose tokenizers "
                  "differ. *Before*: the source model with its own tokenizer."]
    return "\n".join(lines)


def _calibration_line(method_stats: dict) -> str:
    """One sentence on the output calibration recorded in the method statistics ("" if none ran)."""
    cal = (method_stats or {}).get("calibration")
    if not isinstance(cal, dict) or not cal.get("calibrated"):
        return ""
    where = "the output bias" if cal.get("mode") == "bias" else "one shared direction of the output rows" + (
        " (tied, so the input rows moved with them)" if cal.get("tied") else "")
    return (
        f"Output calibration: the scores of {cal['calibrated']:,} new tokens were shifted through {where} so that "
        f"the model predicts each as often as the corpus uses it; their share of the predicted probability went from "
        f"{100 * cal['mass_before']:.1f}% to {100 * cal['mass_after']:.1f}% (corpus share {100 * cal['corpus_share']:.1f}%)."
    )


def _stats_rows(stats: dict[str, TokenizerStats]) -> list[dict]:
    labels = {"source": "source (before)", "target": "target (after)"}
    return [
        {
            "label": labels.get(name, name),
            "tokens_per_word": f"{s.tokens_per_word:.3f}",
            "characters_per_token": f"{s.characters_per_token:.3f}",
            "unknown_rate": f"{100 * s.unknown_rate:.2f}%",
            "continued_words": "" if s.continued_words is None else f"{100 * s.continued_words:.1f}%",
            "tokens": s.tokens,
            "words": s.words,
            "characters": s.characters,
        }
        for name, s in stats.items()
    ]


def _cell(text) -> str:
    """A value for a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _sha(value: str | None, what: str) -> str:
    return f"{what} sha256 `{value[:16]}…`" if value else ""


def _source_cell(facts: CardFacts) -> str:
    if facts.base_model:
        revision = f" (revision `{facts.source_revision}`)" if facts.source_revision else ""
        return f"[`{facts.base_model}`](https://huggingface.co/{facts.base_model}){revision}"
    if facts.source_local:
        kind = "a local GGUF file" if facts.source.endswith(".gguf") else "a local folder"
        sha = _sha(facts.source_sha256, "file" if facts.source.endswith(".gguf") else "weights")
        return f"`{facts.source}` ({kind}{'; ' + sha if sha else ''})"
    return f"`{facts.source}`"


def _target_cell(facts: CardFacts) -> str:
    name = facts.target_tokenizer
    if name and not facts.target_tokenizer_local and hub_model_id(name):
        what = f"[`{name}`](https://huggingface.co/{name})"
    elif name:
        what = f"`{name}` (a local folder)"
    else:
        what = "a tokenizer object (saved in this folder)"
    sha = _sha(facts.target_tokenizer_sha256, "tokenizer.json")
    return f"{what}, {facts.target_vocab_size} tokens{' (' + sha + ')' if sha else ''}"


def _corpus_cell(facts: CardFacts) -> str:
    corpus = facts.corpus or ""
    spec = HubDatasetSpec.parse(corpus) if corpus.startswith("dataset:") else None
    if spec is not None:
        config = f", config `{spec.config}`" if spec.config else ""
        what = f"Hub dataset [`{spec.name}`](https://huggingface.co/datasets/{spec.name}){config}, split `{spec.split}`"
    elif corpus.startswith("<"):
        what = f"a {corpus.strip('<>')} of texts given in Python"
    else:
        what = ", ".join(f"`{part}`" for part in corpus.split(", "))
    sha = _sha(facts.corpus_sha256, "content")
    return f"{what}{' (' + sha + ')' if sha else ''}"


def option_rows(facts: CardFacts) -> list[tuple[str, str, str]]:
    """``(option, value, default)`` for the options that differ from the method's defaults."""
    return [(name, _cell(format_value(value)), _cell(format_value(default))) for name, value, default in changed_options(facts.method, facts.options)]


def method_stat_rows(facts: CardFacts) -> list[tuple[str, str]]:
    """The method statistics as ``(statistic, value)`` table rows (nested keys joined with dots)."""
    return [(key, _cell(value)) for key, value in flat_stats(facts.method_stats)]


def default_model_name(facts: CardFacts) -> str:
    """The card's title when the user gives none: the source's short name, ``vocabswap`` and the method."""
    if facts.base_model:
        short = facts.base_model.split("/")[-1]
    else:
        short = "model" if facts.source.startswith("<") else Path(facts.source.rstrip("/\\")).name.removesuffix(".gguf") or "model"
    return f"{short}-vocabswap-{facts.method}"


# ------------------------------------------------------------------- the usage example


def example_from_texts(texts, *, min_words: int = 5, max_words: int = 14, max_texts: int = 200) -> str | None:
    """A short sample of running text for the usage example, or None.

    The first whole sentence of ``min_words`` to ``max_words`` words, most of them plain words (no
    numbers or links), among the first ``max_texts`` texts; else the start of the first text that
    has ``min_words`` words.
    """
    fallback = None
    for i, text in enumerate(texts or []):
        if i >= max_texts:
            break
        for sentence in _SENTENCE_END.split(str(text).strip()):
            words = sentence.split()
            plain = sum(1 for w in words if w.strip(_PUNCTUATION).isalpha())
            if min_words <= len(words) <= max_words and sentence[-1:] in ".!?…" and plain >= 0.8 * len(words):
                return sentence
        if fallback is None and len(str(text).split()) >= min_words:
            fallback = " ".join(str(text).split()[:max_words])
    return fallback


def example_from_vocabulary(tokenizer, *, words: int = 6) -> str | None:
    """Whole words of the tokenizer's vocabulary (the first ``words`` of at least three letters,
    in id order, which is frequency order for BPE and WordPiece), or None."""
    vocab = tokenizer.get_vocab()
    pieces = sorted(vocab.items(), key=lambda kv: kv[1])
    marker = "▁" if any(t.startswith("▁") for t, _ in pieces[:2000]) else "Ġ" if any(t.startswith("Ġ") for t, _ in pieces[:2000]) else None
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    found: list[str] = []
    for token, tid in pieces:
        if tid in special or (marker and not token.startswith(marker)) or (marker is None and token.startswith("##")):
            continue
        text = tokenizer.decode([tid]).strip()
        if len(text) >= 3 and text.isalpha() and text not in found:
            found.append(text)
            if len(found) >= words:
                break
    return " ".join(found) if found else None


def _example(info: CardInfo, facts: CardFacts, tokenizer) -> str:
    """The usage example's text: given, else held-out text, else the corpus sample, else target vocabulary."""
    text = info.example_text or example_from_texts(info.heldout_texts) or facts.example_text
    if not text and tokenizer is not None:
        text = example_from_vocabulary(tokenizer)
    return text or "Hello, world!"


def masked_example(text: str) -> tuple[str, str]:
    """``(Python expression, masked word)``: the example with one real word replaced by the tokenizer's
    mask token (the word of four or more letters nearest the middle), e.g. ``"Київ — " + tokenizer.mask_token + " України."``."""
    words = text.split()
    middle = len(words) // 2
    order = sorted(range(len(words)), key=lambda i: (abs(i - middle), i))
    k = next((i for i in order if words[i].isalpha() and len(words[i]) >= 4),
             next((i for i in order if words[i].isalpha()), middle if words else 0))
    prefix, suffix = " ".join(words[:k]), " ".join(words[k + 1:])
    parts = ([json.dumps(prefix + " ", ensure_ascii=False)] if prefix else []) + ["tokenizer.mask_token"]
    parts += [json.dumps(" " + suffix, ensure_ascii=False)] if suffix else []
    return " + ".join(parts), words[k] if words else ""


# ------------------------------------------------------------------------- rendering


def _template_vars(facts: CardFacts, info: CardInfo, stats: dict, header: dict, *, model_name, repo_id, tokenizer) -> dict:
    """The template's variables besides ``card_data``."""
    total = max(facts.target_vocab_size, 1)
    example = _example(info, facts, tokenizer)
    masked, masked_word = masked_example(example)
    return dict(
        model_name=model_name,
        facts=facts,
        info=info,
        kind=facts.model_kind,
        auto_class=AUTO_CLASSES.get(facts.model_kind, "AutoModel"),
        model_id=repo_id or LOCAL_MODEL_ID,
        model_id_comment="" if repo_id else "  # or the Hub repo id",
        example_literal=json.dumps(example, ensure_ascii=False),
        masked_expression=masked,
        masked_word=json.dumps(masked_word, ensure_ascii=False),
        source_title=f"[`{facts.base_model}`](https://huggingface.co/{facts.base_model})" if facts.base_model else f"`{facts.source}`",
        source_cell=_source_cell(facts),
        target_cell=_target_cell(facts),
        corpus_cell=_corpus_cell(facts) if facts.corpus else "",
        option_rows=option_rows(facts),
        stat_rows=method_stat_rows(facts),
        calibration=_calibration_line(facts.method_stats),
        # Romanized matches are no overlap: the card says them in their own sentence.
        matched_by=", ".join(
            f"{k} {v}" for k, v in (facts.alignment.get("matched_by") or {}).items() if v and k not in ("none", "romanized")
        ),
        romanization=romanization_line(facts.alignment["romanization"]) if facts.alignment.get("romanization") else "",
        overlap_share=f"{100 * facts.overlap / total:.1f}%",
        count_rows=[
            (name, facts.counts.get(name, 0), f"{100 * facts.counts.get(name, 0) / total:.1f}%")
            for name in ("copied", "combined", "random", "mean")
        ],
        stats_rows=_stats_rows(stats),
        stats_texts=next(iter(stats.values())).texts if stats else 0,
        evaluation_section=evaluation_section(_eval_rows(info)),
        needs_training=facts.needs_training and not info.continued_pretraining,
        license_text=header.get("license"),
        versions=facts.library_versions,
    )


def render_model_card(
    result=None,
    info: CardInfo | None = None,
    *,
    repo_id: str | None = None,
    template: str = "default",
    report=None,
    config=None,
    tokenizer=None,
    source_tokenizer=None,
) -> ModelCard:
    """Render the card of a transplant.

    Args:
        result: a :class:`~hf_vocabswap.result.TransplantResult` (its report, model config
            and both tokenizers are used). Alternatively pass ``report`` (and ``config``).
        info: what the user adds (default: ``result.card_info`` if set, else nothing).
        repo_id: the Hub repo the card is for; the loading snippet then names it instead
            of :data:`LOCAL_MODEL_ID`.
        template: a template name in ``model_cards/`` or the path of a ``.md`` template.
        report, config, tokenizer, source_tokenizer: the parts, when there is no result.

    Returns:
        A ``huggingface_hub.ModelCard``; ``str(card)`` is the README text.

    Raises:
        FileNotFoundError: the template does not exist.
        CardError: the language is not an ISO 639 code.
        ValueError: ``info`` holds metadata huggingface_hub rejects (e.g. eval results).
    """
    if result is not None:
        report = result.report
        config = config if config is not None else getattr(getattr(result, "model", None), "config", None)
        tokenizer = tokenizer if tokenizer is not None else getattr(result, "tokenizer", None)
        source_tokenizer = source_tokenizer if source_tokenizer is not None else getattr(result, "source_tokenizer", None)
        if info is None:
            info = getattr(result, "card_info", None)
    if report is None:
        raise TypeError("render_model_card needs a TransplantResult or report=...")
    info = info if info is not None else CardInfo()
    facts = CardFacts.from_report(report, config)

    stats = {k: v if isinstance(v, TokenizerStats) else TokenizerStats.from_dict(v) for k, v in info.tokenizer_stats.items()}
    if info.heldout_texts and not stats:
        if source_tokenizer is not None:
            stats["source"] = TokenizerStats.measure(source_tokenizer, info.heldout_texts)
        if tokenizer is not None:
            stats["target"] = TokenizerStats.measure(tokenizer, info.heldout_texts)

    model_name = info.model_name or (repo_id.split("/")[-1] if repo_id else default_model_name(facts))
    data = model_card_data(facts, info, model_name=model_name)
    variables = _template_vars(facts, info, stats, data.to_dict(), model_name=model_name, repo_id=repo_id, tokenizer=tokenizer)
    card = ModelCard.from_template(data, template_path=str(template_path(template)), **variables)
    return ModelCard(_tidy(str(card)))


def _tidy(text: str) -> str:
    """Collapse the blank lines that template conditionals leave behind."""
    text = re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text)
    text = re.sub(r"\n\n```\n", "\n```\n", text)
    return text.rstrip() + "\n"


def write_model_card(folder, result=None, info: CardInfo | None = None, repo_id: str | None = None, **kwargs) -> Path:
    """Render the card of ``result`` and write it as ``folder/README.md``; returns the path.

    Called by ``TransplantResult.save_pretrained``. Without ``result``, the card is rendered
    from the folder's ``vocabswap.json`` and ``config.json`` (see :func:`render_folder_card`).
    """
    card = render_model_card(result, info, repo_id=repo_id, **kwargs) if result is not None else render_folder_card(folder, info, repo_id=repo_id)
    path = Path(folder) / CARD_FILE
    path.write_text(str(card), encoding="utf-8")
    return path


def render_folder_card(folder, info: CardInfo | None = None, *, repo_id: str | None = None, template: str = "default") -> ModelCard:
    """The card of a saved hf_vocabswap folder, from its ``vocabswap.json``, ``config.json`` and tokenizer.

    Raises:
        NotAnOutputFolderError: the folder has no ``vocabswap.json``, or it is damaged.
    """
    folder = Path(folder)
    report = read_record(folder)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    tokenizer = None
    if not report.example_text:  # the usage example then comes from the saved tokenizer's vocabulary
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except Exception as e:  # noqa: BLE001 - the card can do without the example's words
            logger.debug("no tokenizer in %s for the card's example: %s", folder, e)
    if report.training and not (info and info.continued_pretraining):
        info = replace(info or CardInfo(), continued_pretraining=training_sentence(report.training),
                       eval_results=[*(info.eval_results if info else []), *training_eval_entries(report.training)])
    return render_model_card(None, info, repo_id=repo_id, template=template, report=report, config=config, tokenizer=tokenizer)


def training_sentence(training: dict) -> str:
    """What the card says about continued pretraining, from a record's ``training`` section."""
    recipe = training.get("recipe") or {}
    batch = recipe.get("per_device_train_batch_size")
    accumulation = recipe.get("gradient_accumulation_steps") or 1
    seq = recipe.get("seq_length")
    shape = f" of {batch * accumulation} x {seq} tokens" if batch and seq else ""
    text = (f"Continued pretraining (LAPT) for {training.get('global_step')} steps{shape} at learning rate "
            f"{recipe.get('learning_rate')} on {training.get('num_train_tokens', 0):,} tokens of target-language text "
            f"({training.get('epochs', 0):.1f} epochs).")
    teacher = training.get("teacher")
    if teacher:
        name = teacher.get("name") if isinstance(teacher, dict) else teacher
        text += f" Distilled from `{public_name(str(name))}` across tokenizers (approximate likelihood matching)."
    best, last = training.get("best"), training.get("last")
    if best and last:
        initial = training.get("initial")
        before = f"{initial['eval_bpc']:.4f} before training, " if initial and initial.get("eval_bpc") is not None else ""
        text += (f" Held-out bits per character: {before}best {best['eval_bpc']:.4f} at step {best['step']}, "
                 f"last {last['eval_bpc']:.4f} at step {last['step']}; these weights are the {training.get('final_model', 'last')} ones.")
    else:
        text += " No held-out text was evaluated during training."
    return text


def training_eval_entries(training: dict) -> list[EvalEntry]:
    """The evaluation table's rows of the training curve: best and last held-out bits per character."""
    entries = []
    for which in ("best", "last"):
        point = training.get(which)
        if point and point.get("eval_bpc") is not None:
            entries.append(EvalEntry(metric="bpc", value=round(float(point["eval_bpc"]), 4),
                                     dataset_name=f"held-out text during training, {which} (step {point['step']})"))
    return entries


# ------------------------------------------------------------------ evaluation results


def evaluation_results(results: dict, source_results: dict | None = None, *, task_type: str, dataset: str | None = None,
                       dataset_name: str | None = None, split: str | None = None, dataset_sha256: str | None = None) -> list[EvalResult]:
    """model-index entries of held-out results: ``bpc`` and ``tokens_per_word`` of the adapted model, and
    ``source_bpc`` / ``source_tokens_per_word`` of the source with its own tokenizer when given.

    Args:
        results, source_results: what :func:`hf_vocabswap.evaluate.evaluate_model` returned (at least
            ``bits_per_character``; ``tokenizer`` statistics add tokens per word).
        task_type: the pipeline tag (``fill-mask``, ``text-generation`` ...).
        dataset: the Hub dataset id of the held-out text (read from ``results["texts"]`` when it
            was ``dataset:...``); otherwise the text is named by its file name.
        dataset_name, split, dataset_sha256: how the text is shown; its content hash goes to ``revision``.

    Raises:
        CardError: ``results`` has no finite ``bits_per_character``.
    """
    texts = str(results.get("texts") or "")
    spec = HubDatasetSpec.parse(texts) if texts.startswith("dataset:") else None
    dataset = dataset or (spec.name if spec else None)
    split = split or (spec.split if spec else None)
    name = dataset_name or (str(spec) if spec else corpus_name(texts)) or "held-out text"
    entries = []
    for prefix, res in (("", results), (SOURCE_PREFIX, source_results)):
        if res is None:
            continue
        bpc = res.get("bits_per_character")
        if not isinstance(bpc, (int, float)) or bpc != bpc or bpc in (float("inf"), float("-inf")):
            raise CardError(f"The evaluation results have no finite bits_per_character ({bpc!r}): pass what evaluate_model returned.")
        values = [("bpc", round(float(bpc), 4))]
        tpw = (res.get("tokenizer") or {}).get("tokens_per_word")
        if isinstance(tpw, (int, float)) and tpw == tpw:
            values.append(("tokens_per_word", round(float(tpw), 4)))
        entries += [
            EvalResult(task_type=task_type, dataset_type=dataset or name, dataset_name=name, dataset_split=split,
                       dataset_revision=None if dataset else dataset_sha256, metric_type=prefix + metric,
                       metric_name=_metric_name(prefix + metric), metric_value=value)
            for metric, value in values
        ]
    return entries


def _card_to_update(folder: Path) -> tuple[Path, ModelCard]:
    path = folder / CARD_FILE
    if not path.is_file():
        raise NotAnOutputFolderError(
            folder, [CARD_FILE], f"it has no model card {CARD_FILE} to update. Write one first (`result.save_pretrained` does; "
            f"for a folder with a {RECORD_FILE}, `hf_vocabswap.card.write_model_card(folder)`)")
    return path, ModelCard.load(path, ignore_metadata_errors=True)


def update_card_with_evaluation(folder, results: dict, source_results: dict | None = None, **where) -> Path:
    """Add held-out results to the model card of an output folder: the YAML ``model-index`` and the
    ``## Evaluation`` section (entries of the same held-out text are replaced, others kept).

    Args:
        folder: an output folder (``vocabswap.json`` and ``README.md``), e.g. a transplant or a trained model.
        results: :func:`hf_vocabswap.evaluate.evaluate_model` of the folder's model on held-out text.
        source_results: the same for the source model with its own tokenizer ("before"), if measured.
        **where: ``dataset``, ``dataset_name``, ``split``, ``dataset_sha256`` (see :func:`evaluation_results`).

    Returns:
        The path of the updated ``README.md``.

    Raises:
        NotAnOutputFolderError: the folder has no ``vocabswap.json`` or no ``README.md``.
        CardError: the results hold no finite bits per character.
    """
    folder = Path(folder)
    report = read_record(folder)
    path, card = _card_to_update(folder)
    task = card.data.pipeline_tag or PIPELINE_TAGS.get(report.model_kind, "feature-extraction")
    new = evaluation_results(results, source_results, task_type=task, **where)
    replaced = {(r.dataset_type, r.dataset_split) for r in new}
    kept = [r for r in (card.data.eval_results or []) if (r.dataset_type, r.dataset_split) not in replaced]
    card.data.eval_results = kept + new
    if not card.data.model_name:
        title = re.search(r"^# (.+)$", card.text, re.M)
        card.data.model_name = title.group(1).strip() if title else folder.name
    section = evaluation_section(_rows_from_results(card.data.eval_results))
    card.text = _with_section(card.text, section)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(_tidy(str(card)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _with_section(text: str, section: str) -> str:
    """``text`` with its ``## Evaluation`` section replaced by ``section`` (inserted before ``## Usage`` if absent)."""
    pattern = re.compile(r"^## Evaluation\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: section + "\n\n", text, count=1)
    usage = re.search(r"^## Usage$", text, re.M)
    if usage:
        return text[: usage.start()] + section + "\n\n" + text[usage.start():]
    return text.rstrip() + "\n\n" + section + "\n"


def extract_snippet(card_text: str) -> str:
    """The first ```python block of a card (the loading snippet)."""
    match = re.search(r"```python\n(.*?)```", card_text, re.S)
    if match is None:
        raise ValueError("the card has no ```python block")
    return match.group(1)


def with_repo_id(card_text: str, repo_id: str) -> str:
    """A card written for a local folder, with its loading snippet pointing at ``repo_id``."""
    return card_text.replace(f'"{LOCAL_MODEL_ID}"  # or the Hub repo id', json.dumps(repo_id)).replace(
        json.dumps(LOCAL_MODEL_ID), json.dumps(repo_id)
    )


__all__ = [
    "CardFacts",
    "CardInfo",
    "EvalEntry",
    "LOCAL_MODEL_ID",
    "TokenizerStats",
    "corpus_name",
    "evaluation_results",
    "example_from_texts",
    "example_from_vocabulary",
    "extract_snippet",
    "library_versions",
    "model_card_data",
    "render_folder_card",
    "render_model_card",
    "source_license",
    "template_path",
    "update_card_with_evaluation",
    "validate_language",
    "with_repo_id",
    "write_model_card",
]
