"""Datasets read with torchvision's parsers from real-format files, splits, augmentation."""

import numpy as np
import pytest
import torch
from datafiles import IDX_NAMES, patch_cifar10_checksums, write_cifar10, write_idx_dataset
from support import tiny_config
from torchvision import transforms

from sparsedd.data import datasets as data_module
from sparsedd.data.batches import CROP_PADDING, epoch_batches, flip_crop
from sparsedd.data.datasets import load_dataset, make_splits
from sparsedd.errors import DataError


def test_fashion_mnist_gz_files_are_found_and_parsed(tmp_path, monkeypatch) -> None:
    system = tmp_path / "system"
    arrays = write_idx_dataset(system / "fashion-mnist", gz=True)
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", system)
    cfg = tiny_config(
        dataset="fashion-mnist", data_dir=str(tmp_path / "cache"), download=False, val_size=0
    )
    data = load_dataset(cfg)
    assert data.train_x.shape == (60, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays[IDX_NAMES[0]])
    assert np.array_equal(data.test_y.numpy(), arrays[IDX_NAMES[3]])
    # torchvision's own layout is used as the cache
    assert (tmp_path / "cache" / "FashionMNIST" / "raw" / IDX_NAMES[0]).exists()


def test_mnist_raw_files_in_data_dir(tmp_path) -> None:
    write_idx_dataset(tmp_path / "MNIST" / "raw", gz=False, n_train=30)
    cfg = tiny_config(dataset="mnist", data_dir=str(tmp_path), download=False, val_size=0)
    assert len(load_dataset(cfg).train_y) == 30


def test_missing_dataset_names_where_it_looked(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(data_module, "SYSTEM_DATA_ROOT", tmp_path / "nothing")
    cfg = tiny_config(dataset="fashion-mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError, match="not found.*looked in") as err:
        load_dataset(cfg)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)


def test_cifar10_batches_parsed_after_checksum(tmp_path, monkeypatch) -> None:
    patch_cifar10_checksums(monkeypatch, write_cifar10(tmp_path))
    cfg = tiny_config(dataset="cifar10", data_dir=str(tmp_path), download=False, val_size=0)
    data = load_dataset(cfg)
    assert data.train_x.shape == (40, 3, 32, 32) and data.test_x.shape == (8, 3, 32, 32)
    assert data.num_classes == 10


def test_cifar10_with_wrong_checksum_is_refused(tmp_path) -> None:
    write_cifar10(tmp_path)  # published checksums left in place: they cannot match
    cfg = tiny_config(dataset="cifar10", data_dir=str(tmp_path), download=False)
    with pytest.raises(DataError, match="corrupt or not the published"):
        load_dataset(cfg)


def test_splits_are_seeded_subsets_with_noisy_validation() -> None:
    cfg = tiny_config(train_size=500, val_size=100, noise=0.2, noise_seed=4)
    data = load_dataset(cfg)
    s = make_splits(data, cfg)
    assert len(s.train_y) == 400 and len(s.val_y) == 100
    assert (
        int(s.train_is_noisy.sum()) + int((s.val_y != data.train_y[s.pool_indices[:100]]).sum())
        == 100
    )
    again = make_splits(data, cfg)
    assert torch.equal(s.train_y, again.train_y) and torch.equal(s.val_x, again.val_x)
    other = make_splits(data, tiny_config(train_size=500, val_size=100, noise=0.2, noise_seed=5))
    assert not torch.equal(s.pool_indices, other.pool_indices)


def test_each_seed_draws_its_own_noisy_labels_by_default() -> None:
    base = {"train_size": 500, "val_size": 100, "noise": 0.2}
    data = load_dataset(tiny_config(**base))
    first, second = (make_splits(data, tiny_config(**base, seed=s)) for s in (0, 1))
    assert not torch.equal(first.train_is_noisy, second.train_is_noisy)
    pinned = [make_splits(data, tiny_config(**base, seed=s, noise_seed=7)) for s in (0, 1)]
    assert torch.equal(pinned[0].train_y, pinned[1].train_y)  # one draw for every seed


def test_batch_flip_crop_equals_torchvision_per_sample() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32, generator=g)
    flips = torch.tensor([True, False, True, False, True, False])
    offsets = torch.randint(0, 2 * CROP_PADDING + 1, (6, 2), generator=g)
    out = flip_crop(x, flips, offsets)
    for i in range(6):
        img = transforms.functional.hflip(x[i]) if flips[i] else x[i]
        padded = transforms.functional.pad(img, CROP_PADDING)
        top, left = int(offsets[i, 0]), int(offsets[i, 1])
        expected = transforms.functional.crop(padded, top, left, 32, 32)
        assert torch.equal(out[i], expected)


def test_epoch_batches_cover_every_sample_once_in_seeded_order() -> None:
    x = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    y = torch.arange(10)
    zero, one = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    seen = torch.cat([yb for _, yb in epoch_batches(x, y, 3, 5, False, zero, one)])
    assert sorted(seen.tolist()) == list(range(10))
    again = torch.cat([yb for _, yb in epoch_batches(x, y, 3, 5, False, zero, one)])
    assert torch.equal(seen, again)
