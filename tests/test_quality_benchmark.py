"""Smoke tests of the benchmarks/quality package on tiny settings (real splade-tiny, real UA-GEC text)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from benchmarks.quality import bundle, config, inputs, resources, runs
from hf_vocabswap import available_methods, get_method, train_tokenizer
from hf_vocabswap.methods import COMBINED, COPIED, PlanBuilder

REPO = Path(__file__).resolve().parents[1]


def tiny(**kw):
    settings = dict(
        vocab_size=800, train_chars=40_000, heldout_chars=3_000, steps=2, eval_steps=1, batch_size=4,
        seq_length=64, eval_batch_size=8, warmup_steps=1, torch_threads=None,
    )
    settings.update(kw)
    return config.make_config("cpu", **settings)


def test_entry_variants():
    assert config.split_variant("fvt+cal") == ("fvt", True)
    assert config.split_variant("hybrid-nocal@global_weight=0.5") == ("hybrid", False)
    assert config.split_variant("focus") == ("focus", None)
    assert config.variant_options("hybrid@global_weight=0.2@neighbors=5@global_mixing=sparsemax") == {
        "global_weight": 0.2, "neighbors": 5, "global_mixing": "sparsemax"}
    assert config.calibrates("hybrid") and config.calibrates("fvt+cal")
    assert not config.calibrates("fvt") and not config.calibrates("hybrid-nocal")
    assert config.select_methods("fvt+cal,hybrid@global_weight=0.2") == ["fvt+cal", "hybrid@global_weight=0.2"]
    with pytest.raises(SystemExit, match="unknown"):
        config.select_methods("nosuch+cal")
    res = resources.Resources([], None, Path("/tmp"), tiny())
    setup = resources.method_setup("hybrid-nocal@global_weight=0.2", res)
    assert setup.options["global_weight"] == 0.2 and setup.corpus


def test_priority_order():
    names = ["wechsel", "random", "clp", "focus", "overlap", "fvt", "mean"]
    assert config.ordered_methods(names) == ["fvt", "focus", "overlap", "random", "clp", "mean", "wechsel"]
    assert config.ordered_methods(["hybrid", "trim", "focus", "fvt"]) == ["fvt", "focus", "hybrid", "trim"]


def test_configs_hold_the_issue_settings():
    gpu = config.CONFIGS["gpu"]
    assert (gpu.vocab_size, gpu.batch_size, gpu.seq_length, gpu.learning_rate, gpu.warmup_steps, gpu.steps, gpu.eval_steps,
            gpu.heldout_chars, gpu.bf16) == (32000, 8, 512, 5e-5, 50, 400, 50, 100_000, True)
    cpu = config.CONFIGS["cpu"]
    assert cpu.source == "splade" and cpu.vocab_size == 8000 and cpu.batch_size == 8 and cpu.seq_length == 128
    with pytest.raises(ValueError):
        config.make_config("cpu", no_such_setting=1)


@pytest.mark.slow
def test_every_registered_method_has_a_setup_or_a_reason(tmp_path, ukrainian_train, splade_path):
    tok = AutoTokenizer.from_pretrained(splade_path)
    res = resources.Resources(ukrainian_train[:50], tok, tmp_path, tiny())
    cheap = [m for m in available_methods() if m not in resources.METHOD_RESOURCES]
    for name in cheap:  # methods without a table entry: the corpus when they need one, common options filtered
        setup = resources.method_setup(name, res)
        assert setup.corpus == bool(get_method(name).needs_corpus)
        fields = {f[0] for f in get_method(name).config_class.option_fields()}
        assert set(setup.options) <= fields
    assert resources.method_setup("trim", res).target == "source"
    focus = resources.method_setup("focus", res)
    assert focus.corpus and focus.options.get("threads") == 1 and focus.options.get("progress") is False


@pytest.mark.slow
def test_prepare_then_run_writes_results(tmp_path, splade_path, monkeypatch):
    cfg = tiny()
    folder = tmp_path / "bundle"
    manifest = bundle.prepare_bundle(cfg, methods="random,fvt,overlap", bundle=folder, workdir=tmp_path / "w1", source=str(splade_path))
    assert [m["name"] for m in manifest["methods"]] == ["fvt", "overlap", "random"]
    for m in manifest["methods"]:
        assert m["status"] == "planned" and (folder / m["plan_file"]).stat().st_size == m["plan_bytes"]
        assert m["copied"] + m["combined"] + m["fallback"] == m["target_vocab"]
    assert (folder / "train.txt.gz").is_file() and (folder / "heldout.txt.gz").is_file()
    assert all(m["plan_file"].startswith("plans/") for m in manifest["methods"])  # priority methods
    assert len(list((folder / "tokenizers").iterdir())) == 1  # one shared target tokenizer

    # The run phase needs neither fastText nor the tokenizer trainer. A plan that was not carried
    # to the machine is reported, not fatal.
    monkeypatch.setitem(sys.modules, "fasttext", None)
    (folder / manifest["methods"][2]["plan_file"]).unlink()
    out = tmp_path / "results"
    results = bundle.run_bundle(folder, out_dir=out, workdir=tmp_path / "w2", source=str(splade_path), stem="q")
    assert results["complete"]
    records = results["runs"]
    assert list(records) == ["source", "fvt", "overlap", "random"]
    assert records.pop("random")["status"] == "not run"
    for name, r in records.items():
        assert r["status"] == "done", (name, r.get("reason"))
        assert [e["step"] for e in r["run"]["history"]] == [0, 1, 2]
        assert r["run"]["best"]["bpc"] <= r["run"]["zero_shot_bpc"] + 1e-9
    saved = json.loads((out / "q.json").read_text(encoding="utf-8"))
    assert saved["runs"]["fvt"]["copied"] == manifest["methods"][0]["copied"]
    md = (out / "q.md").read_text(encoding="utf-8")
    assert "| fvt | 800 |" in md and "reference" in md
    assert (out / "q.png").stat().st_size > 1000


@pytest.mark.slow
def test_saved_plan_rebuilds_the_transplanted_model(tmp_path, splade_path, ukrainian_train):
    cfg = tiny()
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    source_tok = AutoTokenizer.from_pretrained(splade_path)
    train = ukrainian_train[:200]
    target = train_tokenizer(source_tok, train, 800, progress=False)
    res = resources.Resources(train, target, tmp_path, cfg)
    planned = runs.plan_method("fvt", model, source_tok, target, train, res, cfg, keep_model=True)
    assert planned.status == "planned"
    rebuilt = runs.apply_planned(model, planned)
    assert torch.equal(rebuilt.get_input_embeddings().weight, planned.model.get_input_embeddings().weight)
    assert torch.equal(rebuilt.cls.predictions.bias, planned.model.cls.predictions.bias)

    path = tmp_path / "plan.safetensors"
    size = bundle.save_compact_plan(planned.plan, path)
    assert size == path.stat().st_size
    back = bundle.load_compact_plan(path)
    np.testing.assert_array_equal(back.indices, planned.plan.indices)
    np.testing.assert_array_equal(back.kinds, planned.plan.kinds)
    assert back.indices.dtype == np.int64 and back.weights.dtype == np.float64
    np.testing.assert_allclose(back.weights, planned.plan.weights, rtol=1e-6)


def test_unavailable_resources_are_reported_not_raised(tmp_path, splade_path, ukrainian_train, monkeypatch):
    cfg = tiny()
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    tok = AutoTokenizer.from_pretrained(splade_path)
    res = resources.Resources(ukrainian_train[:50], tok, tmp_path, cfg)

    def unavailable(res):
        raise resources.Unavailable("needs vectors that do not exist offline")

    monkeypatch.setitem(resources.METHOD_RESOURCES, "fvt", unavailable)
    planned = runs.plan_method("fvt", model, tok, tok, [], res, cfg, keep_model=False)
    assert planned.status == "skipped" and "offline" in planned.reason


def test_time_budget_skips_methods_and_still_writes(tmp_path, monkeypatch):
    calls = []

    def fake_run_one(model, tokenizer, train, heldout, cfg, workdir, *, deadline=None):
        calls.append(model)
        time.sleep(1.0)
        hist = [{"step": 0, "bpc": 3.0, "eval_loss": 1.0}, {"step": 1, "bpc": 2.5, "eval_loss": 0.9}]
        return {"zero_shot_bpc": 3.0, "history": hist, "best": hist[1], "last": hist[1], "seconds": 0.3, "cpu_seconds": 0.1}

    monkeypatch.setattr(runs, "run_one", fake_run_one)
    monkeypatch.setattr(runs, "MIN_START_SECONDS", 0.0)
    cfg = tiny()
    results = {
        "config": dataclasses.asdict(cfg), "task": "t", "source": "s", "target_tokenizer": "t", "date": "d",
        "machine": {"cpu": "c", "cpu_cores": 2, "python": "3", "torch": "t", "transformers": "t", "torch_threads": 1},
        "texts": {"train_chars": 1, "train_samples": 1, "heldout_chars": 1, "heldout_samples": 1},
        "runs": {}, "notes": [], "complete": False,
    }
    entries = [
        ("fvt", lambda: ("m1", "t"), {"status": "planned"}),
        ("focus", None, {"status": "skipped", "reason": "no corpus"}),
        ("overlap", lambda: ("m2", "t"), {"status": "planned"}),
    ]
    # A 1.6 s budget: fvt starts, takes 1 s, and the 0.6 s left cannot hold another such method.
    runs.run_all(entries, results, [], [], cfg, tmp_path, tmp_path, "b", started=time.time(), max_seconds=1.6)
    assert calls == ["m1"]
    assert results["runs"]["fvt"]["status"] == "done"
    assert results["runs"]["focus"]["status"] == "skipped"
    assert results["runs"]["overlap"]["status"] == "not run" and "budget" in results["runs"]["overlap"]["reason"]
    md = (tmp_path / "b.md").read_text(encoding="utf-8")
    assert "`focus` (skipped): no corpus" in md and "`overlap` (not run)" in md


@pytest.mark.slow
def test_dense_plans_travel_as_int8_rows(tmp_path, splade_path, ukrainian_train):
    """A plan larger than its rows is stored as a skeleton plan plus int8 rows; the model rebuilt
    from them matches the exact transplant up to the int8 rounding."""
    cfg = tiny()
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    source_tok = AutoTokenizer.from_pretrained(splade_path)
    train = ukrainian_train[:200]
    target = train_tokenizer(source_tok, train, 800, progress=False)
    res = resources.Resources(train, target, tmp_path, cfg)
    planned = runs.plan_only("fvt", model, source_tok, target, train, res, cfg)
    assert planned.status == "planned"
    # Make the plan dense (every combined row mixes 64 source rows) so that rows are smaller.
    plan = planned.plan
    combined = np.flatnonzero(plan.kinds == COMBINED)
    builder = PlanBuilder(plan.num_target, plan.num_source)
    copied = np.flatnonzero(plan.kinds == COPIED)
    builder.copy(copied, plan.indices[plan.indptr[copied]])
    rng = np.random.default_rng(0)
    for t in combined:
        builder.combine(int(t), rng.choice(plan.num_source, 64, replace=False), rng.dirichlet(np.ones(64)))
    planned.plan = builder.build()

    info = bundle.save_bundle_plan(planned.plan, model, tmp_path / "p.safetensors", tmp_path / "r.safetensors", config.SEED)
    assert info["form"] == "rows" and info["rows"] == len(combined)
    assert info["plan_bytes"] + info["rows_bytes"] < info["full_plan_bytes"]
    assert info["int8_relative_error"]["input"] < 0.01

    exact = runs.apply_planned(model, planned)
    skeleton = runs.PlannedMethod("x", "planned", plan=bundle.load_compact_plan(tmp_path / "p.safetensors"),
                                     special_map=planned.special_map, target_roles=planned.target_roles)
    rebuilt = runs.apply_planned(model, skeleton)
    bundle.apply_bundle_rows(rebuilt, tmp_path / "r.safetensors")
    a, b = exact.get_input_embeddings().weight, rebuilt.get_input_embeddings().weight
    keep = torch.from_numpy(np.flatnonzero(planned.plan.kinds != COMBINED))
    assert torch.equal(a[keep], b[keep])  # copied and seeded random rows are exact
    groups = a.reshape(a.shape[0], -1, 32)
    step = (groups.abs().amax(dim=2, keepdim=True) / 127).expand_as(groups).reshape(a.shape)
    assert ((a - b).abs() <= step * 0.51 + 1e-7).all()  # combined rows: within half an int8 step of their group
    assert torch.allclose(exact.cls.predictions.bias, rebuilt.cls.predictions.bias, atol=1e-6)


def test_gguf_parts_are_assembled_and_checked(tmp_path, monkeypatch):
    for i, chunk in enumerate((b"GGUF", b"abc", b"def")):
        (tmp_path / f"m.gguf.part{i:02d}").write_bytes(chunk)
    assert inputs.resolve_gguf(tmp_path / "m.gguf").read_bytes() == b"GGUFabcdef"
    assert inputs.resolve_gguf(tmp_path / "m.gguf") == tmp_path / "m.gguf"  # already there: used as is
    (tmp_path / "n.gguf.part00").write_bytes(b"GGUF")
    monkeypatch.setitem(inputs.KNOWN_GGUF_SHA256, "n.gguf", "0" * 64)
    with pytest.raises(ValueError, match="missing or truncated"):
        inputs.resolve_gguf(tmp_path / "n.gguf")
    assert not (tmp_path / "n.gguf").exists()
    with pytest.raises(FileNotFoundError):
        inputs.resolve_gguf(tmp_path / "absent.gguf")


@pytest.mark.slow
def test_command_line_runs_as_module_and_as_folder(tmp_path):
    """``python -m benchmarks.quality`` from the repository root, and ``python benchmarks/quality``
    from any folder (here: re-rendering the committed CPU results beside a copy of them)."""
    helped = subprocess.run([sys.executable, "-m", "benchmarks.quality", "--help"], cwd=REPO, capture_output=True, text=True)
    assert helped.returncode == 0, helped.stderr
    assert "--phase {all,prepare,run}" in helped.stdout and "--max-seconds" in helped.stdout
    saved = tmp_path / "q.json"
    saved.write_text((REPO / "benchmarks" / "results" / "quality_cpu.json").read_text(encoding="utf-8"), encoding="utf-8")
    rendered = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality"), "--render", str(saved)], cwd=tmp_path,
                              capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    md = (tmp_path / "q.md").read_text(encoding="utf-8")
    assert md == (REPO / "benchmarks" / "results" / "quality_cpu.md").read_text(encoding="utf-8")
