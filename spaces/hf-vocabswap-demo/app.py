"""hf_vocabswap demo: a model before and after its tokenizer was swapped.

Tabs:

- Tokenization: the same text split by the source and by the adapted tokenizer, with
  tokens per word, characters per token and the share of words kept whole.
- Fill-mask / next token: top-k predictions of both models side by side (masked LMs fill
  ``[MASK]`` / ``<mask>``; causal LMs predict the next token).
- Explain a token: how an adapted token's embedding was initialized, read from the
  transplant record (``vocabswap_plan.safetensors``) saved next to the model.
- Adapt now: run a transplant from the UI for a small model, then compare as above.

Models come from the text boxes, else from the environment (``VOCABSWAP_SOURCE``,
``VOCABSWAP_ADAPTED``), else from defaults: real Hub ids when the Hub is reachable, and
offline the embedded default's output folder (``vocabswap-quickstart/``, produced on first
use with ``hf_vocabswap.quickstart.run_quickstart(out, method="fvt")``).

Run locally with ``hf-vocabswap demo`` or ``python spaces/hf-vocabswap-demo/app.py``.

Environment:
    VOCABSWAP_SOURCE, VOCABSWAP_ADAPTED: models shown at start (Hub ids or folders). The
        source defaults to the adapted folder's recorded source (``vocabswap.json``).
    VOCABSWAP_QUICKSTART_DIR: where the offline default lives or is produced.
    VOCABSWAP_WORKDIR: where "Adapt now" writes its folders (default: a temporary folder).
    VOCABSWAP_MAX_ADAPT_PARAMS: largest source model "Adapt now" accepts (default 300M).

A Space pushed with ``hf-vocabswap demo --push`` holds ``vocabswap_demo.json`` beside this file:
the models it shows at start (``adapted``, ``source``) when the environment names none.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

# No request leaves the machine unless a model is loaded from the Hub: no usage analytics,
# no version check, no Hub telemetry. Set before gradio is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parent.parent
try:
    import hf_vocabswap  # noqa: F401
except ImportError:  # run from a clone without installing the package
    if (_REPO / "hf_vocabswap" / "__init__.py").is_file():
        sys.path.insert(0, str(_REPO))
    import hf_vocabswap  # noqa: F401

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from hf_vocabswap import DEFAULT_METHOD, available_methods, get_method  # noqa: E402
from hf_vocabswap.plan import KIND_NAMES, load_plan  # noqa: E402
from hf_vocabswap.record import PLAN_FILE, RECORD_FILE  # noqa: E402

logger = logging.getLogger("hf_vocabswap.demo")

# Real Hub models shown when the Hub is reachable: RoBERTa-base and its Ukrainian
# transfer with WECHSEL (Minixhofer et al., 2022), a masked LM pair.
HUB_SOURCE = "FacebookAI/roberta-base"
HUB_ADAPTED = "benjamin/roberta-base-wechsel-ukrainian"

TOKENIZE_TEXT = "Київ — столиця України. Дніпро ділить місто на правий і лівий береги."
FILL_MASK_TEXT = "Київ — столиця [MASK]."
MASK_PLACEHOLDER = re.compile(r"\[mask\]|<mask>", re.IGNORECASE)
MAX_TEXT_CHARS = 5000
MAX_CORPUS_CHARS = 20_000_000
TRAIN_FROM_TEXT = "Train one on the uploaded text"
EXISTING_TOKENIZER = "Use an existing tokenizer (Hub id or folder)"
# One colour per token, cycling, so that neighbouring tokens are told apart.
PALETTE = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa")
SPECIAL_STYLE = "background:#e5e7eb;border:1px dashed #6b7280;color:#374151"
UNKNOWN_STYLE = "background:#fecaca;border:1px solid #b91c1c;color:#7f1d1d"


class DemoError(Exception):
    """A problem to show the user as a sentence (never a stack trace)."""


def _short(error: BaseException, limit: int = 400) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _message(error: BaseException) -> str:
    if isinstance(error, DemoError):
        return str(error)
    logger.warning("demo event failed", exc_info=error)
    return f"{type(error).__name__}: {_short(error)}"


# --------------------------------------------------------------------------- defaults
def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hub can be used: not in offline mode and its host answers on the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import constants

        if getattr(constants, "HF_HUB_OFFLINE", False):
            return False
        endpoint = urlparse(constants.ENDPOINT)
    except Exception:  # noqa: BLE001
        endpoint = urlparse("https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    key = (endpoint.hostname, port)
    cached = _REACHABLE.get(key)
    if cached is not None and time.monotonic() - cached[1] < 60:
        return cached[0]
    try:
        with socket.create_connection(key, timeout=timeout):
            reachable = True
    except OSError:
        reachable = False
    _REACHABLE[key] = (reachable, time.monotonic())
    return reachable


_REACHABLE: dict[tuple, tuple[bool, float]] = {}


def embedded_default_folder() -> Path:
    """The embedded default's output folder (where ``hf-vocabswap quickstart`` writes it)."""
    if os.environ.get("VOCABSWAP_QUICKSTART_DIR"):
        return Path(os.environ["VOCABSWAP_QUICKSTART_DIR"]).expanduser().resolve()
    candidates = [Path.cwd() / "vocabswap-quickstart"]
    if (_REPO / "pyproject.toml").is_file():
        candidates.insert(0, _REPO / "vocabswap-quickstart")
    for folder in candidates:
        if (folder / RECORD_FILE).is_file():
            return folder.resolve()
    return candidates[0].resolve()


