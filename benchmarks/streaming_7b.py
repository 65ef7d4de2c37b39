"""Streaming benchmark: a 7B-parameter Llama checkpoint transplanted in a few GB of memory.

1. A synthetic Llama-2-7B-shaped checkpoint (vocabulary 32,000, hidden 4,096, 32 layers,
   untied head; bf16, about 13.5 GB) is written shard by shard straight to safetensors
   files, each tensor drawn from its own seeded generator, so the full model never exists
   in memory. Its tokenizer is a 32,000-token Llama-style SentencePiece-BPE (byte fallback,
   Metaspace) trained here on English-heavy text (the Python standard library's sources)
   plus a little Ukrainian.
2. A 32,000-token Ukrainian target tokenizer is trained with
   :func:`hf_vocabswap.train_tokenizer` (the source pipeline) on UA-GEC's training split.
3. ``transplant_tokenizer(folder, target, "focus", corpus=...)`` runs in a child process
   (the folder is sharded, so it streams); the child saves the result. Wall time per phase
   and the child's peak RSS (``getrusage(RUSAGE_CHILDREN)`` of a wrapper whose only child it
   is) are measured, with the RSS of a child that only imports the libraries as baseline.
   Should FOCUS fail, FVT is run instead and the results say so.
4. The output is checked without loading 13.5 GB: its tensor names and shapes are those of
   the model class built on the meta device, and every tensor but the vocabulary ones is
   byte-identical to the source.

Results go to ``benchmarks/results/streaming_7b.md`` (machine, settings, date, numbers).
The checkpoint lives in ``--workdir`` (default: a folder under the system temp dir; it needs
about 30 GB free) and is deleted afterwards unless ``--keep``::

    python benchmarks/streaming_7b.py                       # about 15-30 minutes on 2 CPU cores
    python benchmarks/streaming_7b.py --layers 2 --keep     # a quick smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "streaming_7b.md"

LLAMA_7B = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
    rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
)
GIB = 1 << 30
MIB = 1 << 20


# ----------------------------------------------------------------------------- tokenizers


def english_heavy_texts(max_chars: int) -> list[str]:
    """Paragraphs of the Python standard library's sources (comments, docstrings, code)."""
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    texts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        if "test" in path.parts or "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for block in text.split("\n\n"):
            if block.strip():
                texts.append(block)
                total += len(block)
        if total >= max_chars:
            break
    return texts


