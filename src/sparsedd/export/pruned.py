"""A pruned model to ship: its surviving weights with their positions, and rebuilding it.

``export_pruned`` writes one safetensors file. In the ``sparse`` format every pruned weight is
stored in CSR form over its ``(out_features, rest)`` view: ``sparse.<name>.crow_indices``,
``sparse.<name>.col_indices`` (each in the narrowest integer type that holds it) and
``sparse.<name>.values`` (the weights the mask keeps); every other tensor (biases, norms,
buffers) is stored whole as ``dense.<name>``. The ``dense`` format stores every tensor whole,
pruned weights as zeros. The metadata key ``sparsedd`` holds JSON with
the run's config, the input the model takes (channels, image size, classes and their names, and
the mean and std that inputs are normalized with), ``preprocess`` (how an image file becomes an
input: decoder, colour mode, resize and its filter, scaling, normalization, layout), the run id
and the round. ``load_pruned`` checks every field and tensor, then rebuilds the model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from sparsedd.components import from_dict
from sparsedd.config import to_dict
from sparsedd.config_files import load_yaml_file
from sparsedd.data.preprocess import describe
from sparsedd.errors import CheckpointError, StoreError, UserError
from sparsedd.export.checks import CSR_PARTS, FORMATS, check_export
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.results_folder import ResultsFolder
from sparsedd.store.run_folder import RunFolder
from sparsedd.training.reporter import rounds_span
from sparsedd.training.teacher import TEACHER_FILES


@dataclass(frozen=True)
class ExportSummary:
    """What an export wrote, and how it compares with the dense model."""

    path: Path
    run_id: str
    round: int
    format: str
    bytes: int
    dense_bytes: int
    kept: int
    prunable: int


def find_run_folder(out_dir: str | Path, run: str) -> Path:
    """The folder of run ``run`` (its id or a unique prefix) in a results folder."""
    runs = ResultsFolder(out_dir).runs
    ids = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    if not ids:
        raise StoreError(f"{out_dir} holds no runs; give the --out folder of `sparsedd run`")
    if run in ids:  # an exact id wins over longer names it begins (ID and a copied ID.old)
        return runs / run
    matches = [i for i in ids if i.startswith(run)] if run else []
    if len(matches) != 1:
        what = "matches several runs" if matches else "is not a run"
        listed = matches or ids  # an ambiguous prefix lists the runs it matches
        raise StoreError(
            f"{run!r} {what} in {out_dir}; give one of: {', '.join(listed[:8])}"
            + (" …" if len(listed) > 8 else "")
        )
    return runs / matches[0]


def export_pruned(
    out_dir: str | Path,
    run: str,
    round_: int | None,
    output: str | Path,
    fmt: str = "sparse",
) -> ExportSummary:
    """Write the model of ``run`` after ``round_`` (default: the last) to ``output``."""
    output = Path(output)
    if output.suffix != ".safetensors":
        raise UserError(f"model file {output} must end in .safetensors")
    if fmt not in FORMATS:
        raise UserError(f"export format {fmt!r} is not one of: {', '.join(FORMATS)}")
    folder = find_run_folder(out_dir, run)
    rounds = RunFolder(folder).checkpointed_rounds()
    if not rounds:
        raise StoreError(f"run {folder.name} has no finished round yet; train it first")
    k = rounds[-1] if round_ is None else round_
    if k not in rounds:
        raise StoreError(f"run {folder.name} has no round {k}; it finished {rounds_span(rounds)}")
    tensors, meta = ckpt.load_tensors(RunFolder(folder).round_file(k))
    cfg = from_dict(run_config(folder))
    inputs = _input_of(meta, cfg)
    info = {
        "config": to_dict(cfg),
        "input": inputs,
        "preprocess": describe(
            inputs["channels"], inputs["image_size"], inputs["mean"], inputs["std"]
        ),
        "run_id": folder.name,
        "round": k,
        "format": fmt,
    }
    state = {n[len("model.") :]: v for n, v in tensors.items() if n.startswith("model.")}
    masks = {n[len("mask.") :]: v for n, v in tensors.items() if n.startswith("mask.")}
    dense = {f"dense.{n}": v for n, v in state.items()}
    stored = dense if fmt == "dense" else sparse_tensors(state, masks)
    info["shapes"] = {n: list(state[n].shape) for n in masks}
    check_export(f"the export of run {folder.name} round {k}", stored, info)
    ckpt.save_tensors(output, stored, info)
    try:  # read back what was written, as load_pruned will
        check_export(str(output), *ckpt.load_tensors(output))
    except UserError:
        output.unlink(missing_ok=True)
        raise
    dense_bytes = len(save(dense, metadata={"sparsedd": json.dumps(info)}))
    return ExportSummary(
        path=output,
        run_id=folder.name,
        round=k,
        format=fmt,
        bytes=output.stat().st_size,
        dense_bytes=dense_bytes,
        kept=int(sum(int(m.sum()) for m in masks.values())),
        prunable=sum(m.numel() for m in masks.values()),
    )


def run_config(folder: Path) -> dict[str, Any]:
    """The config a run folder was trained with (its config.yaml)."""
    return load_yaml_file(RunFolder(folder).config)


def _input_of(meta: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """What the model takes: from the round checkpoint, or (older runs) from the dataset."""
    saved = meta.get("input")
    if isinstance(saved, dict) and "classes" in saved:
        return saved
    from sparsedd.data.datasets import load_dataset, normalization

    data = load_dataset(cfg)
    if isinstance(saved, dict):  # recorded before class names were: read them from the data
        return {**saved, "classes": data.class_names}
    mean, std = normalization(data, cfg)
    return {
        "channels": data.channels,
        "image_size": data.image_size,
        "num_classes": data.num_classes,
        "mean": list(mean),
        "std": list(std),
        "classes": data.class_names,
    }


def sparse_tensors(
    state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Masked weights in CSR form over their (rows, rest) view; every other tensor whole."""
    out = {}
    for name, value in state.items():
        if name not in masks or bool(masks[name].all()):  # unpruned (e.g. prune_exclude)
            out[f"dense.{name}"] = value
            continue
        mask = masks[name].reshape(value.shape[0], -1)
        rows, cols = mask.nonzero(as_tuple=True)  # row-major order, as CSR needs
        crow = torch.zeros(mask.shape[0] + 1, dtype=torch.int64)
        crow[1:] = torch.cumsum(torch.bincount(rows, minlength=mask.shape[0]), 0)
        out[f"sparse.{name}.crow_indices"] = crow.to(_index_dtype(mask.numel()))
        out[f"sparse.{name}.col_indices"] = cols.to(_index_dtype(mask.shape[1] - 1))
        out[f"sparse.{name}.values"] = value.reshape(mask.shape)[mask]
    return out