_PRODUCE_LOCK = threading.Lock()


def ensure_embedded_default(folder: Path | None = None) -> Path:
    """Produce the embedded default (splade-tiny adapted to Ukrainian with FVT) if missing."""
    folder = Path(folder) if folder is not None else embedded_default_folder()
    with _PRODUCE_LOCK:
        if not (folder / RECORD_FILE).is_file():
            from hf_vocabswap.quickstart import run_quickstart

            print(f"hf_vocabswap demo: producing the embedded default in {folder} (once; a few minutes)", flush=True)
            run_quickstart(folder, method="fvt", overwrite=folder.exists())
    return folder


def read_record(name: str) -> dict | None:
    """The ``vocabswap.json`` saved with an adapted model (folder or Hub id), if any."""
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_dir():
        file = path / RECORD_FILE
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    if not hub_reachable():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(name, RECORD_FILE)).read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - no record: not made by hf_vocabswap
        return None


def recorded_source(name: str) -> str | None:
    record = read_record((name or "").strip())
    return (record or {}).get("provenance", {}).get("source") or None


def _source_or_recorded(source: str, adapted: str) -> str:
    """The source box, or when it is empty the adapted model's recorded source."""
    source = (source or "").strip()
    return source or recorded_source(adapted) or ""


SPACE_CONFIG = _HERE / "vocabswap_demo.json"


def space_config() -> dict:
    """The models a pushed Space shows at start (``vocabswap_demo.json``), or {}."""
    try:
        return json.loads(SPACE_CONFIG.read_text(encoding="utf-8")) if SPACE_CONFIG.is_file() else {}
    except ValueError:
        return {}


def default_models(prepare: bool = False) -> tuple[str, str]:
    """(source, adapted) shown at start.

    ``VOCABSWAP_ADAPTED`` / ``VOCABSWAP_SOURCE`` first, then ``vocabswap_demo.json``; else real Hub
    models when the Hub is reachable; else the embedded default's folder (produced when
    ``prepare`` and missing). An unset source is read from the adapted model's record
    (``provenance.source``).
    """
    config = space_config()
    source = os.environ.get("VOCABSWAP_SOURCE", "").strip() or (config.get("source") or "").strip()
    adapted = os.environ.get("VOCABSWAP_ADAPTED", "").strip() or (config.get("adapted") or "").strip()
    if not adapted:
        if hub_reachable():
            return source or HUB_SOURCE, HUB_ADAPTED
        folder = embedded_default_folder()
        if prepare:
            ensure_embedded_default(folder)
        adapted = str(folder)
    if not source:
        source = recorded_source(adapted) or ""
    if not source and Path(adapted).expanduser().resolve() == embedded_default_folder():
        from hf_vocabswap import assets

        source = str(assets.splade_tiny_path())
    return source, adapted


# --------------------------------------------------------------------------- loading
@dataclass
class Bundle:
    """A loaded model with its tokenizer and, for adapted models, the transplant record."""

    name: str
    model: object
    tokenizer: object
    kind: str
    record: dict | None = None
    plan_path: Path | None = None
    _plan: object = field(default=None, repr=False)
    _profile: object = field(default=None, repr=False)

    @property
    def plan(self):
        if self._plan is None and self.plan_path is not None:
            self._plan = load_plan(self.plan_path)
        return self._plan

    @property
    def profile(self):
        """Canonical token forms (bytes + word start) of the tokenizer, for display."""
        if self._profile is None:
            from hf_vocabswap.vocab import TokenizerProfile

            try:
                self._profile = TokenizerProfile.from_tokenizer(self.tokenizer)
            except Exception:  # noqa: BLE001 - slow tokenizers: raw strings are shown
                self._profile = False
        return self._profile or None


_CACHE: OrderedDict[str, Bundle] = OrderedDict()
_CACHE_SIZE = 4
_LOAD_LOCK = threading.Lock()


def _cache_put(bundle: Bundle) -> Bundle:
    _CACHE[bundle.name] = bundle
    _CACHE.move_to_end(bundle.name)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return bundle


