"""Transplanting checkpoints larger than memory: only the vocabulary tensors are loaded.

The source is a local folder, a Hub id or a cache snapshot holding safetensors weights (one
``model.safetensors`` or shards listed in ``model.safetensors.index.json``). The model is
built on the ``meta`` device, so it has no weights; the tensors a transplant reads or
rewrites (input embeddings, an untied output head, output biases, a RoBERTa-style position
table) are read from their shards with ``safetensors.safe_open`` and put into it, and the
ordinary :func:`~hf_vocabswap.transplant.transplant_tokenizer` runs on that model. Alignment,
method, plan and surgery are therefore the in-memory path's own code, and the new tensors are
bit-identical to what it produces.

Saving (:meth:`StreamingTransplantResult.save_pretrained`) writes config, generation config,
tokenizer, record, plan and card like the in-memory path, and the weights shard by shard:
a shard without vocabulary tensors is copied as a file, a shard with them is rewritten with
every other tensor copied byte for byte from the source file (never more than a 16 MiB buffer
in memory) and the new tensors in place of the old; the shard index gets the new
``total_size`` and ``weight_map``. Peak memory is about the source and new vocabulary tensors
plus the method's own work, whatever the size of the rest of the model.

Example:
    >>> from hf_vocabswap import transplant_tokenizer
    >>> result = transplant_tokenizer("meta-llama/Llama-2-7b-hf", "my-org/uk-32k", "focus",
    ...                               corpus="uk_train.txt", low_memory=True)
    >>> result.save_pretrained("llama-uk")   # streams the 13 GB of other weights
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open
from transformers import GenerationConfig

from .errors import ModelError
from .loading import TASK_AUTO_CLASSES, SourceModel, folder_weights_sha256, load_tokenizer
from .progress import progress_bar
from .result import TransplantResult

logger = logging.getLogger(__name__)

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
COPY_BUFFER_BYTES = 16 << 20

# safetensors dtype names: torch dtype -> name, and name -> bytes per element (for layout).
_DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}
_ITEM_SIZES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2}


# --------------------------------------------------------------------------- checkpoints


@dataclass
class SafetensorsCheckpoint:
    """The safetensors weights of a model folder: which file holds which tensor.

    Attributes:
        folder: the model folder (a local folder or a Hub cache snapshot).
        weight_map: tensor name -> file name inside ``folder``.
        index_metadata: the ``metadata`` of the shard index (``{}`` for a single file).
        sharded: whether the weights are listed in ``model.safetensors.index.json``.
    """

    folder: Path
    weight_map: dict[str, str]
    index_metadata: dict = field(default_factory=dict)
    sharded: bool = False

    @classmethod
    def open(cls, folder) -> "SafetensorsCheckpoint | None":
        """The checkpoint in ``folder``, or None when it holds no safetensors weights."""
        folder = Path(folder)
        index = folder / INDEX_NAME
        if index.is_file():
            spec = json.loads(index.read_text(encoding="utf-8"))
            return cls(folder, dict(spec["weight_map"]), dict(spec.get("metadata") or {}), True)
        single = folder / SINGLE_NAME
        if single.is_file():
            header, _ = read_header(single)
            return cls(folder, {name: SINGLE_NAME for name in header if name != "__metadata__"})
        return None

    @property
    def files(self) -> list[str]:
        return sorted(set(self.weight_map.values()))

    def file_bytes(self, name: str) -> int:
        """Size in bytes of one of the checkpoint's files."""
        return (self.folder / name).stat().st_size

    def largest_file_bytes(self) -> int:
        """Size in bytes of the checkpoint's largest file."""
        return max(self.file_bytes(f) for f in self.files)

    def tensor_nbytes(self, name: str) -> int:
        """Bytes of one tensor's data, from its file's header."""
        begin, end = read_header(self.folder / self.weight_map[name])[0][name]["data_offsets"]
        return end - begin

    def first_float_dtype(self) -> torch.dtype | None:
        """The dtype of the first floating-point tensor (what ``dtype="auto"`` loads with)."""
        names = {v: k for k, v in _DTYPE_NAMES.items()}
        for file in self.files:
            for key, info in read_header(self.folder / file)[0].items():
                dtype = names.get(info.get("dtype")) if key != "__metadata__" else None
                if dtype is not None and dtype.is_floating_point:
                    return dtype
        return None

    def load(self, name: str) -> torch.Tensor:
        """One tensor, read from its file (nothing else of the file is loaded)."""
        with safe_open(str(self.folder / self.weight_map[name]), framework="pt") as f:
            return f.get_tensor(name)


