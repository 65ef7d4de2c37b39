"""Model cards: every method and model kind renders, the YAML parses back, the snippet runs."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from huggingface_hub import EvalResult, ModelCard
from transformers import AutoTokenizer

from hf_vocabswap import assets
from hf_vocabswap.card import (
    LOCAL_MODEL_ID,
    CardInfo,
    EvalEntry,
    TokenizerStats,
    example_from_texts,
    extract_snippet,
    render_folder_card,
    render_model_card,
    template_path,
    update_card_with_evaluation,
    validate_language,
    with_repo_id,
)
from hf_vocabswap.errors import CardError, NotAnOutputFolderError
from hf_vocabswap.evaluate import evaluate_model
from hf_vocabswap.methods import available_methods, get_method
from hf_vocabswap.transplant import transplant_tokenizer

from .conftest import local_paths_in
from .families import FAMILY_BY_NAME, tokenizer_pair

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def target_tokenizer(splade_path):
    """A 2,000-token WordPiece trained on real Ukrainian with the splade-tiny pipeline."""
    src = AutoTokenizer.from_pretrained(splade_path)
    return src.train_new_from_iterator(assets.ukrainian_texts("train", max_chars=100_000), 2000)


@pytest.fixture(scope="module")
def splade_result(splade_path, target_tokenizer):
    return transplant_tokenizer(str(splade_path), target_tokenizer, "fvt")


def _tiny_source(tmp_path_factory, family_name: str):
    """A saved tiny random model of a family with its source tokenizer, and a target tokenizer."""
    family = FAMILY_BY_NAME[family_name]
    src_tok, tgt_tok = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    model = family.build(len(src_tok), src_tok)
    folder = tmp_path_factory.mktemp(f"src-{family_name}")
    model.save_pretrained(folder)
    src_tok.save_pretrained(folder)
    return folder, tgt_tok


def _run_snippet(card_text: str, folder: Path) -> str:
    code = extract_snippet(card_text)
    assert f'model_id = "{LOCAL_MODEL_ID}"' in code
    code = code.replace(json.dumps(LOCAL_MODEL_ID), json.dumps(str(folder)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<card snippet>", "exec"), {"__name__": "__card__"})  # noqa: S102 - the snippet under test
    return out.getvalue()


# ------------------------------------------------------------------ every model kind


@pytest.mark.parametrize(
    "kind, family, pipeline, auto_class",
    [
        ("masked", None, "fill-mask", "AutoModelForMaskedLM"),
        ("causal", "gpt2", "text-generation", "AutoModelForCausalLM"),
        ("seq2seq", "bart", "text2text-generation", "AutoModelForSeq2SeqLM"),
        ("base", None, "feature-extraction", "AutoModel"),
    ],
)
def test_card_of_every_model_kind_parses_and_its_snippet_runs(kind, family, pipeline, auto_class, tmp_path, tmp_path_factory, splade_path, target_tokenizer):
    if family is None:
        source, target = str(splade_path), target_tokenizer
    else:
        source, target = _tiny_source(tmp_path_factory, family)
    result = transplant_tokenizer(str(source), target, "fvt", task=kind if kind == "base" else None)
    assert result.report.model_kind == kind
    folder = result.save_pretrained(tmp_path / "out")

    text = (folder / "README.md").read_text(encoding="utf-8")
    data = ModelCard(text).data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["pipeline_tag"] == pipeline
    assert {"hf-vocabswap", "tokenizer-transplant", "vocabswap-fvt"} <= set(data["tags"])
    assert "base_model" not in data  # a local folder is no Hub model to point at
    assert f"from transformers import {auto_class}, AutoTokenizer" in text
    assert "has not been trained since its vocabulary was replaced" in text
    assert f"| Seed | {result.report.seed} |" in text
    assert f"| copied | {result.report.counts['copied']} |" in text
    assert "Gee, Leonidas" in text  # FVT's citation
    assert "- hf_vocabswap " in text and "- transformers " in text and "- torch " in text

    output = _run_snippet(text, folder)
    if kind == "base":
        assert "torch.Size([1," in output
    else:
        assert output.strip() or kind != "masked"


# ------------------------------------------------------------------ every method


@pytest.mark.parametrize("method", available_methods())
def test_card_renders_for_every_registered_method(method, splade_result):
    method_cls = get_method(method)
    options = method_cls.config_class().to_dict()
    report = dataclasses.replace(splade_result.report, method=method, options=options)
    card = render_model_card(report=report, config=splade_result.model.config)
    data = ModelCard(str(card)).data.to_dict()
    assert f"vocabswap-{method}" in data["tags"]
    assert f"the `{method}` method" in str(card)
    assert "| Options | the method's defaults |" in str(card) and "| option | value | default |" not in str(card)
    if options:  # a changed option is shown with its default, the others are not
        name = next(iter(options))
        changed = dataclasses.replace(report, options={**options, name: "changed-value"})
        text = str(render_model_card(report=changed, config=splade_result.model.config))
        assert "| Options | 1 changed from the method's defaults (below) |" in text
        assert f"| `{name}` | changed-value | " in text
        assert sum(1 for line in text.splitlines() if line.startswith("| `")) == 1
    if method_cls.citation:
        assert method_cls.citation.strip() in str(card)
        assert "```bibtex" in str(card)
    else:
        assert "## Citation" not in str(card)


def test_every_method_is_covered_by_the_card_matrix():
    # The parametrization reads the registry at collection time, so a new method is covered.
    ids = {m for m in available_methods()}
    assert {"fvt", "random", "mean", "overlap"} <= ids


# ------------------------------------------------------------------ metadata


def _copy_with_readme(splade_path, tmp_path, front_matter: str) -> Path:
    folder = tmp_path / "source"
    shutil.copytree(splade_path, folder)
    (folder / "README.md").write_text(f"---\n{front_matter}---\n\n# a source model\n", encoding="utf-8")
    return folder


def test_license_is_inherited_from_the_source_card_and_user_info_overrides_it(splade_path, target_tokenizer, tmp_path):
    source = _copy_with_readme(splade_path, tmp_path, "license: mit\nlanguage: en\n")
    result = transplant_tokenizer(str(source), target_tokenizer, "fvt")
    data = ModelCard(str(render_model_card(result))).data.to_dict()
    assert data["license"] == "mit"
    assert "language" not in data  # the source's language is not the target's
    assert "(inherited from the source)" in str(render_model_card(result))

    info = CardInfo(language="uk", license="apache-2.0", datasets=["me/uk-corpus"], tags=["ukrainian"])
    text = str(render_model_card(result, info))
    data = ModelCard(text).data.to_dict()
    assert data["license"] == "apache-2.0" and data["language"] == "uk"
    assert data["datasets"] == ["me/uk-corpus"]
    assert "ukrainian" in data["tags"]
    assert "(inherited from the source)" not in text


def test_other_license_fields_are_inherited_together(splade_path, target_tokenizer, tmp_path):
    source = _copy_with_readme(splade_path, tmp_path, "license: other\nlicense_name: gemma\nlicense_link: https://ai.google.dev/gemma/terms\n")
    result = transplant_tokenizer(str(source), target_tokenizer, "fvt")
    data = ModelCard(str(render_model_card(result))).data.to_dict()
    assert (data["license"], data["license_name"], data["license_link"]) == ("other", "gemma", "https://ai.google.dev/gemma/terms")


def test_hub_source_gives_base_model_and_hub_corpus_gives_datasets(splade_result):
    report = dataclasses.replace(
        splade_result.report,
        provenance={**splade_result.report.provenance, "source": "google-bert/bert-base-uncased", "corpus": "dataset:me/uk-web"},
    )
    card = render_model_card(report=report, config=splade_result.model.config, info=CardInfo(datasets=["me/uk-web", "me/more"]))
    data = ModelCard(str(card)).data.to_dict()
    assert data["base_model"] == "google-bert/bert-base-uncased"
    assert data["base_model_relation"] == "finetune"
    assert data["datasets"] == ["me/uk-web", "me/more"]
    assert "(https://huggingface.co/google-bert/bert-base-uncased)" in str(card)


def test_snapshot_folder_of_a_hub_model_is_named_by_its_repo(splade_result):
    source = "/home/me/.cache/huggingface/hub/models--FacebookAI--xlm-roberta-base/snapshots/" + "a" * 40
    report = dataclasses.replace(splade_result.report, provenance={**splade_result.report.provenance, "source": source})
    data = ModelCard(str(render_model_card(report=report))).data.to_dict()
    assert data["base_model"] == "FacebookAI/xlm-roberta-base"


def test_tokenizer_statistics_and_eval_results(splade_result, ukrainian_heldout):
    info = CardInfo(
        language="uk",
        heldout_texts=ukrainian_heldout[:40],
        eval_results=[
            EvalEntry("bpc", 1.234, dataset="me/uk-heldout", split="test", source_value=2.5),
            EvalEntry("loss", 3.0),
            EvalResult(task_type="fill-mask", dataset_type="me/other", dataset_name="other", metric_type="accuracy", metric_value=0.5),
        ],
    )
    text = str(render_model_card(splade_result, info))
    card = ModelCard(text)
    assert card.data.model_name == "model-vocabswap-fvt"
    assert [(r.metric_type, r.metric_value, r.dataset_type) for r in card.data.eval_results] == [
        ("bpc", 1.234, "me/uk-heldout"), ("source_bpc", 2.5, "me/uk-heldout"), ("accuracy", 0.5, "me/other"),
    ]
    assert "| bpc | 2.5 | 1.234 | me/uk-heldout | test |" in text
    assert "| loss |  | 3.0 |  |  |" in text

    before = TokenizerStats.measure(splade_result.source_tokenizer, ukrainian_heldout[:40])
    after = TokenizerStats.measure(splade_result.tokenizer, ukrainian_heldout[:40])
    assert after.tokens_per_word < before.tokens_per_word  # the Ukrainian tokenizer splits less
    assert f"| source (before) | {before.tokens_per_word:.3f} | {before.characters_per_token:.3f} |" in text
    assert f"| target (after) | {after.tokens_per_word:.3f} | {after.characters_per_token:.3f} |" in text
    # The snippet speaks the target language when held-out text is given: a sentence of it, one word masked.
    sentence = example_from_texts(ukrainian_heldout[:40])
    words = sentence.split()
    snippet = extract_snippet(text)
    assert all(json.dumps(w, ensure_ascii=False)[1:-1] in snippet for w in words)  # the masked word is in the comment


def test_precomputed_stats_from_evaluate_and_trained_models(splade_result):
    stats = {"num_texts": 2, "num_words": 10, "num_characters": 60, "num_tokens": 20, "num_unknown": 1, "continued_words": 0.5}
    info = CardInfo(tokenizer_stats={"target": stats}, continued_pretraining="1 epoch of LAPT on 10M characters.")
    text = str(render_model_card(splade_result, info))
    assert "| target (after) | 2.000 | 3.000 | 50.0% | 5.00% | 20 | 10 | 60 |" in text
    assert "has not been trained" not in text
    assert "1 epoch of LAPT on 10M characters." in text


def test_card_from_the_folder_alone_matches_the_saved_one(splade_result, tmp_path):
    folder = splade_result.save_pretrained(tmp_path / "out")
    saved = ModelCard((folder / "README.md").read_text(encoding="utf-8")).data.to_dict()
    rebuilt = render_folder_card(folder, repo_id="me/uk-model")
    assert rebuilt.data.to_dict() == saved
    assert 'model_id = "me/uk-model"\n' in str(rebuilt)


def test_card_info_set_on_the_result_is_used_by_save_pretrained(splade_path, target_tokenizer, tmp_path):
    result = transplant_tokenizer(str(splade_path), target_tokenizer, "fvt")
    result.card_info = CardInfo(language=["uk", "en"], model_name="splade-uk")
    folder = result.save_pretrained(tmp_path / "out")
    card = ModelCard((folder / "README.md").read_text(encoding="utf-8"))
    assert card.data.language == ["uk", "en"]
    assert card.text.lstrip().startswith("# splade-uk")


def test_with_repo_id_points_the_snippet_at_the_repo(splade_result):
    text = str(render_model_card(splade_result))
    pushed = with_repo_id(text, "me/uk-model")
    assert LOCAL_MODEL_ID not in pushed
    assert 'model_id = "me/uk-model"\n' in extract_snippet(pushed)


# ------------------------------------------------------------------ packaging


def test_template_is_found():
    assert template_path().read_text(encoding="utf-8").startswith("---\n{{ card_data }}\n---")
    with pytest.raises(FileNotFoundError, match="no-such-template"):
        template_path("no-such-template")


@pytest.mark.slow
def test_templates_ship_in_the_wheel(tmp_path):
    """A non-editable install finds the templates: they are package data of the wheel."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (REPO_ROOT / name).is_file():
            shutil.copy(REPO_ROOT / name, tree / name)
    (tree / "README.md").touch()
    shutil.copytree(REPO_ROOT / "model_cards", tree / "model_cards")
    shutil.copytree(REPO_ROOT / "hf_vocabswap", tree / "hf_vocabswap", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(tree)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        assert "hf_vocabswap/model_cards/default.md" in zf.namelist()
        zf.extractall(tmp_path / "site")
    code = "import hf_vocabswap.card as c; print(c.template_path())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
                         check=True, capture_output=True, text=True, timeout=120)
    assert Path(out.stdout.strip()) == tmp_path / "site" / "hf_vocabswap" / "model_cards" / "default.md"


