"""A moving average of the weights, the model a run evaluates and saves (`--ema-decay`).

The optimizer steps the online network; timm's ModelEmaV3 keeps the average, with warmup:
after `step` steps the decay is 1 - (1 + step)^(-2/3), capped at `decay`, so the average
spans roughly the last (1 + step)^(2/3) steps: about 200 of a 3,000-step CPU run, about
2,000 of a 100,000-step GPU run. With it, a run's checkpoints hold the average and the
training state beside `last` holds the online weights that --resume continues from.
"""
from __future__ import annotations

import torch
from timm.utils import ModelEmaV3


def build_ema(model: torch.nn.Module, decay: float | None) -> ModelEmaV3 | None:
    """The average of `model`'s weights, starting from them (None: decay is None, no average)."""
    if decay is None:
        return None
    if not 0.0 < decay < 1.0:
        raise ValueError(f"ema_decay={decay}; use a value between 0 and 1 such as 0.9998, or "
                         "leave it unset for no moving average")
    return ModelEmaV3(model, decay=decay, use_warmup=True)


def evaluated(model: torch.nn.Module, ema: ModelEmaV3 | None) -> torch.nn.Module:
    """The network a run evaluates and saves: the average when there is one."""
    return model if ema is None else ema.module