def llama_style_tokenizer(texts: list[str], vocab_size: int):
    """A SentencePiece-BPE tokenizer laid out like Llama's: <unk> <s> </s>, 256 byte pieces, merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    spec = json.loads(tok.to_str())
    ordered = [k for k, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    pieces = specials + [f"<0x{b:02X}>" for b in range(256)] + ordered[len(specials):]
    spec["model"]["vocab"] = {k: i for i, k in enumerate(pieces)}
    spec["added_tokens"] = [dict(a, id=pieces.index(a["content"])) for a in spec["added_tokens"]]
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first"), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=4096)


# ----------------------------------------------------------------------------- the checkpoint


def tensor_plan(config) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every tensor the checkpoint holds, from the model class on meta."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {}) if config.tie_word_embeddings else set()
    return [(name, tuple(t.shape)) for name, t in model.state_dict().items() if name not in tied]


def synthetic_tensor(name: str, shape, seed: int):
    """A bf16 tensor from its own generator: norms are ones, the rest N(0, 0.02)."""
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=torch.bfloat16)
    gen = torch.Generator().manual_seed(seed + zlib.crc32(name.encode()))
    out = torch.empty(shape, dtype=torch.bfloat16)
    flat = out.view(-1)
    step = 1 << 24  # 64 MB of float32 at a time
    for start in range(0, flat.numel(), step):
        stop = min(start + step, flat.numel())
        flat[start:stop] = torch.randn(stop - start, generator=gen).mul_(0.02)
    return out


def write_checkpoint(folder: Path, config, shard_bytes: int, seed: int) -> dict:
    """Write the synthetic checkpoint in shards; returns {"files", "bytes", "seconds"}."""
    import torch

    started = time.perf_counter()
    plan = tensor_plan(config)
    shards: list[list[tuple[str, tuple]]] = [[]]
    size = 0
    for name, shape in plan:
        nbytes = 2 * _numel(shape)
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map, total = {}, 0
    for i, items in enumerate(shards, 1):
        file = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shape in items:
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + 2 * _numel(shape)]}
            offset += 2 * _numel(shape)
            weight_map[name] = file
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        with open(folder / file, "wb") as f:
            f.write(len(encoded).to_bytes(8, "little"))
            f.write(encoded)
            for name, shape in items:
                f.write(memoryview(synthetic_tensor(name, shape, seed).view(-1).view(torch.uint8).numpy()))
        total += offset
        print(f"  wrote {file} ({offset / GIB:.2f} GiB, {len(items)} tensors)", flush=True)
    index = {"metadata": {"total_size": total, "total_parameters": total // 2}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config.save_pretrained(folder)
    from transformers import GenerationConfig

    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id).save_pretrained(folder)
    return {"files": len(shards), "bytes": total, "seconds": time.perf_counter() - started}


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ----------------------------------------------------------------------------- measuring


CHILD = r"""
import json, sys, threading, time
import psutil
t0 = time.perf_counter()
from hf_vocabswap import transplant, transplant_tokenizer
source, target, corpus, out, method, device, cache = sys.argv[1:8]
options = {"cache_dir": cache} if method == "focus" else {}

# Peak RSS and time per phase, sampled every 10 ms (instrumentation only).
phase, peaks, started = ["load"], {}, {"load": time.perf_counter()}
def sample(proc=psutil.Process()):
    while True:
        peaks[phase[0]] = max(peaks.get(phase[0], 0), proc.memory_info().rss)
        time.sleep(0.01)
def mark(name):
    phase[0] = name
    started[name] = time.perf_counter()
def wrap(name, fn, after=None):
    def wrapped(*a, **k):
        mark(name)
        value = fn(*a, **k)
        if after:
            mark(after)
        return value
    return wrapped
transplant.align_vocabularies = wrap("align + method plan", transplant.align_vocabularies)
transplant.apply_plan = wrap("surgery", transplant.apply_plan, after="report")
threading.Thread(target=sample, daemon=True).start()
t1 = time.perf_counter()
fallback = None
try:
    result = transplant_tokenizer(source, target, method, corpus=corpus, device=device, **options)
except Exception as e:
    if method != "focus":
        raise
    fallback = f"{type(e).__name__}: {e}"
    method = "fvt"
    result = transplant_tokenizer(source, target, method, device=device)
t2 = time.perf_counter()
mark("save_pretrained")
result.save_pretrained(out)
t3 = time.perf_counter()
order = list(started) + ["end"]
started["end"] = t3
phases = {p: {"seconds": started[order[i + 1]] - started[p], "peak_rss": peaks.get(p, 0)} for i, p in enumerate(order[:-1])}
print("RESULT " + json.dumps({
    "method": method, "fallback_reason": fallback, "streamed": type(result).__name__,
    "import_s": t1 - t0, "transplant_s": t2 - t1, "save_s": t3 - t2, "phases": phases,
    "counts": result.report.counts, "overlap": result.report.overlap, "method_stats": result.report.method_stats,
    "plan_entries": int(len(result.plan.indices)),
}))
"""

WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "print('PEAK', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)
BASELINE_IMPORTS = (
    "import hf_vocabswap, hf_vocabswap.streaming, hf_vocabswap.transplant\n"
    "from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast\n"
)


def run_measured(args: list[str], env: dict) -> tuple[int, str, float]:
    """(peak RSS bytes of the child, its stdout, wall seconds)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-8000:])
        raise SystemExit(f"child failed with code {done.returncode}")
    peak = int(next(line for line in done.stdout.splitlines() if line.startswith("PEAK ")).split()[1]) * 1024
    return peak, done.stdout, seconds