def _write_gguf(path: Path, kvs: list[tuple[str, int, object]]) -> Path:
    """A minimal GGUF v3 header: (key, type, value) with types 8 (string), 4 (uint32), 9 (array of strings)."""
    import struct

    def s(text):
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    for key, kind, value in kvs:
        out += s(key) + struct.pack("<I", kind)
        if kind == 8:
            out += s(value)
        elif kind == 4:
            out += struct.pack("<I", value)
        elif kind == 9:
            out += struct.pack("<IQ", 8, len(value)) + b"".join(s(v) for v in value)
    path.write_bytes(out)
    return path


def test_license_of_a_gguf_source_is_read_from_its_header(tmp_path):
    from hf_vocabswap.card import source_license

    path = _write_gguf(tmp_path / "m.gguf", [
        ("general.architecture", 8, "gemma3"), ("general.alignment", 4, 32),
        ("general.tags", 9, ["a", "bb"]), ("general.license", 8, "gemma"),
    ])
    assert source_license(str(path)) == {"license": "gemma"}
    assert source_license(str(_write_gguf(tmp_path / "n.gguf", [("general.name", 8, "x")]))) == {}


def test_a_tokenizer_trained_in_memory_is_not_named_after_the_source(splade_result):
    # train_new_from_iterator keeps the source tokenizer's name_or_path.
    text = str(render_model_card(splade_result))
    source = splade_result.report.provenance["source"]
    assert f"| Target tokenizer | `{source}`" not in text
    assert "| Target tokenizer | a tokenizer object (saved in this folder), 2000 tokens" in text