def _plan_file(name: str) -> Path | None:
    path = Path(name).expanduser()
    if path.is_dir():
        return path / PLAN_FILE if (path / PLAN_FILE).is_file() else None
    if not hub_reachable():
        return None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(name, PLAN_FILE))
    except Exception:  # noqa: BLE001
        return None


def get_bundle(name: str, role: str) -> Bundle:
    """The model ``name`` (Hub id or folder), loaded once and cached.

    Raises:
        DemoError: empty name or the model cannot be loaded (the message says why).
    """
    name = (name or "").strip()
    if not name:
        raise DemoError(f"Enter the {role} model: a Hub id or a local folder.")
    key = str(Path(name).expanduser().resolve()) if Path(name).expanduser().exists() else name
    with _LOAD_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        if key == str(embedded_default_folder()) and not Path(key).exists():
            try:
                ensure_embedded_default(Path(key))
            except Exception as e:  # noqa: BLE001
                raise DemoError(f"Cannot produce the embedded default in {key}: {_short(e)}") from e
        from hf_vocabswap.evaluate import load_model_and_tokenizer
        from hf_vocabswap.surgery import model_kind

        try:
            model, tokenizer = load_model_and_tokenizer(key)
        except Exception as e:  # noqa: BLE001
            offline = "" if hub_reachable() else " (the Hub is not reachable from here: use a local folder)"
            raise DemoError(f"Cannot load the {role} model {name!r}{offline}: {_short(e)}") from e
        model.eval()
        bundle = Bundle(key, model, tokenizer, model_kind(model), read_record(key), _plan_file(key))
        return _cache_put(bundle)


def _describe(bundle: Bundle, role: str) -> str:
    n = sum(p.numel() for p in bundle.model.parameters())
    what = {"masked": "masked LM", "causal": "causal LM", "seq2seq": "encoder-decoder", "base": "encoder without LM head"}
    line = (
        f"**{role.capitalize()}**: `{bundle.name}` — {type(bundle.model).__name__}, {n / 1e6:.1f}M parameters, "
        f"{what.get(bundle.kind, bundle.kind)}, vocabulary {len(bundle.tokenizer):,}"
    )
    if bundle.record:
        r = bundle.record
        counts = r.get("counts", {})
        line += (
            f"; made by hf_vocabswap with `{r.get('method')}` from `{r.get('provenance', {}).get('source')}`: "
            f"{counts.get('copied', 0):,} copied, {counts.get('combined', 0):,} combined, "
            f"{counts.get('random', 0) + counts.get('mean', 0):,} fallback"
        )
    return line


def load_models(source: str, adapted: str) -> tuple[str, str]:
    """Load both models; (status markdown, source name). An empty source is taken from the record."""
    source = (source or "").strip()
    lines = []
    try:
        if adapted and not source:
            source = recorded_source(adapted.strip()) or ""
        for role, name in (("source", source), ("adapted", adapted)):
            try:
                lines.append(_describe(get_bundle(name, role), role))
            except Exception as e:  # noqa: BLE001
                lines.append(f"⚠️ {_message(e)}")
    except Exception as e:  # noqa: BLE001
        lines.append(f"⚠️ {_message(e)}")
    return "\n\n".join(lines), source


# --------------------------------------------------------------------------- tokenization
def _human_token(bundle: Bundle, tid: int) -> str:
    """A token as text a person reads: no Ġ/▁/## markers; a continuation piece starts with ``…``."""
    tok = bundle.tokenizer
    raw = tok.convert_ids_to_tokens(int(tid))
    profile = bundle.profile
    if profile is None or int(tid) >= len(profile.forms):
        return raw
    form = profile.forms[int(tid)]
    if form is None:  # special or added token
        return raw
    text = form.text.decode("utf-8", errors="replace")
    if not text:
        return "␣"
    return text if form.word_start else "…" + text


def _pieces(bundle: Bundle, text: str) -> list[dict]:
    """Tokens of ``text`` with their ids, raw strings and character spans."""
    tok = bundle.tokenizer
    try:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, ValueError, TypeError):
        enc = tok(text, add_special_tokens=False, verbose=False)
        offsets = [None] * len(enc["input_ids"])
    ids = list(enc["input_ids"])
    raws = tok.convert_ids_to_tokens(ids)
    specials = set(getattr(tok, "all_special_ids", []) or [])
    return [
        {"id": int(i), "raw": r, "span": o, "special": i in specials, "unknown": i == tok.unk_token_id}
        for i, r, o in zip(ids, raws, offsets)
    ]


