"""Make a smaller, compressible copy of a GGUF model, to carry it where uploads are limited.

The GPU machine of ``quality.py --config gpu`` takes at most 64 MiB per call, and
Gemma-3-270m's GGUF is 241 MiB, 170 MiB of it the Q8_0 token embedding. Most of its 262,144
rows are never used by a transplant that keeps only some source tokens (copied tokens and
anchors), so:

* ``slim``: copy the GGUF file byte for byte, but zero the rows of ``token_embd.weight`` (or
  ``--tensor``) whose ids are not in ``--keep-ids`` (an int ``.npy`` array). A zeroed Q8_0 row
  is 20 blocks of scale 0 and values 0, which dequantizes to an all-zero row; the file keeps
  its size, header, metadata and every other tensor. The copy is checked (re-read with
  ``gguf.GGUFReader``: bytes outside the zeroed rows identical, kept rows dequantize to the
  source's values, dropped rows to 0), compressed with xz (``lzma``) and split into parts of at
  most ``--part-mib`` MiB, ``DIR/p0/<name>.gguf.xz.part00``, ``DIR/p1/<name>.gguf.xz.part01``
  ..., one folder per part so that each travels as a separate path. ``DIR/slim.json``
  records the sha256 of source and slim file, the kept row count and the parts; a copy of it
  goes into every part folder, so that any carried part brings it along.

* ``restore``: join the parts found under ``--parts-dir`` (searched recursively), decompress
  them, check the sha256 against ``slim.json`` when one is found (otherwise print it) and
  write the GGUF file atomically. This side uses only the Python standard library.

Usage::

    python benchmarks/slim_gguf.py --gguf model.gguf --keep-ids keep.npy --out DIR [--part-mib 60]
    python benchmarks/slim_gguf.py --restore --parts-dir DIR --out model-slim.gguf

xz (and not zstd) because the restoring side has only the standard library.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

MIB = 1 << 20
CHUNK = 4 * MIB
MANIFEST = "slim.json"
PART_RE = re.compile(r"^(?P<stem>.+)\.part(?P<index>\d{2,})$")
DEFAULT_PRESET = 6


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# slim: zero the dropped rows (needs numpy and gguf)
# ---------------------------------------------------------------------------------------------


def _find_tensor(reader, name: str):
    for t in reader.tensors:
        if t.name == name:
            return t
    names = [t.name for t in reader.tensors if "embd" in t.name or "embed" in t.name]
    raise SystemExit(f"no tensor {name!r} in the GGUF file (embedding-like tensors: {names})")


def _row_layout(tensor) -> tuple[int, int]:
    """(number of rows, bytes per row) of a GGUF tensor; rows are along the outer dimensions."""
    shape = [int(d) for d in tensor.shape]  # GGUF order: shape[0] is the row length (ne0)
    n_rows = 1
    for d in shape[1:]:
        n_rows *= d
    n_bytes = int(tensor.n_bytes)
    if n_rows <= 0 or n_bytes % n_rows:
        raise SystemExit(
            f"tensor {tensor.name} ({n_bytes} bytes, shape {shape}) does not split into {n_rows} equal rows"
        )
    return n_rows, n_bytes // n_rows


def load_keep_ids(path: str | os.PathLike, n_rows: int):
    import numpy as np

    ids = np.load(path, allow_pickle=False)
    if ids.dtype.kind not in "iu":
        raise SystemExit(f"{path}: keep ids must be an integer array, not {ids.dtype}")
    ids = np.unique(ids.reshape(-1).astype(np.int64))
    bad = ids[(ids < 0) | (ids >= n_rows)]
    if bad.size:
        raise SystemExit(f"{path}: {bad.size} ids outside [0, {n_rows}), e.g. {bad[:5].tolist()}")
    keep = np.zeros(n_rows, dtype=bool)
    keep[ids] = True
    return keep


def write_slim(src: Path, dst: Path, keep_ids_path, tensor_name: str = "token_embd.weight") -> dict:
    """Copy ``src`` to ``dst`` with the rows of ``tensor_name`` not in the keep ids zeroed."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(src), "r")
    tensor = _find_tensor(reader, tensor_name)
    n_rows, row_bytes = _row_layout(tensor)
    keep = load_keep_ids(keep_ids_path, n_rows)
    offset = int(tensor.data_offset)
    del reader

    shutil.copyfile(src, dst)
    rows = np.memmap(dst, dtype=np.uint8, mode="r+", offset=offset, shape=(n_rows, row_bytes))
    step = 16384
    for start in range(0, n_rows, step):
        drop = ~keep[start : start + step]
        if drop.any():
            block = rows[start : start + step]
            block[drop] = 0
    rows.flush()
    del rows
    return {
        "tensor": tensor_name,
        "tensor_type": gguf.GGMLQuantizationType(int(tensor.tensor_type)).name,
        "tensor_shape": [int(d) for d in tensor.shape],
        "data_offset": offset,
        "row_bytes": row_bytes,
        "rows": n_rows,
        "kept_rows": int(keep.sum()),
        "_keep": keep,
    }