# ------------------------------------------------------------------ what the Hub shows


def test_local_inputs_are_named_by_name_and_hash_never_by_path(splade_path, target_tokenizer, tmp_path):
    """A local source folder, target tokenizer folder and corpus file (absolute paths), and FOCUS,
    whose statistics name its fastText file: the card names each by its name and a sha256."""
    source = tmp_path / "deep" / "inside" / "splade-tiny"
    shutil.copytree(splade_path, source)
    target_tokenizer.save_pretrained(tmp_path / "tokenizers" / "uk-2k")
    corpus = assets.write_texts(assets.ukrainian_texts("train", max_chars=100_000), tmp_path / "texts" / "uk_train.txt")
    result = transplant_tokenizer(str(source), str(tmp_path / "tokenizers" / "uk-2k"), "focus", corpus=str(corpus),
                                  cache_dir=str(tmp_path / "fasttext-cache"), progress=False)
    folder = result.save_pretrained(tmp_path / "out")
    text = (folder / "README.md").read_text(encoding="utf-8")
    record = json.loads((folder / "vocabswap.json").read_text(encoding="utf-8"))
    assert record["provenance"]["source"] == str(source)  # the record keeps the full path
    assert local_paths_in(text) == [] and str(tmp_path) not in text
    prov = result.report.provenance
    assert f"| Source model | `splade-tiny` (a local folder; weights sha256 `{prov['source_sha256'][:16]}…`) |" in text
    assert f"| Target tokenizer | `uk-2k` (a local folder), 2000 tokens (tokenizer.json sha256 `{prov['target_tokenizer_sha256'][:16]}…`) |" in text
    assert f"| Corpus | `uk_train.txt` (content sha256 `{prov['corpus_sha256'][:16]}…`) |" in text
    assert "huggingface.co/uk-2k" not in text  # a local folder is no Hub repo
    fasttext_file = Path(result.report.method_stats["fasttext_model"]).name
    assert f"| fasttext_model | {fasttext_file} |" in text
    assert ModelCard(text).data.to_dict().get("base_model") is None
    assert "# splade-tiny-vocabswap-focus" in text


