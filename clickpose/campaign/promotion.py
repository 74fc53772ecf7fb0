"""Registering a round's model and the rule that makes it the current one.

Rule: a candidate is promoted when its validation AP beats the current model's by more than
`min_delta`; at equal AP (within 1e-9), when it needs fewer clicks (lower NoC@90). With no
current model, the first candidate is promoted. The registry keeps every candidate either way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from storage import ModelRecord, ModelRegistry

TIE = 1e-9


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(candidate: dict, current: dict | None, metric: str = "ap",
           min_delta: float = 0.0) -> Decision:
    if current is None:
        return Decision(True, "no current model")
    new, old = float(candidate[metric]), float(current.get(metric, float("-inf")))
    if new > old + min_delta:
        return Decision(True, f"{metric} {new:.4f} > {old:.4f} + {min_delta:g}")
    if abs(new - old) <= TIE:
        noc_new, noc_old = _noc90(candidate), _noc90(current)
        if noc_new is not None and noc_old is not None and noc_new < noc_old:
            return Decision(True, f"{metric} equal, NoC@90 {noc_new:.2f} < {noc_old:.2f}")
    return Decision(False, f"{metric} {new:.4f} does not beat {old:.4f} + {min_delta:g}")


def _noc90(metrics: dict) -> float | None:
    return metrics.get("noc_90", metrics.get("noc", {}).get("90"))


def flat_metrics(metrics: dict) -> dict[str, float]:
    """The registry keeps numbers: ap, ap50, ap75, noc_85, ..., noc_clicks_85, ..."""
    flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
    for name in ("noc", "noc_clicks"):
        for target, value in metrics.get(name, {}).items():
            flat[f"{name}_{target}"] = float(value)
    return flat


def find_round_model(registry: ModelRegistry, campaign_id: str, round_index: int
                     ) -> ModelRecord | None:
    for record in registry.list():
        tag = record.config.get("campaign", {})
        if tag.get("id") == campaign_id and tag.get("round") == round_index:
            return record
    return None


def register_round_model(registry: ModelRegistry, checkpoint: Path, campaign_id: str,
                         round_index: int, metrics: dict, dataset: dict, parent: str | None,
                         metric: str = "ap", min_delta: float = 0.0
                         ) -> tuple[ModelRecord, Decision]:
    """Register the round's checkpoint once (again: the same record), then apply the rule."""
    from clickpose.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint_config

    record = find_round_model(registry, campaign_id, round_index)
    if record is None:
        config = read_checkpoint_config(checkpoint)
        record = registry.register(
            {WEIGHTS_FILE: Path(checkpoint) / WEIGHTS_FILE,
             CONFIG_FILE: Path(checkpoint) / CONFIG_FILE},
            config={"model": config["model"],
                    "campaign": {"id": campaign_id, "round": round_index}},
            schema=config["schema"], metrics=flat_metrics(metrics), dataset=dataset,
            parent=parent)
    current = registry.current()
    if current is not None and current.id == record.id:
        return record, Decision(True, "already current")
    decision = decide(record.metrics, current.metrics if current else None, metric, min_delta)
    if decision.promote:
        registry.promote(record.id)
    return record, decision


def local_checkpoint(registry: ModelRegistry, model_id: str, cache: Path) -> Path:
    """A local copy of a registered checkpoint (downloaded once, sha256-checked)."""
    import shutil
    import tempfile

    folder = Path(cache) / model_id
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Download beside it, then rename: a reader never sees a half-downloaded checkpoint.
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=folder.parent))
    try:
        registry.download(model_id, staging)
        staging.rename(folder)
    except OSError:
        if not folder.is_dir():   # not lost to another download of the same model
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