def verify_slim(src: Path, dst: Path, info: dict) -> None:
    """Check that ``dst`` equals ``src`` except for the dropped rows, which dequantize to 0."""
    import gguf
    import numpy as np

    keep = info["_keep"]
    offset, n_rows, row_bytes = info["data_offset"], info["rows"], info["row_bytes"]
    end = offset + n_rows * row_bytes
    size = src.stat().st_size
    if dst.stat().st_size != size:
        raise SystemExit(f"verify: {dst} has {dst.stat().st_size} bytes, the source {size}")

    # 1. every byte outside the tensor's data is the source's
    with open(src, "rb") as a, open(dst, "rb") as b:
        for lo, hi in ((0, offset), (end, size)):
            a.seek(lo)
            b.seek(lo)
            pos = lo
            while pos < hi:
                n = min(CHUNK, hi - pos)
                if a.read(n) != b.read(n):
                    raise SystemExit(f"verify: {dst} differs from the source in bytes [{pos}, {pos + n})")
                pos += n

    # 2. re-read with GGUFReader: same tensors; kept rows dequantize as the source's, dropped rows to 0
    r_src = gguf.GGUFReader(str(src), "r")
    r_dst = gguf.GGUFReader(str(dst), "r")
    layout = lambda r: [(t.name, int(t.tensor_type), [int(d) for d in t.shape], int(t.data_offset)) for t in r.tensors]
    if layout(r_src) != layout(r_dst):
        raise SystemExit("verify: the tensor list of the slim file differs from the source's")
    t_src, t_dst = _find_tensor(r_src, info["tensor"]), _find_tensor(r_dst, info["tensor"])
    qtype = gguf.GGMLQuantizationType(int(t_src.tensor_type))
    src_rows = np.asarray(t_src.data).reshape(n_rows, -1)
    dst_rows = np.asarray(t_dst.data).reshape(n_rows, -1)
    step = 8192
    for start in range(0, n_rows, step):
        k = keep[start : start + step]
        s_raw, d_raw = src_rows[start : start + step], dst_rows[start : start + step]
        if not np.array_equal(s_raw[k], d_raw[k]) or d_raw[~k].any():
            raise SystemExit(f"verify: raw rows {start}..{start + len(k)} are not as expected")
        s_val = gguf.quants.dequantize(np.ascontiguousarray(s_raw), qtype)
        d_val = gguf.quants.dequantize(np.ascontiguousarray(d_raw), qtype)
        if not np.array_equal(s_val[k], d_val[k]):
            raise SystemExit(f"verify: kept rows in {start}..{start + len(k)} dequantize differently")
        if np.any(d_val[~k] != 0):
            raise SystemExit(f"verify: dropped rows in {start}..{start + len(k)} do not dequantize to 0")


def compress_to_parts(path: Path, out_dir: Path, name: str, part_bytes: int, preset: int) -> list[dict]:
    """xz-compress ``path`` into ``out_dir/p<i>/<name>.part<ii>`` of at most ``part_bytes`` each."""
    comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=preset)
    parts: list[dict] = []
    state = {"f": None, "h": None, "n": 0}

    def close_part():
        if state["f"] is not None:
            state["f"].close()
            parts[-1].update(size=state["n"], sha256=state["h"].hexdigest())
            state["f"] = None

    def emit(data: bytes):
        while data:
            if state["f"] is None or state["n"] >= part_bytes:
                close_part()
                i = len(parts)
                rel = Path(f"p{i}") / f"{name}.part{i:02d}"
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                state.update(f=open(out_dir / rel, "wb"), h=hashlib.sha256(), n=0)
                parts.append({"name": rel.name, "path": rel.as_posix()})
            take = data[: part_bytes - state["n"]]
            state["f"].write(take)
            state["h"].update(take)
            state["n"] += len(take)
            data = data[len(take) :]

    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            emit(comp.compress(block))
    emit(comp.flush())
    close_part()
    return parts