def render_tokens(bundle: Bundle, text: str, raw: bool = False) -> tuple[str, list[dict]]:
    """Coloured token spans (HTML) and the pieces. ``raw`` shows vocabulary strings (Ġ, ▁, ##)."""
    pieces = _pieces(bundle, text)
    out, prev_end, colour = [], 0, 0
    for p in pieces:
        span = p["span"]
        if span is not None and span[0] >= prev_end and not raw:
            # A token whose offsets include the space before it (byte-level BPE without
            # trimmed offsets): the space is shown between the tokens, not inside one.
            segment = text[span[0] : span[1]]
            lead = len(segment) - len(segment.lstrip())
            if 0 < lead < len(segment):
                span = (span[0] + lead, span[1])
        if span is not None and span[0] > prev_end:
            out.append(html.escape(text[prev_end : span[0]]))  # the whitespace between tokens
        if raw:
            shown = p["raw"]
        elif p["special"] or span is None:
            shown = p["raw"] if p["special"] else _human_token(bundle, p["id"])
        elif span[0] < prev_end:
            shown = "⋯"  # another byte of a character the previous token began
        else:
            shown = text[span[0] : span[1]]
            if not shown.strip():
                shown = "␣"
        if span is not None:
            prev_end = max(prev_end, span[1])
        if p["special"]:
            style, cls = SPECIAL_STYLE, "vs-tok vs-special"
        elif p["unknown"]:
            style, cls = UNKNOWN_STYLE, "vs-tok vs-unknown"
        else:
            style, cls = f"background:{PALETTE[colour % len(PALETTE)]};color:#111827", "vs-tok"
            colour += 1
        title = f"id {p['id']} · {p['raw']}"
        out.append(
            f'<span class="{cls}" data-id="{p["id"]}" title="{html.escape(title, quote=True)}" '
            f'style="{style};border-radius:4px;padding:1px 3px;margin:0 1px;line-height:2;white-space:pre-wrap">'
            f"{html.escape(shown)}</span>"
        )
    if pieces and pieces[-1]["span"] is not None and prev_end < len(text):
        out.append(html.escape(text[prev_end:]))
    return "".join(out), pieces


def _stats(bundle: Bundle, text: str) -> dict:
    try:
        from hf_vocabswap.evaluate import tokenizer_stats
    except ImportError:  # older package: plain counts
        tokenizer_stats = None
    if tokenizer_stats is not None:
        return tokenizer_stats(bundle.tokenizer, [text])
    words = text.split()
    n_tokens = len(bundle.tokenizer(text, add_special_tokens=False)["input_ids"])
    whole = sum(1 for w in words if len(bundle.tokenizer(w, add_special_tokens=False)["input_ids"]) <= 1)
    return {
        "num_words": len(words), "num_tokens": n_tokens, "num_characters": len(text), "num_unknown": 0,
        "tokens_per_word": n_tokens / len(words) if words else float("nan"),
        "continued_words": 1 - whole / len(words) if words else float("nan"),
        "characters_per_token": len(text) / n_tokens if n_tokens else float("nan"),
    }


STATS_HEADERS = ["", "source", "adapted"]


def _fmt(value, pattern: str) -> str:
    return "–" if value is None or value != value else pattern.format(value)


def _stats_rows(before: dict | None, after: dict | None) -> list[list[str]]:
    rows = [
        ("tokens", "num_tokens", "{:,}"),
        ("words", "num_words", "{:,}"),
        ("tokens per word", "tokens_per_word", "{:.2f}"),
        ("characters per token", "characters_per_token", "{:.2f}"),
        ("words kept whole", "whole_words", "{:.0%}"),
        ("unknown tokens", "num_unknown", "{:,}"),
    ]
    out = []
    for label, key, pattern in rows:
        cells = [label]
        for s in (before, after):
            if s is None:
                cells.append("–")
                continue
            value = 1 - s["continued_words"] if key == "whole_words" else s.get(key)
            cells.append(_fmt(value, pattern))
        out.append(cells)
    return out


def _side_html(bundle_name: str, spans: str, stats: dict | None, role: str) -> str:
    head = f'<div class="vs-side-title" style="font-weight:600;margin-bottom:4px">{html.escape(role)}: <code>{html.escape(bundle_name)}</code></div>'
    summary = ""
    if stats is not None:
        summary = (
            f'<div class="vs-summary" style="margin-top:6px;color:#4b5563;font-size:0.9em">'
            f"{stats['num_tokens']:,} tokens · {_fmt(stats['tokens_per_word'], '{:.2f}')} tokens/word · "
            f"{_fmt(stats['characters_per_token'], '{:.2f}')} characters/token · "
            f"{_fmt(1 - stats['continued_words'], '{:.0%}')} of words kept whole</div>"
        )
    return f'<div class="vs-tokens">{head}<div class="vs-line">{spans}</div>{summary}</div>'


def _error_html(message: str) -> str:
    return f'<div class="vs-error" style="color:#b91c1c;font-weight:600">⚠️ {html.escape(message)}</div>'


