"""What a run trained on, recorded in its folder and checked whenever the run resumes.

A run's id hashes its config, not its data: the same config on an image folder that gained
images, on another ``data_dir`` or with an edited ``noise_file`` names the same run. So that
rounds trained on different data never sit in one curve, the run folder's ``data.json`` holds
digests of the images, the labels and the noise draw (the training and validation labels the
run actually uses, with their dataset indices); a resume on data whose digests differ is
refused in one line that says how to start a new run.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path
from typing import Any

import torch

from sparsedd.config import Config
from sparsedd.data.datasets import ImageData, Splits
from sparsedd.errors import DataError
from sparsedd.store import checkpoint as ckpt
from sparsedd.store.atomic import atomic_write_text
from sparsedd.store.run_folder import RunFolder

#: The digests compared on resume, and what each one covers (for the refusal's line).
CHECKED = {
    "images": "the images",
    "dataset_labels": "the dataset's labels",
    "noise_draw": "the noisy labels (noise_file or noise draw)",
}


def _digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of tensors' shapes, dtypes and bytes (CPU, contiguous)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().to("cpu").contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy() if t.dtype != torch.bool else t.numpy())
    return h.hexdigest()


#: Digests of datasets already hashed in this process (the runs of a sweep share one), by id,
#: with a weak reference that tells a reused id from the same object.
_DATASET_DIGESTS: dict[int, tuple[weakref.ref, tuple[str, str]]] = {}


def _dataset_digests(data: ImageData) -> tuple[str, str]:
    """(images, labels) digests of a dataset, computed once per loaded dataset."""
    cached = _DATASET_DIGESTS.get(id(data))
    if cached is not None and cached[0]() is data:
        return cached[1]
    digests = (_digest(data.train_x, data.test_x), _digest(data.train_y, data.test_y))
    _DATASET_DIGESTS[id(data)] = (weakref.ref(data), digests)
    return digests


def data_identity(cfg: Config, data: ImageData, splits: Splits) -> dict[str, Any]:
    """Digests of what a run trains and is tested on, with a readable description."""
    n_val = len(splits.val_y)
    images, labels = _dataset_digests(data)
    return {
        "images": images,
        "dataset_labels": labels,
        "noise_draw": _digest(splits.pool_indices, splits.train_y, splits.val_y),
        "described": {
            "dataset": cfg.dataset,
            "data_dir": cfg.data_dir,
            "noise_file": cfg.noise_file,
            "train_images": len(data.train_y),
            "test_images": len(data.test_y),
            "classes": data.num_classes,
            "validation": n_val,
        },
    }


def check_data_identity(folder: Path, run: str, identity: dict[str, Any]) -> None:
    """Refuse to resume run ``run`` (its folder ``folder``) on other data than it trained on.

    The digests in ``folder/data.json`` must equal ``identity``'s; a folder from before
    ``data.json`` existed is checked against its ``labels.safetensors`` (the noise draw).
    """
    recorded = _read_recorded(folder)
    if recorded is not None:
        changed = [what for key, what in CHECKED.items() if recorded.get(key) != identity[key]]
        was = recorded.get("described")
    else:
        changed = _labels_file_changes(folder, identity)
        was = None
    if not changed:
        return
    now = identity["described"]
    detail = ""
    if isinstance(was, dict) and was.get("train_images") != now["train_images"]:
        detail = f" ({was.get('train_images')} training images then, {now['train_images']} now)"
    raise DataError(
        f"run {run} was trained on other data: {', '.join(changed)} changed since its recorded "
        f"rounds{detail}; to train on the data as it is now, start a new run: move {folder} "
        f"away (the run is then recomputed) or give another --out"
    )


def _read_recorded(folder: Path) -> dict[str, Any] | None:
    path = RunFolder(folder).data
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:  # unreadable, not damaged: deleting it would drop the check
        raise DataError(
            f"cannot read {path}: {err.strerror or err}; make it readable (e.g. chmod u+r) "
            f"so that the run's data can be checked, and run again"
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        recorded = None
    if not isinstance(recorded, dict):
        raise DataError(
            f"{path} is damaged, so what data the run trained on cannot be checked; move "
            f"{folder} away (the run is then recomputed) or restore the file from a copy"
        )
    return recorded


def _labels_file_changes(folder: Path, identity: dict[str, Any]) -> list[str]:
    """What differs from a run folder's ``labels.safetensors`` (a run older than data.json)."""
    path = RunFolder(folder).labels
    if not path.is_file():
        return []
    tensors, _ = ckpt.load_tensors(path)
    try:
        recorded = _digest(
            torch.cat([tensors["val_dataset_index"], tensors["dataset_index"]]),
            tensors["noisy_label"],
            tensors["val_noisy_label"],
        )
    except (KeyError, RuntimeError):
        return []  # a labels file of another layout: nothing to compare with
    return [] if recorded == identity["noise_draw"] else [CHECKED["noise_draw"]]


def write_data_identity(folder: Path, identity: dict[str, Any]) -> None:
    """Record ``identity`` in the run folder (atomically; the umask's mode)."""
    atomic_write_text(RunFolder(folder).data, json.dumps(identity, indent=1) + "\n")