def _index_dtype(largest: int) -> torch.dtype:
    """The narrowest signed integer type holding ``largest`` (indices are most of the file)."""
    for dtype in (torch.int16, torch.int32):
        if largest <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def dense_state(tensors: dict[str, torch.Tensor], shapes: dict[str, list[int]]) -> dict:
    """The model's state dict from an exported file's tensors (CSR weights made dense)."""
    state = {n[len("dense.") :]: v for n, v in tensors.items() if n.startswith("dense.")}
    for name, shape in shapes.items():
        if name in state:
            continue
        crow, col, values = (tensors[f"sparse.{name}.{part}"] for part in CSR_PARTS)
        rows = torch.repeat_interleave(torch.arange(len(crow) - 1), crow.diff().long())
        weight = torch.zeros(shape[0], math.prod(shape[1:]), dtype=values.dtype)
        weight[rows, col.long()] = values
        state[name] = weight.reshape(shape)
    return state


def pruned_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported model: config, input (with mean, std and class names),
    preprocess, run, round."""
    _, meta = ckpt.load_tensors(Path(path))
    if "config" not in meta or "input" not in meta or "shapes" not in meta:
        raise CheckpointError(f"{path} is not a model written by `sparsedd export --run`")
    return meta


def load_pruned(path: str | Path) -> nn.Module:
    """The model exported to ``path``, rebuilt in eval mode for inference.

    Every field and tensor is checked first (``sparsedd.export.checks``): a file that fails
    raises one CheckpointError naming the field. The model takes images prepared as
    ``pruned_metadata(path)["preprocess"]`` says (``sparsedd.predict`` does it from files).
    """
    tensors, _ = ckpt.load_tensors(Path(path))
    meta = pruned_metadata(path)
    cfg = check_export(str(path), tensors, meta)
    from sparsedd.models.base import InputSpec, create_model

    spec = InputSpec(**{k: meta["input"][k] for k in ("channels", "image_size", "num_classes")})
    with torch.random.fork_rng():  # building initializes weights: leave the caller's RNG alone
        model = create_model(cfg, spec)
    try:
        model.load_state_dict(dense_state(tensors, meta["shapes"]), strict=True)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[-1][:160]
        raise CheckpointError(
            f"{path} does not match its model ({first}); export it again"
        ) from None
    return model.eval()


@TEACHER_FILES.register(".safetensors")
def teacher_file(path: Path) -> tuple[nn.Module, dict[str, Any], dict[str, Any]]:
    """An exported model as a distillation teacher: (model, its run's config, its input)."""
    meta = pruned_metadata(path)
    return load_pruned(path), dict(meta["config"]), dict(meta["input"])