def tokenize(text: str, source: str, adapted: str, raw: bool = False):
    """(source HTML, adapted HTML, statistics rows): the text split by both tokenizers."""
    text = text or ""
    note = ""
    if len(text) > MAX_TEXT_CHARS:
        text, note = text[:MAX_TEXT_CHARS], f"(showing the first {MAX_TEXT_CHARS:,} characters)"
    sides, stats = [], []
    source = _source_or_recorded(source, adapted)
    for role, name in (("source", source), ("adapted", adapted)):
        try:
            if not text.strip():
                raise DemoError("Write some text to tokenize.")
            bundle = get_bundle(name, role)
            spans, _ = render_tokens(bundle, text, raw=bool(raw))
            s = _stats(bundle, text)
            sides.append(_side_html(bundle.name, spans, s, role) + (f"<div>{note}</div>" if note else ""))
            stats.append(s)
        except Exception as e:  # noqa: BLE001
            sides.append(_error_html(_message(e)))
            stats.append(None)
    return sides[0], sides[1], _stats_rows(*stats)


# --------------------------------------------------------------------------- fill-mask
def _predict(bundle: Bundle, text: str, top_k: int) -> tuple[dict, str]:
    """({token: probability}, what was predicted) for one model."""
    tok, model = bundle.tokenizer, bundle.model
    placeholders = MASK_PLACEHOLDER.findall(text)
    if bundle.kind == "masked":
        if tok.mask_token is None or tok.mask_token_id is None:
            raise DemoError(
                f"The tokenizer of {bundle.name!r} has no mask token, so this masked LM cannot fill in "
                "[MASK]. Give the tokenizer a mask token (tokenizer.add_special_tokens({'mask_token': ...}))."
            )
        if len(placeholders) != 1 and text.count(tok.mask_token) != 1:
            raise DemoError("Write exactly one [MASK] (or <mask>) where the model should fill in a word.")
        masked = MASK_PLACEHOLDER.sub(lambda _m: tok.mask_token, text) if placeholders else text
        enc = tok(masked, return_tensors="pt", truncation=True)
        positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
        if len(positions) != 1:
            raise DemoError(f"The tokenizer of {bundle.name!r} did not read {tok.mask_token} as its mask token.")
        with torch.no_grad():
            logits = model(**enc).logits[0, positions[0]]
        what = f"fills {tok.mask_token}"
    elif bundle.kind == "causal":
        from hf_vocabswap.evaluate import causal_prefix

        prompt = text[: MASK_PLACEHOLDER.search(text).start()] if placeholders else text
        prompt = prompt.rstrip()
        ids = causal_prefix(tok) + list(tok(prompt, add_special_tokens=False)["input_ids"])
        if not ids:
            raise DemoError("Write the beginning of a sentence: the model predicts the token that follows it.")
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        what = "predicts the next token" + (" (the text after [MASK] is ignored)" if placeholders else "")
    else:
        raise DemoError(
            f"{bundle.name!r} is a {bundle.kind} model ({type(model).__name__}): fill-mask needs a masked LM "
            "and next-token prediction a causal LM."
        )
    probs = torch.softmax(logits.float(), dim=-1)
    values, ids = probs.topk(min(int(top_k), probs.numel()))
    out: dict[str, float] = {}
    for p, i in zip(values.tolist(), ids.tolist()):
        label = _human_token(bundle, i)
        if label in out:
            label = f"{label} (id {i})"
        out[label] = float(p)
    return out, what


def fill_mask(text: str, source: str, adapted: str, top_k: int = 5):
    """(source predictions, adapted predictions, note): top-k of both models side by side."""
    text = (text or "")[:MAX_TEXT_CHARS]
    results, notes = [], []
    source = _source_or_recorded(source, adapted)
    for role, name in (("source", source), ("adapted", adapted)):
        try:
            if not text.strip():
                raise DemoError("Write a sentence with [MASK] in it.")
            bundle = get_bundle(name, role)
            preds, what = _predict(bundle, text, top_k)
            results.append(preds)
            notes.append(f"**{role.capitalize()}** ({bundle.kind} LM) {what}.")
        except Exception as e:  # noqa: BLE001
            results.append(None)
            notes.append(f"⚠️ **{role.capitalize()}**: {_message(e)}")
    return results[0], results[1], "\n\n".join(notes)


# --------------------------------------------------------------------------- explain
def _source_tokenizer_for(bundle: Bundle, source: str):
    """The tokenizer whose ids the plan refers to: the recorded source's, else the given source's."""
    from hf_vocabswap.loading import load_tokenizer

    num_source = bundle.plan.num_source
    candidates = [(bundle.record or {}).get("provenance", {}).get("source"), source]
    for name in candidates:
        if not name:
            continue
        key = str(Path(name).expanduser().resolve()) if Path(name).expanduser().exists() else name
        if key in _CACHE:
            tok = _CACHE[key].tokenizer
        else:
            try:
                tok = load_tokenizer(key)
            except Exception:  # noqa: BLE001
                continue
        if len(tok) <= num_source:
            return tok
    return None