def verify_output(source: Path, output: Path, vocab_names: set[str]) -> dict:
    """Names and shapes match the model class; every non-vocabulary tensor is byte-identical."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    from hf_vocabswap.streaming import SafetensorsCheckpoint, read_header

    src, out = SafetensorsCheckpoint.open(source), SafetensorsCheckpoint.open(output)
    config = AutoConfig.from_pretrained(output)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    expected = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    shapes = {}
    for file in out.files:
        header, _ = read_header(output / file)
        shapes.update({n: tuple(i["shape"]) for n, i in header.items() if n != "__metadata__"})
    assert shapes == expected, "output tensors differ from the model class's"
    compared = 0
    for name in src.weight_map:
        if name in vocab_names:
            continue
        a = _tensor_range(src, name)
        b = _tensor_range(out, name)
        assert a[1] - a[0] == b[1] - b[0], name
        with open(source / src.weight_map[name], "rb") as fa, open(output / out.weight_map[name], "rb") as fb:
            fa.seek(a[0])
            fb.seek(b[0])
            remaining = a[1] - a[0]
            while remaining:
                n = min(remaining, 16 * MIB)
                assert fa.read(n) == fb.read(n), f"{name} differs"
                remaining -= n
        compared += a[1] - a[0]
    return {"tensors": len(shapes), "identical_bytes": compared, "vocab_rows": shapes["model.embed_tokens.weight"][0]}


def _tensor_range(checkpoint, name) -> tuple[int, int]:
    from hf_vocabswap.streaming import read_header

    header, start = read_header(checkpoint.folder / checkpoint.weight_map[name])
    a, b = header[name]["data_offsets"]
    return start + a, start + b


# ----------------------------------------------------------------------------- report


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import tokenizers
    import torch
    import transformers

    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / GIB, 1), "os": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__, "gpu": _gpu(),
    }


def _gpu() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"


def write_results(path: Path, r: dict) -> None:
    m, s, t = r["machine"], r["settings"], r["run"]
    method_line = f"`{t['method']}`" + (f" (FOCUS failed: {t['fallback_reason']}; fell back to FVT)" if t["fallback_reason"] else "")
    lines = [
        "# Streaming transplant of a 7B-parameter checkpoint",
        "",
        f"Run on {r['date']} at commit {r['commit']} with `python benchmarks/streaming_7b.py {' '.join(r['argv'])}`.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_gib']} GiB (shared with other work); GPU: {m['gpu']}",
        f"- {m['os']}; Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, tokenizers {m['tokenizers']}",
        "",
        "## Settings",
        "",
        f"- Source: synthetic Llama-2-7B shape ({s['parameters'] / 1e9:.2f}B parameters: hidden {s['config']['hidden_size']}, "
        f"{s['config']['num_hidden_layers']} layers, intermediate {s['config']['intermediate_size']}, untied head), bf16, "
        f"{s['checkpoint_bytes'] / GIB:.2f} GiB in {s['shards']} shard(s) of at most {s['shard_gib']} GiB, "
        f"N(0, 0.02) weights from one seeded generator per tensor (seed {s['seed']}); written in {s['write_s']:.0f} s",
        f"- Source tokenizer: {s['source_vocab']:,}-token Llama-style SentencePiece-BPE (byte fallback) trained on "
        f"{s['source_chars'] / 1e6:.1f}M characters of Python standard-library sources plus UA-GEC held-out Ukrainian",
        f"- Target tokenizer: {s['target_vocab']:,} tokens, `train_tokenizer` on UA-GEC train ({s['corpus_chars'] / 1e6:.1f}M characters), "
        "which is also the method's corpus",
        f"- Method: {method_line}, device `{s['device']}`, default options"
        + ("; fastText trained from scratch in the measured process (empty cache)" if t["method"] == "focus" else ""),
        "",
        "## Results",
        "",
        "| measure | value |",
        "|---|---|",
        f"| path taken | `{t['streamed']}` (automatic: the source is sharded) |",
        f"| wall time, whole child process | {r['child_wall_s']:.1f} s |",
        f"| - imports | {t['import_s']:.1f} s |",
        f"| - `transplant_tokenizer` (load vocabulary tensors, align, {t['method']}, surgery) | {t['transplant_s']:.1f} s |",
        f"| - `save_pretrained` (stream {s['checkpoint_bytes'] / GIB:.1f} GiB, tokenizer, card) | {t['save_s']:.1f} s |",
        f"| peak RSS of the child | **{r['peak'] / GIB:.2f} GiB** ({r['peak'] / MIB:.0f} MiB) |",
        f"| peak RSS of a child that only imports the libraries | {r['baseline'] / MIB:.0f} MiB |",
        f"| source vocabulary tensors (embeddings + head) | {r['vocab_bytes'] / MIB:.0f} MiB |",
        f"| largest shard | {r['largest_shard'] / GIB:.2f} GiB |",
        *[f"| - phase `{name}`: time / peak RSS | {v['seconds']:.1f} s / {v['peak_rss'] / MIB:.0f} MiB |" for name, v in t["phases"].items()],
        f"| mixing-plan entries (source rows summed, all target rows) | {t['plan_entries']:,} |",
        f"| target tokens copied / combined / random / mean | {t['counts']['copied']:,} / {t['counts']['combined']:,} / {t['counts']['random']:,} / {t['counts']['mean']:,} |",
        f"| overlap | {t['overlap']:,} |",
        f"| output check | {r['verify']} |",
        f"| machine load average (1 min) before / after the transplant | {r['load_before']:.1f} / {r['load_after']:.1f} |",
        "",
        f"Goal: under 4 GiB peak on a 24 GB machine — {'met' if r['peak'] < 4 * GIB else 'NOT met'}. (The in-memory path, "
        f"not run here, loads all {s['checkpoint_bytes'] / GIB:.1f} GiB of tensors with `from_pretrained` and writes them from memory.)",
        "",
        f"The load phase is mostly the SHA-256 of the {s['checkpoint_bytes'] / GIB:.1f} GiB of weights that `vocabswap.json` "
        "records (as on the in-memory path). "
        f"Surgery time is `MixingPlan.apply` (CPU, float32) summing {t['plan_entries']:,} weighted source rows of "
        f"{s['config']['hidden_size']} values for each of the two matrices (input embeddings and the untied head); "
        "the machine was shared with other jobs (load average above).",
        "",
        "Peak RSS is `getrusage(RUSAGE_CHILDREN).ru_maxrss` of a wrapper process whose only child runs the transplant "
        "and the save; page cache is not counted (the shards are read and written with plain file I/O).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "vocabswap-streaming-7b")
    p.add_argument("--keep", action="store_true", help="keep the checkpoint, the output and the tokenizers")
    p.add_argument("--method", default="focus")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--layers", type=int, default=LLAMA_7B["num_hidden_layers"], help="fewer layers for a quick smoke run")
    p.add_argument("--shard-gib", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=32000, help="target vocabulary")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--skip-verify", action="store_true")
    args = p.parse_args(argv)

    import transformers

    from hf_vocabswap import assets, train_tokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    config = transformers.LlamaConfig(**dict(LLAMA_7B, num_hidden_layers=args.layers))
    parameters = sum(_numel(shape) for _, shape in tensor_plan(config))
    need = 2.2 * 2 * parameters
    free = shutil.disk_usage(work).free
    print(f"{parameters / 1e9:.2f}B parameters, {2 * parameters / GIB:.1f} GiB per copy; {free / GIB:.0f} GiB free in {work}", flush=True)
    if free < need:
        raise SystemExit(f"{work} has {free / GIB:.0f} GiB free; the source and the output need about {need / GIB:.0f} GiB")
    source, target_dir, out = work / "llama-7b-synthetic", work / "target-tokenizer", work / "llama-7b-uk"
    corpus = work / "uk_train.txt"
    try:
        # Tokenizers.
        started = time.perf_counter()
        heldout = assets.ukrainian_texts("heldout")
        source_texts = english_heavy_texts(12_000_000) + heldout
        source_tok = llama_style_tokenizer(source_texts, 32000)
        train = assets.ukrainian_texts("train")
        corpus.write_text("\n".join(t.replace("\n", " ") for t in train) + "\n", encoding="utf-8")
        target = train_tokenizer(source_tok, train, args.vocab_size, progress=False)
        target.save_pretrained(target_dir)
        print(f"tokenizers: source {len(source_tok):,}, target {len(target):,} ({time.perf_counter() - started:.0f} s)", flush=True)

        # Checkpoint.
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir()
        written = write_checkpoint(source, config, int(args.shard_gib * GIB), args.seed)
        source_tok.save_pretrained(source)
        print(f"checkpoint: {written['bytes'] / GIB:.2f} GiB in {written['files']} shards ({written['seconds']:.0f} s)", flush=True)

        # Transplant, measured.
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        baseline, _, _ = run_measured(["-c", BASELINE_IMPORTS], env)
        load_before = os.getloadavg()[0]
        shutil.rmtree(out, ignore_errors=True)
        peak, stdout, child_wall = run_measured(
            ["-c", CHILD, str(source), str(target_dir), str(corpus), str(out), args.method, args.device, str(work / "fasttext-cache")], env
        )
        load_after = os.getloadavg()[0]
        run = json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[len("RESULT "):])
        print(f"transplant: {json.dumps(run)}\npeak RSS {peak / GIB:.2f} GiB (imports only {baseline / MIB:.0f} MiB)", flush=True)

        from hf_vocabswap.streaming import SafetensorsCheckpoint

        checkpoint = SafetensorsCheckpoint.open(source)
        vocab_names = {"model.embed_tokens.weight", "lm_head.weight"}
        vocab_bytes = sum(checkpoint.tensor_nbytes(n) for n in vocab_names)
        if args.skip_verify:
            verify = "skipped"
        else:
            started = time.perf_counter()
            v = verify_output(source, out, vocab_names)
            verify = (f"{v['tensors']} tensors with the model class's names and shapes ({v['vocab_rows']:,} vocabulary rows); "
                      f"{v['identical_bytes'] / GIB:.2f} GiB of other tensors byte-identical to the source "
                      f"({time.perf_counter() - started:.0f} s)")
            print(f"verified: {verify}", flush=True)
        results = {
            "date": datetime.date.today().isoformat(),
            "commit": _commit(),
            "argv": sys.argv[1:] if argv is None else list(argv),
            "machine": machine(),
            "settings": {
                "config": {k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "intermediate_size")},
                "parameters": parameters, "checkpoint_bytes": written["bytes"], "shards": written["files"],
                "shard_gib": args.shard_gib, "seed": args.seed, "write_s": written["seconds"],
                "source_vocab": len(source_tok), "source_chars": sum(map(len, source_texts)),
                "target_vocab": len(target), "corpus_chars": sum(map(len, train)), "device": args.device,
            },
            "run": run, "peak": peak, "load_before": load_before, "load_after": load_after, "baseline": baseline, "child_wall_s": child_wall,
            "vocab_bytes": vocab_bytes, "largest_shard": checkpoint.largest_file_bytes(), "verify": verify,
        }
        write_results(args.results, results)
        (work / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"results written to {args.results}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _commit() -> str:
    """The checked-out commit, marked dirty when the package has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hf_vocabswap"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes in hf_vocabswap/)" if dirty else head


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    sys.exit(main())
