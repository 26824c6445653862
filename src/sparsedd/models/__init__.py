"""Models: the registry (``base``) and one module per family, each registering itself."""

from sparsedd.models import lenet, resnet, swin, timm_models, vgg, vit  # noqa: F401  registers them
