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
    with pytest.raises(ConfigError, match="run id .*, an exported .safetensors .*MODEL:CHECKPOINT"):
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


def _train_student(cfg, x, y, teacher, epochs: int) -> torch.nn.Module:
    """A LeNet trained by the one masked Trainer on (x, y) for ``epochs`` epochs, seeded."""
    from sparsedd.models.base import InputSpec, create_model
    from sparsedd.training.prune import full_masks
    from sparsedd.training.trainer import Trainer, steps_per_epoch

    torch.manual_seed(0)
    model = create_model(cfg, InputSpec(1, 8, 4))
    trainer = Trainer(model, full_masks(model), cfg, torch.device("cpu"), teacher=teacher)
    trainer.refresh_masks()
    per_epoch = steps_per_epoch(len(y), cfg.batch_size)
    for epoch in range(epochs):
        trainer.train_epoch(x, y, epoch, False, (0.5,), (0.25,), epoch * per_epoch, 10**6)
    return model.eval()


def test_distillation_makes_the_student_follow_a_confident_teacher() -> None:
    """α = 0.8 and a confident teacher: where the labels disagree with the teacher, the
    distilled student predicts the teacher's class; trained without, it learns the labels."""
    from sparsedd.training.teacher import frozen

    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (256, 1, 8, 8), generator=g, dtype=torch.uint8)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    with torch.no_grad():
        teacher[1].weight.copy_(torch.randn(4, 64, generator=g) * 3)
        teacher[1].bias.zero_()
    teacher = frozen(teacher)
    xn = (x.float() / 255 - 0.5) / 0.25
    says = teacher(xn).argmax(1)
    assert teacher(xn).softmax(1).max(1).values.mean() > 0.9  # confident
    y = torch.randint(0, 4, (256,), generator=g)
    disagree = y != says
    plain_cfg = cfg_of("lr=0.003", "batch_size=32")
    kd_cfg = cfg_of("lr=0.003", "batch_size=32", "remedy=distill", "kd_alpha=0.8")
    plain = _train_student(plain_cfg, x, y, None, epochs=30)
    distilled = _train_student(kd_cfg, x, y, teacher, epochs=30)
    plain_pred, kd_pred = plain(xn).argmax(1), distilled(xn).argmax(1)
    follows_plain = (plain_pred[disagree] == says[disagree]).float().mean().item()
    follows_kd = (kd_pred[disagree] == says[disagree]).float().mean().item()
    labels_plain = (plain_pred[disagree] == y[disagree]).float().mean().item()
    assert follows_kd > 0.8 and follows_kd > follows_plain + 0.4
    assert labels_plain > 0.5  # without distillation the student fits the (noisy) labels
    assert not torch.equal(plain_pred, kd_pred)


def test_a_distilled_run_needs_its_teacher() -> None:
    from sparsedd.models.base import InputSpec, create_model
    from sparsedd.training.prune import full_masks
    from sparsedd.training.trainer import Trainer

    cfg = cfg_of("remedy=distill")
    model = create_model(cfg, InputSpec(1, 8, 4))
    with pytest.raises(ValueError, match="needs a teacher"):
        Trainer(model, full_masks(model), cfg, torch.device("cpu"))


def _rows(out: Path, cfg) -> list[tuple]:
    from sparsedd.training.experiment import Experiment

    rows = Experiment(cfg, out).run()
    return [(r["round"], r["test_acc"], r["test_loss"], r["train_acc"]) for r in rows]


def test_the_default_teacher_is_trained_first_and_named_teachers_give_the_same_run(
    tmp_path: Path,
) -> None:
    """A distilled run trains its teacher (the dense round of the run without a remedy) when
    missing; naming that teacher by run id or by its export trains the same student."""
    import sparsedd.export.pruned as pruned
    from sparsedd.store.results import ResultsStore
    from sparsedd.training.teacher import default_teacher_id

    cfg = cfg_of("remedy=distill", "rounds=1", "epochs=1")
    teacher_id = default_teacher_id(cfg)
    default = _rows(tmp_path, cfg)
    assert ResultsStore(tmp_path).rounds_done(teacher_id) == {0}  # its dense round only
    assert run_id(cfg_of("rounds=1", "epochs=1")) == teacher_id
    by_id = _rows(
        tmp_path, cfg_of("remedy=distill", "rounds=1", "epochs=1", f"teacher={teacher_id}")
    )
    export = tmp_path / "teacher.safetensors"
    pruned.export_pruned(tmp_path, teacher_id, 0, export)
    by_file = _rows(tmp_path, cfg_of("remedy=distill", "rounds=1", "epochs=1", f"teacher={export}"))
    assert default == by_id == by_file and len(default) == 2


def test_a_teacher_of_other_data_is_refused_in_one_line() -> None:
    from sparsedd.models.base import InputSpec
    from sparsedd.training.teacher import check_teacher

    cfg = cfg_of("remedy=distill")
    spec = InputSpec(1, 8, 4)
    good = {"channels": 1, "image_size": 8, "num_classes": 4}
    check_teacher("t", {"dataset": "synthetic"}, good, cfg, spec)
    with pytest.raises(ConfigError, match=r"dataset mnist, not synthetic; 10 classes, not 4"):
        check_teacher("t", {"dataset": "mnist"}, {**good, "num_classes": 10}, cfg, spec)
    with pytest.raises(ConfigError, match="3×8² inputs, not 1×8²"):
        check_teacher("t", {"dataset": "synthetic"}, {**good, "channels": 3}, cfg, spec)
