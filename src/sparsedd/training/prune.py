"""Pruning masks: which weights are prunable, which are kept dense, and one pruning round
(scoring by a criterion of ``sparsedd.criteria``)."""

from __future__ import annotations

import fnmatch

import torch
from torch import nn

from sparsedd.config import Config
from sparsedd.criteria import CRITERIA
from sparsedd.errors import ConfigError, DivergedError
from sparsedd.models.base import InputSpec, count_parameters, create_model, layer_roles
from sparsedd.training.execution import mul_each_

Masks = dict[str, torch.Tensor]
PRUNABLE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of the Linear and Conv layers the model declares prunable, by parameter name
    (every one for a model built by hand; see ``ModelNeeds.prunable``).

    Biases, norms, position embeddings and CLS tokens are never returned, so never pruned.
    """
    patterns = layer_roles(model).prunable
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, PRUNABLE_MODULES) and any(
            fnmatch.fnmatchcase(module_name, p) for p in patterns
        ):
            found[f"{module_name}.weight" if module_name else "weight"] = module.weight
    return found


# The prune_exclude pattern naming the layer that produces the logits, whatever its name.
OUTPUT_LAYER = "output"


def excluded_layers(model: nn.Module, patterns: str) -> set[str]:
    """Prunable weights that config key ``prune_exclude`` keeps dense, by parameter name.

    ``patterns`` is comma-separated; each is matched (shell-style) against a layer's module
    name and its weight's name (``fc`` and ``fc.weight`` both name ``fc.weight``), and
    ``output`` names the layer producing the logits, as the model declares it (the last
    prunable layer when it declares none). A pattern that matches nothing, or patterns that
    leave nothing to prune, are a ConfigError.
    """
    names = list(prunable_parameters(model))
    output = layer_roles(model).output
    excluded: set[str] = set()
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            continue
        if pattern == OUTPUT_LAYER:
            hits = [f"{output}.weight"] if output is not None else names[-1:]
            hits = [n for n in hits if n in names]
        else:
            hits = [
                n
                for n in names
                if fnmatch.fnmatchcase(n, pattern)
                or fnmatch.fnmatchcase(n[: -len(".weight")], pattern)
            ]
        if not hits:
            shown = ", ".join(n[: -len(".weight")] for n in names[:8])
            more = ", ..." if len(names) > 8 else ""
            raise ConfigError(
                f"config key 'prune_exclude': {pattern!r} matches no prunable layer of this "
                f"model (its layers: {shown}{more}; or 'output')"
            )
        excluded.update(hits)
    if names and excluded == set(names):
        raise ConfigError(
            "config key 'prune_exclude' keeps every prunable layer dense; leave some to prune"
        )
    return excluded


def model_size(cfg: Config, spec: InputSpec) -> tuple[int, int]:
    """(parameters, prunable weights) of model ``cfg.model`` built for ``spec``.

    Prunable weights are those of every Linear and Conv layer that ``prune_exclude`` does not
    keep dense: the weights that pruning rounds remove 20% of at a time.
    """
    model = create_model(cfg, spec)
    dense = excluded_layers(model, cfg.prune_exclude)
    prunable = sum(p.numel() for n, p in prunable_parameters(model).items() if n not in dense)
    return count_parameters(model), prunable


def full_masks(model: nn.Module) -> Masks:
    """All-ones boolean masks for every prunable weight of ``model``."""
    return {
        name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_parameters(model).items()
    }


def prune_round(
    weights: dict[str, torch.Tensor],
    masks: Masks,
    rate: float,
    scope: str = "global",
    criterion: str = "magnitude",
    seed: int = 0,
    gradients: dict[str, torch.Tensor] | None = None,
) -> Masks:
    """New masks with ``round(rate · alive)`` more weights removed, lowest scores first.

    ``scope="global"`` ranks all prunable weights together (layers thin out at different
    speeds); ``"layerwise"`` removes ``rate`` of each layer. Pruned weights stay pruned.
    """
    crit = CRITERIA.get(criterion)
    if crit.needs_gradients and gradients is None:
        raise ValueError(f"criterion {criterion!r} needs gradients")
    gen = torch.Generator().manual_seed(seed)
    scores = {}
    for name, w in weights.items():
        grad = gradients[name].detach().float().cpu() if gradients is not None else None
        s = crit.score(w.detach().float().cpu(), grad, gen)
        if not bool(s[masks[name].cpu()].isfinite().all()):
            # NaN would rank as pruned (not finite) and empty the layer: never score it.
            raise DivergedError(
                f"layer {name} has non-finite weights, so it cannot be pruned: the run "
                f"diverged; lower config key 'lr'"
            )
        scores[name] = s.masked_fill(~masks[name].cpu(), float("-inf"))
    if scope == "global":
        kept = _keep_top(torch.cat([s.flatten() for s in scores.values()]), rate)
        out, offset = {}, 0
        for name, s in scores.items():
            out[name] = kept[offset : offset + s.numel()].view_as(s)
            offset += s.numel()
    else:
        out = {name: _keep_top(s.flatten(), rate).view_as(s) for name, s in scores.items()}
    return {name: m.to(masks[name].device) for name, m in out.items()}


def _keep_top(scores: torch.Tensor, rate: float) -> torch.Tensor:
    """Boolean mask keeping the highest ``(1 − rate)`` share of the finite scores."""
    alive = int(torch.isfinite(scores).sum())
    keep = alive - round(rate * alive)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if keep > 0:
        mask[torch.topk(scores, keep, sorted=False).indices] = True
    return mask


@torch.no_grad()
def apply_masks(params: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """Zero the pruned entries of ``params`` in place (masks as 0/1 tensors of their dtype)."""
    mul_each_(params, masks)


def count_remaining(masks: Masks) -> int:
    """Number of surviving prunable weights."""
    return int(sum(int(m.sum()) for m in masks.values()))


def count_total(masks: Masks) -> int:
    """Number of prunable weights."""
    return sum(m.numel() for m in masks.values())


def sparsity(masks: Masks) -> float:
    """Fraction of prunable weights removed, counted from the masks."""
    total = count_total(masks)
    return 1.0 - count_remaining(masks) / total if total else 0.0


def layer_density(masks: Masks) -> dict[str, float]:
    """Fraction of each prunable layer's weights that survive."""
    return {name: float(m.float().mean()) for name, m in masks.items()}
