"""Human label noise: training labels read from a file (CIFAR-10N / CIFAR-100N, .npy, text).

The CIFAR-N releases (``CIFAR-10_human.pt``, ``CIFAR-100_human.pt``) are ``torch.save``d dicts
of label arrays: ``clean_label``, ``aggre_label``, ``worse_label``, ``random_label1..3`` for
CIFAR-10N; ``clean_label``, ``noisy_label`` (NumPy arrays) and ``clean_coarse_label``,
``noisy_coarse_label`` (lists) for CIFAR-100N, one entry per training image in the order of
torchvision's CIFAR training set. They are read with ``torch.load(weights_only=True)``, which
builds only allow-listed types (here: tensors, containers, NumPy integer arrays) and never runs
code named by the file; ``.npy`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from sparsedd.errors import ConfigError, DataError

TEXT_SUFFIXES = (".txt",)
_LABEL_TEXT = re.compile(r"[+-]?[0-9]+")
#: The most bytes a label file may hold per training image (a .pt of CIFAR-100N holds four
#: label sets, two as pickled lists, in about 40 bytes an image), beyond a fixed allowance: a
#: file larger than that is not a label file of this dataset and is refused before it is read.
BYTES_PER_IMAGE = 256
BYTES_ALLOWANCE = 1 << 20
#: The widest label a text file may hold: a class id, not a number in the billions.
MAX_LABEL_DIGITS = 9


def resolve_label_file(name: str, data_dir: str) -> Path:
    """The path of ``noise_file``: as given, else (when relative) inside ``data_dir``."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists():
        return path
    in_data_dir = Path(data_dir).expanduser() / path
    return in_data_dir if in_data_dir.exists() else path


