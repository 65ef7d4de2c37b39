"""benchmarks/slim_gguf.py on a tiny GGUF file: dropped embedding rows zeroed, every other byte
kept, xz parts in their own folders, and a standard-library-only restore."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "slim_gguf.py"
N_ROWS, DIM = 300, 64  # Q8_0: 2 blocks of 34 bytes a row


@pytest.fixture(scope="module")
def slim_gguf():
    spec = importlib.util.spec_from_file_location("vocabswap_slim_gguf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_gguf(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(N_ROWS, DIM)).astype(np.float32)
    norm = rng.normal(size=DIM).astype(np.float32)
    w = gguf.GGUFWriter(str(path), "gemma3")
    w.add_block_count(1)
    w.add_token_list([f"t{i}".encode() for i in range(N_ROWS)])
    w.add_tensor("output_norm.weight", norm)
    q = gguf.quants.quantize(emb, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("token_embd.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("blk.0.ffn_down.weight", rng.normal(size=(8, DIM)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return emb, norm


def test_slim_and_restore(slim_gguf, tmp_path):
    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src)
    keep_ids = np.array([0, 1, 2, 7, 7, 150, N_ROWS - 1])
    np.save(tmp_path / "keep.npy", keep_ids)
    out = tmp_path / "out"
    slim_copy = tmp_path / "slim.gguf"
    # parts of 1 KiB, so that there are several
    slim_gguf.main(["--gguf", str(src), "--keep-ids", str(tmp_path / "keep.npy"), "--out", str(out),
                    "--part-mib", str(1 / 1024), "--slim-out", str(slim_copy)])

    # the slim copy: same bytes except the dropped rows, which are all zero
    a, b = src.read_bytes(), slim_copy.read_bytes()
    assert len(a) == len(b)
    tensor = next(t for t in gguf.GGUFReader(str(src)).tensors if t.name == "token_embd.weight")
    start, row = int(tensor.data_offset), 68
    end = start + N_ROWS * row
    assert a[:start] == b[:start] and a[end:] == b[end:]
    keep = np.zeros(N_ROWS, dtype=bool)
    keep[keep_ids] = True
    for i in range(N_ROWS):
        r = slice(start + i * row, start + (i + 1) * row)
        assert b[r] == (a[r] if keep[i] else bytes(row))
    t_slim = next(t for t in gguf.GGUFReader(str(slim_copy)).tensors if t.name == "token_embd.weight")
    vals = gguf.quants.dequantize(np.asarray(t_slim.data), gguf.GGMLQuantizationType.Q8_0)
    src_vals = gguf.quants.dequantize(np.asarray(tensor.data), gguf.GGMLQuantizationType.Q8_0)
    assert np.array_equal(vals[keep], src_vals[keep]) and not vals[~keep].any()

    manifest = json.loads((out / "slim.json").read_text())
    assert manifest["kept_rows"] == 6
    assert manifest["source_sha256"] == hashlib.sha256(a).hexdigest()
    assert manifest["slim_sha256"] == hashlib.sha256(b).hexdigest()
    parts = manifest["parts"]
    assert len(parts) > 1 and manifest["compressed_size"] == sum(p["size"] for p in parts)
    for i, p in enumerate(parts):
        f = out / f"p{i}" / f"tiny.gguf.xz.part{i:02d}"
        assert p["path"] == f"p{i}/{f.name}" and f.stat().st_size == p["size"] <= 1024
        assert (f.parent / "slim.json").is_file()

    # restore with the standard library only (-I -S: no site-packages, so no numpy or gguf)
    restored = tmp_path / "restored" / "x.gguf"
    run = subprocess.run([sys.executable, "-I", "-S", str(SCRIPT), "--restore", "--parts-dir", str(out),
                          "--out", str(restored)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "matches slim.json" in run.stdout
    assert restored.read_bytes() == b

    # without slim.json (parts carried alone): restores, prints the sha256 unchecked
    alone = tmp_path / "alone"
    for i, p in enumerate(parts):
        (alone / f"c{i}").mkdir(parents=True)
        (alone / f"c{i}" / p["name"]).write_bytes((out / p["path"]).read_bytes())
    restored2 = tmp_path / "r2.gguf"
    slim_gguf.main(["--restore", "--parts-dir", str(alone), "--out", str(restored2)])
    assert restored2.read_bytes() == b

    # a missing last part is an error, and leaves no file behind
    (alone / f"c{len(parts) - 1}" / parts[-1]["name"]).unlink()
    with pytest.raises(SystemExit, match="ends early"):
        slim_gguf.main(["--restore", "--parts-dir", str(alone), "--out", str(tmp_path / "r3.gguf")])
    assert not list(tmp_path.glob("*r3.gguf*"))


def test_keep_ids_out_of_range(slim_gguf, tmp_path):
    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src)
    np.save(tmp_path / "keep.npy", np.array([0, N_ROWS]))
    with pytest.raises(SystemExit, match="outside"):
        slim_gguf.main(["--gguf", str(src), "--keep-ids", str(tmp_path / "keep.npy"), "--out", str(tmp_path / "o")])
