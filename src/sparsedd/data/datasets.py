"""Datasets by name: reading real files (torchvision's code), generated data, splits and noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sparsedd.config import Config
from sparsedd.data.idx_files import IDX_FILES, check_readable, gather_idx_files
from sparsedd.data.label_files import read_human_labels
from sparsedd.data.noise import corrupt_labels
from sparsedd.errors import ConfigError, DataError
from sparsedd.registry import Needs, Registry

SYSTEM_DATA_ROOT = Path("/usr/share/datasets")
# torchvision's ImageNet statistics, which the paper's main.py uses for CIFAR too.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageData:
    """A whole dataset as uint8 NCHW images and int64 labels, on the CPU."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: Class names by label (empty: unnamed, shown as their label numbers).
    classes: tuple[str, ...] = ()

    @property
    def class_names(self) -> list[str]:
        """Name of each class, by label: the dataset's own, or the label as text."""
        if len(self.classes) == self.num_classes:
            return list(self.classes)
        return [str(i) for i in range(self.num_classes)]

    @property
    def channels(self) -> int:
        """Colour channels of an image."""
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Height (= width) of an image in pixels."""
        return int(self.train_x.shape[2])


@dataclass(frozen=True)
class Splits:
    """Training, validation and test sets of one run, with the training set's noisy labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    train_clean_y: torch.Tensor
    train_is_noisy: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pool_indices: torch.Tensor

    def to(self, device: torch.device) -> Splits:
        """The same splits with every tensor on ``device``."""
        moved = {
            k: (v.to(device) if isinstance(v, torch.Tensor) else v)
            for k, v in self.__dict__.items()
        }
        return Splits(**moved)


DatasetLoader = Callable[[Config], ImageData]
DATASETS: Registry[DatasetLoader] = Registry("dataset")
#: Datasets read from files under config key ``data_dir``.
FILES_IN_DATA_DIR = "data_dir"


def dataset_shape(name: str) -> tuple[int, int, int] | None:
    """(channels, image size, classes) that dataset ``name`` declares, known without reading
    its files; None for a dataset whose files alone tell (imagefolder)."""
    return DATASETS.needs(name).shape


def load_dataset(cfg: Config) -> ImageData:
    """The dataset ``cfg.dataset``, read or generated; DataError if its files are unusable."""
    return DATASETS.get(cfg.dataset)(cfg)


def make_splits(data: ImageData, cfg: Config) -> Splits:
    """Seeded subset, label noise over it, then a validation hold-out (noisy labels kept)."""
    n = len(data.train_y)
    size = check_split_sizes(cfg, n)
    mean, std = normalization(data, cfg)
    g = torch.Generator().manual_seed(cfg.label_seed)
    pool = torch.randperm(n, generator=g)[:size]
    clean = data.train_y[pool]
    if cfg.noise_kind == "human":
        human = read_human_labels(
            cfg.noise_file or "", cfg.data_dir, cfg.noise_label_set, data.train_y, data.num_classes
        )
        noisy = human[pool]
        is_noisy = noisy != clean
    else:
        noisy, is_noisy = corrupt_labels(
            clean, cfg.noise, cfg.noise_kind, data.num_classes, seed=cfg.label_seed + 1
        )
    v = cfg.val_size
    return Splits(
        train_x=data.train_x[pool[v:]],
        train_y=noisy[v:],
        train_clean_y=clean[v:],
        train_is_noisy=is_noisy[v:],
        val_x=data.train_x[pool[:v]],
        val_y=noisy[:v],
        test_x=data.test_x,
        test_y=data.test_y,
        num_classes=data.num_classes,
        mean=mean,
        std=std,
        pool_indices=pool,
    )


def normalization(data: ImageData, cfg: Config) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) that config key ``normalize`` picks for ``data``."""
    if cfg.normalize == "dataset":
        return data.mean, data.std
    if data.channels != 3:
        raise ConfigError(
            f"normalize=imagenet needs RGB images, but {cfg.dataset} has {data.channels} "
            f"channel(s); use normalize=dataset"
        )
    return IMAGENET_MEAN, IMAGENET_STD


def check_image_data(data: ImageData, what: str) -> None:
    """DataError unless images are square, train and test agree, and labels are class ids."""
    problems = []
    if data.train_x.dim() != 4 or data.train_x.shape[1:] != data.test_x.shape[1:]:
        problems.append("training and test images differ in shape")
    elif data.train_x.shape[2] != data.train_x.shape[3]:
        problems.append("images are not square")
    if len(data.train_y) == 0 or len(data.test_y) == 0:
        problems.append("a split holds no samples")
    for labels in (data.train_y, data.test_y):
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= data.num_classes):
            problems.append(f"labels fall outside 0..{data.num_classes - 1}")
            break
    if problems:
        raise DataError(f"{what} are corrupt ({'; '.join(problems)}); fetch them again")


def check_split_sizes(cfg: Config, n: int) -> int:
    """The training pool size of ``cfg`` on a training set of ``n``; ConfigError if it won't fit."""
    size = cfg.train_size if cfg.train_size is not None else n
    if size > n:
        raise ConfigError(
            f"config key 'train_size' ({size}) is larger than the {cfg.dataset} training set "
            f"({n}); use at most {n}"
        )
    if cfg.val_size >= size:
        raise ConfigError(
            f"config key 'val_size' ({cfg.val_size}) leaves no training data out of {size}; "
            f"use at most {size - 1}"
        )
    return size