def _target_ids(bundle: Bundle, query: str) -> list[int]:
    tok = bundle.tokenizer
    query = query.strip()
    m = re.fullmatch(r"#?(\d+)", query)
    if m:
        return [int(m.group(1))]
    vocab = tok.get_vocab()
    if query in vocab:
        return [vocab[query]]
    ids = list(tok(query, add_special_tokens=False)["input_ids"])
    if not ids:
        raise DemoError(f"{query!r} gives no token of the adapted tokenizer.")
    return ids[:20]


def explain(token: str, adapted: str, source: str = "") -> str:
    """How the adapted model's embedding of ``token`` was initialized (Markdown).

    ``token`` is a vocabulary entry (``##ня``, ``Ġcat``), an id (``123`` / ``#123``) or any
    text, whose tokens are explained one by one.
    """
    try:
        if not (token or "").strip():
            raise DemoError("Enter a token of the adapted tokenizer, its id, or a word.")
        bundle = get_bundle(adapted, "adapted")
        if bundle.plan_path is None:
            raise DemoError(
                f"{bundle.name!r} has no transplant record ({PLAN_FILE}): it was not saved by hf_vocabswap, "
                "so how its embeddings were initialized is not known."
            )
        plan = bundle.plan
        src_tok = _source_tokenizer_for(bundle, source)
        record = bundle.record or {}
        lines = [
            f"Method `{record.get('method', '?')}`; source `{record.get('provenance', {}).get('source', '?')}`"
            + ("" if src_tok is not None else " (its tokenizer could not be loaded: source tokens are shown as ids)"),
            "",
            "| token | id | kind | how its embedding was made |",
            "|---|---|---|---|",
        ]
        for tid in _target_ids(bundle, token):
            if not 0 <= tid < plan.num_target:
                raise DemoError(f"Id {tid} is not in the adapted vocabulary (0 to {plan.num_target - 1}).")
            raw = bundle.tokenizer.convert_ids_to_tokens(tid)
            kind = KIND_NAMES[int(plan.kinds[tid])]
            how = plan.explain(tid, bundle.tokenizer, src_tok, top=8)
            how = how[len(raw) + 2 :] if how.startswith(f"{raw}: ") else how
            if kind in ("random", "mean"):
                how += " (no source token to build it from)"
            lines.append(f"| `{_md(raw)}` | {tid} | {kind} | {_md(how)} |")
        if plan.output is not None:
            lines.append("\nThe output embeddings have a plan of their own (untied head); the table shows the input rows.")
        return "\n".join(lines)
    except Exception as e:  # noqa: BLE001
        return f"⚠️ {_message(e)}"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


# --------------------------------------------------------------------------- adapt now
def _read_corpus(file) -> list[str] | None:
    if file is None:
        return None
    path = Path(getattr(file, "name", None) or file)
    try:
        data = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise DemoError(f"Cannot read the uploaded text: {_short(e)}") from e
    if len(data) > MAX_CORPUS_CHARS:
        data = data[:MAX_CORPUS_CHARS]
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    if not lines:
        raise DemoError("The uploaded text is empty.")
    return lines


def _workdir() -> Path:
    root = Path(os.environ.get("VOCABSWAP_WORKDIR") or Path(tempfile.gettempdir()) / "hf-vocabswap-demo")
    root.mkdir(parents=True, exist_ok=True)
    return root


def method_choices() -> list[str]:
    """"auto" (the library's default: the calibrated hybrid given text, else FVT) and the registered methods."""
    return ["auto"] + [m for m in available_methods() if m != "auto"]


