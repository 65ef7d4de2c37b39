"""The streaming path (checkpoints larger than memory) against the in-memory path.

A ~250M-parameter Llama-style checkpoint (bf16, 32,000-token SentencePiece-BPE source
vocabulary, written in shards by ``save_pretrained``) is transplanted both ways: the tensors
must be equal bit for bit by name, the output must load with stock ``AutoModelForCausalLM``,
and a subprocess that runs only the streaming transplant must stay within

    peak RSS(streaming run) - peak RSS(imports only)
        <= 2 x (bytes of the input embedding + bytes of the untied head + bytes of the largest shard)

with peak RSS read from ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in a wrapper process whose
only child is the measured one. "Imports only" is a child that imports the package and the
library code every run loads (``BASELINE_IMPORTS``: hf_vocabswap imports transformers lazily,
and its Auto classes, tokenizer and model modules alone are ~150 MiB of RSS). Tiny models of other families cover biases, ties,
seq2seq, padding rows and the RoBERTa position shift.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open

from hf_vocabswap import assets
from hf_vocabswap.errors import ModelError, OutputExistsError
from hf_vocabswap.streaming import INDEX_NAME, SafetensorsCheckpoint, StreamingTransplantResult, wants_streaming
from hf_vocabswap.transplant import transplant_tokenizer

from . import families
from .families import FAMILIES, build_tokenizer, randomize_biases, tokenizer_pair

REPO = Path(__file__).resolve().parent.parent

transformers.utils.logging.disable_progress_bar()


# ----------------------------------------------------------------------------- helpers


def tensors_by_name(folder) -> dict[str, torch.Tensor]:
    out = {}
    for path in sorted(Path(folder).glob("model*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                assert key not in out, f"{key} is in two shards"
                out[key] = f.get_tensor(key)
    return out


def assert_same_tensors(a_folder, b_folder) -> int:
    """Same names, dtypes, shapes and bytes; returns the number of tensors."""
    a, b = tensors_by_name(a_folder), tensors_by_name(b_folder)
    assert sorted(a) == sorted(b)
    for name in a:
        x, y = a[name], b[name]
        assert (x.dtype, x.shape) == (y.dtype, y.shape), name
        assert torch.equal(x.reshape(-1).view(torch.uint8), y.reshape(-1).view(torch.uint8)), f"{name} differs"
    return len(a)


def assert_same_files(a_folder, b_folder, *, skip=()) -> None:
    """Everything but the weights is the same file (the record up to its timing)."""
    a_folder, b_folder = Path(a_folder), Path(b_folder)
    names = {p.name for p in a_folder.iterdir() if not p.name.startswith("model")}
    assert names == {p.name for p in b_folder.iterdir() if not p.name.startswith("model")}
    for name in sorted(names - set(skip)):
        if name == "vocabswap.json":
            ra, rb = (json.loads((f / name).read_text()) for f in (a_folder, b_folder))
            ra.pop("seconds"), rb.pop("seconds")
            assert ra == rb
        else:
            assert (a_folder / name).read_bytes() == (b_folder / name).read_bytes(), name


def both_ways(source, target, tmp_path, method="fvt", **kwargs):
    """(in-memory result, its folder, streaming result, its folder)."""
    memory = transplant_tokenizer(str(source), target, method, low_memory=False, **kwargs)
    memory_dir = memory.save_pretrained(tmp_path / "memory")
    streamed = transplant_tokenizer(str(source), target, method, low_memory=True, **kwargs)
    assert isinstance(streamed, StreamingTransplantResult)
    streamed_dir = streamed.save_pretrained(tmp_path / "streamed")
    return memory, memory_dir, streamed, streamed_dir


def save_sharded(model, tokenizer, folder, max_shard_size) -> Path:
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(folder)
    return Path(folder)


# ----------------------------------------------------------------------------- tiny models


TINY = ["llama", "gpt2", "roberta", "bert", "bart", "t5", "mt5", "gemma3", "qwen2"]


@pytest.mark.parametrize("name", TINY)
def test_tiny_families_equal_in_memory(name, tmp_path):
    family = next(f for f in FAMILIES if f.name == name)
    src_tok, tgt_tok = tokenizer_pair(family.tokenizer)
    torch.manual_seed(0)
    model = family.build(len(src_tok), src_tok)
    randomize_biases(model)
    source = save_sharded(model, src_tok, tmp_path / "source", "40KB")
    assert wants_streaming(source) and wants_streaming(str(source))
    memory, memory_dir, streamed, streamed_dir = both_ways(source, tgt_tok, tmp_path)
    assert streamed.report.counts == memory.report.counts
    assert streamed.report.surgery == memory.report.surgery
    assert streamed.report.provenance == memory.report.provenance
    assert_same_tensors(memory_dir, streamed_dir)
    assert_same_files(memory_dir, streamed_dir)
    index = json.loads((streamed_dir / INDEX_NAME).read_text())
    on_disk = {k: v for k, v in tensors_by_name(streamed_dir).items()}
    assert set(index["weight_map"]) == set(on_disk)
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in on_disk.values())
    reloaded = getattr(transformers, family.auto_class).from_pretrained(streamed_dir)
    assert reloaded.get_input_embeddings().weight.shape[0] == len(tgt_tok)


def test_padding_rows_and_single_file(tmp_path):
    src_tok, tgt_tok = tokenizer_pair("llama_spbpe")
    family = next(f for f in FAMILIES if f.name == "llama")
    torch.manual_seed(0)
    source = tmp_path / "source"
    family.build(len(src_tok), src_tok).save_pretrained(source)  # one model.safetensors
    src_tok.save_pretrained(source)
    assert not wants_streaming(source)  # a single file streams only on request
    assert not isinstance(transplant_tokenizer(str(source), tgt_tok, "fvt"), StreamingTransplantResult)
    _, memory_dir, streamed, streamed_dir = both_ways(source, tgt_tok, tmp_path, pad_to_multiple_of=64)
    assert streamed.report.surgery["rows"] % 64 == 0 and streamed.report.surgery["padding_rows"] > 0
    assert not (streamed_dir / INDEX_NAME).exists() and (streamed_dir / "model.safetensors").is_file()
    assert_same_tensors(memory_dir, streamed_dir)
    assert_same_files(memory_dir, streamed_dir)


def test_roberta_position_table_shifts_when_pad_moves(tmp_path):
    # A target whose <pad> sits at id 3 instead of 1: surgery shifts the position table.
    specials, roles, post = families.SPECIALS["roberta_bpe"]
    families.SPECIALS.setdefault("roberta_pad3_bpe", (["<s>", "</s>", "<unk>", "<pad>", "<mask>"], roles, post))
    src_tok, _ = tokenizer_pair("roberta_bpe")
    tgt_tok = build_tokenizer("roberta_pad3_bpe", assets.ukrainian_texts("train", max_chars=60_000), 1500)
    assert tgt_tok.pad_token_id == 3 and src_tok.pad_token_id == 1
    family = next(f for f in FAMILIES if f.name == "roberta")
    torch.manual_seed(0)
    source = save_sharded(family.build(len(src_tok), src_tok), src_tok, tmp_path / "source", "40KB")
    memory, memory_dir, streamed, streamed_dir = both_ways(source, tgt_tok, tmp_path)
    assert streamed.report.surgery["position_table_shifted"] is True
    assert_same_tensors(memory_dir, streamed_dir)
    assert_same_files(memory_dir, streamed_dir)


def test_choice_of_path_and_errors(tmp_path):
    src_tok, tgt_tok = tokenizer_pair("llama_spbpe")
    family = next(f for f in FAMILIES if f.name == "llama")
    model = family.build(len(src_tok), src_tok)
    assert not wants_streaming(model) and not wants_streaming(tmp_path / "nothing") and not wants_streaming("x.gguf")
    with pytest.raises(ModelError, match="low_memory=False"):
        transplant_tokenizer(model, tgt_tok, "fvt", source_tokenizer=src_tok, low_memory=True)
    # An object is never streamed by default.
    assert not isinstance(transplant_tokenizer(model, tgt_tok, "fvt", source_tokenizer=src_tok), StreamingTransplantResult)
    source = save_sharded(model, src_tok, tmp_path / "source", "40KB")
    result = transplant_tokenizer(str(source), tgt_tok, "fvt")
    assert isinstance(result, StreamingTransplantResult)
    # Only the vocabulary tensors were loaded; the rest of the model stays on the meta device.
    real = {n for n, p in result.model.named_parameters() if p.device.type != "meta"}
    assert real == {"model.embed_tokens.weight", "lm_head.weight"}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputExistsError):
        result.save_pretrained(out)
    assert list(out.iterdir()) == []
    memory = transplant_tokenizer(str(source), tgt_tok, "fvt", low_memory=False)
    combined = int(result.plan.ids_of(1)[0])
    assert " x " in result.explain(combined) and result.explain(combined) == memory.explain(combined)


def test_cli_low_memory(tmp_path, capsys):
    from hf_vocabswap.cli import main

    src_tok, tgt_tok = tokenizer_pair("llama_spbpe")
    family = next(f for f in FAMILIES if f.name == "llama")
    torch.manual_seed(0)
    source = tmp_path / "source"
    family.build(len(src_tok), src_tok).save_pretrained(source)
    src_tok.save_pretrained(source)
    tgt_tok.save_pretrained(tmp_path / "target")
    args = ["-q", "transplant", str(source), str(tmp_path / "target"), "--method", "fvt"]
    assert main(args + ["--out", str(tmp_path / "a"), "--low-memory"]) == 0
    assert main(args + ["--out", str(tmp_path / "b"), "--no-low-memory"]) == 0
    assert_same_tensors(tmp_path / "a", tmp_path / "b")
    assert_same_files(tmp_path / "a", tmp_path / "b")


HUB_ROUND_TRIP = """
import json, sys
from huggingface_hub import HfApi
from hf_vocabswap.streaming import StreamingTransplantResult
from hf_vocabswap.transplant import transplant_tokenizer

