"""Components declare their needs: a model, dataset and criterion added from this one file run
end to end, and name checks, layer roles and run ids read the declarations."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch
from support import TINY_VIT, assert_one_error_line, run_cli, tiny_config
from torch import nn

from sparsedd.components import ignored_notes, run_id, validate
from sparsedd.config import Config
from sparsedd.criteria import CRITERIA, Criterion
from sparsedd.data.datasets import DATASETS, ImageData, dataset_shape
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds, create_model
from sparsedd.registry import Needs
from sparsedd.store.results import ResultsStore
from sparsedd.training.prune import excluded_layers, prunable_parameters


class TwoHeads(nn.Module):
    """An MLP whose logits come from ``head``, with an ``aux`` Linear registered after it."""

    def __init__(self, cfg: Config, spec: InputSpec) -> None:
        super().__init__()
        width = cfg.dim
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(spec.channels * spec.image_size**2, width), nn.ReLU()
        )
        self.head = nn.Linear(width, spec.num_classes)
        self.aux = nn.Linear(width, 1)  # last prunable layer, but not the output
        self.norm_like = nn.Linear(width, width)  # declared not prunable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.head(h) + 0 * self.aux(h).sum() + 0 * self.norm_like(h).sum()


def _blobs(cfg: Config) -> ImageData:
    """Three classes of 4×4 one-channel blobs, from a fixed generator."""
    g = torch.Generator().manual_seed(7)
    templates = torch.rand(3, 1, 4, 4, generator=g) * 255
    y = torch.randint(0, 3, (600,), generator=g)
    x = (templates[y] + torch.randn(600, 1, 4, 4, generator=g) * 40).clamp(0, 255)
    x = x.to(torch.uint8)
    return ImageData(x[:400], y[:400], x[400:], y[400:], 3, (0.5,), (0.3,))


def _reverse_magnitude(w: torch.Tensor, g: torch.Tensor | None, gen: torch.Generator):
    return -w.abs()  # the largest weights go first: the opposite of magnitude pruning


@pytest.fixture
def registered() -> Iterator[None]:
    """A model, a dataset and a criterion registered from this test module, then removed."""
    MODELS.register(
        "test-two-heads",
        ModelNeeds(keys=frozenset({"dim"}), prunable=("body.*", "head", "aux"), output="head"),
    )(TwoHeads)
    DATASETS.register("test-blobs", Needs(shape=(1, 4, 3)))(_blobs)
    CRITERIA.register("test-largest-first")(Criterion(_reverse_magnitude))
    yield
    MODELS.unregister("test-two-heads")
    DATASETS.unregister("test-blobs")
    CRITERIA.unregister("test-largest-first")


def _cfg(**overrides) -> Config:
    return tiny_config(
        model="test-two-heads", dataset="test-blobs", dim=12, val_size=32, **overrides
    )


def test_unregistered_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown model 'test-two-heads'"):
        tiny_config(model="test-two-heads")
    with pytest.raises(ConfigError, match="unknown dataset 'test-blobs'"):
        tiny_config(dataset="test-blobs")


def test_components_from_a_test_module_run_through_the_cli(registered, tmp_path, capsys) -> None:
    args = ["run", "-p", "tiny", "--out", str(tmp_path), "-q", "--set", "dim=12"]
    args += ["--set", "model=test-two-heads", "--set", "dataset=test-blobs"]
    args += ["--set", "prune_criterion=test-largest-first", "--set", "val_size=32"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    rows = ResultsStore(tmp_path).round_rows()
    assert [r["round"] for r in rows] == [0, 1, 2]
    # only the declared prunable layers are pruned (norm_like stays out of the masks)
    assert set(rows[-1]["layer_density"]) == {"body.1.weight", "head.weight", "aux.weight"}


def test_a_model_declares_its_prunable_and_output_layers(registered) -> None:
    model = create_model(_cfg(), InputSpec(1, 4, 3))
    assert set(prunable_parameters(model)) == {"body.1.weight", "head.weight", "aux.weight"}
    # `output` is the declared head, not the last prunable layer (aux)
    assert excluded_layers(model, "output") == {"head.weight"}
    bare = TwoHeads(_cfg(), InputSpec(1, 4, 3))  # built by hand: no declaration
    assert excluded_layers(bare, "output") == {"norm_like.weight"}


def test_run_identity_reads_the_declared_keys(registered) -> None:
    cfg = _cfg()
    assert run_id(dataclasses.replace(cfg, dim=13)) != run_id(cfg)  # declared: read
    assert run_id(dataclasses.replace(cfg, depth=5)) == run_id(cfg)  # a ViT key: not read
    assert ignored_notes(dataclasses.replace(cfg, depth=5), ["depth", "dim"]) == [
        "config key 'depth' is not used by model 'test-two-heads' with optimizer 'adamw'; "
        "it is ignored and does not change the run id"
    ]


def test_a_dataset_declares_its_shape(registered) -> None:
    assert dataset_shape("test-blobs") == (1, 4, 3)
    data = _blobs(_cfg())
    assert dataset_shape("test-blobs") == (data.channels, data.image_size, data.num_classes)
    assert dataset_shape("imagefolder") is None


def test_a_criterion_from_a_test_module_prunes_by_its_score(registered) -> None:
    from sparsedd.training.prune import full_masks, prune_round

    model = create_model(_cfg(), InputSpec(1, 4, 3))
    weights = {n: p.detach() for n, p in prunable_parameters(model).items()}
    masks = prune_round(weights, full_masks(model), 0.5, criterion="test-largest-first")
    kept = torch.cat([weights[n][m].abs() for n, m in masks.items()])
    cut = torch.cat([weights[n][~m].abs() for n, m in masks.items()])
    assert kept.max() <= cut.min()  # the largest half went


def test_every_model_declares_the_layer_that_gives_the_logits() -> None:
    spec = InputSpec(3, 32, 7)
    for name in MODELS.names():
        if name.startswith("timm:"):
            continue
        cfg = dataclasses.replace(tiny_config(**TINY_VIT), model=name)
        model = create_model(cfg, spec)
        (out,) = excluded_layers(model, "output")
        layer = model.get_submodule(out.removesuffix(".weight"))
        assert layer.weight.shape[0] == spec.num_classes, name


def test_vgg_ignores_vit_keys() -> None:
    """vgg11/16 read no ViT size: setting one keeps their run id (it changed them before)."""
    for name in ("vgg11", "vgg16"):
        cfg = dataclasses.replace(tiny_config(), model=name)
        assert run_id(dataclasses.replace(cfg, dim=64, depth=3)) == run_id(cfg)


def test_keys_read_only_by_another_dataset_or_noise_kind_are_refused(capsys) -> None:
    with pytest.raises(ConfigError, match="read only with dataset=imagefolder"):
        validate(dataclasses.replace(tiny_config(), image_size=64))
    code, _, err = run_cli(["run", "-p", "tiny", "--set", "noise_label_set=x", "--dry-run"], capsys)
    assert code == 2
    assert_one_error_line(err, ["'noise_label_set' is read only with noise_kind=human"])


def test_the_config_module_imports_no_component() -> None:
    code = (
        "import sys, sparsedd.config; "
        "print(sorted(m for m in sys.modules if m.startswith('sparsedd.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    # options: the table components fill; plugins: its loader (no plugin is loaded on import)
    bottom = ["sparsedd.config", "sparsedd.errors", "sparsedd.options", "sparsedd.plugins"]
    assert loaded == bottom, loaded


def test_a_model_checks_its_input_shape_when_the_config_is_validated() -> None:
    """The dataset declares its shape, the model what it takes: refused before any data load."""
    with pytest.raises(ConfigError, match="needs images of at least 16×16 pixels"):
        tiny_config(model="vgg11")  # synthetic images are 8×8
    with pytest.raises(ConfigError, match=r"'patch_size' \(3\) must divide the image size \(8\)"):
        tiny_config(**{**TINY_VIT, "patch_size": 3})
    with pytest.raises(ConfigError, match="multiple of 32"):
        tiny_config(model="swin", dataset="mnist")
    # imagefolder's shape is known only from its files: checked when the model is built
    assert validate(dataclasses.replace(tiny_config(), model="vgg11", dataset="imagefolder"))


def test_models_lists_components_and_the_keys_they_read(registered, capsys) -> None:
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0
    assert "  test-two-heads reads: dim\n" in out and "  lenet reads: no model-specific key" in out
    assert "test-blobs" in out.split("datasets: ")[1].splitlines()[0]
    assert "sweep backends: local, ray" in out
