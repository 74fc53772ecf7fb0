"""AdamW with a smaller learning rate for the backbone (and for deformable sampling offsets),
and a warmup-then-step schedule, as the DETR family trains (or warmup-then-cosine)."""
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
    # foreach: one multi-tensor update instead of a loop of small ops per parameter (torch
    # picks it on CUDA only; on a CPU the loop is a visible share of a small model's step).
    return torch.optim.AdamW(parameter_groups(model, lr, backbone_lr_mult), lr=lr,
                             weight_decay=weight_decay, foreach=True)


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


class WarmupCosineSchedule:
    """lr factor per step: linear warmup, then half a cosine from 1 down to `floor` at
    `total_steps` (and `floor` after). A plain object like WarmupStepSchedule."""

    def __init__(self, warmup_steps: int, total_steps: int, floor: float = 0.01):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        # The end the epoch count asked for: a deadline may bring it earlier, never later.
        self.planned_total_steps = self.total_steps
        self.floor = float(floor)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


LR_SCHEDULES = ("step", "cosine")


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int | None = None,
                    drop_fraction: float = 0.8, gamma: float = 0.1, kind: str = "step"
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """kind 'step': the lr falls by `gamma` at `drop_fraction` of the steps; 'cosine': it
    decays smoothly to `gamma` / 10 of the peak over all the steps."""
    if kind not in LR_SCHEDULES:
        raise ValueError(f"lr schedule '{kind}' is unknown; use one of {', '.join(LR_SCHEDULES)}")
    if warmup_steps is None:
        warmup_steps = min(200, max(1, total_steps // 20))
    if kind == "cosine":
        schedule = WarmupCosineSchedule(warmup_steps, total_steps, floor=gamma / 10)
    else:
        schedule = WarmupStepSchedule(warmup_steps, max(warmup_steps, math.ceil(
            total_steps * drop_fraction)), gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def schedule_plan(scheduler: torch.optim.lr_scheduler.LambdaLR) -> dict:
    """The numbers of the scheduler's plan, to compare with a saved one (a copy)."""
    return dict(vars(scheduler.lr_lambdas[0]))


def follow_new_plan(scheduler: torch.optim.lr_scheduler.LambdaLR, plan: dict) -> bool:
    """After --resume loaded a saved schedule: a run resumed with another --epochs follows
    the new epoch count's `plan` (schedule_plan of the scheduler built for it) while its lr
    drop (or the cosine's end) is still ahead; one that has passed stays. Returns whether
    the plan changed."""
    schedule, done = scheduler.lr_lambdas[0], scheduler.last_epoch
    if isinstance(schedule, WarmupStepSchedule) and "planned_drop_step" in plan:
        if done >= schedule.drop_step or plan["planned_drop_step"] == schedule.planned_drop_step:
            return False
        schedule.drop_step = schedule.planned_drop_step = plan["planned_drop_step"]
        return _lr_from_plan(scheduler)
    if isinstance(schedule, WarmupCosineSchedule) and "planned_total_steps" in plan:
        if (done >= schedule.total_steps
                or plan["planned_total_steps"] == schedule.planned_total_steps):
            return False
        schedule.total_steps = schedule.planned_total_steps = plan["planned_total_steps"]
        return _lr_from_plan(scheduler)
    return False


def _lr_from_plan(scheduler: torch.optim.lr_scheduler.LambdaLR) -> bool:
    """Set the current lr of every group from the (changed) plan at the step reached."""
    groups = scheduler.optimizer.param_groups
    for group, base, schedule in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * schedule(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in groups]
    return True


def fit_schedule_to_deadline(scheduler: torch.optim.lr_scheduler.LambdaLR, steps_done: int,
                             steps_per_second: float, seconds_left: float) -> int | None:
    """A time-limited run ends before its nominal last step: the step schedule's drop
    (fit_drop_to_deadline) or the cosine's end (fit_cosine_to_deadline) moves to fit the
    steps the time allows. Returns that step."""
    if isinstance(scheduler.lr_lambdas[0], WarmupCosineSchedule):
        return fit_cosine_to_deadline(scheduler, steps_done, steps_per_second, seconds_left)
    return fit_drop_to_deadline(scheduler, steps_done, steps_per_second, seconds_left)


def fit_cosine_to_deadline(scheduler: torch.optim.lr_scheduler.LambdaLR, steps_done: int,
                           steps_per_second: float, seconds_left: float) -> int | None:
    """The cosine's last step moved to the steps the time allows (latest speed estimate,
    never past the planned end, never before the steps already done)."""
    schedule = scheduler.lr_lambdas[0]
    if not isinstance(schedule, WarmupCosineSchedule) or steps_per_second <= 0:
        return None
    expected_total = math.ceil(steps_done + steps_per_second * max(seconds_left, 0.0))
    schedule.total_steps = max(schedule.warmup_steps + 1, steps_done + 1,
                               min(schedule.planned_total_steps, expected_total))
    return schedule.total_steps


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
