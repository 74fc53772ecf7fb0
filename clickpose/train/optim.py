"""AdamW with a smaller learning rate for the backbone (and for deformable sampling offsets),
and a warmup-then-step schedule, as the DETR family trains."""
from __future__ import annotations

import math

import torch
from torch import nn

# Parameters that predict where deformable attention samples: a gentler lr (Deformable DETR).
LINEAR_PROJ_NAMES = ("sampling_offsets", "reference_points")


def parameter_groups(model: nn.Module, lr: float, backbone_lr_mult: float,
                     linear_proj_mult: float = 0.1) -> list[dict]:
    groups = {"backbone": [], "linear_proj": [], "rest": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("backbone."):
            groups["backbone"].append(p)
        elif any(k in name for k in LINEAR_PROJ_NAMES):
            groups["linear_proj"].append(p)
        else:
            groups["rest"].append(p)
    mults = {"backbone": backbone_lr_mult, "linear_proj": linear_proj_mult, "rest": 1.0}
    return [{"params": ps, "lr": lr * mults[k], "name": k} for k, ps in groups.items() if ps]


def build_optimizer(model: nn.Module, lr: float = 1e-4, weight_decay: float = 1e-4,
                    backbone_lr_mult: float = 0.1) -> torch.optim.AdamW:
    return torch.optim.AdamW(parameter_groups(model, lr, backbone_lr_mult), lr=lr,
                             weight_decay=weight_decay)


class WarmupStepSchedule:
    """lr factor per step: linear warmup, then 1, then `gamma` after `drop_step`.

    A plain object (not a closure), so LambdaLR's state_dict carries its numbers as JSON.
    """

    def __init__(self, warmup_steps: int, drop_step: int, gamma: float = 0.1):
        self.warmup_steps = int(warmup_steps)
        self.drop_step = int(drop_step)
        # The drop the epoch count asked for: a deadline may bring it earlier, never later.
        self.planned_drop_step = int(drop_step)
        self.gamma = float(gamma)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.gamma if step >= self.drop_step else 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None = None,
                    drop_fraction: float = 0.8, gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    if warmup_steps is None:
        warmup_steps = min(200, max(1, total_steps // 20))
    drop = max(warmup_steps, math.ceil(total_steps * drop_fraction))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupStepSchedule(warmup_steps, drop, gamma))


def fit_drop_to_deadline(scheduler: torch.optim.lr_scheduler.LambdaLR, steps_done: int,
                         steps_per_second: float, seconds_left: float,
                         drop_fraction: float = 0.8) -> int | None:
    """A time-limited run (--max-minutes) ends before its nominal last step: put the lr drop
    at `drop_fraction` of the steps the time allows, so that the run still gets its
    low-lr tail. Called after every epoch with that epoch's speed, so a slow first epoch
    (a feature cache filling up) does not fix the drop too early: until the drop happens it
    follows the latest estimate, never past the planned drop. A drop that has happened stays.
    Returns the drop step."""
    schedule = scheduler.lr_lambdas[0]
    if not isinstance(schedule, WarmupStepSchedule) or steps_per_second <= 0:
        return None
    if steps_done >= schedule.drop_step:
        return schedule.drop_step
    expected_total = steps_done + steps_per_second * max(seconds_left, 0.0)
    drop = max(schedule.warmup_steps, steps_done + 1, math.ceil(expected_total * drop_fraction))
    planned = getattr(schedule, "planned_drop_step", schedule.drop_step)
    schedule.drop_step = min(planned, drop)
    return schedule.drop_step