def slim(args) -> None:
    src = Path(args.gguf).expanduser()
    out_dir = Path(args.out)
    if not src.is_file():
        raise SystemExit(f"{src} does not exist")
    name = args.name or src.name
    if not name.endswith(".gguf"):
        name += ".gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    stale = [p for p in out_dir.rglob("*.part*") if PART_RE.match(p.name)]
    if stale:
        raise SystemExit(f"{out_dir} already holds parts ({stale[0]} ...); pass an empty or new --out folder")
    part_bytes = int(args.part_mib * MIB)
    if part_bytes <= 0:
        raise SystemExit("--part-mib must be positive")

    t0 = time.perf_counter()
    src_sha = sha256_file(src)
    slim_path = Path(args.slim_out) if args.slim_out else out_dir / f".{name}.slim-tmp"
    try:
        info = write_slim(src, slim_path, args.keep_ids, args.tensor)
        t_slim = time.perf_counter() - t0
        print(f"zeroed {info['rows'] - info['kept_rows']} of {info['rows']} rows of {info['tensor']} "
              f"({info['tensor_type']}, {info['row_bytes']} bytes a row) in {t_slim:.1f} s", flush=True)
        if not args.no_verify:
            t = time.perf_counter()
            verify_slim(src, slim_path, info)
            print(f"verified the slim copy in {time.perf_counter() - t:.1f} s", flush=True)
        slim_sha = sha256_file(slim_path)
        t = time.perf_counter()
        parts = compress_to_parts(slim_path, out_dir, name + ".xz", part_bytes, args.preset)
        t_comp = time.perf_counter() - t
    finally:
        if not args.slim_out:
            slim_path.unlink(missing_ok=True)
    info.pop("_keep")
    compressed = sum(p["size"] for p in parts)
    manifest = {
        "name": name,
        "source": str(src.resolve()),
        "source_size": src.stat().st_size,
        "source_sha256": src_sha,
        "slim_sha256": slim_sha,
        "slim_size": src.stat().st_size,
        **info,
        "keep_ids": str(args.keep_ids),
        "compression": {"format": "xz", "preset": preset_name(args.preset), "seconds": round(t_comp, 1)},
        "compressed_size": compressed,
        "part_bytes": part_bytes,
        "parts": parts,
    }
    text = json.dumps(manifest, indent=2) + "\n"
    (out_dir / MANIFEST).write_text(text)
    for p in parts:  # a copy travels with every part
        (out_dir / p["path"]).parent.joinpath(MANIFEST).write_text(text)
    print(f"compressed {manifest['slim_size'] / MIB:.1f} MiB to {compressed / MIB:.2f} MiB "
          f"(xz preset {preset_name(args.preset)}) in {t_comp:.1f} s: "
          f"{len(parts)} part(s) of at most {part_bytes / MIB:g} MiB")
    for p in parts:
        print(f"  {out_dir / p['path']}  {p['size'] / MIB:.2f} MiB")
    print(f"slim sha256 {slim_sha}")


# ---------------------------------------------------------------------------------------------
# restore: standard library only
# ---------------------------------------------------------------------------------------------


def find_parts(parts_dir: Path, name: str | None = None) -> tuple[str, list[Path]]:
    """The parts under ``parts_dir`` (recursively), in order, for one ``<stem>.partNN`` series."""
    series: dict[str, dict[int, Path]] = {}
    for p in sorted(parts_dir.rglob("*")):
        m = PART_RE.match(p.name)
        if m and p.is_file():
            found = series.setdefault(m["stem"], {})
            i = int(m["index"])
            if i in found and found[i].read_bytes() != p.read_bytes():
                raise SystemExit(f"two different copies of part {i}: {found[i]} and {p}")
            found[i] = p
    if name is not None:
        series = {k: v for k, v in series.items() if k in (name, name + ".xz", name + ".gguf.xz")}
    if not series:
        raise SystemExit(f"no parts <name>.partNN under {parts_dir}" + (f" for {name!r}" if name else ""))
    if len(series) > 1:
        raise SystemExit(f"several part series under {parts_dir}: {sorted(series)}; choose one with --name")
    stem, found = next(iter(series.items()))
    missing = [i for i in range(max(found) + 1) if i not in found]
    if missing:
        raise SystemExit(f"parts {', '.join(f'{stem}.part{i:02d}' for i in missing)} are missing under {parts_dir}")
    return stem, [found[i] for i in sorted(found)]


