"""Model registry: checkpoints with their config, keypoint schema, metrics and the dataset
version they were trained on; best-by-metric, a promoted `current` model, and lineage.

Files are uploaded first (content-addressed, verified on download); the registry manifest
is then updated by compare-and-swap, so a registered model never points to a partial file.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backend import Store, sha256_file
from .errors import ObjectNotFoundError, StorageError
from .manifest import Manifests

_MANIFEST = "models"


@dataclass(frozen=True)
class ModelRecord:
    id: str
    files: dict[str, dict]  # file name -> {"key", "size", "sha256"}
    config: dict
    schema: dict
    metrics: dict[str, float]
    dataset: dict  # {"name": ..., "version": ...}
    parent: str | None  # the model this one was fine-tuned from
    created_at: float


class ModelRegistry:
    def __init__(self, store: Store, root: str = "registry"):
        self.store, self.root = store, root.strip("/")
        self.manifests = Manifests(store, root=f"{self.root}/manifests")

    # -- writing -------------------------------------------------------------------------
    def register(self, files: Mapping[str, Path] | Sequence[Path], *, config: dict, schema: dict,
                 metrics: Mapping[str, float], dataset: Mapping[str, Any], parent: str | None = None) -> ModelRecord:
        """Upload the checkpoint files and add a model; returns its record (id 'm0001', ...)."""
        named = dict(files) if isinstance(files, Mapping) else {Path(p).name: p for p in files}
        if not named:
            raise StorageError("register: no checkpoint files given")
        if not {"name", "version"} <= set(dataset):
            raise StorageError("register: 'dataset' needs 'name' and 'version' (the dataset version trained on)")
        if parent is not None:
            self.get(parent)  # lineage must point to a registered model
        uploaded = {}
        for name, path in named.items():
            sha = sha256_file(Path(path))
            key = f"{self.root}/files/{sha}/{name}"
            info = self.store.info(key) if self.store.exists(key) else self.store.put_file(key, Path(path))
            uploaded[name] = {"key": key, "size": info.size, "sha256": sha}
        entry = {"files": uploaded, "config": config, "schema": schema,
                 "metrics": {k: float(v) for k, v in metrics.items()},
                 "dataset": dict(dataset), "parent": parent, "created_at": time.time()}
        added: dict[str, str] = {}

        def add(value: dict | None) -> dict:
            value = value or {"models": {}, "current": None, "promotions": []}
            model_id = f"m{len(value['models']) + 1:04d}"
            added["id"] = model_id
            return {**value, "models": {**value["models"], model_id: entry}}

        self.manifests.update(_MANIFEST, add)
        return self.get(added["id"])

    def promote(self, model_id: str) -> ModelRecord:
        """Make `model_id` the `current` model (the one the pipeline serves and annotates with)."""
        self.get(model_id)

        def set_current(value: dict) -> dict:
            promotions = value["promotions"] + [{"model": model_id, "at": time.time()}]
            return {**value, "current": model_id, "promotions": promotions}

        self.manifests.update(_MANIFEST, set_current)
        return self.get(model_id)

    # -- reading -------------------------------------------------------------------------
    def _state(self) -> dict:
        record = self.manifests.read_or_none(_MANIFEST)
        return record.value if record else {"models": {}, "current": None, "promotions": []}

    def list(self) -> list[ModelRecord]:
        return [_record(mid, e) for mid, e in sorted(self._state()["models"].items())]

    def get(self, model_id: str) -> ModelRecord:
        models = self._state()["models"]
        if model_id not in models:
            raise ObjectNotFoundError(
                f"{self.store.uri}: no model '{model_id}' in the registry; registered: {sorted(models) or 'none'}"
            )
        return _record(model_id, models[model_id])

    def current(self) -> ModelRecord | None:
        model_id = self._state()["current"]
        return self.get(model_id) if model_id else None

    def promotions(self) -> list[dict]:
        return self._state()["promotions"]

    def best(self, metric: str, mode: str = "max") -> ModelRecord:
        """The model with the highest (mode='max') or lowest (mode='min') value of `metric`."""
        if mode not in ("max", "min"):
            raise ValueError(f"best: mode must be 'max' or 'min', got {mode!r}")
        scored = [m for m in self.list() if metric in m.metrics]
        if not scored:
            present = sorted({k for m in self.list() for k in m.metrics})
            raise ObjectNotFoundError(f"{self.store.uri}: no model has metric '{metric}'; metrics present: {present}")
        pick = max if mode == "max" else min
        return pick(scored, key=lambda m: m.metrics[metric])

    def lineage(self, model_id: str) -> list[ModelRecord]:
        """The model, its parent, its parent's parent, ... (each with its dataset version)."""
        chain, seen = [], set()
        current: str | None = model_id
        while current is not None and current not in seen:
            seen.add(current)
            record = self.get(current)
            chain.append(record)
            current = record.parent
        return chain

    def download(self, model_id: str, dest: Path) -> dict[str, Path]:
        """Fetch a model's files into `dest` (sha256-verified); returns name -> path."""
        record = self.get(model_id)
        dest = Path(dest)
        paths = {}
        for name, ref in record.files.items():
            paths[name] = dest / name
            self.store.get_file(ref["key"], paths[name])
        return paths


def _record(model_id: str, entry: dict) -> ModelRecord:
    return ModelRecord(model_id, entry["files"], entry["config"], entry["schema"], entry["metrics"],
                       entry["dataset"], entry["parent"], entry["created_at"])
