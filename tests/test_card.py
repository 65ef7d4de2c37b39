"""Model cards: every method and model kind renders, the YAML parses back, the snippet runs."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
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
    extract_snippet,
    render_folder_card,
    render_model_card,
    template_path,
    with_repo_id,
)
from hf_vocabswap.methods import available_methods, get_method
from hf_vocabswap.transplant import transplant_tokenizer

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
    assert f"`{json.dumps(options, sort_keys=True)}`" in str(card)
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
        ("bpc", 1.234, "me/uk-heldout"), ("accuracy", 0.5, "me/other"),
    ]
    assert "| bpc | 2.5 | 1.234 | me/uk-heldout | test |" in text
    assert "| loss |  | 3.0 |  |  |" in text

    before = TokenizerStats.measure(splade_result.source_tokenizer, ukrainian_heldout[:40])
    after = TokenizerStats.measure(splade_result.tokenizer, ukrainian_heldout[:40])
    assert after.tokens_per_word < before.tokens_per_word  # the Ukrainian tokenizer splits less
    assert f"| source (before) | {before.tokens_per_word:.3f} | {before.characters_per_token:.3f} |" in text
    assert f"| target (after) | {after.tokens_per_word:.3f} | {after.characters_per_token:.3f} |" in text
    # The snippet speaks the target language when held-out text is given.
    assert ukrainian_heldout[0].split()[0] in extract_snippet(text)


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