# ---------------------------------------------------------------- generated data (tests)


@DATASETS.register("synthetic", Needs(shape=(1, 8, 4)))
def _synthetic(cfg: Config) -> ImageData:
    """Four classes of noisy 8×8 templates; fixed, so every run sees the same images."""
    g = torch.Generator().manual_seed(20231)
    classes, size = 4, 8
    templates = torch.rand(classes, 1, size, size, generator=g) * 255

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, classes, (n,), generator=g)
        x = templates[y] + torch.randn(n, 1, size, size, generator=g) * 90
        return x.clamp(0, 255).to(torch.uint8), y

    train_x, train_y = sample(1024)
    test_x, test_y = sample(512)
    return ImageData(train_x, train_y, test_x, test_y, classes, (0.5,), (0.3,))


# ---------------------------------------------------------------- MNIST-format files


def _idx_dataset(torchvision_class: str, name: str, mean: float, std: float) -> DatasetLoader:
    def load(cfg: Config) -> ImageData:
        from torchvision import datasets

        cls = getattr(datasets, torchvision_class)
        root = Path(cfg.data_dir).expanduser()
        raw = root / torchvision_class / "raw"
        gather_idx_files(raw, [root, SYSTEM_DATA_ROOT / name])
        missing = [f for f in IDX_FILES if not (raw / f).exists()]
        if missing:
            if cfg.download:
                _download(lambda: cls(str(root), train=True, download=True), name, root)
            else:
                raise DataError(_missing_message(name, [raw, root, SYSTEM_DATA_ROOT / name]))
        for fname in IDX_FILES:
            check_readable(raw / fname, f"{name} file")
        try:
            train = cls(str(root), train=True, download=False)
            test = cls(str(root), train=False, download=False)
            train_x, test_x = train.data.unsqueeze(1), test.data.unsqueeze(1)
        except Exception as err:  # torchvision's parser signals corruption with asserts
            raise DataError(
                f"{name} files in {raw} are truncated or corrupt ({type(err).__name__}); "
                f"delete them and fetch them again"
            ) from None
        if len(train.targets) != len(train_x) or len(test.targets) != len(test_x):
            raise DataError(
                f"{name} files in {raw} disagree on the number of samples; "
                f"delete them and fetch them again"
            )
        data = ImageData(
            train_x,
            train.targets.long(),
            test_x,
            test.targets.long(),
            10,
            (mean,),
            (std,),
            tuple(train.classes),
        )
        check_image_data(data, f"{name} files in {raw}")
        return data

    return load


def _download(fetch: Callable[[], object], name: str, root: Path) -> None:
    try:
        fetch()
    except Exception as err:
        raise DataError(
            f"{name} is not in {root} or {SYSTEM_DATA_ROOT / name} and could not be downloaded "
            f"({type(err).__name__}); put its files in {root} or set data_dir"
        ) from None


def _missing_message(name: str, places: list[Path]) -> str:
    where = ", ".join(str(p) for p in places)
    hint = "apt-get install dataset-fashion-mnist, " if name == "fashion-mnist" else ""
    return (
        f"{name} not found (looked in {where}); {hint}put its files in data_dir, "
        f"or set download=true where the network allows"
    )


DATASETS.register("fashion-mnist", Needs(shape=(1, 28, 10), file_key=FILES_IN_DATA_DIR))(
    _idx_dataset("FashionMNIST", "fashion-mnist", 0.286, 0.353)
)
DATASETS.register("mnist", Needs(shape=(1, 28, 10), file_key=FILES_IN_DATA_DIR))(
    _idx_dataset("MNIST", "mnist", 0.1307, 0.3081)
)


# ---------------------------------------------------------------- CIFAR (pickled batches)


def _cifar_dataset(torchvision_class: str, name: str, classes: int) -> DatasetLoader:
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

    def load(cfg: Config) -> ImageData:
        from torchvision import datasets

        cls = getattr(datasets, torchvision_class)
        root = Path(cfg.data_dir).expanduser()
        folder = root / cls.base_folder
        if not folder.exists():
            if not cfg.download:
                raise DataError(_missing_message(name, [folder]))
            _download(lambda: cls(str(root), train=True, download=True), name, root)
        try:
            # torchvision checks each batch's MD5 against the published one before unpickling.
            train = cls(str(root), train=True, download=False)
            test = cls(str(root), train=False, download=False)
        except Exception as err:
            raise DataError(
                f"{name} files in {folder} are missing, corrupt or not the published ones "
                f"({err}); delete the folder and download again"
            ) from None

        def chw(images: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

        data = ImageData(
            chw(train.data),
            torch.tensor(train.targets),
            chw(test.data),
            torch.tensor(test.targets),
            classes,
            mean,
            std,
            tuple(train.classes),
        )
        check_image_data(data, f"{name} files in {folder}")
        return data

    return load


DATASETS.register("cifar10", Needs(shape=(3, 32, 10), file_key=FILES_IN_DATA_DIR))(
    _cifar_dataset("CIFAR10", "cifar10", 10)
)
DATASETS.register("cifar100", Needs(shape=(3, 32, 100), file_key=FILES_IN_DATA_DIR))(
    _cifar_dataset("CIFAR100", "cifar100", 100)
)