def read_header(path) -> tuple[dict, int]:
    """(header dict, offset of the data) of a safetensors file."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return header, 8 + size


# --------------------------------------------------------------------------- choosing the path


def local_checkpoint(source) -> Path | None:
    """The local folder of ``source`` when it is a folder with safetensors weights, else None."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    return path if path.is_dir() and SafetensorsCheckpoint.open(path) is not None else None


def _hub_repo_id(source) -> str | None:
    if not isinstance(source, str) or Path(source).exists() or source.endswith(".gguf"):
        return None
    try:
        validate_repo_id(source)
    except Exception:  # noqa: BLE001 - not a repo id: the in-memory path reports the problem
        return None
    return source


def wants_streaming(source) -> bool:
    """Whether ``transplant_tokenizer(low_memory=None)`` streams ``source``.

    True for a folder or Hub id whose weights are safetensors shards (a
    ``model.safetensors.index.json``). A single ``model.safetensors`` streams only on request
    (``low_memory=True``), so small models keep an in-memory ``result.model``.
    """
    path = local_checkpoint(source)
    if path is not None:
        return (path / INDEX_NAME).is_file()
    repo_id = _hub_repo_id(source)
    if repo_id is None:
        return False
    try:
        hf_hub_download(repo_id, INDEX_NAME)
    except Exception:  # noqa: BLE001 - no index (or no access): the in-memory path decides
        return False
    return True


def resolve_checkpoint(source) -> tuple[SafetensorsCheckpoint, dict]:
    """(checkpoint, provenance) of a folder, snapshot or Hub id; Hub weights are downloaded.

    Raises:
        ModelError: ``source`` is not a folder or Hub id with safetensors weights.
    """
    path = local_checkpoint(source)
    if path is not None:
        return SafetensorsCheckpoint.open(path), {"source": str(source), "source_sha256": folder_weights_sha256(path)}
    repo_id = _hub_repo_id(source)
    if repo_id is not None:
        try:
            index = json.loads(Path(hf_hub_download(repo_id, INDEX_NAME)).read_text(encoding="utf-8"))
            weights = sorted(set(index["weight_map"].values()))
        except Exception:  # noqa: BLE001 - not sharded (or not there: snapshot_download says)
            weights = [SINGLE_NAME]
        try:
            # Only the listed weights: repos often hold other copies (consolidated.safetensors, .bin).
            folder = Path(snapshot_download(repo_id, allow_patterns=["*.json", *weights]))
        except Exception as e:  # noqa: BLE001 - re-raised with the fix
            raise ModelError(f"Cannot download the safetensors weights of {repo_id!r}: {e}") from e
        checkpoint = SafetensorsCheckpoint.open(folder)
        if checkpoint is not None:
            # A cache snapshot is named after its commit, what the in-memory path records.
            return checkpoint, {"source": str(source), "source_revision": folder.name}
    raise ModelError(
        f"low_memory=True streams safetensors checkpoints, and {source!r} is not a folder, snapshot or Hub id "
        "holding model.safetensors or model.safetensors.index.json. Pass low_memory=False to load it in memory."
    )


# --------------------------------------------------------------------------- the model on meta


def _model_class(config, task: str | None):
    """The class the in-memory path loads (:func:`hf_vocabswap.loading.load_model`)."""
    if task is not None:
        if task not in TASK_AUTO_CLASSES:
            raise ModelError(f"task must be one of {sorted(TASK_AUTO_CLASSES)}, not {task!r}")
        return getattr(transformers, TASK_AUTO_CLASSES[task])
    archs = getattr(config, "architectures", None) or []
    cls = getattr(transformers, archs[0], None) if archs else None
    if cls is None:
        cls = transformers.AutoModelForMaskedLM if getattr(config, "model_type", "") in ("bert",) else transformers.AutoModel
    return cls