source, target, out = sys.argv[1:4]
HfApi().create_repo("user/sharded")
HfApi().upload_folder(folder_path=source, repo_id="user/sharded")
streamed = transplant_tokenizer("user/sharded", target, "fvt")
streamed.save_pretrained(out + "/streamed")
memory = transplant_tokenizer("user/sharded", target, "fvt", low_memory=False)
memory.save_pretrained(out + "/memory")
print("RESULT " + json.dumps({"streamed": isinstance(streamed, StreamingTransplantResult),
                              "memory": isinstance(memory, StreamingTransplantResult),
                              "provenance": [streamed.report.provenance, memory.report.provenance]}))
"""


def test_hub_id_streams_only_listed_shards(tmp_path):
    from .hub_server import HubServer, hub_env

    src_tok, tgt_tok = tokenizer_pair("llama_spbpe")
    family = next(f for f in FAMILIES if f.name == "llama")
    torch.manual_seed(0)
    source = save_sharded(family.build(len(src_tok), src_tok), src_tok, tmp_path / "source", "40KB")
    (source / "consolidated.safetensors").write_bytes(b"not downloaded")  # another copy some repos hold
    tgt_tok.save_pretrained(tmp_path / "target")
    with HubServer(tokens={"secret": "user"}) as hub:
        env = hub_env(hub, tmp_path, token="secret", PYTHONPATH=str(REPO))
        done = subprocess.run([sys.executable, "-c", HUB_ROUND_TRIP, str(source), str(tmp_path / "target"), str(tmp_path)],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
    assert result["streamed"] and not result["memory"]
    streamed_prov, memory_prov = result["provenance"]
    # The streamed record names the snapshot's commit (the in-memory path finds none on
    # transformers 5's config); record and card differ by that only.
    assert len(streamed_prov.pop("source_revision")) == 40
    memory_prov.pop("source_revision")
    assert streamed_prov == memory_prov
    assert_same_tensors(tmp_path / "memory", tmp_path / "streamed")
    assert_same_files(tmp_path / "memory", tmp_path / "streamed", skip=("vocabswap.json", "README.md"))
    snapshots = list((tmp_path / "hf_home").rglob("consolidated.safetensors"))
    assert snapshots == []


# ----------------------------------------------------------------------------- a 250M checkpoint


LLAMA_250M = dict(
    vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=16,
    num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048,
)
SHARD = "150MB"
BASELINE_IMPORTS = (
    "import hf_vocabswap, hf_vocabswap.streaming, hf_vocabswap.transplant\n"
    "from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast\n"
)


@pytest.fixture(scope="module")
def llama_tokenizers(tmp_path_factory):
    """(source folder, target folder): 32,000-token Llama-style source, 4,000-token target."""
    root = tmp_path_factory.mktemp("tokenizers")
    source = build_tokenizer("llama_spbpe", assets.ukrainian_texts("train", max_chars=1_500_000), 32000)
    target = build_tokenizer("llama_spbpe", assets.ukrainian_texts("heldout"), 4000)
    assert len(source) == 32000
    source.save_pretrained(root / "source")
    target.save_pretrained(root / "target")
    return root / "source", root / "target"


@pytest.fixture(scope="module", params=["tied", "untied"])
def llama_checkpoint(request, llama_tokenizers, tmp_path_factory):
    tied = request.param == "tied"
    source_tok = transformers.AutoTokenizer.from_pretrained(llama_tokenizers[0])
    config = transformers.LlamaConfig(
        **LLAMA_250M, tie_word_embeddings=tied, bos_token_id=source_tok.bos_token_id, eos_token_id=source_tok.eos_token_id
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    folder = save_sharded(model, source_tok, tmp_path_factory.mktemp(request.param) / "source", SHARD)
    del model
    return request.param, folder


def test_streaming_equals_in_memory_250m(llama_checkpoint, llama_tokenizers, tmp_path):
    kind, source = llama_checkpoint
    checkpoint = SafetensorsCheckpoint.open(source)
    assert checkpoint.sharded and len(checkpoint.files) >= 3
    assert ("lm_head.weight" in checkpoint.weight_map) == (kind == "untied")
    target = transformers.AutoTokenizer.from_pretrained(llama_tokenizers[1])
    memory, memory_dir, streamed, streamed_dir = both_ways(source, target, tmp_path)
    assert streamed.report.counts == memory.report.counts and memory.report.counts["combined"] > 0
    count = assert_same_tensors(memory_dir, streamed_dir)
    assert count == len(checkpoint.weight_map)
    assert_same_files(memory_dir, streamed_dir)
    # Stock transformers loads the streamed folder and computes what the in-memory model does.
    model = transformers.AutoModelForCausalLM.from_pretrained(streamed_dir)
    assert (model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()) == (kind == "tied")
    ids = target("Привіт, як справи у Львові?", return_tensors="pt").input_ids
    assert ids[0, 0] == target.bos_token_id
    with torch.no_grad():
        ours = model(input_ids=ids, labels=ids)
        theirs = memory.model(input_ids=ids, labels=ids)
    assert torch.equal(ours.logits, theirs.logits) and torch.isfinite(ours.loss)


def _peak_rss_bytes(code: str) -> int:
    """Peak RSS of a Python child running ``code``, from RUSAGE_CHILDREN of a wrapper process."""
    wrapper = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_PROGRESS_BARS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    return int(done.stdout.strip().splitlines()[-1]) * 1024  # Linux reports KiB


def test_streaming_peak_memory_250m(llama_checkpoint, llama_tokenizers, tmp_path):
    kind, source = llama_checkpoint
    checkpoint = SafetensorsCheckpoint.open(source)
    vocab_bytes = checkpoint.tensor_nbytes("model.embed_tokens.weight")
    if kind == "untied":
        vocab_bytes += checkpoint.tensor_nbytes("lm_head.weight")
    largest_shard = checkpoint.largest_file_bytes()
    bound = 2 * (vocab_bytes + largest_shard)
    bare = _peak_rss_bytes("import hf_vocabswap")
    baseline = _peak_rss_bytes(BASELINE_IMPORTS)
    out = tmp_path / "out"
    peak = _peak_rss_bytes(
        "from hf_vocabswap import transplant_tokenizer\n"
        f"r = transplant_tokenizer({str(source)!r}, {str(llama_tokenizers[1])!r}, 'fvt', low_memory=True)\n"
        f"r.save_pretrained({str(out)!r})\n"
    )
    assert (out / INDEX_NAME).is_file()
    mib = 1 << 20
    total = sum(checkpoint.file_bytes(f) for f in checkpoint.files)
    print(
        f"\n[{kind}] checkpoint {total / mib:.0f} MiB in {len(checkpoint.files)} shards (largest {largest_shard / mib:.0f} MiB), "
        f"vocabulary tensors {vocab_bytes / mib:.0f} MiB; peak RSS {peak / mib:.0f} MiB, imports only {baseline / mib:.0f} MiB "
        f"(`import hf_vocabswap` alone {bare / mib:.0f} MiB), "
        f"difference {(peak - baseline) / mib:.0f} MiB <= bound {bound / mib:.0f} MiB"
    )
    assert peak - baseline <= bound