def find_manifest(parts_dir: Path, stem: str) -> dict | None:
    for p in [parts_dir / MANIFEST, *sorted(parts_dir.rglob(MANIFEST))]:
        if p.is_file():
            try:
                m = json.loads(p.read_text())
            except ValueError:
                continue
            if m.get("name", "") + ".xz" == stem:
                return m
    return None


def restore(args) -> None:
    parts_dir = Path(args.parts_dir)
    out = Path(args.out)
    stem, parts = find_parts(parts_dir, args.name)
    manifest = find_manifest(parts_dir, stem)
    if manifest is not None:
        expected = manifest["parts"]
        if len(expected) != len(parts):
            raise SystemExit(f"slim.json lists {len(expected)} parts, {len(parts)} found under {parts_dir}: "
                             f"missing {[p['name'] for p in expected[len(parts):]]}")
        for e, p in zip(expected, parts):
            if p.stat().st_size != e["size"]:
                raise SystemExit(f"{p} has {p.stat().st_size} bytes, slim.json says {e['size']}: copy it again")
            if "sha256" in e and sha256_file(p) != e["sha256"]:
                raise SystemExit(f"{p} does not match the sha256 in slim.json: copy it again")

    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        h = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                with open(part, "rb") as pf:
                    while block := pf.read(CHUNK):
                        if dec.eof:
                            raise SystemExit(f"data after the end of the xz stream in {part}")
                        try:
                            data = dec.decompress(block)
                        except lzma.LZMAError as exc:
                            raise SystemExit(f"{part}: corrupt xz data ({exc}); copy the parts again") from exc
                        h.update(data)
                        size += len(data)
                        f.write(data)
            if not dec.eof:
                raise SystemExit(f"the xz stream ends early: a part after {parts[-1].name} is missing or truncated")
            f.flush()
            os.fsync(f.fileno())
        digest = h.hexdigest()
        if manifest is not None and digest != manifest["slim_sha256"]:
            raise SystemExit(f"sha256 of the restored file is {digest}, slim.json says {manifest['slim_sha256']}")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    check = "matches slim.json" if manifest is not None else "not checked: no slim.json found"
    print(f"restored {out} ({size / MIB:.1f} MiB) from {len(parts)} part(s) in {time.perf_counter() - t0:.1f} s")
    print(f"sha256 {digest} ({check})")


def parse_preset(text: str) -> int:
    m = re.fullmatch(r"([0-9])(e?)", str(text).strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not an xz preset such as 6 or 9e")
    return int(m[1]) | (lzma.PRESET_EXTREME if m[2] else 0)


def preset_name(preset: int) -> str:
    return f"{preset & 0xFF}{'e' if preset & lzma.PRESET_EXTREME else ''}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--restore", action="store_true", help="join, decompress and check parts (standard library only)")
    p.add_argument("--gguf", help="source GGUF file (slim)")
    p.add_argument("--keep-ids", help="int .npy array of the row ids to keep (slim)")
    p.add_argument("--out", required=True, help="slim: output folder for the parts; restore: the GGUF file to write")
    p.add_argument("--parts-dir", help="restore: folder searched recursively for <name>.partNN")
    p.add_argument("--part-mib", type=float, default=60.0, help="largest part in MiB (default 60)")
    p.add_argument("--tensor", default="token_embd.weight", help="tensor whose rows are zeroed")
    p.add_argument("--name", help="file name of the GGUF in the parts (slim: default the source's; "
                   "restore: which series, when the folder holds several)")
    p.add_argument("--preset", type=parse_preset, default=DEFAULT_PRESET,
                   help=f"xz preset 0-9, with an 'e' for the extreme variant, e.g. 9e (default {DEFAULT_PRESET}; "
                   "9 and 9e gave the same size on Gemma-3-270m and took 30-40%% longer)")
    p.add_argument("--slim-out", help="slim: also keep the uncompressed slim GGUF at this path")
    p.add_argument("--no-verify", action="store_true", help="slim: skip the check of the slim copy")
    args = p.parse_args(argv)
    if args.restore:
        if not args.parts_dir:
            p.error("--restore needs --parts-dir")
        restore(args)
    else:
        if not args.gguf or not args.keep_ids:
            p.error("slimming needs --gguf and --keep-ids")
        slim(args)


if __name__ == "__main__":
    main()