def adapt(source, target_mode, target, corpus_file, vocab_size, method, progress=gr.Progress(track_tqdm=True)):
    """Transplant ``source`` to a target tokenizer (given or trained on the uploaded text).

    Returns (report markdown, adapted folder, source) so the other tabs compare the result.
    """
    from hf_vocabswap import train_tokenizer, transplant_tokenizer
    from hf_vocabswap.loading import load_tokenizer

    try:
        source = (source or "").strip()
        method = (method or DEFAULT_METHOD).strip()
        if method not in method_choices():
            raise DemoError(f"Unknown method {method!r}; choose one of {', '.join(method_choices())}.")
        train = target_mode == TRAIN_FROM_TEXT
        corpus = _read_corpus(corpus_file)
        if train and corpus is None:
            raise DemoError("Upload a text file in the target language to train the tokenizer on.")
        if not train and not (target or "").strip():
            raise DemoError("Enter the target tokenizer (Hub id or folder), or train one on an uploaded text.")
        if method != "auto" and get_method(method).needs_corpus and corpus is None:
            raise DemoError(f"Method {method!r} learns from target-language text: upload a text file.")
        progress(0.05, desc="loading the source model")
        bundle = get_bundle(source, "source")
        limit = int(float(os.environ.get("VOCABSWAP_MAX_ADAPT_PARAMS", 300e6)))
        n_params = sum(p.numel() for p in bundle.model.parameters())
        if n_params > limit:
            raise DemoError(
                f"{source!r} has {n_params / 1e6:.0f}M parameters; adapting here is for small models "
                f"(up to {limit / 1e6:.0f}M). Use `hf-vocabswap transplant` on your machine."
            )
        if train:
            size = int(vocab_size or 0)
            if size < 100:
                raise DemoError("The vocabulary size must be at least 100.")
            progress(0.2, desc=f"training a {size:,}-token tokenizer")
            target_tok = train_tokenizer(bundle.tokenizer, corpus, size, progress=False)
        else:
            progress(0.2, desc="loading the target tokenizer")
            try:
                target_tok = load_tokenizer(target.strip())
            except Exception as e:  # noqa: BLE001
                raise DemoError(f"Cannot load the target tokenizer {target.strip()!r}: {_short(e)}") from e
        progress(0.5, desc=f"transplanting with {method}")
        result = transplant_tokenizer(
            bundle.model, target_tok, method, source_tokenizer=bundle.tokenizer, corpus=corpus
        )
        result.report.provenance["source"] = bundle.name
        progress(0.85, desc="saving")
        folder = _workdir() / f"adapted-{method}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{threading.get_ident() % 10000}"
        folder = result.save_pretrained(folder, overwrite=True).resolve()
        model = result.model.eval()
        from hf_vocabswap.surgery import model_kind

        with _LOAD_LOCK:
            _cache_put(Bundle(str(folder), model, result.tokenizer, model_kind(model), read_record(str(folder)), folder / PLAN_FILE, result.plan))
        progress(1.0, desc="done")
        report = f"Saved to `{folder}`: the tabs above now compare it with `{bundle.name}`.\n\n```\n{result.report}\n```"
        return report, str(folder), bundle.name
    except Exception as e:  # noqa: BLE001
        return f"⚠️ {_message(e)}", gr.skip(), gr.skip()


