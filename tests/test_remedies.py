"""Remedies as registered components: their keys, their run ids and their losses."""

from pathlib import Path

import pytest
import torch

from sparsedd.components import resolve_config, run_id
from sparsedd.errors import ConfigError
from sparsedd.remedies import REMEDIES


def cfg_of(*assignments: str):
    return resolve_config("tiny", assignments=assignments)


def test_remedy_keys_are_read_only_by_their_remedy() -> None:
    with pytest.raises(ConfigError, match="kd_alpha.*remedy=distill"):
        cfg_of("kd_alpha=0.5")
    with pytest.raises(ConfigError, match="label_smoothing.*remedy=label_smooth"):
        cfg_of("remedy=distill", "label_smoothing=0.2")
    with pytest.raises(ConfigError, match="unknown remedy 'distil'.*did you mean 'distill'"):
        cfg_of("remedy=distil")


def test_run_ids_change_only_with_a_remedy_and_its_own_keys() -> None:
    base = cfg_of()
    assert run_id(cfg_of("remedy=none")) == run_id(base)
    distill = cfg_of("remedy=distill")
    assert run_id(distill) != run_id(base)
    assert run_id(cfg_of("remedy=distill", "kd_alpha=0.5")) != run_id(distill)
    assert run_id(cfg_of("remedy=label_smooth")) not in (run_id(base), run_id(distill))


def test_a_teacher_file_enters_the_run_id_by_its_digest(tmp_path: Path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    a.write_bytes(b"one teacher")
    b.write_bytes(b"one teacher")
    id_a = run_id(cfg_of("remedy=distill", f"teacher={a}"))
    assert id_a == run_id(cfg_of("remedy=distill", f"teacher={b}"))  # same bytes, same run
    b.write_bytes(b"another teacher")
    assert run_id(cfg_of("remedy=distill", f"teacher={b}")) != id_a


def test_a_teacher_that_is_neither_run_id_nor_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run id .* or an exported .safetensors"):
        cfg_of("remedy=distill", "teacher=resnet")
    with pytest.raises(ConfigError, match="no file"):
        cfg_of("remedy=distill", f"teacher={tmp_path / 'missing.safetensors'}")


def test_distillation_loss_is_dsd2s() -> None:
    """α·T²·KL(p_t ‖ p_s) + (1 − α)·CE, against F.kl_div as DSD²'s train_one_epoch_KD uses it."""
    cfg = cfg_of("remedy=distill", "kd_alpha=0.7", "kd_temperature=4")
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    labels = torch.randint(0, 5, (8,), generator=g)
    kl = torch.nn.functional.kl_div(
        torch.log_softmax(student / 4, 1), torch.softmax(teacher / 4, 1), reduction="batchmean"
    )
    ce = torch.nn.functional.cross_entropy(student, labels)
    expected = 0.7 * 16 * kl + 0.3 * ce
    got = REMEDIES.get("distill").loss(student, labels, teacher, cfg).mean()
    assert torch.allclose(got, expected, atol=1e-5)
    # Batched runs (a leading dimension) share the labels and the teacher.
    both = REMEDIES.get("distill").loss(torch.stack([student, student]), labels, teacher, cfg)
    assert both.shape == (2, 8) and torch.allclose(both.mean(1), expected.expand(2), atol=1e-5)


def test_label_smoothing_loss_differs_from_plain_cross_entropy() -> None:
    cfg = cfg_of("remedy=label_smooth", "label_smoothing=0.2")
    logits, labels = torch.tensor([[4.0, 0.0, 0.0]]), torch.tensor([0])
    plain = REMEDIES.get("none").loss(logits, labels, None, cfg)
    smooth = REMEDIES.get("label_smooth").loss(logits, labels, None, cfg)
    expected = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.2)
    assert torch.allclose(smooth, expected.view(1)) and smooth.item() > plain.item()