def test_gguf_and_object_sources(splade_result):
    for source, expected in (
        ("/models/gemma/gemma-3-270m-q4_k_m.gguf", "| Source model | `gemma-3-270m-q4_k_m.gguf` (a local GGUF file; file sha256 `abcdef0123456789…`) |"),
        ("<BertForMaskedLM>", "| Source model | `<BertForMaskedLM>` |"),
        ("C:\\Users\\me\\models\\bert", "| Source model | `bert` (a local folder; weights sha256 `abcdef0123456789…`) |"),
    ):
        provenance = {**splade_result.report.provenance, "source": source, "source_sha256": "abcdef0123456789" * 4}
        if source.startswith("<"):
            provenance.pop("source_sha256")
        report = dataclasses.replace(splade_result.report, provenance=provenance)
        text = str(render_model_card(report=report, config=splade_result.model.config))
        assert expected in text, text
        assert local_paths_in(text) == [] and "/models/gemma" not in text and "Users" not in text


def test_method_statistics_are_a_flat_table(splade_result):
    stats = {"anchors": 1234, "share": 0.123456, "focus": {"mode": "default", "fasttext_model": "/home/me/.cache/x/tokens-ab.bin",
             "inner": {"deep": True}}, "calibration": {"calibrated": 10, "mode": "bias", "mass_before": 0.8, "mass_after": 0.7, "corpus_share": 0.7,
             "history": [{"round": 0}]}, "ids": [1, 2, 3]}
    report = dataclasses.replace(splade_result.report, method_stats=stats)
    text = str(render_model_card(report=report))
    for row in ("| anchors | 1,234 |", "| share | 0.1235 |", "| focus.mode | default |", "| focus.fasttext_model | tokens-ab.bin |",
                "| focus.inner.deep | yes |", "| calibration.calibrated | 10 |", "| ids | 1, 2, 3 |"):
        assert row in text, row
    assert "history" not in text and "/home/me" not in text
    assert "<summary>What the method reported (11 statistics)</summary>" in text