def meta_model(folder: Path, checkpoint: SafetensorsCheckpoint, task: str | None = None):
    """The model of ``folder`` built on the meta device (no weights), with its generation config.

    Its dtype is what ``from_pretrained``'s default ``dtype="auto"`` would load.
    """
    config = transformers.AutoConfig.from_pretrained(folder)
    cls = _model_class(config, task)
    dtype = getattr(config, "dtype", None)
    if not isinstance(dtype, torch.dtype):
        dtype = getattr(torch, dtype) if isinstance(dtype, str) and hasattr(torch, dtype) else checkpoint.first_float_dtype()
    with torch.device("meta"):
        if cls.__name__.startswith("Auto"):
            model = cls.from_config(config, dtype=dtype)
        else:
            model = cls._from_config(config, dtype=dtype)
    model.eval()
    if model.can_generate():
        try:
            model.generation_config = GenerationConfig.from_pretrained(folder)
        except OSError:  # as from_pretrained: derive it from config.json
            model.generation_config = GenerationConfig.from_pretrained(folder, config_file_name="config.json", _from_model_config=True)
    return model


def vocabulary_tensors(model) -> list[torch.Tensor]:
    """The tensors of ``model`` a transplant reads or rewrites (objects, not copies).

    The same choice as :func:`hf_vocabswap.surgery.find_embeddings`, by identity rather than
    data pointer (meta tensors have none), plus the RoBERTa-style position table that surgery
    shifts when the pad id moves.
    """
    found: list[torch.Tensor] = []
    inp = model.get_input_embeddings()
    weight = getattr(inp, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ModelError(f"{type(model).__name__} has no input embedding matrix, so there is nothing to transplant.")
    found.append(weight)
    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if out is not None:
        out_weight = getattr(out, "weight", None)
        if isinstance(out_weight, torch.Tensor) and out_weight is not weight:
            found.append(out_weight)
        bias = getattr(out, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.dim() == 1 and bias.shape[0] == weight.shape[0]:
            found.append(bias)
    final_bias = getattr(model, "final_logits_bias", None)
    if isinstance(final_bias, torch.Tensor) and final_bias.shape[-1] == weight.shape[0]:
        found.append(final_bias)
    embeddings = getattr(getattr(model, "base_model", model), "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    if isinstance(table, torch.nn.Embedding) and table.padding_idx is not None:
        found.append(table.weight)
    unique: dict[int, torch.Tensor] = {}
    for t in found:
        unique.setdefault(id(t), t)
    return list(unique.values())


def _names_by_tensor(model) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, t in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(t), []).append(name)
    for name, t in model.named_buffers(remove_duplicate=False):
        names.setdefault(id(t), []).append(name)
    return names


def checkpoint_name(model, name: str, weight_map: dict) -> str | None:
    """The checkpoint key of the model's tensor ``name`` (with or without the base-model prefix)."""
    if name in weight_map:
        return name
    prefix = getattr(model, "base_model_prefix", "") or ""
    if prefix and name.startswith(prefix + ".") and name[len(prefix) + 1 :] in weight_map:
        return name[len(prefix) + 1 :]
    if prefix and f"{prefix}.{name}" in weight_map:
        return f"{prefix}.{name}"
    return None


def _set_tensor(model, name: str, value: torch.Tensor, *, buffer: bool) -> None:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name)
    if buffer:
        module._buffers[attr] = value
    else:
        module._parameters[attr] = value


def load_vocabulary_tensors(model, checkpoint: SafetensorsCheckpoint) -> list[str]:
    """Replace the meta vocabulary tensors of ``model`` by the checkpoint's; returns their names.

    A tensor tied under several names (input embeddings and head) is loaded once and set
    under every name, so the tie holds.

    Raises:
        ModelError: a vocabulary tensor is not in the checkpoint under any of its names.
    """
    names = _names_by_tensor(model)
    buffers = {id(t) for _, t in model.named_buffers(remove_duplicate=False)}
    loaded: list[str] = []
    for tensor in vocabulary_tensors(model):
        own = names.get(id(tensor), [])
        key = next((k for k in (checkpoint_name(model, n, checkpoint.weight_map) for n in own) if k is not None), None)
        if key is None:
            raise ModelError(
                f"The checkpoint in {checkpoint.folder} has no tensor {' or '.join(map(repr, own))}, which a transplant "
                "rewrites, so it cannot be streamed. Pass low_memory=False to load the model in memory."
            )
        value = checkpoint.load(key)
        if tuple(value.shape) != tuple(tensor.shape):
            raise ModelError(f"{key!r} has shape {tuple(value.shape)} in the checkpoint, but the config gives {tuple(tensor.shape)}.")
        is_buffer = id(tensor) in buffers
        value = value if is_buffer else torch.nn.Parameter(value, requires_grad=tensor.requires_grad)
        for n in own:
            _set_tensor(model, n, value, buffer=is_buffer)
        loaded.extend(own)
    return loaded


# --------------------------------------------------------------------------- the transplant


def open_streaming_source(model, source_tokenizer=None, *, task: str | None = None) -> SourceModel:
    """The source of a streamed transplant: a meta-device model holding only its vocabulary tensors.

    ``transplant_tokenizer`` plans and applies the transplant on it as on any model (alignment,
    method, plan and surgery are the in-memory path's own code); the result's
    :meth:`StreamingTransplantResult.save_pretrained` streams the other weights from the checkpoint.

    Raises:
        ModelError: ``model`` is not a folder, snapshot or Hub id with safetensors weights, or
            the checkpoint lacks a vocabulary tensor.
    """
    checkpoint, provenance = resolve_checkpoint(model)
    tokenizer = load_tokenizer(source_tokenizer if source_tokenizer is not None else model)
    lazy = meta_model(checkpoint.folder, checkpoint, task)
    loaded = load_vocabulary_tensors(lazy, checkpoint)
    logger.info("streaming transplant: loaded %s from %s; other weights stay on disk", ", ".join(loaded), checkpoint.folder)
    lazy.name_or_path = str(model)
    return SourceModel(lazy, tokenizer, provenance, checkpoint)


@dataclass
class StreamingTransplantResult(TransplantResult):
    """A :class:`TransplantResult` whose other weights are still in the source checkpoint.

    ``model`` holds the new vocabulary tensors and the updated config; its other tensors are
    on the meta device. ``save_pretrained`` (and ``push_to_hub``) write a complete model,
    loadable with stock ``from_pretrained``, tensor for tensor equal to the in-memory path's.
    """

    checkpoint: SafetensorsCheckpoint | None = None

    def new_tensors(self) -> tuple[dict[str, torch.Tensor], set[str]]:
        """(checkpoint name -> new tensor, checkpoint names to drop) for the saved weights.

        A tensor tied under several names that are all in the checkpoint is written once,
        under the name ``save_pretrained`` keeps (the tie's source).
        """
        model, weight_map = self.model, self.checkpoint.weight_map
        replaced: dict[str, torch.Tensor] = {}
        dropped: set[str] = set()
        tied_targets = set(getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys", None) or {})
        for names in _names_by_tensor(model).values():
            tensor = model.get_parameter(names[0]) if _is_parameter(model, names[0]) else model.get_buffer(names[0])
            if tensor.device.type == "meta":
                continue
            present = [(n, k) for n in names if (k := checkpoint_name(model, n, weight_map)) is not None]
            keep = [(n, k) for n, k in present if n not in tied_targets] or present[:1]
            for n, k in present:
                if (n, k) in keep[:1]:
                    replaced[k] = tensor.detach()
                else:
                    dropped.add(k)
        for name in getattr(model, "_keys_to_ignore_on_save", None) or []:
            if (k := checkpoint_name(model, name, weight_map)) is not None:
                dropped.add(k)
        return replaced, dropped

    def _write_model(self, folder: Path) -> None:
        model = self.model
        # What PreTrainedModel.save_pretrained records in the config before writing it.
        model.config.dtype = str(model.dtype).split(".")[1]
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(folder)
        if model.can_generate():
            model.generation_config.save_pretrained(folder)
        replaced, dropped = self.new_tensors()
        write_checkpoint(self.checkpoint, folder, replaced, dropped)


def _is_parameter(model, name: str) -> bool:
    try:
        model.get_parameter(name)
    except AttributeError:
        return False
    return True


# --------------------------------------------------------------------------- writing shards


def write_checkpoint(checkpoint: SafetensorsCheckpoint, folder, replaced: dict[str, torch.Tensor], dropped: set[str] = frozenset(), *, progress: bool = True) -> dict:
    """Write ``checkpoint`` into ``folder`` with ``replaced`` tensors swapped in, ``dropped`` left out.

    Shards keep their file names; a shard none of whose tensors change is copied as a file.
    Returns the new index (also written as ``model.safetensors.index.json`` when sharded).
    """
    folder = Path(folder)
    missing = sorted(set(replaced) - set(checkpoint.weight_map))
    if missing:
        raise ValueError(f"tensors {missing} are not in the checkpoint")
    weight_map: dict[str, str] = {}
    total_size = total_parameters = 0
    by_file: dict[str, list[str]] = {}
    for name, file in checkpoint.weight_map.items():
        by_file.setdefault(file, []).append(name)
    size = sum(checkpoint.file_bytes(f) for f in checkpoint.files)
    with progress_bar(group="save", total=size, unit="B", unit_scale=True, desc="Writing shards", enabled=progress) as bar:
        for file in checkpoint.files:
            src, dst = checkpoint.folder / file, folder / file
            touched = any(n in replaced or n in dropped for n in by_file[file])
            if touched:
                layout = _write_shard(src, dst, replaced, dropped)
            else:
                shutil.copyfile(src, dst)
                header, _ = read_header(src)
                layout = {n: (i["data_offsets"][1] - i["data_offsets"][0], _numel(i["shape"])) for n, i in header.items() if n != "__metadata__"}
            if not layout:  # every tensor of the shard was dropped
                dst.unlink(missing_ok=True)
            for name, (nbytes, numel) in layout.items():
                weight_map[name] = file
                total_size += nbytes
                total_parameters += numel
            bar.update(checkpoint.file_bytes(file))
    metadata = dict(checkpoint.index_metadata)
    metadata["total_size"] = total_size
    if "total_parameters" in metadata:
        metadata["total_parameters"] = total_parameters
    index = {"metadata": metadata, "weight_map": dict(sorted(weight_map.items()))}
    if checkpoint.sharded:
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return index


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _write_shard(src: Path, dst: Path, replaced: dict[str, torch.Tensor], dropped: set[str]) -> dict[str, tuple[int, int]]:
    """Rewrite one safetensors file; returns name -> (bytes, elements) of what it now holds."""
    header, data_start = read_header(src)
    metadata = header.pop("__metadata__", None)
    entries = []  # (name, dtype name, shape, source byte range or new tensor)
    for name, info in header.items():
        if name in dropped:
            continue
        if name in replaced:
            tensor = replaced[name].detach().to("cpu").contiguous()
            if tensor.dtype not in _DTYPE_NAMES:
                raise ValueError(f"cannot write {name!r} of dtype {tensor.dtype} to safetensors")
            entries.append((name, _DTYPE_NAMES[tensor.dtype], list(tensor.shape), tensor))
        else:
            entries.append((name, info["dtype"], info["shape"], tuple(info["data_offsets"])))
    # Widest dtypes first and every size a multiple of the item size: all tensors stay aligned.
    entries.sort(key=lambda e: (-_ITEM_SIZES.get(e[1], 1), e[0]))
    out_header: dict = {"__metadata__": metadata} if metadata is not None else {}
    offset = 0
    layout: dict[str, tuple[int, int]] = {}
    for name, dtype, shape, data in entries:
        nbytes = data.numel() * data.element_size() if isinstance(data, torch.Tensor) else data[1] - data[0]
        out_header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        layout[name] = (nbytes, _numel(shape))
        offset += nbytes
    if not entries:
        return layout
    encoded = json.dumps(out_header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    buffer = bytearray(COPY_BUFFER_BYTES)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(len(encoded).to_bytes(8, "little"))
        fout.write(encoded)
        for _, _, _, data in entries:
            if isinstance(data, torch.Tensor):
                if data.numel():
                    fout.write(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
                continue
            fin.seek(data_start + data[0])
            remaining = data[1] - data[0]
            view = memoryview(buffer)
            while remaining:
                n = fin.readinto(view[: min(remaining, len(buffer))])
                if not n:
                    raise OSError(f"{src} ends before the data its header lists")
                fout.write(view[:n])
                remaining -= n
    return layout


__all__ = [
    "SafetensorsCheckpoint",
    "StreamingTransplantResult",
    "load_vocabulary_tensors",
    "meta_model",
    "resolve_checkpoint",
    "open_streaming_source",
    "vocabulary_tensors",
    "wants_streaming",
    "write_checkpoint",
]
