"""The ``gpu`` configuration's two phases: ``prepare`` here on CPU (target tokenizer, every
method's mixing plan, texts -> a bundle folder) and ``run`` on the GPU machine (each plan
applied to the source with :func:`hf_vocabswap.surgery.apply_plan`, evaluated and trained).

The GPU machine has no fastText, no ``datasets`` and no Hub, and receives at most 64 MiB per
call, so plans travel compactly: int32 ids and float32 weights, and for dense plans the
combined rows themselves as int8 with one scale per 32 dimensions.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import gzip
import json
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy.sparse import csr_matrix
from transformers import AutoTokenizer

from hf_vocabswap import MixingPlan, train_tokenizer
from hf_vocabswap.calibration import calibrate_new_tokens
from hf_vocabswap.corpus import first_chars
from hf_vocabswap.loading import tokenizer_fingerprint
from hf_vocabswap.methods import COMBINED, MEAN
from hf_vocabswap.plan import load_plan
from hf_vocabswap.surgery import find_embeddings

from .config import PRIORITY, BenchConfig, calibrates, ordered_methods, select_methods
from .inputs import load_source, load_texts
from .report import jsonable, machine_description, new_results
from .resources import Resources
from .runs import (
    Entry, PlannedMethod, apply_planned, plan_only, reference_entry, run_all, set_threads, target_description, with_reference,
)

logger = logging.getLogger("quality")

MANIFEST = "manifest.json"


def save_compact_plan(plan, path: Path) -> int:
    """A mixing plan as safetensors (the keys of :func:`hf_vocabswap.plan.save_plan`), with
    int32 ids and float32 weights to halve the bundle; :func:`load_compact_plan` restores the
    dtypes. Returns the file size in bytes.

    Raises:
        ValueError: the source vocabulary does not fit int32 ids.
    """

    def arrays(p, prefix=""):
        if p.num_source >= 2**31 or (len(p.indices) and int(p.indices.max()) >= 2**31):
            raise ValueError("source vocabulary too large for int32 ids")
        return {
            f"{prefix}indptr": torch.from_numpy(p.indptr.astype(np.int64)),
            f"{prefix}indices": torch.from_numpy(p.indices.astype(np.int32)),
            f"{prefix}weights": torch.from_numpy(p.weights.astype(np.float32)),
            f"{prefix}kinds": torch.from_numpy(p.kinds.astype(np.int8)),
        }

    tensors = arrays(plan)
    if plan.output is not None:
        tensors.update(arrays(plan.output, "output."))
    save_file(tensors, str(path), metadata={"num_source": str(plan.num_source), "format": "hf_vocabswap-compact-plan-1"})
    return path.stat().st_size


def load_compact_plan(path: Path) -> MixingPlan:
    """The plan written by :func:`save_compact_plan`, with the int64 ids and float64 weights of
    a plan made in memory."""
    plan = load_plan(path)

    def widen(p):
        p.indptr = p.indptr.astype(np.int64)
        p.indices = p.indices.astype(np.int64)
        p.weights = p.weights.astype(np.float64)
        p.kinds = p.kinds.astype(np.int8)
        return p

    widen(plan)
    if plan.output is not None:
        widen(plan.output)
    return plan


def quantize_rows(rows, group: int = 32):
    """int8 rows with one float32 scale (absmax / 127) per ``group`` consecutive dimensions of a
    row, and the relative error of the result (Frobenius). Per-row scales alone lost 2% on
    Gemma's FOCUS rows (a few large dimensions); groups of 32 lose under 1%, less than one bf16
    rounding of the products the training computes, for 12% more bytes."""
    rows = rows.float()
    n, d = rows.shape
    while d % group:
        group //= 2
    blocks = rows.reshape(n, d // group, group)
    scale = blocks.abs().amax(dim=2).clamp_min(1e-12) / 127.0
    q = torch.round(blocks / scale[:, :, None]).clamp(-127, 127).to(torch.int8).reshape(n, d)
    rel = float(((dequantize_rows(q, scale) - rows).norm() / rows.norm().clamp_min(1e-12)).item())
    return q, scale, rel


def dequantize_rows(q, scale):
    """float32 rows from :func:`quantize_rows`' int8 values and per-group scales."""
    n, d = q.shape
    groups = scale.shape[1] if scale.dim() == 2 else 1
    return (q.float().reshape(n, groups, d // groups) * scale.reshape(n, groups, 1)).reshape(n, d)


def combined_rows(plan, rows, source):
    """``plan``'s rows ``rows`` (all COMBINED) computed from ``source`` (V_s x d) in float32.

    Dense plans mix a few thousand distinct source rows (FOCUS: its anchors), so each block of
    target rows is expanded into a dense (block x distinct sources) weight matrix and
    multiplied with BLAS: minutes faster than gathering one source row per plan entry.
    """
    rows = np.asarray(rows, dtype=np.int64)
    starts, ends = plan.indptr[rows], plan.indptr[rows + 1]
    lengths = ends - starts
    take = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(int(lengths.sum()))
    cols = plan.indices[take]
    weights = plan.weights[take]
    uniq, pos = np.unique(cols, return_inverse=True)
    sub = csr_matrix((weights, pos, np.concatenate([[0], np.cumsum(lengths)])), shape=(len(rows), len(uniq)))
    basis = source.detach()[torch.from_numpy(uniq)].double()
    out = torch.empty(len(rows), source.shape[1], dtype=torch.float32)
    block = max(1, (1 << 25) // max(len(uniq), 1))
    for a in range(0, len(rows), block):
        dense = torch.from_numpy(sub[a : a + block].toarray())
        out[a : a + block] = (dense @ basis).float()
    return out


def save_bundle_plan(plan, model, path_plan: Path, path_rows: Path, seed: int) -> dict:
    """Write the smaller of two exact-enough forms of ``plan`` for ``model``:

    - the compact plan (:func:`save_compact_plan`), or
    - for plans whose mixtures are dense (FOCUS's sparsemax spreads each new token over ~560
      of 6,600 anchors on Gemma: 109 MB as a plan), the combined rows themselves, computed here
      from the same source weights, as int8 with a scale per 32 dimensions, plus a skeleton plan in
      which those rows are MEAN placeholders (copied and random rows stay as planned, so the
      seeded random draws are unchanged).

    Returns what was written (``form``, sizes, quantization error).
    """
    plan_bytes = save_compact_plan(plan, path_plan)
    combined = np.flatnonzero(plan.kinds == COMBINED)
    handles = find_embeddings(model)
    dim = handles.input_weight.shape[1]
    per_row = dim + 4 * max(1, dim // 32) + 8
    if handles.output_weight is not None:
        per_row += dim + 4 * max(1, dim // 32)
    per_row += 4 * len(handles.biases)
    rows_estimate = len(combined) * per_row
    info = {"form": "plan", "plan_bytes": plan_bytes, "plan_entries": int(len(plan.indices))}
    if rows_estimate >= plan_bytes or len(combined) == 0:
        return info

    def skeleton(p):
        keep = p.kinds != COMBINED
        lengths = np.diff(p.indptr) * keep
        indptr = np.zeros(len(p.kinds) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        take = np.repeat(keep, np.diff(p.indptr))
        kinds = p.kinds.copy()
        kinds[~keep] = MEAN
        return MixingPlan(p.num_source, indptr, p.indices[take], p.weights[take], kinds)

    out_plan = plan.output or plan
    skel = skeleton(plan)
    if plan.output is not None:
        skel.output = skeleton(plan.output)
    ids = torch.from_numpy(combined.astype(np.int64))
    tensors = {"ids": ids}
    errors = {}
    with torch.no_grad():
        rows = combined_rows(plan, combined, handles.input_weight)
        tensors["input_q"], tensors["input_scale"], errors["input"] = quantize_rows(rows)
        if handles.output_weight is not None:
            rows = combined_rows(out_plan, combined, handles.output_weight)
            tensors["output_q"], tensors["output_scale"], errors["output"] = quantize_rows(rows)
        for name, bias in handles.biases.items():
            tensors[f"bias.{name}"] = combined_rows(out_plan, combined, bias.detach()[:, None])[:, 0].contiguous()
        del rows
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path_rows))
    skeleton_bytes = save_compact_plan(skel, path_plan)
    return {
        "form": "rows", "plan_bytes": skeleton_bytes, "rows_bytes": path_rows.stat().st_size,
        "full_plan_bytes": plan_bytes, "plan_entries": int(len(plan.indices)), "rows": int(len(combined)),
        "int8_relative_error": {k: round(v, 6) for k, v in errors.items()},
    }


def apply_bundle_rows(model, path_rows: Path) -> None:
    """Overwrite the combined rows of a model built from a skeleton plan (see :func:`save_bundle_plan`)."""
    t = load_file(str(path_rows))
    model_ids = t["ids"]
    with torch.no_grad():
        inp = model.get_input_embeddings().weight
        ids = model_ids.to(inp.device)
        inp[ids] = dequantize_rows(t["input_q"], t["input_scale"]).to(device=inp.device, dtype=inp.dtype)
        out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if "output_q" in t and out is not None and out.weight.data_ptr() != inp.data_ptr():
            out.weight[ids] = dequantize_rows(t["output_q"], t["output_scale"]).to(device=out.weight.device, dtype=out.weight.dtype)
        if "bias.output" in t and out is not None and getattr(out, "bias", None) is not None:
            out.bias[ids] = t["bias.output"].to(device=out.bias.device, dtype=out.bias.dtype)
        if "bias.final_logits_bias" in t and hasattr(model, "final_logits_bias"):
            fb = model.final_logits_bias.view(-1)
            fb[ids] = t["bias.final_logits_bias"].to(device=fb.device, dtype=fb.dtype)


def calibrate_bundle_model(model, tokenizer, plan, train, seed: int) -> dict:
    """Output calibration of a model built from a bundle plan, as ``transplant_tokenizer`` does it
    (the tokens neither copied nor special; the bundle has no alignment, so the tokenizer's own
    special ids stand for its special tokens)."""
    ids = plan.uncopied_ids(getattr(tokenizer, "all_special_ids", []))
    stats = calibrate_new_tokens(model, tokenizer, train, ids, seed=seed, progress=False)
    logger.info("calibrated %d tokens: %s", len(ids), {k: v for k, v in stats.items() if k != "history"})
    return stats


def plan_folder(name: str) -> str:
    """Bundle folder of a method's plan: ``plans`` for the priority methods, ``plans_more`` for
    the rest, so that the two can travel to the GPU machine in separate calls."""
    return "plans" if name in PRIORITY else "plans_more"


def read_texts(bundle: Path, stem: str) -> list[str]:
    """The non-empty lines of ``<stem>.txt.gz`` (or ``<stem>.txt``) in ``bundle``."""
    gz, plain = bundle / f"{stem}.txt.gz", bundle / f"{stem}.txt"
    if gz.is_file():
        with gzip.open(gz, "rt", encoding="utf-8") as f:
            text = f.read()
    else:
        text = plain.read_text(encoding="utf-8")
    return [t for t in text.splitlines() if t]


def _store_planned(bundle: Path, planned: PlannedMethod, model, seed: int, tokenizer_dirs: dict[str, str]) -> dict:
    """Write ``planned``'s plan (:func:`save_bundle_plan`) and, when not there yet, its tokenizer
    into ``bundle``; the manifest fields that say where they are."""
    name = planned.name
    fp = tokenizer_fingerprint(planned.tokenizer)
    if fp not in tokenizer_dirs:
        tokenizer_dirs[fp] = f"tokenizers/{len(tokenizer_dirs)}"
        planned.tokenizer.save_pretrained(bundle / tokenizer_dirs[fp])
    folder = bundle / plan_folder(name)
    folder.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", name)  # file-safe: hybrid@global_weight=0.2
    plan_file = f"{plan_folder(name)}/plan_{stem}.safetensors"
    rows_file = f"{plan_folder(name)}/rows_{stem}.safetensors"
    stored = save_bundle_plan(planned.plan, model, bundle / plan_file, bundle / rows_file, seed)
    fields = dict(
        plan_file=plan_file, rows_file=rows_file if stored["form"] == "rows" else None, stored=stored,
        plan_bytes=stored["plan_bytes"] + stored.get("rows_bytes", 0), plan_entries=stored["plan_entries"],
        tokenizer_dir=tokenizer_dirs[fp],
        special_map=[[k, v] for k, v in planned.special_map.items()], target_roles=planned.target_roles,
    )
    logger.info("%s: stored as %s, %.2f MB", name, stored["form"], fields["plan_bytes"] / 1e6)
    return fields


def prepare_bundle(cfg: BenchConfig, *, methods: str | None, bundle: Path, workdir: Path, source: str | None = None,
                   gguf: str | None = None, wheels: Path | None = None) -> dict:
    """Phase 1 (CPU): target tokenizer, each method's mixing plan, texts -> ``bundle``.

    Args:
        cfg: the benchmark setting.
        methods: comma-separated entries (default: every registered method).
        bundle: the bundle folder (replaced).
        workdir: scratch folder (fastText models).
        source, gguf: another source model folder, or the GGUF file (see :func:`inputs.load_source`).
        wheels: a folder whose ``*.whl`` files are copied into the bundle (the gguf wheel).

    Returns:
        The manifest (also written as ``manifest.json``): settings, target tokenizer, and per
        entry its summary and where its plan, rows and tokenizer are.
    """
    started = time.time()
    set_threads(cfg)
    bundle = Path(bundle)
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    train, heldout = load_texts(cfg)
    model, source_tok, source_desc = load_source(cfg, gguf=gguf, source=source)
    logger.info("training a %d-token target tokenizer on %d characters", cfg.vocab_size, sum(map(len, train)))
    t0 = time.perf_counter()
    target_tok = train_tokenizer(source_tok, train, cfg.vocab_size, progress=False)
    tokenizer_seconds = time.perf_counter() - t0
    res = Resources(train, target_tok, workdir, cfg)
    for fname, texts in (("train.txt.gz", train), ("heldout.txt.gz", heldout)):
        with gzip.open(bundle / fname, "wt", encoding="utf-8", compresslevel=9) as f:
            f.write("\n".join(texts) + "\n")
    tokenizer_dirs: dict[str, str] = {}
    manifest = {
        "config": dataclasses.asdict(cfg),
        "source": source_desc,
        "source_vocab": len(source_tok),
        "target_tokenizer": target_description(target_tok, cfg),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "prepared_on": machine_description(),
        "tokenizer_seconds": round(tokenizer_seconds, 1),
        "methods": [],
    }
    for name in select_methods(methods):
        planned = plan_only(name, model, source_tok, target_tok, train, res, cfg)
        entry = {"name": name, **planned.summary(), "calibrate": calibrates(name)}
        if planned.status == "planned":
            entry.update(_store_planned(bundle, planned, model, cfg.seed, tokenizer_dirs))
        manifest["methods"].append(entry)
        planned = None
        gc.collect()
    if wheels:  # e.g. the gguf wheel, which the GPU machine lacks
        (bundle / "wheels").mkdir()
        for wheel in sorted(Path(wheels).glob("*.whl")):
            shutil.copy2(wheel, bundle / "wheels" / wheel.name)
    manifest["seconds"] = round(time.time() - started, 1)
    manifest["bundle_bytes"] = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file())
    (bundle / MANIFEST).write_text(json.dumps(jsonable(manifest), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


# The manifest fields of an entry that its results record keeps.
SUMMARY_FIELDS = ("status", "reason", "resources", "target_vocab", "overlap", "copied", "combined", "fallback", "counts",
                  "method_stats", "options", "plan_seconds", "plan_bytes", "plan_entries", "stored")


def _bundle_entry(bundle: Path, m: dict, model, cfg: BenchConfig, train, tokenizers: dict) -> Entry:
    """The run entry of manifest entry ``m``: a maker that applies its plan (and rows, and
    calibration) to a copy of ``model``, or None when it was not planned or its files were not
    carried to this machine. ``tokenizers`` caches the loaded tokenizers by folder."""
    name = m["name"]

    def make():
        tdir = m["tokenizer_dir"]
        if tdir not in tokenizers:
            tokenizers[tdir] = AutoTokenizer.from_pretrained(bundle / tdir)
        planned = PlannedMethod(
            name, "planned", plan=load_compact_plan(bundle / m["plan_file"]),
            special_map={int(k): int(v) for k, v in m["special_map"]}, target_roles=m["target_roles"],
        )
        built = apply_planned(model, planned, seed=cfg.seed)
        if m.get("rows_file"):
            apply_bundle_rows(built, bundle / m["rows_file"])
        if m.get("calibrate"):
            calibrate_bundle_model(built, tokenizers[tdir], planned.plan, train, cfg.seed)
        return built, tokenizers[tdir]

    summary = {k: m.get(k) for k in SUMMARY_FIELDS if k in m}
    missing = [f for f in (m.get("plan_file"), m.get("rows_file")) if f and not (bundle / f).is_file()]
    if m["status"] == "planned" and missing:
        summary.update(status="not run", reason=f"{', '.join(missing)} was not carried to this machine")
        logger.warning("%s: %s", name, summary["reason"])
    ready = m["status"] == "planned" and not missing
    return (name, make if ready else None, summary)


def run_bundle(bundle: Path, *, out_dir: Path, workdir: Path, gguf: str | None = None, source: str | None = None,
               methods: str | None = None, max_seconds: float | None = None, overrides: dict | None = None,
               stem: str | None = None) -> dict:
    """Phase 2 (GPU): apply each plan of ``bundle`` to the source model, evaluate, train.

    Args:
        bundle: the folder :func:`prepare_bundle` wrote (or the parts of it carried here).
        out_dir: where ``<stem>.json``, ``.md`` and ``.png`` go.
        workdir: scratch folder.
        gguf, source: the GGUF file, or another source model folder (see :func:`inputs.load_source`).
        methods: comma-separated entries of the bundle to run (default: all).
        max_seconds: time budget of the whole run.
        overrides: :class:`config.BenchConfig` fields to change (dry runs); ``train_chars`` and
            ``heldout_chars`` cut the bundle's texts.
        stem: results file name stem (default ``quality_<config>``).

    Returns:
        The results record (also written to ``out_dir``).

    Raises:
        SystemExit: the source tokenizer is not the one the bundle was prepared for.
    """
    started = time.time()
    bundle = Path(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    cfg = BenchConfig(**manifest["config"])
    for key, value in (overrides or {}).items():
        if value is not None:
            setattr(cfg, key, value)
    set_threads(cfg)
    train, heldout = read_texts(bundle, "train"), read_texts(bundle, "heldout")
    overrides = overrides or {}
    if overrides.get("train_chars"):  # dry runs: less text than the bundle holds
        train = first_chars(train, overrides["train_chars"])
    if overrides.get("heldout_chars"):
        heldout = first_chars(heldout, overrides["heldout_chars"])
    model, source_tok, source_desc = load_source(cfg, gguf=gguf, source=source)
    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    if len(source_tok) != manifest["source_vocab"]:
        raise SystemExit(f"the source tokenizer has {len(source_tok)} tokens, the bundle was prepared for {manifest['source_vocab']}")
    results = new_results(cfg, source_desc, manifest["target_tokenizer"], train, heldout)
    results["bundle"] = {"created": manifest["created"], "prepared_on": manifest["prepared_on"], "bytes": manifest["bundle_bytes"]}
    if cfg.steps != manifest["config"]["steps"]:
        results["notes"].append(f"Run with {cfg.steps} LAPT steps instead of the configuration's {manifest['config']['steps']}.")
    wanted = None if not methods else [m.strip() for m in methods.split(",") if m.strip()]
    by_name = {m["name"]: m for m in manifest["methods"]}
    order = ordered_methods([n for n in by_name if wanted is None or n in wanted])
    tokenizers: dict[str, Any] = {}
    entries = [_bundle_entry(bundle, by_name[name], model, cfg, train, tokenizers) for name in order]
    entries = with_reference(entries, reference_entry(model, source_tok, len(source_tok)), cfg.reference)
    return run_all(entries, results, train, heldout, cfg, workdir, out_dir, stem or f"quality_{cfg.name}", started=started,
                   max_seconds=max_seconds)


