"""The activation-state entropy: DSD²'s formula on hand-built cases, and its round column."""

from __future__ import annotations

import math

import pytest
import torch
from support import run_cli
from torch import nn
from torch.nn import functional as F

from sparsedd.analysis.load import load_results
from sparsedd.analysis.tables import analyze
from sparsedd.training.entropy import activation_entropy, binary_entropy, state_entropy

# Four inputs: unit 0 sees x (on for 2 of 4), unit 1 sees 1 (always on), unit 2 sees x − 2.5
# (on for 1 of 4: x = 3), so their entropies are H(1/2) = 1, H(1) = 0 and H(1/4) bits.
X = torch.tensor([[-1.0], [1.0], [-2.0], [3.0]])
H_QUARTER = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))


def _layer(activation: nn.Module) -> nn.Sequential:
    linear = nn.Linear(1, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0], [0.0], [1.0]]))
        linear.bias.copy_(torch.tensor([0.0, 1.0, -2.5]))
    return nn.Sequential(linear, activation)


def test_binary_entropy_is_the_formula():
    p = torch.tensor([0.0, 0.25, 0.5, 1.0])
    assert binary_entropy(p).tolist() == pytest.approx([0.0, H_QUARTER, 1.0, 0.0])


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.GELU()])
def test_a_layer_is_the_mean_of_its_units(activation):
    expected = (1.0 + 0.0 + H_QUARTER) / 3
    assert activation_entropy(_layer(activation), X) == pytest.approx(expected)


class _TwoCalls(nn.Module):
    """A ReLU module and a functional GELU: two layers, as a ResNet block's F.relu calls are."""

    def __init__(self) -> None:
        super().__init__()
        self.first = _layer(nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.first(x) - 0.25)


def test_every_call_counts_as_a_layer_functional_ones_too():
    model = _TwoCalls()
    first = (1.0 + 0.0 + H_QUARTER) / 3
    # after the ReLU: [x⁺, 1, (x−2.5)⁺] − 0.25 is positive for x = 1, 3 | always | x = 3
    second = state_entropy(torch.tensor([[0, 1, 0], [1, 1, 0], [0, 1, 0], [1, 1, 1]]).bool())
    assert second == pytest.approx((1.0 + 0.0 + H_QUARTER) / 3)
    assert activation_entropy(model, X) == pytest.approx((first + second) / 2)
    assert model.training  # its mode is given back


def test_a_model_without_relu_or_gelu_has_no_entropy():
    assert activation_entropy(nn.Linear(1, 2), X) is None


def test_each_round_records_the_entropy_and_the_figure_draws_it(tmp_path, capsys):
    out = tmp_path / "runs"
    code, _, _ = run_cli(["run", "--preset", "tiny", "-q", "--out", str(out)], capsys)
    assert code == 0
    rounds = load_results(out)
    values = rounds["activation_entropy"].tolist()
    assert len(values) == 3 and all(0 < v < 1 for v in values)
    code, text, _ = run_cli(["results", str(out)], capsys)
    assert code == 0 and "activation_entropy" in text.splitlines()[0]
    from sparsedd.analysis.figure_parts import close
    from sparsedd.analysis.plot import plot_analysis

    fig = plot_analysis(analyze(rounds), entropy=True)
    try:
        panel = fig.axes[2]
        assert "entropy" in panel.get_ylabel()
        drawn = [line.get_ydata() for line in panel.get_lines() if len(line.get_ydata()) == 3]
        assert any(list(d) == pytest.approx(values) for d in drawn)
    finally:
        close(fig)
