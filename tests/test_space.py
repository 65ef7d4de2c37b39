"""The Gradio Space (spaces/hf-vocabswap-demo/app.py): event functions and an in-process server.

The adapted model is the real splade-tiny BERT MLM transplanted with FVT to a small
Ukrainian WordPiece tokenizer trained on UA-GEC text (built once per session). A tiny
random GPT-2 with a byte-level BPE tokenizer covers the causal / byte-level paths.
"""

from __future__ import annotations

import html
import importlib.util
import json
import os
import re
import socket
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from hf_vocabswap import assets
from hf_vocabswap.plan import load_plan
from hf_vocabswap.record import PLAN_FILE, RECORD_FILE

SPACE = Path(__file__).resolve().parent.parent / "spaces" / "hf-vocabswap-demo"
UK_TEXT = "Київ — столиця України. Дніпро ділить місто на правий і лівий береги."


def load_app():
    """The Space's app.py as a module (its folder name is not importable)."""
    if "vocabswap_space_app" in sys.modules:
        return sys.modules["vocabswap_space_app"]
    spec = importlib.util.spec_from_file_location("vocabswap_space_app", SPACE / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["vocabswap_space_app"] = module
    spec.loader.exec_module(module)
    return module


_BUILT: dict[str, Path] = {}


def build_adapted_folder(root: Path) -> Path:
    """splade-tiny transplanted (FVT) to a 2,000-token Ukrainian tokenizer, saved under ``root``."""
    key = str(root)
    if key not in _BUILT:
        from transformers import AutoTokenizer

        from hf_vocabswap import transplant_tokenizer

        source = assets.splade_tiny_path()
        tok = AutoTokenizer.from_pretrained(source)
        target = tok.train_new_from_iterator(assets.ukrainian_texts("train", max_chars=60000), 2000)
        result = transplant_tokenizer(str(source), target, "fvt")
        _BUILT[key] = result.save_pretrained(root / "splade-tiny-uk")
    return _BUILT[key]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app():
    return load_app()


@pytest.fixture(scope="session")
def adapted(tmp_path_factory) -> str:
    return str(build_adapted_folder(tmp_path_factory.getbasetemp() / "space-models"))


@pytest.fixture(scope="session")
def source(splade_path) -> str:
    return str(splade_path)


@pytest.fixture(scope="session")
def causal_folder(tmp_path_factory) -> str:
    """A tiny random GPT-2 with a byte-level BPE tokenizer trained on Ukrainian text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(assets.ukrainian_texts("train", max_chars=30000), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    folder = tmp_path_factory.getbasetemp() / "space-models" / "tiny-gpt2"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def span_texts(fragment: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r'<span class="vs-tok[^"]*"[^>]*>(.*?)</span>', fragment)]


def visible_text(fragment: str) -> str:
    """The text of the token line: spans and the whitespace between them."""
    line = re.search(r'<div class="vs-line">(.*?)</div>', fragment, re.S).group(1)
    return html.unescape(re.sub(r"<[^>]+>", "", line))


def assert_readable(message: str):
    assert message and "Traceback" not in message and 'File "' not in message, message


# --------------------------------------------------------------------------- tokenization
def test_tokenize_before_and_after(app, source, adapted):
    from transformers import AutoTokenizer

    from hf_vocabswap.evaluate import tokenizer_stats

    src_html, ada_html, rows = app.tokenize(UK_TEXT, source, adapted)
    src_tok, ada_tok = AutoTokenizer.from_pretrained(source), AutoTokenizer.from_pretrained(adapted)
    for fragment, tok in ((src_html, src_tok), (ada_html, ada_tok)):
        ids = tok(UK_TEXT, add_special_tokens=False)["input_ids"]
        spans = span_texts(fragment)
        assert len(spans) == len(ids) == len(re.findall(r'data-id="(\d+)"', fragment))
        assert [int(i) for i in re.findall(r'data-id="(\d+)"', fragment)] == list(ids)
        # Humans read the text itself: the spans and the gaps between them give it back,
        # with no vocabulary markers.
        assert visible_text(fragment) == UK_TEXT
        assert not any(s.startswith("##") for s in spans)
        assert f"{len(ids):,} tokens" in fragment
    # The Ukrainian tokenizer needs fewer tokens for Ukrainian text.
    table = {r[0]: r[1:] for r in rows}
    s_before, s_after = tokenizer_stats(src_tok, [UK_TEXT]), tokenizer_stats(ada_tok, [UK_TEXT])
    assert table["tokens"] == [f"{s_before['num_tokens']:,}", f"{s_after['num_tokens']:,}"]
    assert table["tokens per word"] == [f"{s_before['tokens_per_word']:.2f}", f"{s_after['tokens_per_word']:.2f}"]
    assert table["characters per token"] == [f"{s_before['characters_per_token']:.2f}", f"{s_after['characters_per_token']:.2f}"]
    assert table["words kept whole"] == [f"{1 - s_before['continued_words']:.0%}", f"{1 - s_after['continued_words']:.0%}"]
    assert s_after["num_tokens"] < s_before["num_tokens"]
    assert set(table) == {"tokens", "words", "tokens per word", "characters per token", "words kept whole", "unknown tokens"}


def test_tokenize_raw_strings_on_request(app, source, adapted):
    _, ada_html, _ = app.tokenize(UK_TEXT, source, adapted, raw=True)
    spans = span_texts(ada_html)
    assert any(s.startswith("##") for s in spans)
    _, plain, _ = app.tokenize(UK_TEXT, source, adapted, raw=False)
    assert not any(s.startswith("##") for s in span_texts(plain))


def test_tokenize_byte_level_is_decoded(app, causal_folder, adapted):
    text = "Добрий день, світе! ☃"
    html_out, _, _ = app.tokenize(text, causal_folder, adapted)
    spans = span_texts(html_out)
    assert not any("Ġ" in s for s in spans)
    # A token that is only a space shows as ␣; further bytes of one character as ⋯.
    assert visible_text(html_out).replace("⋯", "").replace("␣", " ") == text
    raw_out, _, _ = app.tokenize(text, causal_folder, adapted, raw=True)
    assert any(s.startswith("Ġ") for s in span_texts(raw_out))


def test_tokenize_special_and_empty(app, source, adapted):
    src_html, ada_html, _ = app.tokenize("київ [MASK] .", source, adapted)
    assert "vs-special" in src_html and "[MASK]" in span_texts(src_html)
    for out in app.tokenize("   ", source, adapted)[:2]:
        assert "vs-error" in out and "Write some text" in out


# --------------------------------------------------------------------------- fill-mask
def test_fill_mask_matches_pipeline(app, source, adapted):
    from transformers import pipeline

    before, after, note = app.fill_mask("The capital of France is [MASK].", source, adapted, 5)
    assert len(before) == 5 and len(after) == 5
    ref = pipeline("fill-mask", model=source, top_k=5)("The capital of France is [MASK].")
    assert list(before) == [p["token_str"] for p in ref]
    np.testing.assert_allclose(list(before.values()), [p["score"] for p in ref], rtol=1e-4)
    ref_after = pipeline("fill-mask", model=adapted, top_k=5)("The capital of France is [MASK].")
    np.testing.assert_allclose(list(after.values()), [p["score"] for p in ref_after], rtol=1e-4)
    assert list(after.values()) == sorted(after.values(), reverse=True)
    assert "fills [MASK]" in note and "⚠️" not in note


@pytest.mark.parametrize("placeholder", ["[MASK]", "<mask>", "[mask]"])
def test_fill_mask_generic_placeholder(app, source, adapted, placeholder):
    expected = app.fill_mask("Київ — столиця [MASK].", source, adapted, 3)
    got = app.fill_mask(f"Київ — столиця {placeholder}.", source, adapted, 3)
    assert got == expected and got[0] and got[1]


def test_empty_source_is_read_from_the_record(app, source, adapted):
    assert app.fill_mask("Київ — столиця [MASK].", "", adapted, 3) == app.fill_mask("Київ — столиця [MASK].", source, adapted, 3)
    assert app.tokenize(UK_TEXT, " ", adapted) == app.tokenize(UK_TEXT, source, adapted)


def test_fill_mask_needs_one_mask(app, source, adapted):
    for text in ("no mask here", "[MASK] and [MASK]", ""):
        before, after, note = app.fill_mask(text, source, adapted, 3)
        assert before is None and after is None
        assert note.count("⚠️") == 2
        assert_readable(note)


def test_fill_mask_tokenizer_without_mask_token(app, source, adapted):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(adapted)
    tok.mask_token = None
    model = AutoModelForMaskedLM.from_pretrained(adapted).eval()
    app._cache_put(app.Bundle("no-mask-token-model", model, tok, "masked"))
    before, after, note = app.fill_mask("Київ — столиця [MASK].", source, "no-mask-token-model", 3)
    assert before and after is None
    assert "has no mask token" in note and "no-mask-token-model" in note
    assert_readable(note)


def test_causal_model_predicts_next_token(app, causal_folder, adapted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before, after, note = app.fill_mask("Київ — столиця [MASK] і більше", causal_folder, adapted, 4)
    assert "predicts the next token" in note and "fills [MASK]" in note
    tok = AutoTokenizer.from_pretrained(causal_folder)
    model = AutoModelForCausalLM.from_pretrained(causal_folder).eval()
    ids = [tok.bos_token_id] + tok("Київ — столиця", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1], -1)
    np.testing.assert_allclose(list(before.values()), probs.topk(4).values.tolist(), rtol=1e-4)
    assert not any("Ġ" in label for label in before)
    # Without a placeholder the whole text is the prompt.
    whole = app.fill_mask("Київ — столиця", causal_folder, adapted, 4)[0]
    assert whole == before


def test_model_without_lm_head(app, adapted, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(adapted)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "encoder")
    tok.save_pretrained(tmp_path / "encoder")
    before, after, note = app.fill_mask("Київ — столиця [MASK].", str(tmp_path / "encoder"), adapted, 3)
    assert before is None and after
    assert "fill-mask needs a masked LM" in note
    assert_readable(note)


# --------------------------------------------------------------------------- explain
def test_explain_reads_the_saved_record(app, source, adapted):
    from transformers import AutoTokenizer

    plan = load_plan(Path(adapted) / PLAN_FILE)
    tgt, src = AutoTokenizer.from_pretrained(adapted), AutoTokenizer.from_pretrained(source)
    copied = next(i for i in range(len(tgt)) if plan.kinds[i] == 0 and tgt.convert_ids_to_tokens(i) not in tgt.all_special_tokens)
    combined = next(i for i in range(len(tgt)) if plan.kinds[i] == 1)
    fallback = next(i for i in range(len(tgt)) if plan.kinds[i] in (2, 3))
    for tid, kind in ((copied, "copied"), (combined, "combined"), (fallback, "random")):
        out = app.explain(str(tid), adapted, source)
        assert f"| {tid} | {kind} |" in out, out
        expected = plan.explain(tid, tgt, src, top=8).split(": ", 1)[1]
        assert expected.replace("|", "\\|") in out
    assert "copied from" in app.explain(str(copied), adapted, source)
    # A vocabulary string and "#id" name the same token; a word is explained piece by piece.
    name = tgt.convert_ids_to_tokens(combined)
    assert app.explain(name, adapted, source) == app.explain(f"#{combined}", adapted, source)
    word = app.explain("столиця", adapted, source)
    assert word.count("\n| `") == len(tgt("столиця", add_special_tokens=False)["input_ids"])
    assert "Method `fvt`" in word


def test_explain_errors(app, source, adapted):
    for out in (
        app.explain("", adapted, source),
        app.explain("999999", adapted, source),
        app.explain("київ", source, source),  # the source has no transplant record
        app.explain("київ", "no/such-model", source),
    ):
        assert out.startswith("⚠️")
        assert_readable(out)
    assert "no transplant record" in app.explain("київ", source, source)
    assert "not in the adapted vocabulary" in app.explain("999999", adapted, source)


# --------------------------------------------------------------------------- adapt now
def test_adapt_trains_a_tokenizer_and_transplants(app, source, tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSWAP_WORKDIR", str(tmp_path / "work"))
    corpus = assets.write_texts(assets.ukrainian_texts("train", max_chars=40000), tmp_path / "uk.txt")
    report, folder, src = app.adapt(source, app.TRAIN_FROM_TEXT, "", str(corpus), 1200, "fvt")
    assert "⚠️" not in report and "fvt" in report
    assert Path(folder).is_dir() and Path(folder).parent == tmp_path / "work"
    record = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
    assert record["method"] == "fvt" and sum(record["counts"].values()) == 1200
    assert record["provenance"]["source"] == src
    # The result is then compared like any adapted model.
    _, ada_html, rows = app.tokenize(UK_TEXT, src, folder)
    assert "vs-tok" in ada_html
    assert "Method `fvt`" in app.explain("столиця", folder, src)
    assert app.load_models("", folder)[1] == src


def test_adapt_offers_auto_first_and_runs_it(app, source, tmp_path, monkeypatch):
    # The dropdown's default must be a method that runs with what the form asks for (auto), not
    # the alphabetically first registered one (clp, which needs a helper model).
    assert app.method_choices()[0] == "auto" and "clp" in app.method_choices()
    monkeypatch.setenv("VOCABSWAP_WORKDIR", str(tmp_path / "work"))
    corpus = assets.write_texts(assets.ukrainian_texts("train", max_chars=40000), tmp_path / "uk.txt")
    report, folder, _ = app.adapt(source, app.TRAIN_FROM_TEXT, "", str(corpus), 1200, "auto")
    assert "⚠️" not in report, report
    record = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
    assert record["method"] == "hybrid" and record["method_stats"]["calibration"]["calibrated"] > 0


def test_adapt_with_an_existing_tokenizer(app, source, adapted, tmp_path, monkeypatch):
    monkeypatch.setenv("VOCABSWAP_WORKDIR", str(tmp_path))
    report, folder, _ = app.adapt(source, app.EXISTING_TOKENIZER, adapted, None, 0, "overlap")
    assert "overlap" in report and (Path(folder) / PLAN_FILE).is_file()


def test_adapt_errors(app, source, adapted, tmp_path, monkeypatch):
    corpus = assets.write_texts(["київ — столиця україни"] * 10, tmp_path / "uk.txt")
    cases = [
        ((source, app.TRAIN_FROM_TEXT, "", None, 1000, "fvt"), "Upload a text file"),
        ((source, app.EXISTING_TOKENIZER, "", None, 1000, "fvt"), "Enter the target tokenizer"),
        ((source, app.EXISTING_TOKENIZER, adapted, None, 1000, "focus"), "learns from target-language text"),
        ((source, app.EXISTING_TOKENIZER, adapted, None, 1000, "no-such-method"), "Unknown method"),
        ((source, app.EXISTING_TOKENIZER, str(tmp_path / "missing"), None, 1000, "fvt"), "Cannot load the target tokenizer"),
        (("", app.TRAIN_FROM_TEXT, "", str(corpus), 1000, "fvt"), "Enter the source model"),
        ((source, app.TRAIN_FROM_TEXT, "", str(corpus), 10, "fvt"), "at least 100"),
    ]
    for args, expected in cases:
        report = app.adapt(*args)[0]
        assert report.startswith("⚠️") and expected in report, (expected, report)
        assert_readable(report)
    monkeypatch.setenv("VOCABSWAP_MAX_ADAPT_PARAMS", "1000")
    report = app.adapt(source, app.TRAIN_FROM_TEXT, "", str(corpus), 1000, "fvt")[0]
    assert "adapting here is for small models" in report


# --------------------------------------------------------------------------- models and defaults
def test_load_models_status_and_errors(app, source, adapted):
    status, src = app.load_models("", adapted)
    assert src == source  # read from vocabswap.json (provenance.source)
    assert "BertForMaskedLM" in status and "made by hf_vocabswap with `fvt`" in status
    status, _ = app.load_models("no/such-model", str(Path(adapted) / "missing"))
    assert status.count("⚠️") == 2 and "Cannot load the source model 'no/such-model'" in status
    assert_readable(status)
    status, _ = app.load_models(source, "")
    assert "Enter the adapted model" in status


def test_defaults_from_environment_and_offline(app, source, adapted, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert app.hub_reachable() is False
    monkeypatch.setenv("VOCABSWAP_ADAPTED", adapted)
    monkeypatch.delenv("VOCABSWAP_SOURCE", raising=False)
    assert app.default_models() == (source, adapted)
    monkeypatch.setenv("VOCABSWAP_SOURCE", "my-source")
    assert app.default_models() == ("my-source", adapted)
    # Offline without VOCABSWAP_ADAPTED: the embedded default's folder.
    monkeypatch.delenv("VOCABSWAP_ADAPTED")
    monkeypatch.delenv("VOCABSWAP_SOURCE")
    monkeypatch.setenv("VOCABSWAP_QUICKSTART_DIR", adapted)
    assert app.embedded_default_folder() == Path(adapted).resolve()
    assert app.default_models(prepare=True) == (source, str(Path(adapted).resolve()))  # exists: not rebuilt
    # Online: real Hub ids.
    monkeypatch.setattr(app, "hub_reachable", lambda timeout=2.0: True)
    assert app.default_models() == (app.HUB_SOURCE, app.HUB_ADAPTED)


def test_missing_embedded_default_is_produced(app, tmp_path, monkeypatch):
    calls = []

    def fake_quickstart(out, method="focus", overwrite=False, **kw):
        calls.append((Path(out), method))
        Path(out).mkdir(parents=True)
        (Path(out) / RECORD_FILE).write_text(json.dumps({"provenance": {"source": "src"}}), encoding="utf-8")

    import hf_vocabswap.quickstart

    monkeypatch.setattr(hf_vocabswap.quickstart, "run_quickstart", fake_quickstart)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VOCABSWAP_ADAPTED", raising=False)
    monkeypatch.delenv("VOCABSWAP_SOURCE", raising=False)
    monkeypatch.setenv("VOCABSWAP_QUICKSTART_DIR", str(tmp_path / "qs"))
    assert app.default_models(prepare=True) == ("src", str(tmp_path / "qs"))
    assert calls == [(tmp_path / "qs", "fvt")]
    app.default_models(prepare=True)
    assert len(calls) == 1


def test_space_folder_is_deployable():
    import yaml

    readme = (SPACE / "README.md").read_text(encoding="utf-8")
    assert readme.startswith("---\n")
    meta = yaml.safe_load(readme.split("---\n")[1])
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "python_version",
                "license", "short_description", "models", "tags"):
        assert meta.get(key), key
    assert meta["sdk"] == "gradio" and (SPACE / meta["app_file"]).is_file()
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(meta["sdk_version"]))
    assert len(meta["short_description"]) <= 60
    assert meta["colorFrom"] in {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    app = load_app()
    assert app.HUB_SOURCE in meta["models"] and app.HUB_ADAPTED in meta["models"]
    reqs = [line.split("#")[0].strip() for line in (SPACE / "requirements.txt").read_text().splitlines()]
    assert any(r.startswith("hf-vocabswap") for r in reqs)


# --------------------------------------------------------------------------- in-process server
@pytest.fixture(scope="module")
def server(app, source, adapted):
    demo = app.build_demo(source, adapted)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_server_api(server, app, source, adapted):
    from gradio_client import Client

    client = Client(server, verbose=False)
    src_html, ada_html, table = client.predict(UK_TEXT, source, adapted, False, api_name="/tokenize")
    direct = app.tokenize(UK_TEXT, source, adapted, False)
    assert (src_html, ada_html) == direct[:2]
    assert table["data"] == direct[2] and table["headers"] == app.STATS_HEADERS

    before, after, note = client.predict("Київ — столиця <mask>.", source, adapted, 3, api_name="/fill_mask")
    d_before, d_after, d_note = app.fill_mask("Київ — столиця <mask>.", source, adapted, 3)
    assert before["label"] == next(iter(d_before)) and after["label"] == next(iter(d_after))
    assert [c["label"] for c in after["confidences"]] == list(d_after)
    assert note == d_note

    assert client.predict("столиця", adapted, source, api_name="/explain") == app.explain("столиця", adapted, source)
    status, src = client.predict("", adapted, api_name="/load")
    assert src == source and "Adapted" in status
    status, _ = client.predict("no/such-model", adapted, api_name="/load")
    assert "⚠️" in status
    assert_readable(status)


def test_server_adapt_with_upload_and_progress(server, app, source, tmp_path, monkeypatch):
    from gradio_client import Client, handle_file

    monkeypatch.setenv("VOCABSWAP_WORKDIR", str(tmp_path / "work"))
    corpus = assets.write_texts(assets.ukrainian_texts("train", max_chars=30000), tmp_path / "uk.txt")
    client = Client(server, verbose=False)
    report, folder, src = client.predict(source, app.TRAIN_FROM_TEXT, "", handle_file(str(corpus)), 800, "fvt", api_name="/adapt")
    assert "⚠️" not in report and src == source
    assert Path(folder).parent == tmp_path / "work" and (Path(folder) / PLAN_FILE).is_file()
    _, after, _ = client.predict("Київ — столиця [MASK].", source, folder, 3, api_name="/fill_mask")
    assert len(after["confidences"]) == 3