def test_language_from_transplant_and_bad_codes_fail_before_loading(splade_path, target_tokenizer, monkeypatch, tmp_path):
    result = transplant_tokenizer(str(splade_path), target_tokenizer, "fvt", language="UK")
    assert result.report.language == "uk"
    folder = result.save_pretrained(tmp_path / "out")
    assert ModelCard((folder / "README.md").read_text(encoding="utf-8")).data.language == "uk"
    assert json.loads((folder / "vocabswap.json").read_text())["language"] == "uk"
    assert validate_language(["uk", "ukr", "en"]) == ["uk", "ukr", "en"] and validate_language("uk, en") == ["uk", "en"]
    assert validate_language("multilingual") == "multilingual"

    monkeypatch.setattr("hf_vocabswap.transplant.open_source", lambda *a, **k: pytest.fail("the language is checked first"))
    for bad, hint in (("Ukrainian", "not an ISO 639 language code"), ("uk-UA", "Did you mean 'uk'"), ("xx", "two- or three-letter"), ("", "empty")):
        with pytest.raises(CardError, match=hint) as info:
            transplant_tokenizer(str(splade_path), target_tokenizer, "fvt", language=bad)
        assert isinstance(info.value, ValueError)
    with pytest.raises(CardError, match="'zz' is not an ISO 639"):
        render_model_card(result, CardInfo(language="zz"))


def test_masked_example_masks_a_word_of_the_corpus_and_runs(splade_path, target_tokenizer, tmp_path):
    texts = assets.ukrainian_texts("train", max_chars=20_000)
    result = transplant_tokenizer(str(splade_path), target_tokenizer, "fvt", corpus=texts)
    sentence = example_from_texts(texts)
    assert result.report.example_text == sentence and len(sentence.split()) >= 5
    folder = result.save_pretrained(tmp_path / "out")
    text = (folder / "README.md").read_text(encoding="utf-8")
    snippet = extract_snippet(text)
    assert "tokenizer.mask_token + " in snippet  # the mask is inside the sentence, not appended
    printed = _run_snippet(text, folder).splitlines()
    words, shown = sentence.split(), printed[0].split()
    assert len(shown) == len(words) and sum(a != b for a, b in zip(shown, words)) == 1 and "[MASK]" in shown
    masked_word = words[shown.index("[MASK]")]
    assert f"# the word there was {json.dumps(masked_word, ensure_ascii=False)}" in snippet
    predictions = eval(printed[1])  # noqa: S307 - the list the snippet printed
    assert len(predictions) == 5 and all(isinstance(p, str) for p in predictions)


def test_example_without_corpus_comes_from_the_target_vocabulary(splade_result, target_tokenizer):
    assert splade_result.report.example_text is None
    snippet = extract_snippet(str(render_model_card(splade_result)))
    literal = snippet.split("text = ", 1)[1].split("\n", 1)[0].split("  # ", 1)[0]
    words = [w for part in literal.split("tokenizer.mask_token") for w in re.findall(r"\w+", part)]
    vocab = target_tokenizer.get_vocab()
    assert len(words) >= 4 and all(w in vocab for w in words)
    assert all(re.search("[а-яіїєґ]", w) for w in words)  # Ukrainian words, not "Hello, world!"


