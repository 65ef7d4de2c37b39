"""Corpora given by Hub dataset id (``dataset:NAME[:CONFIG][@SPLIT]``), streamed with ``datasets``
from the local Hub stand-in (tests/hub_server.py), after ``Dataset.push_to_hub`` put them there.

Everything that talks to the server runs in a child Python whose ``HF_ENDPOINT`` points at it
(huggingface_hub reads it at import); the parsing of ids runs in-process.
"""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from hf_vocabswap import assets
from hf_vocabswap.corpus import Corpus, HubDatasetSpec
from hf_vocabswap.errors import CorpusError

from .conftest import local_paths_in
from .hub_server import HubServer, hub_env
from .test_hub import _run_child

TOKEN = "hf_DATASETtoken0123456789SECRET"

PUSH_AND_STREAM = """
import datasets
from transformers import AutoTokenizer
from hf_vocabswap import assets
from hf_vocabswap.cli import main
from hf_vocabswap.corpus import Corpus
from hf_vocabswap.errors import CorpusError

texts = assets.ukrainian_texts("train", max_chars=30_000)
datasets.Dataset.from_dict({"content": texts, "id": list(range(len(texts)))}).push_to_hub("user/uk-essays")
datasets.Dataset.from_dict({"content": texts[:5], "id": list(range(5))}).push_to_hub("user/uk-essays", config_name="tiny", split="test")
out = {}

corpus = Corpus("dataset:user/uk-essays", text_column="content")
out["description"] = corpus.description
out["streamed"] = list(corpus) == texts
out["twice"] = list(corpus) == list(corpus)
out["hash"] = corpus.content_hash() == Corpus(texts).content_hash()
out["max_chars"] = [len(t) for t in Corpus("dataset:user/uk-essays", text_column="content", max_chars=2000)]
out["tiny"] = list(Corpus("dataset:user/uk-essays:tiny@test", text_column="content")) == texts[:5]
for name, spec in (("no_column", "dataset:user/uk-essays"), ("missing", "dataset:user/no-such-dataset"), ("bad_split", "dataset:user/uk-essays@nope")):
    try:
        Corpus(spec)
        out[name] = None
    except CorpusError as e:
        out[name] = str(e)

source = str(assets.splade_tiny_path())
target = AutoTokenizer.from_pretrained(source).train_new_from_iterator(texts, 1500)
target.save_pretrained(TMP + "/uk-tok")
out["cli"] = main(["-q", "transplant", source, TMP + "/uk-tok", "--method", "fvt", "--calibrate", "--corpus", "dataset:user/uk-essays",
                   "--text-column", "content", "--corpus-max-chars", "20000", "--language", "uk", "--out", TMP + "/out"])
out["cli_no_column"] = main(["-q", "transplant", source, TMP + "/uk-tok", "--corpus", "dataset:user/uk-essays", "--out", TMP + "/out2"])
print("RESULT " + json.dumps(out))
"""


def test_hub_dataset_corpus_is_streamed_hashed_and_named_on_the_card(tmp_path):
    with HubServer(tokens={TOKEN: "user"}) as hub:
        code = PUSH_AND_STREAM.replace("TMP", repr(str(tmp_path)))
        out, output = _run_child(code, hub_env(hub, tmp_path, token=TOKEN), timeout=600)
        repo = hub.repos["datasets/user/uk-essays"]
        streamed = [r for r in hub.requests if r.path.startswith("/datasets/user/uk-essays/resolve/") and r.path.endswith(".parquet")]
    assert any(p.startswith("data/train-") and p.endswith(".parquet") for p in repo.files)  # pushed by datasets itself
    assert streamed and all(r.status in (200, 206) for r in streamed)
    assert out["description"] == "dataset:user/uk-essays@train"
    assert out["streamed"] and out["twice"] and out["hash"] and out["tiny"]
    texts = assets.ukrainian_texts("train", max_chars=30_000)
    lengths, total = out["max_chars"], 0
    for n in lengths[:-1]:
        total += n
        assert total < 2000
    assert total + lengths[-1] >= 2000 and lengths == [len(t) for t in texts[: len(lengths)]]
    # A dataset without the text column: the error lists the columns it has.
    assert "has no 'text' column; its columns are: content, id" in out["no_column"] and "--text-column" in out["no_column"]
    assert "Cannot open the Hub dataset 'dataset:user/no-such-dataset@train'" in out["missing"]
    assert "Cannot open the Hub dataset 'dataset:user/uk-essays@nope'" in out["bad_split"]

    assert out["cli"] == 0 and out["cli_no_column"] == 2
    record = json.loads((tmp_path / "out" / "vocabswap.json").read_text(encoding="utf-8"))
    assert record["provenance"]["corpus"] == "dataset:user/uk-essays@train"
    assert record["provenance"]["corpus_sha256"] == Corpus(texts, max_chars=20_000).content_hash()
    assert record["datasets"] == ["user/uk-essays"] and record["language"] == "uk"
    assert record["method_stats"]["calibration"]["calibrated"] > 0  # calibration read the streamed text
    text = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    card = ModelCard(text)
    assert card.data.datasets == ["user/uk-essays"] and card.data.language == "uk"
    assert "Hub dataset [`user/uk-essays`](https://huggingface.co/datasets/user/uk-essays), split `train`" in text
    assert local_paths_in(text) == []
    assert not (tmp_path / "out2").exists()


@pytest.mark.parametrize("text, expected", [
    ("dataset:me/uk-web", ("me/uk-web", None, "train")),
    ("dataset:wikimedia/wikipedia:20231101.uk@train", ("wikimedia/wikipedia", "20231101.uk", "train")),
    ("dataset:squad@validation", ("squad", None, "validation")),
    ("uk.txt", None),
])
def test_dataset_ids_parse(text, expected):
    spec = HubDatasetSpec.parse(text)
    assert (None if spec is None else (spec.name, spec.config, spec.split)) == expected


def test_bad_dataset_ids_and_missing_datasets_package(monkeypatch):
    for bad in ("dataset:", "dataset:has space", "dataset:a/b/c", "dataset:x@a@b"):
        with pytest.raises(CorpusError, match="NAME\\[:CONFIG\\]\\[@SPLIT\\]"):
            Corpus(bad)
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(CorpusError, match=r"pip install 'hf-vocabswap\[datasets\]'"):
        Corpus("dataset:me/uk-web")


def test_max_chars_on_files_and_lists(tmp_path):
    texts = ["a" * 10, "b" * 10, "c" * 10]
    assert list(Corpus(texts, max_chars=15)) == texts[:2]
    path = assets.write_texts(texts, tmp_path / "t.txt")
    assert list(Corpus(str(path), max_chars=10)) == texts[:1]
    assert Corpus(texts, max_chars=15).content_hash() == Corpus(texts[:2]).content_hash()
    with pytest.raises(CorpusError, match="max_chars must be at least 1"):
        Corpus(texts, max_chars=0)