# --------------------------------------------------------------------------- UI
def build_demo(source: str | None = None, adapted: str | None = None) -> gr.Blocks:
    """The Blocks app; ``source``/``adapted`` override the defaults (see :func:`default_models`)."""
    if source is None or adapted is None:
        d_source, d_adapted = default_models()
        source = d_source if source is None else source
        adapted = d_adapted if adapted is None else adapted
    methods = method_choices()
    with gr.Blocks(title="hf_vocabswap: before and after a tokenizer transplant", analytics_enabled=False) as demo:
        gr.Markdown(
            "# hf_vocabswap — a model before and after its tokenizer was swapped\n"
            "Compare how the **source** model and the **adapted** model (same weights, new tokenizer, "
            "embeddings initialized by [hf_vocabswap](https://pypi.org/project/hf-vocabswap/)) "
            "cut a text and fill a mask; see how any new token was made; or adapt a small model here."
        )
        with gr.Row():
            source_box = gr.Textbox(source, label="Source model (Hub id or folder)", elem_id="source-model", scale=3)
            adapted_box = gr.Textbox(adapted, label="Adapted model (Hub id or folder)", elem_id="adapted-model", scale=3)
            load_btn = gr.Button("Load", elem_id="load-models", scale=1)
        status = gr.Markdown(elem_id="model-status")

        with gr.Tab("Tokenization", elem_id="tab-tokenize"):
            tok_text = gr.Textbox(TOKENIZE_TEXT, label="Text", lines=3, elem_id="tok-text")
            with gr.Row():
                tok_raw = gr.Checkbox(False, label="Show raw vocabulary strings (Ġ, ▁, ##)", elem_id="tok-raw")
                tok_btn = gr.Button("Tokenize", variant="primary", elem_id="tok-run")
            with gr.Row():
                tok_source = gr.HTML(elem_id="tok-source")
                tok_adapted = gr.HTML(elem_id="tok-adapted")
            tok_stats = gr.Dataframe(headers=STATS_HEADERS, label="Statistics", interactive=False, elem_id="tok-stats")

        with gr.Tab("Fill-mask / next token", elem_id="tab-fill"):
            mask_text = gr.Textbox(
                FILL_MASK_TEXT, lines=2, elem_id="mask-text",
                label="Sentence with [MASK] or <mask> (mapped to each tokenizer's own mask token; "
                "causal LMs predict the token after the text or after the text before [MASK])",
            )
            with gr.Row():
                mask_k = gr.Slider(1, 20, value=5, step=1, label="Top k", elem_id="mask-topk")
                mask_btn = gr.Button("Predict", variant="primary", elem_id="mask-run")
            with gr.Row():
                mask_source = gr.Label(label="Source model", elem_id="mask-source")
                mask_adapted = gr.Label(label="Adapted model", elem_id="mask-adapted")
            mask_note = gr.Markdown(elem_id="mask-note")
            gr.Examples(
                [[FILL_MASK_TEXT], ["Я люблю свою [MASK]."], ["The capital of France is [MASK]."]],
                inputs=[mask_text], label="Examples",
            )

        with gr.Tab("Explain a token", elem_id="tab-explain"):
            with gr.Row():
                explain_box = gr.Textbox(
                    "столиця", label="Token of the adapted tokenizer (vocabulary string, id, or a word)",
                    elem_id="explain-token", scale=4,
                )
                explain_btn = gr.Button("Explain", variant="primary", elem_id="explain-run", scale=1)
            explain_out = gr.Markdown(elem_id="explain-out")

        with gr.Tab("Adapt now", elem_id="tab-adapt"):
            gr.Markdown("Transplant the **source model** above to a new tokenizer (small models only). "
                        "The result becomes the adapted model of the other tabs.")
            with gr.Row():
                adapt_mode = gr.Radio([TRAIN_FROM_TEXT, EXISTING_TOKENIZER], value=TRAIN_FROM_TEXT,
                                      label="Target tokenizer", elem_id="adapt-target-mode")
                adapt_method = gr.Dropdown(methods, value=DEFAULT_METHOD if DEFAULT_METHOD in methods else methods[0],
                                           label="Method", elem_id="adapt-method")
            with gr.Row():
                adapt_target = gr.Textbox("", label="Existing target tokenizer (Hub id or folder)", elem_id="adapt-target")
                adapt_vocab = gr.Number(8000, precision=0, label="Vocabulary size (when training)", elem_id="adapt-vocab")
            adapt_corpus = gr.File(label="Target-language text (.txt)", file_types=[".txt"], type="filepath",
                                   elem_id="adapt-corpus")
            adapt_btn = gr.Button("Adapt", variant="primary", elem_id="adapt-run")
            adapt_report = gr.Markdown(elem_id="adapt-report")

        load_btn.click(load_models, [source_box, adapted_box], [status, source_box], api_name="load")
        demo.load(load_models, [source_box, adapted_box], [status, source_box], api_name=False)
        tok_btn.click(tokenize, [tok_text, source_box, adapted_box, tok_raw], [tok_source, tok_adapted, tok_stats], api_name="tokenize")
        tok_text.submit(tokenize, [tok_text, source_box, adapted_box, tok_raw], [tok_source, tok_adapted, tok_stats], api_name=False)
        tok_raw.change(tokenize, [tok_text, source_box, adapted_box, tok_raw], [tok_source, tok_adapted, tok_stats], api_name=False)
        mask_btn.click(fill_mask, [mask_text, source_box, adapted_box, mask_k], [mask_source, mask_adapted, mask_note], api_name="fill_mask")
        mask_text.submit(fill_mask, [mask_text, source_box, adapted_box, mask_k], [mask_source, mask_adapted, mask_note], api_name=False)
        explain_btn.click(explain, [explain_box, adapted_box, source_box], [explain_out], api_name="explain")
        explain_box.submit(explain, [explain_box, adapted_box, source_box], [explain_out], api_name=False)
        adapt_btn.click(
            adapt, [source_box, adapt_mode, adapt_target, adapt_corpus, adapt_vocab, adapt_method],
            [adapt_report, adapted_box, source_box], api_name="adapt",
        ).then(load_models, [source_box, adapted_box], [status, source_box], api_name=False)
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="hf_vocabswap demo (Gradio)")
    parser.add_argument("--source", help="source model (Hub id or folder); default: VOCABSWAP_SOURCE or the adapted model's record")
    parser.add_argument("--adapted", help="adapted model (Hub id or folder); default: VOCABSWAP_ADAPTED, a Hub model online, the embedded default offline")
    parser.add_argument("--host", default=None, help="server name (default 127.0.0.1; GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="server port (default 7860; GRADIO_SERVER_PORT)")
    args = parser.parse_args(argv)
    if args.source:
        os.environ["VOCABSWAP_SOURCE"] = args.source
    if args.adapted:
        os.environ["VOCABSWAP_ADAPTED"] = args.adapted
    source, adapted = default_models(prepare=True)
    build_demo(source, adapted).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()


def __getattr__(name: str):
    # ``app.demo`` (what ``gradio app.py`` reload mode and Spaces tooling look for), built on
    # first access so that importing the module stays cheap.
    if name == "demo":
        global demo
        demo = build_demo()
        return demo
    raise AttributeError(name)
