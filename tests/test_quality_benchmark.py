"""Smoke tests of benchmarks/quality.py on tiny settings (real splade-tiny, real UA-GEC text)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("vocabswap_quality_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def tiny(quality, **kw):
    settings = dict(
        vocab_size=800, train_chars=40_000, heldout_chars=3_000, steps=2, eval_steps=1, batch_size=4,
        seq_length=64, eval_batch_size=8, warmup_steps=1, torch_threads=None,
    )
    settings.update(kw)
    return quality.make_config("cpu", **settings)


def test_entry_variants(quality):
    assert quality.split_variant("fvt+cal") == ("fvt", True)
    assert quality.split_variant("hybrid-nocal@global_weight=0.5") == ("hybrid", False)
    assert quality.split_variant("focus") == ("focus", None)
    assert quality.variant_options("hybrid@global_weight=0.2@neighbors=5@global_mixing=sparsemax") == {
        "global_weight": 0.2, "neighbors": 5, "global_mixing": "sparsemax"}
    assert quality.calibrates("hybrid") and quality.calibrates("fvt+cal")
    assert not quality.calibrates("fvt") and not quality.calibrates("hybrid-nocal")
    assert quality.select_methods("fvt+cal,hybrid@global_weight=0.2") == ["fvt+cal", "hybrid@global_weight=0.2"]
    with pytest.raises(SystemExit, match="unknown"):
        quality.select_methods("nosuch+cal")
    res = quality.Resources([], None, Path("/tmp"), tiny(quality))
    setup = quality.method_setup("hybrid-nocal@global_weight=0.2", res)
    assert setup.options["global_weight"] == 0.2 and setup.corpus


def test_priority_order(quality):
    names = ["wechsel", "random", "clp", "focus", "overlap", "fvt", "mean"]
    assert quality.ordered_methods(names) == ["fvt", "focus", "overlap", "random", "clp", "mean", "wechsel"]
    assert quality.ordered_methods(["hybrid", "trim", "focus", "fvt"]) == ["fvt", "focus", "hybrid", "trim"]


def test_configs_hold_the_issue_settings(quality):
    gpu = quality.CONFIGS["gpu"]
    assert (gpu.vocab_size, gpu.batch_size, gpu.seq_length, gpu.learning_rate, gpu.warmup_steps, gpu.steps, gpu.eval_steps,
            gpu.heldout_chars, gpu.bf16) == (32000, 8, 512, 5e-5, 50, 400, 50, 100_000, True)
    cpu = quality.CONFIGS["cpu"]
    assert cpu.source == "splade" and cpu.vocab_size == 8000 and cpu.batch_size == 8 and cpu.seq_length == 128
    with pytest.raises(ValueError):
        quality.make_config("cpu", no_such_setting=1)


@pytest.mark.slow
def test_every_registered_method_has_a_setup_or_a_reason(quality, tmp_path, ukrainian_train, splade_path):
    from transformers import AutoTokenizer

    from hf_vocabswap import available_methods, get_method

    tok = AutoTokenizer.from_pretrained(splade_path)
    res = quality.Resources(ukrainian_train[:50], tok, tmp_path, tiny(quality))
    cheap = [m for m in available_methods() if m not in quality.METHOD_RESOURCES]
    for name in cheap:  # methods without a table entry: the corpus when they need one, common options filtered
        setup = quality.method_setup(name, res)
        assert setup.corpus == bool(get_method(name).needs_corpus)
        fields = {f[0] for f in get_method(name).config_class.option_fields()}
        assert set(setup.options) <= fields
    assert quality.method_setup("trim", res).target == "source"
    focus = quality.method_setup("focus", res)
    assert focus.corpus and focus.options.get("threads") == 1 and focus.options.get("progress") is False


@pytest.mark.slow
def test_prepare_then_run_writes_results(quality, tmp_path, splade_path, monkeypatch):
    cfg = tiny(quality)
    bundle = tmp_path / "bundle"
    manifest = quality.prepare_bundle(cfg, methods="random,fvt,overlap", bundle=bundle, workdir=tmp_path / "w1", source=str(splade_path))
    assert [m["name"] for m in manifest["methods"]] == ["fvt", "overlap", "random"]
    for m in manifest["methods"]:
        assert m["status"] == "planned" and (bundle / m["plan_file"]).stat().st_size == m["plan_bytes"]
        assert m["copied"] + m["combined"] + m["fallback"] == m["target_vocab"]
    assert (bundle / "train.txt.gz").is_file() and (bundle / "heldout.txt.gz").is_file()
    assert all(m["plan_file"].startswith("plans/") for m in manifest["methods"])  # priority methods
    assert len(list((bundle / "tokenizers").iterdir())) == 1  # one shared target tokenizer

    # The run phase needs neither fastText nor the tokenizer trainer. A plan that was not carried
    # to the machine is reported, not fatal.
    monkeypatch.setitem(sys.modules, "fasttext", None)
    (bundle / manifest["methods"][2]["plan_file"]).unlink()
    out = tmp_path / "results"
    results = quality.run_bundle(bundle, out_dir=out, workdir=tmp_path / "w2", source=str(splade_path), stem="q")
    assert results["complete"]
    runs = results["runs"]
    assert list(runs) == ["source", "fvt", "overlap", "random"]
    assert runs.pop("random")["status"] == "not run"
    for name, r in runs.items():
        assert r["status"] == "done", (name, r.get("reason"))
        assert [e["step"] for e in r["run"]["history"]] == [0, 1, 2]
        assert r["run"]["best"]["bpc"] <= r["run"]["zero_shot_bpc"] + 1e-9
    saved = json.loads((out / "q.json").read_text(encoding="utf-8"))
    assert saved["runs"]["fvt"]["copied"] == manifest["methods"][0]["copied"]
    md = (out / "q.md").read_text(encoding="utf-8")
    assert "| fvt | 800 |" in md and "reference" in md
    assert (out / "q.png").stat().st_size > 1000


@pytest.mark.slow
def test_saved_plan_rebuilds_the_transplanted_model(quality, tmp_path, splade_path, ukrainian_train):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from hf_vocabswap import train_tokenizer

    cfg = tiny(quality)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    source_tok = AutoTokenizer.from_pretrained(splade_path)
    train = ukrainian_train[:200]
    target = train_tokenizer(source_tok, train, 800, show_progress=False)
    res = quality.Resources(train, target, tmp_path, cfg)
    planned = quality.plan_method("fvt", model, source_tok, target, train, res, cfg, keep_model=True)
    assert planned.status == "planned"
    rebuilt = quality.apply_planned(model, planned)
    assert torch.equal(rebuilt.get_input_embeddings().weight, planned.model.get_input_embeddings().weight)
    assert torch.equal(rebuilt.cls.predictions.bias, planned.model.cls.predictions.bias)

    path = tmp_path / "plan.safetensors"
    size = quality.save_compact_plan(planned.plan, path)
    assert size == path.stat().st_size
    back = quality.load_compact_plan(path)
    np.testing.assert_array_equal(back.indices, planned.plan.indices)
    np.testing.assert_array_equal(back.kinds, planned.plan.kinds)
    assert back.indices.dtype == np.int64 and back.weights.dtype == np.float64
    np.testing.assert_allclose(back.weights, planned.plan.weights, rtol=1e-6)


def test_unavailable_resources_are_reported_not_raised(quality, tmp_path, splade_path, ukrainian_train, monkeypatch):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    cfg = tiny(quality)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    tok = AutoTokenizer.from_pretrained(splade_path)
    res = quality.Resources(ukrainian_train[:50], tok, tmp_path, cfg)

    def unavailable(res):
        raise quality.Unavailable("needs vectors that do not exist offline")

    monkeypatch.setitem(quality.METHOD_RESOURCES, "fvt", unavailable)
    planned = quality.plan_method("fvt", model, tok, tok, [], res, cfg, keep_model=False)
    assert planned.status == "skipped" and "offline" in planned.reason


def test_time_budget_skips_methods_and_still_writes(quality, tmp_path, monkeypatch):
    calls = []

    def fake_run_one(model, tokenizer, train, heldout, cfg, workdir, *, deadline=None):
        calls.append(model)
        import time

        time.sleep(1.0)
        hist = [{"step": 0, "bpc": 3.0, "eval_loss": 1.0}, {"step": 1, "bpc": 2.5, "eval_loss": 0.9}]
        return {"zero_shot_bpc": 3.0, "history": hist, "best": hist[1], "last": hist[1], "seconds": 0.3, "cpu_seconds": 0.1}

    monkeypatch.setattr(quality, "run_one", fake_run_one)
    monkeypatch.setattr(quality, "MIN_START_SECONDS", 0.0)
    cfg = tiny(quality)
    results = {
        "config": quality.dataclasses.asdict(cfg), "task": "t", "source": "s", "target_tokenizer": "t", "date": "d",
        "machine": {"cpu": "c", "cpu_cores": 2, "python": "3", "torch": "t", "transformers": "t", "torch_threads": 1},
        "texts": {"train_chars": 1, "train_samples": 1, "heldout_chars": 1, "heldout_samples": 1},
        "runs": {}, "notes": [], "complete": False,
    }
    import time

    entries = [
        ("fvt", lambda: ("m1", "t"), {"status": "planned"}),
        ("focus", None, {"status": "skipped", "reason": "no corpus"}),
        ("overlap", lambda: ("m2", "t"), {"status": "planned"}),
    ]
    # A 1.6 s budget: fvt starts, takes 1 s, and the 0.6 s left cannot hold another such method.
    quality.run_all(entries, results, [], [], cfg, tmp_path, tmp_path, "b", started=time.time(), max_seconds=1.6)
    assert calls == ["m1"]
    assert results["runs"]["fvt"]["status"] == "done"
    assert results["runs"]["focus"]["status"] == "skipped"
    assert results["runs"]["overlap"]["status"] == "not run" and "budget" in results["runs"]["overlap"]["reason"]
    md = (tmp_path / "b.md").read_text(encoding="utf-8")
    assert "`focus` (skipped): no corpus" in md and "`overlap` (not run)" in md


@pytest.mark.slow
def test_dense_plans_travel_as_int8_rows(quality, tmp_path, splade_path, ukrainian_train):
    """A plan larger than its rows is stored as a skeleton plan plus int8 rows; the model rebuilt
    from them matches the exact transplant up to the int8 rounding."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from hf_vocabswap import train_tokenizer
    from hf_vocabswap.plan import COMBINED, COPIED

    cfg = tiny(quality)
    model = AutoModelForMaskedLM.from_pretrained(splade_path)
    source_tok = AutoTokenizer.from_pretrained(splade_path)
    train = ukrainian_train[:200]
    target = train_tokenizer(source_tok, train, 800, show_progress=False)
    res = quality.Resources(train, target, tmp_path, cfg)
    planned = quality.plan_only("fvt", model, source_tok, target, train, res, cfg)
    assert planned.status == "planned"
    # Make the plan dense (every combined row mixes 64 source rows) so that rows are smaller.
    plan = planned.plan
    combined = np.flatnonzero(plan.kinds == COMBINED)
    from hf_vocabswap.plan import PlanBuilder

    builder = PlanBuilder(plan.num_target, plan.num_source)
    copied = np.flatnonzero(plan.kinds == COPIED)
    builder.copy(copied, plan.indices[plan.indptr[copied]])
    rng = np.random.default_rng(0)
    for t in combined:
        builder.combine(int(t), rng.choice(plan.num_source, 64, replace=False), rng.dirichlet(np.ones(64)))
    planned.plan = builder.build()

    info = quality.save_bundle_plan(planned.plan, model, tmp_path / "p.safetensors", tmp_path / "r.safetensors", quality.SEED)
    assert info["form"] == "rows" and info["rows"] == len(combined)
    assert info["plan_bytes"] + info["rows_bytes"] < info["full_plan_bytes"]
    assert info["int8_relative_error"]["input"] < 0.01

    exact = quality.apply_planned(model, planned)
    skeleton = quality.PlannedMethod("x", "planned", plan=quality.load_compact_plan(tmp_path / "p.safetensors"),
                                     special_map=planned.special_map, target_roles=planned.target_roles)
    rebuilt = quality.apply_planned(model, skeleton)
    quality.apply_bundle_rows(rebuilt, tmp_path / "r.safetensors")
    a, b = exact.get_input_embeddings().weight, rebuilt.get_input_embeddings().weight
    keep = torch.from_numpy(np.flatnonzero(planned.plan.kinds != COMBINED))
    assert torch.equal(a[keep], b[keep])  # copied and seeded random rows are exact
    groups = a.reshape(a.shape[0], -1, 32)
    step = (groups.abs().amax(dim=2, keepdim=True) / 127).expand_as(groups).reshape(a.shape)
    assert ((a - b).abs() <= step * 0.51 + 1e-7).all()  # combined rows: within half an int8 step of their group
    assert torch.allclose(exact.cls.predictions.bias, rebuilt.cls.predictions.bias, atol=1e-6)


def test_gguf_parts_are_assembled_and_checked(quality, tmp_path, monkeypatch):
    for i, chunk in enumerate((b"GGUF", b"abc", b"def")):
        (tmp_path / f"m.gguf.part{i:02d}").write_bytes(chunk)
    assert quality.resolve_gguf(tmp_path / "m.gguf").read_bytes() == b"GGUFabcdef"
    assert quality.resolve_gguf(tmp_path / "m.gguf") == tmp_path / "m.gguf"  # already there: used as is
    (tmp_path / "n.gguf.part00").write_bytes(b"GGUF")
    monkeypatch.setitem(quality.KNOWN_GGUF_SHA256, "n.gguf", "0" * 64)
    with pytest.raises(ValueError, match="missing or truncated"):
        quality.resolve_gguf(tmp_path / "n.gguf")
    assert not (tmp_path / "n.gguf").exists()
    with pytest.raises(FileNotFoundError):
        quality.resolve_gguf(tmp_path / "absent.gguf")