def read_human_labels(
    name: str, data_dir: str, label_set: str | None, train_labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """The label of every training image from ``noise_file``, checked against the dataset.

    DataError (one line) if the file is missing, unreadable, not a label file, if its length or
    label range does not fit the training set (``train_labels``, ``num_classes`` classes), or
    if its ``clean_label`` set (CIFAR-N files have one) disagrees with the dataset's labels.
    """
    n_train = len(train_labels)
    path = resolve_label_file(name, data_dir)
    if path.exists() and not path.is_file():
        raise DataError(
            f"noise_file {str(path)!r} is not a regular file (a folder, pipe or device); give "
            f"the path of a CIFAR-N .pt, .npy or text label file"
        )
    if not path.is_file():
        where = "" if Path(name).expanduser().is_absolute() else f" here or in {data_dir}"
        raise DataError(
            f"noise_file {name!r} not found{where}; give the path of a CIFAR-N .pt, .npy or "
            f"text label file"
        )
    _check_file_size(path, n_train)
    labels, clean = _read(path, label_set, n_train)
    if labels.ndim != 1 or len(labels) != n_train:
        held = f"{len(labels)} labels" if labels.ndim == 1 else f"shape {tuple(labels.shape)}"
        raise DataError(
            f"noise_file {str(path)!r} holds {held}, but the training set has {n_train} "
            f"images; give the file made for this dataset"
        )
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DataError(
            f"noise_file {str(path)!r} holds labels {low}..{high}, outside this dataset's "
            f"0..{num_classes - 1}; give the file made for this dataset"
        )
    if clean is not None and not torch.equal(clean, train_labels.to(torch.int64).cpu()):
        raise DataError(
            f"noise_file {str(path)!r}: its clean_label set disagrees with the dataset's "
            f"training labels (another dataset, or another image order); give the file made "
            f"for this dataset"
        )
    return labels


def _check_file_size(path: Path, n_train: int) -> None:
    """Refuse a file far larger than labels of ``n_train`` images can take, before reading it."""
    size = path.stat().st_size
    limit = BYTES_ALLOWANCE + BYTES_PER_IMAGE * n_train
    if size > limit:
        raise DataError(
            f"noise_file {str(path)!r} holds {size:,} bytes, more than the labels of "
            f"{n_train:,} training images can take ({limit:,}); give the label file made "
            f"for this dataset"
        )


def _read(
    path: Path, label_set: str | None, n_train: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(labels, the file's clean labels where it has them)."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        _check_unpacked_size(path, n_train)
        data = _load_torch(path)
        labels = _pick_set(data, label_set, path)
        clean = data.get("clean_label") if isinstance(data, dict) else None
        if clean is None:
            return labels, None
        clean = _as_labels(clean, path)
        return labels, clean if clean.shape == labels.shape else None
    if label_set is not None:
        raise ConfigError(
            f"config key 'noise_label_set' picks a label set of a CIFAR-N .pt file, but "
            f"{str(path)!r} holds one set; set noise_label_set=null"
        )
    if suffix == ".npy":
        _check_npy_header(path, n_train)
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise DataError(
                f"noise_file {str(path)!r} is not a plain NumPy array file ({err}); save the "
                f"labels with numpy.save as an integer array"
            ) from None
        return _as_labels(array, path), None
    if suffix in TEXT_SUFFIXES:
        return _read_text(path), None
    raise DataError(
        f"noise_file {str(path)!r} has an unknown suffix; use .pt (CIFAR-N), .npy or .txt "
        f"(one label a line)"
    )


def _check_unpacked_size(path: Path, n_train: int) -> None:
    """Refuse a .pt file (a zip archive) whose members would unpack to more than the labels of
    ``n_train`` images can take, from its directory alone: a deflated member of a few hundred
    KB can expand to gigabytes before its length could be checked."""
    if not zipfile.is_zipfile(path):
        return  # torch's legacy format: stored as is, its size was checked
    limit = BYTES_ALLOWANCE + BYTES_PER_IMAGE * n_train
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load says what is wrong with it
    if size > limit:
        raise DataError(
            f"noise_file {str(path)!r} unpacks to {size:,} bytes, more than the labels of "
            f"{n_train:,} training images can take ({limit:,}); give the label file made for "
            f"this dataset"
        )


def _check_npy_header(path: Path, n_train: int) -> None:
    """Refuse a .npy file whose header promises other than ``n_train`` integer labels, from
    the header alone (a header may promise 2^40 labels; reading them would allocate 8 TiB)."""
    fix = "save the labels with numpy.save as a 1-D integer array"
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(f)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as err:
        detail = " ".join(str(err).split())[:120]
        raise DataError(
            f"noise_file {str(path)!r} is not a plain NumPy array file ({detail}); {fix}"
        ) from None
    if dtype.hasobject:
        raise DataError(
            f"noise_file {str(path)!r} is not a plain NumPy array file (it holds Python "
            f"objects); {fix}"
        )
    if dtype.kind not in "iu":
        raise DataError(
            f"noise_file {str(path)!r} does not hold integer class labels ({dtype}); {fix}"
        )
    if len(shape) != 1 or shape[0] != n_train:
        held = f"{shape[0]} labels" if len(shape) == 1 else f"shape {shape}"
        raise DataError(
            f"noise_file {str(path)!r} holds {held}, but the training set has {n_train} "
            f"images; give the file made for this dataset"
        )


def _numpy_globals() -> list:
    """NumPy types that a pickled integer array names, under NumPy 1 and NumPy 2 names."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct
    int_dtypes = [
        getattr(np.dtypes, n)
        for n in (
            "Int8DType",
            "Int16DType",
            "Int32DType",
            "Int64DType",
            "UInt8DType",
            "UInt16DType",
            "UInt32DType",
            "UInt64DType",
        )  # fmt: skip
        if hasattr(np, "dtypes") and hasattr(np.dtypes, n)
    ]
    return [
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        *int_dtypes,
    ]


def _load_torch(path: Path) -> object:
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, zip and I/O errors
        lines = str(err).strip().splitlines()
        refused = next((line.strip() for line in lines if "Unsupported global" in line), None)
        if refused is not None or type(err).__name__ == "UnpicklingError":
            detail = f" ({refused[:120]})" if refused else ""
            raise DataError(
                f"noise_file {str(path)!r} holds more than label arrays{detail}; it is not "
                f"loaded, since that could run code: give a CIFAR-N label file, .npy or text"
            ) from None
        raise DataError(
            f"noise_file {str(path)!r} is not a readable torch file ({type(err).__name__}); "
            f"fetch it again"
        ) from None


def _pick_set(data: object, label_set: str | None, path: Path) -> torch.Tensor:
    if not isinstance(data, dict):
        if label_set is not None:
            raise ConfigError(
                f"noise_file {str(path)!r} holds one label array, not named sets; "
                f"set noise_label_set=null"
            )
        return _as_labels(data, path)
    names = ", ".join(map(str, data))
    if label_set is None:
        raise ConfigError(
            f"noise_file {str(path)!r} holds several label sets ({names}); pick one with "
            f"noise_label_set (e.g. worse_label for CIFAR-10N, noisy_label for CIFAR-100N)"
        )
    if label_set not in data:
        raise ConfigError(
            f"config key 'noise_label_set': {str(path)!r} has no set {label_set!r}; "
            f"choose one of: {names}"
        )
    return _as_labels(data[label_set], path)


def _as_labels(value: object, path: Path) -> torch.Tensor:
    """A 1-D int64 tensor of ``value`` (array, tensor or list of integers)."""
    try:
        array = np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError):
        array = np.empty(0, dtype=object)
    if array.dtype.kind not in "iu" or array.size == 0:
        raise DataError(
            f"noise_file {str(path)!r} does not hold integer class labels; give a label file"
        )
    low, high = int(array.min()), int(array.max())  # Python ints: uint64 stays unsigned
    if low < 0 or high >= 2**31:
        raise DataError(
            f"noise_file {str(path)!r} holds labels {low}..{high}, not class ids; give the "
            f"file made for this dataset"
        )
    return torch.from_numpy(array.astype(np.int64).reshape(array.shape))


def _read_text(path: Path) -> torch.Tensor:
    try:
        lines = path.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"noise_file {str(path)!r} cannot be read as text ({err})") from None
    wide = next((t for t in lines if len(t.lstrip("+-")) > MAX_LABEL_DIGITS), None)
    if wide is not None:
        raise DataError(
            f"noise_file {str(path)!r} holds {_cut(wide)}, not a class label; give one integer "
            f"label a line"
        )
    values = []
    for token in lines:
        # int() alone would take '٣' or '1_0'; a label is ASCII digits with an optional sign
        if not _LABEL_TEXT.fullmatch(token):
            raise DataError(
                f"noise_file {str(path)!r} holds {_cut(token)}, not a class label; give one "
                f"integer label a line"
            )
        values.append(int(token))
    if not values:
        raise DataError(f"noise_file {str(path)!r} is empty; give one integer label a line")
    return torch.tensor(values, dtype=torch.int64)


def _cut(token: str) -> str:
    """A token for an error line, cut short."""
    return repr(token) if len(token) <= 20 else repr(token[:17] + "...")