def test_eval_results_round_trip_through_model_card(splade_result, tmp_path, ukrainian_heldout):
    folder = splade_result.save_pretrained(tmp_path / "out")
    heldout = assets.write_texts(ukrainian_heldout[:20], tmp_path / "texts" / "uk_heldout.txt")
    after = evaluate_model(folder, str(heldout), progress=False)
    before = evaluate_model(str(splade_result.report.provenance["source"]), str(heldout), progress=False)
    path = update_card_with_evaluation(folder, after, before, dataset_sha256="f" * 64)
    text = path.read_text(encoding="utf-8")
    card = ModelCard(text)
    got = {(r.metric_type, r.dataset_type, r.dataset_revision): r.metric_value for r in card.data.eval_results}
    assert got == {
        ("bpc", "uk_heldout.txt", "f" * 64): round(after["bits_per_character"], 4),
        ("tokens_per_word", "uk_heldout.txt", "f" * 64): round(after["tokenizer"]["tokens_per_word"], 4),
        ("source_bpc", "uk_heldout.txt", "f" * 64): round(before["bits_per_character"], 4),
        ("source_tokens_per_word", "uk_heldout.txt", "f" * 64): round(before["tokenizer"]["tokens_per_word"], 4),
    }
    assert card.data.model_name == "model-vocabswap-fvt" and all(r.task_type == "fill-mask" for r in card.data.eval_results)
    assert f"| bpc | {round(before['bits_per_character'], 4)} | {round(after['bits_per_character'], 4)} | uk_heldout.txt |  |" in text
    assert text.index("## Evaluation") < text.index("## Usage") and local_paths_in(text) == []
    # Measuring again on the same text replaces those entries; other results stay.
    card.data.eval_results.append(EvalResult(task_type="fill-mask", dataset_type="me/other", dataset_name="other",
                                             metric_type="accuracy", metric_value=0.5))
    path.write_text(str(card), encoding="utf-8")
    update_card_with_evaluation(folder, {**after, "bits_per_character": 1.5})
    card = ModelCard(path.read_text(encoding="utf-8"))
    assert sorted((r.metric_type, r.metric_value) for r in card.data.eval_results) == sorted([
        ("bpc", 1.5), ("tokens_per_word", round(after["tokenizer"]["tokens_per_word"], 4)), ("accuracy", 0.5)])
    assert card.text.count("## Evaluation") == 1 and "| accuracy |  | 0.5 | other |  |" in card.text
    assert "has not been trained since its vocabulary was replaced" in card.text  # the rest of the card is kept


def test_update_card_errors(splade_result, tmp_path):
    folder = splade_result.save_pretrained(tmp_path / "out")
    with pytest.raises(CardError, match="no finite bits_per_character"):
        update_card_with_evaluation(folder, {"bits_per_character": float("nan")})
    (folder / "README.md").unlink()
    with pytest.raises(NotAnOutputFolderError, match="has no model card README.md to update"):
        update_card_with_evaluation(folder, {"bits_per_character": 1.0})
    with pytest.raises(NotAnOutputFolderError, match="no vocabswap.json"):
        update_card_with_evaluation(tmp_path, {"bits_per_character": 1.0})


def test_a_record_written_before_the_card_fields_still_loads_and_renders(splade_result, tmp_path):
    folder = splade_result.save_pretrained(tmp_path / "out")
    record = json.loads((folder / "vocabswap.json").read_text(encoding="utf-8"))
    for key in ("language", "datasets", "example_text"):
        record.pop(key)
    record["a_key_from_a_newer_version"] = 1
    (folder / "vocabswap.json").write_text(json.dumps(record), encoding="utf-8")
    card = render_folder_card(folder)
    assert card.data.language is None and card.data.datasets is None
    assert "tokenizer.mask_token" in extract_snippet(str(card)) and "Hello, world!" not in str(card)


def test_the_local_path_check_finds_paths_and_not_urls():
    assert local_paths_in("`/home/me/models/bert` and C:\\Users\\me\\bert") == ["/home/me/models/bert", "C:\\Users\\me\\bert"]
    assert local_paths_in("[`a/b`](https://huggingface.co/a/b), bits/char, *random* / *mean*, path/to/this/folder") == []
