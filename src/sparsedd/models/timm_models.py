"""Any timm model as ``model=timm:NAME``, built for the dataset (never with pretrained weights)."""

from __future__ import annotations

import difflib
import importlib.util
import re

import torch
from torch import nn

from sparsedd.config import Config
from sparsedd.errors import ConfigError
from sparsedd.models.base import MODELS, InputSpec, ModelNeeds
from sparsedd.models.vit import PATCH_SIZE

# timm is an optional extra, imported inside the functions that need it.

PREFIX = "timm:"
INSTALL_HINT = "pip install 'sparsedd[timm]'"


def timm_available() -> bool:
    """Whether the optional timm package is installed."""
    return importlib.util.find_spec("timm") is not None


def check_timm_name(name: str) -> None:
    """ConfigError unless timm is installed and knows model ``name``."""
    if not timm_available():
        raise ConfigError(f"model {PREFIX}{name} needs the timm package; {INSTALL_HINT}")
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=1)
        hint = f" (did you mean {PREFIX}{close[0]}?)" if close else ""
        raise ConfigError(
            f"timm has no model {name!r}{hint}; list them with python -c "
            f"\"import timm; print(timm.list_models('*vit*'))\""
        )


def build_timm_model(cfg: Config, spec: InputSpec) -> nn.Module:
    """The timm model named by ``cfg.model``, randomly initialized for ``spec``'s images.

    Image size and ``patch_size`` are passed to models that take them (ViT, DeiT, Swin …);
    a model that cannot take the images or predict the classes is refused as a ConfigError.
    """
    name = cfg.model[len(PREFIX) :]
    check_timm_name(name)
    model = _create(name, spec, {"img_size": spec.image_size, "patch_size": cfg.patch_size})
    _check_output(model, cfg.model, spec)
    return model


def _create(name: str, spec: InputSpec, optional: dict[str, int]) -> nn.Module:
    """timm.create_model with the ``optional`` keywords the model accepts (pretrained=False)."""
    import timm

    kwargs = dict(optional)
    while True:
        try:
            return timm.create_model(
                name,
                pretrained=False,
                num_classes=spec.num_classes,
                in_chans=spec.channels,
                **kwargs,
            )
        except TypeError as err:
            rejected = [k for k in kwargs if re.search(rf"\b{k}\b", str(err))]
            if not rejected:
                raise ConfigError(_refusal(PREFIX + name, spec, err)) from None
            for key in rejected:
                del kwargs[key]
        except (ValueError, AssertionError, RuntimeError) as err:
            raise ConfigError(_refusal(PREFIX + name, spec, err)) from None


def _check_output(model: nn.Module, label: str, spec: InputSpec) -> None:
    """ConfigError unless a batch of the dataset's images gives one logit per class."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, spec.channels, spec.image_size, spec.image_size))
    except Exception as err:  # any failure of a foreign model on our input shape
        raise ConfigError(_refusal(label, spec, err)) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, spec.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            _refusal(label, spec, f"it returns {shape}, not (batch, {spec.num_classes})")
        )


def _refusal(label: str, spec: InputSpec, err: object) -> str:
    first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
    return (
        f"model {label} cannot be built for {spec.channels}×{spec.image_size}×{spec.image_size} "
        f"images and {spec.num_classes} classes ({first}); choose another model, or set "
        f"patch_size (or image_size for imagefolder data) to fit"
    )


# timm models take the image size and patch_size; their classifier's name varies (None: the
# last prunable layer produces the logits).
MODELS.register_family(PREFIX, build_timm_model, check_timm_name, ModelNeeds(options=(PATCH_SIZE,)))


def stem_note(cfg: Config, spec: InputSpec) -> str | None:
    """A line to tell the user when the timm model in ``cfg`` shrinks ``spec``'s images to a
    feature map under 2×2 (its stem and stages downsample more than they allow), else None.

    The model is built on the meta device (no memory, no weights) to read its downsampling.
    """
    if not cfg.model.startswith(PREFIX) or not timm_available():
        return None
    name = cfg.model[len(PREFIX) :]
    try:
        with torch.device("meta"):
            model = _create(name, spec, {"img_size": spec.image_size, "patch_size": cfg.patch_size})
            model.eval()(torch.zeros(1, spec.channels, spec.image_size, spec.image_size))
        reduction = int(model.feature_info[-1]["reduction"])  # type: ignore[index]
        designed = model.pretrained_cfg.get("input_size", (0, 0, 0))[-1]  # type: ignore[union-attr]
    except Exception:  # a model that cannot take the images is refused when the run starts
        return None
    side = spec.image_size // reduction
    if side >= 2:
        return None
    return (
        f"model {cfg.model} downsamples its input {reduction}× (stem and stages; it was designed "
        f"for {designed}-px images): {spec.image_size}-px images leave a "
        f"{max(side, 0)}×{max(side, 0)} feature map; for imagefolder data set image_size="
        f"{max(designed, 2 * reduction)}, or choose a model made for small images (vit, "
        f"resnet18)"
    )
