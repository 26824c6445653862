"""Label noise: exact rates, seeding, kinds, and a random (not leading) subset."""

import pytest
import torch

from sparsedd.data.noise import corrupt_labels

C = 10


def labels(n: int = 10_000) -> torch.Tensor:
    return torch.arange(n) % C


@pytest.mark.parametrize("eps", [0.1, 0.2, 0.5])
def test_symmetric_noise_changes_exactly_eps_of_labels(eps: float) -> None:
    y = labels()
    noisy, is_noisy = corrupt_labels(y, eps, "symmetric", C, seed=3)
    assert int(is_noisy.sum()) == round(eps * len(y))
    assert torch.equal(is_noisy, noisy != y)
    # new labels are uniform among the *other* classes
    offsets = (noisy[is_noisy] - y[is_noisy]) % C
    counts = torch.bincount(offsets, minlength=C)
    assert counts[0] == 0
    expected = is_noisy.sum() / (C - 1)
    assert (counts[1:].float() - expected).abs().max() < 5 * expected.sqrt()


def test_random_noise_may_redraw_the_true_class() -> None:
    y = labels(20_000)
    noisy, is_noisy = corrupt_labels(y, 0.5, "random", C, seed=0)
    rate = float(is_noisy.float().mean())
    assert abs(rate - 0.5 * (C - 1) / C) < 0.01


def test_pairflip_maps_class_to_next() -> None:
    y = labels()
    noisy, is_noisy = corrupt_labels(y, 0.2, "pairflip", C, seed=1)
    assert torch.equal(noisy[is_noisy], (y[is_noisy] + 1) % C)
    assert int(is_noisy.sum()) == 2000


def test_noise_is_seeded_and_seed_dependent() -> None:
    y = labels()
    a, _ = corrupt_labels(y, 0.2, "symmetric", C, seed=7)
    b, _ = corrupt_labels(y, 0.2, "symmetric", C, seed=7)
    c, _ = corrupt_labels(y, 0.2, "symmetric", C, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_noisy_subset_is_random_not_leading() -> None:
    y = labels()
    _, is_noisy = corrupt_labels(y, 0.1, "symmetric", C, seed=0)
    first = int(is_noisy[:1000].sum())
    assert 50 < first < 150  # a leading subset would give 1000
    assert int(is_noisy[-5000:].sum()) > 400


def test_zero_noise_changes_nothing() -> None:
    y = labels(100)
    noisy, is_noisy = corrupt_labels(y, 0.0, "symmetric", C, seed=0)
    assert torch.equal(noisy, y) and not is_noisy.any()
