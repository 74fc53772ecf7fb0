"""Checkpoints: a folder with `model.safetensors` (weights) and `config.json` beside it.

config.json holds the ModelConfig, the KeypointSchema, metrics, training arguments and a
dataset fingerprint, plus the SHA-256 of the weights file so that a torn or swapped pair is
caught. The training state for --resume (optimizer, scheduler, epoch, RNG) is kept the same
way: tensors in safetensors, everything else in JSON. Nothing is ever unpickled.
Each file is written atomically.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from clickpose.io import atomic_write_bytes, atomic_write_json
from clickpose.keypoints import EXTRA_KEYPOINTS, KeypointSchema, SchemaError
from clickpose.model.pretrained import pretrained_names, resolve_checkpoint_path

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_TENSORS_FILE = "training_state.safetensors"
STATE_JSON_FILE = "training_state.json"
# The optimizer's own weights in a training state, when the checkpoint holds their average.
ONLINE_PREFIX = "online/"
FORMAT = "clickpose-checkpoint"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit the model or data it meets."""


# ---- paths and config -------------------------------------------------------------------
def checkpoint_folder(path: str | Path) -> Path:
    """The checkpoint folder, given the folder itself, its model.safetensors / config.json, or
    the name of a packaged checkpoint (clickpose.model.pretrained)."""
    path = resolve_checkpoint_path(path)
    folder = path.parent if path.suffix in (".safetensors", ".json") else path
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        if not (folder / name).is_file():
            packaged = ", ".join(pretrained_names()) or "none"
            raise CheckpointError(
                f"{folder}: no {name}; a checkpoint is a folder with {WEIGHTS_FILE} and "
                f"{CONFIG_FILE} (as written by `clickpose train`), or the name of a packaged "
                f"one ({packaged})")
    return folder


def read_checkpoint_config(path: str | Path) -> dict:
    folder = checkpoint_folder(path)
    where = folder / CONFIG_FILE
    try:
        config = json.loads(where.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{where}: not valid JSON ({e}); the checkpoint is damaged, "
                              "copy it again or retrain") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: holds a JSON {type(config).__name__}, not an object; "
                              "this is not a checkpoint written by `clickpose train`")
    for key in ("format", "model", "schema", "weights_sha256"):
        if key not in config:
            raise CheckpointError(f"{where}: field '{key}' is missing; this is not a checkpoint "
                                  "written by `clickpose train`")
    if config["format"] != FORMAT:
        raise CheckpointError(f"{where}: 'format' is {config['format']!r}, expected {FORMAT!r}")
    _check_model_config(config["model"], where)
    return config


def _check_model_config(model: dict, where: Path) -> None:
    from pydantic import ValidationError

    from clickpose.model.presets import ModelConfig

    try:
        ModelConfig.model_validate(model)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(part) for part in err['loc']) or 'model'}: "
                             f"{err['msg']}" for err in e.errors())
        raise CheckpointError(
            f"{where}: field 'model' does not describe a model this version of clickpose can "
            f"build ({problems}); load it with the clickpose version that wrote it, or retrain"
        ) from None


def checkpoint_schema(path: str | Path) -> KeypointSchema:
    return _config_schema(read_checkpoint_config(path), checkpoint_folder(path))


def _config_schema(config: dict, folder: Path) -> KeypointSchema:
    try:
        return KeypointSchema.model_validate(config["schema"])
    except ValueError as e:
        raise CheckpointError(f"{folder / CONFIG_FILE}: field 'schema': {e}") from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- weights ----------------------------------------------------------------------------
def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # clone(): safetensors refuses tensors that share storage (tied weights).
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


# config.json's record of the prior a fitted click prior was pooled with (null: none).
INHERITED_PRIOR_KEY = "click_prior_inherited"


def save_checkpoint(folder: str | Path, model, metrics: dict | None = None,
                    training: dict | None = None, dataset: dict | None = None) -> Path:
    """Write model.safetensors and config.json into `folder`; returns the folder."""
    folder = Path(folder)
    data = save_tensors(_cpu_state(model), metadata={"format": "pt"})
    atomic_write_bytes(folder / WEIGHTS_FILE, data)
    config = {
        "format": FORMAT,
        "version": 1,
        "model": model.config.model_dump(mode="json"),
        "schema": model.schema.model_dump(mode="json"),
        "metrics": metrics or {},
        "training": training or {},
        "dataset": dataset or {},
        "weights_sha256": _sha256(data),
    }
    if getattr(model, "click_prior", None) is not None:
        config["click_prior"] = model.click_prior.to_json()
    atomic_write_json(folder / CONFIG_FILE, config, indent=2)
    return folder


def attach_click_prior(path: str | Path, prior, inherited=None) -> Path:
    """Store a fitted ClickPrior in the checkpoint's config.json (the weights stay as they
    are), with the prior it was pooled with (`inherited`; None: nothing), which a later fit
    of the same checkpoint pools with again instead of this fit; returns the folder."""
    folder = checkpoint_folder(path)
    config = read_checkpoint_config(folder)
    schema = _config_schema(config, folder)
    if prior.num_keypoints != schema.num_keypoints:
        raise CheckpointError(f"{folder / CONFIG_FILE}: the click prior has "
                              f"{prior.num_keypoints} keypoints, the checkpoint's schema "
                              f"'{schema.name}' {schema.num_keypoints}; fit it on this model")
    config["click_prior"] = prior.to_json()
    config[INHERITED_PRIOR_KEY] = None if inherited is None else inherited.to_json()
    atomic_write_json(folder / CONFIG_FILE, config, indent=2)
    return folder


def read_click_prior(path: str | Path):
    """The checkpoint's ClickPrior, or None when it has none (fitted by `clickpose train`
    and `clickpose fit-click-prior`)."""
    folder = checkpoint_folder(path)
    return _config_click_prior(read_checkpoint_config(folder), folder)


def read_inherited_click_prior(path: str | Path):
    """The ClickPrior this checkpoint's weights came with, before any fit of their own: the
    one its fit was pooled with, or, while it has no fit (a run not yet ended, a checkpoint
    saved with the prior of the one it was fine-tuned from), the one it holds. A run resumed
    after it ended fits again from this, not from its own earlier fit."""
    folder = checkpoint_folder(path)
    config = read_checkpoint_config(folder)
    if INHERITED_PRIOR_KEY not in config:
        return _config_click_prior(config, folder)
    if config[INHERITED_PRIOR_KEY] is None:
        return None
    return _config_click_prior(config, folder, INHERITED_PRIOR_KEY)


def _config_click_prior(config: dict, folder: Path, field: str = "click_prior"):
    """The ClickPrior in `field` of the checkpoint's config (None when it has none)."""
    from clickpose.model.click_prior import ClickPrior, ClickPriorError

    if field not in config:
        return None
    try:
        return ClickPrior.from_json(config[field], _config_schema(config, folder).num_keypoints,
                                    str(folder / CONFIG_FILE), field)
    except ClickPriorError as e:
        raise CheckpointError(str(e)) from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, after checking them against config.json's SHA-256."""
    folder = checkpoint_folder(path)
    config = read_checkpoint_config(folder)
    where = folder / WEIGHTS_FILE
    data = where.read_bytes()
    if _sha256(data) != config["weights_sha256"]:
        raise CheckpointError(
            f"{where}: SHA-256 differs from 'weights_sha256' in {CONFIG_FILE}; the weights are "
            "damaged or belong to another checkpoint; copy the whole folder again")
    try:
        tensors = load_tensors(data)
    except SafetensorError as e:
        raise CheckpointError(f"{where}: cannot read the safetensors file ({e})") from None
    # Packaged checkpoints store half precision (a smaller package); the model computes in float32.
    return {k: v.float() if v.dtype in (torch.float16, torch.bfloat16) else v
            for k, v in tensors.items()}


def build_from_config(config: dict, device: str | torch.device = "cpu"):
    """A freshly initialised model of the checkpoint's architecture and schema."""
    from clickpose.model import build_model
    from clickpose.model.presets import ModelConfig

    model_cfg = dict(config["model"])
    # The checkpoint's weights replace any pretrained backbone: never fetch them again.
    if "backbone_weights" in model_cfg:
        model_cfg["backbone_weights"] = "none"
    schema = KeypointSchema.model_validate(config["schema"])
    model = build_model(ModelConfig.model_validate(model_cfg), schema)
    # Report the configuration the checkpoint was trained with.
    model.config = ModelConfig.model_validate(config["model"])
    return model.to(device)


def load_model(path: str | Path, device: str | torch.device = "cpu",
               schema: KeypointSchema | None = None):
    """The trained model (eval mode) from a checkpoint folder or its model.safetensors.

    With `schema`, refuse a checkpoint trained on other keypoints (SchemaError naming both).
    """
    folder = checkpoint_folder(path)
    config = read_checkpoint_config(folder)
    if schema is not None:
        trained = checkpoint_schema(folder)
        schema.require_same(trained, f"checkpoint {folder} (trained on '{trained.name}', "
                                     f"{trained.num_keypoints} keypoints) against data labelled "
                                     f"with '{schema.name}' ({schema.num_keypoints} keypoints)")
    model = build_from_config(config, "cpu")
    state = read_weights(folder)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: the weights do not fit the architecture "
                              f"in {CONFIG_FILE}: {str(e).splitlines()[0]}") from None
    model.click_prior = _config_click_prior(config, folder)
    return model.to(device).eval()


# ---- keypoint adaptation ------------------------------------------------------------------
def parent_keypoints(old: KeypointSchema, new: KeypointSchema) -> list[int]:
    """For each keypoint of `new`, the keypoint of `old` whose weights it starts from."""
    parents = []
    for i, name in enumerate(new.keypoints):
        if i < old.num_keypoints:
            parents.append(i)
            continue
        parent = EXTRA_KEYPOINTS.get(name, (None, None))[1]
        if parent not in old.keypoints:  # else a skeleton neighbour that the old schema knows
            neighbours = [new.keypoints[b if a == i else a] for a, b in new.skeleton if i in (a, b)]
            parent = next((n for n in neighbours if n in old.keypoints), old.keypoints[0])
        parents.append(old.keypoints.index(parent))
    return parents


def adapt_state(old_state: dict[str, torch.Tensor], new_state: dict[str, torch.Tensor],
                old_k: int, parents: list[int]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """New-model tensors filled from an old model with fewer keypoints.

    Same shape: copied. One dimension grown from old_k to len(parents) (a per-keypoint
    table: query embeddings, sigmas...), or from old_k x m to len(parents) x m (m channels
    per keypoint, keypoint-major: the heatmap offsets' x, y): rows copied, new rows from
    their parent keypoint. Returns the state and the names left at their fresh initialisation.
    """
    index = torch.as_tensor(parents, dtype=torch.int64)
    out, fresh = {}, []
    for name, target in new_state.items():
        source = old_state.get(name)
        if source is not None and source.shape == target.shape:
            out[name] = source.to(target.dtype)
            continue
        grown = None
        if source is not None and source.dim() == target.dim():
            diff = [d for d in range(target.dim()) if source.shape[d] != target.shape[d]]
            if len(diff) == 1:
                grown = _grow_per_keypoint(source, diff[0], old_k, index, target.shape[diff[0]])
        if grown is None:
            out[name] = target
            fresh.append(name)
        else:
            out[name] = grown.to(target.dtype)
    return out, fresh


def _grow_per_keypoint(source: torch.Tensor, dim: int, old_k: int, parents: torch.Tensor,
                       new_size: int) -> torch.Tensor | None:
    """`source` with its `dim` of old_k x m grown to len(parents) x m (None: not per keypoint)."""
    channels, new_k = source.shape[dim], len(parents)
    per_keypoint = channels // old_k
    if channels != old_k * per_keypoint or new_size != new_k * per_keypoint:
        return None
    grouped = source.unflatten(dim, (old_k, per_keypoint))
    return grouped.index_select(dim, parents).flatten(dim, dim + 1)


def init_from_checkpoint(model, path: str | Path, where: str = "--init") -> dict:
    """Initialise `model` from a checkpoint of the same schema or of a prefix of it.

    Raises SchemaError when the checkpoint's keypoints are neither the model's nor a prefix.
    Returns {'adapted': bool, 'fresh': [names left at their initialisation]}.
    """
    folder = checkpoint_folder(path)
    old_schema = checkpoint_schema(folder)
    new_schema = model.schema
    same = old_schema.keypoints == new_schema.keypoints
    if not same and not old_schema.is_prefix_of(new_schema):
        raise SchemaError(
            f"{where} {folder}: the checkpoint's keypoints ('{old_schema.name}', "
            f"{old_schema.num_keypoints}) are neither the data's ('{new_schema.name}', "
            f"{new_schema.num_keypoints}) nor their leading part; keypoint adaptation only "
            "appends new keypoints after the old ones")
    old_state = read_weights(folder)
    new_state = model.state_dict()
    parents = parent_keypoints(old_schema, new_schema)
    state, fresh = adapt_state(old_state, new_state, old_schema.num_keypoints, parents)
    model.load_state_dict(state, strict=True)
    return {"adapted": not same, "fresh": fresh, "parents": parents}


# ---- training state (resume) ----------------------------------------------------------------
def _json_ready(value):
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def save_training_state(folder: str | Path, optimizer: torch.optim.Optimizer, scheduler,
                        epoch: int, generators: dict[str, torch.Generator] | None = None,
                        extra: dict | None = None,
                        online_weights: torch.nn.Module | None = None) -> None:
    """Optimizer (tensors to safetensors, the rest to JSON), scheduler, epoch and RNG states.
    `online_weights`: the network the optimizer steps, when the checkpoint beside holds
    other weights (their moving average)."""
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    if online_weights is not None:
        tensors.update({ONLINE_PREFIX + k: v for k, v in _cpu_state(online_weights).items()})
    opt = optimizer.state_dict()
    state_json: dict[str, dict] = {}
    for pid, entries in opt["state"].items():
        state_json[str(pid)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                tensors[f"optimizer/{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                tensors_free = _json_ready(value)
                state_json[str(pid)][key] = {"scalar": tensors_free,
                                             "tensor": isinstance(value, torch.Tensor)}
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    for name, gen in (generators or {}).items():
        tensors[f"rng/generator/{name}"] = gen.get_state()
    np_state = np.random.get_state()
    payload = {
        "epoch": epoch,
        "optimizer": {"state": state_json, "param_groups": _json_ready(opt["param_groups"])},
        "scheduler": _json_ready(scheduler.state_dict()) if scheduler is not None else None,
        "rng": {"python": _json_ready(random.getstate()),
                "numpy": [np_state[0], np_state[1].tolist(), *[_json_ready(v) for v in np_state[2:]]]},
        "extra": extra or {},
    }
    data = save_tensors(tensors, metadata={"format": "pt"})
    payload["tensors_sha256"] = _sha256(data)
    atomic_write_bytes(folder / STATE_TENSORS_FILE, data)
    atomic_write_json(folder / STATE_JSON_FILE, payload, indent=1)


def no_resume_advice(folder: str | Path) -> str:
    """The way on when --resume cannot use `folder`'s training state (its checkpoint stays)."""
    return (f"start a new run into another --out without --resume (--init {folder} starts it "
            "from this checkpoint's weights)")


def _read_training_state(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The training state's JSON payload and its tensors, both checked."""
    folder = Path(folder)
    json_path, tensor_path = folder / STATE_JSON_FILE, folder / STATE_TENSORS_FILE
    if not json_path.is_file() or not tensor_path.is_file():
        raise CheckpointError(f"{folder}: no {STATE_JSON_FILE} / {STATE_TENSORS_FILE} to resume "
                              f"from; {no_resume_advice(folder)}")
    try:
        payload = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{json_path}: not valid JSON ({e}); the training state is "
                              f"damaged; {no_resume_advice(folder)}") from None
    missing = [k for k in ("epoch", "optimizer", "rng") if not isinstance(payload, dict)
               or k not in payload]
    if missing:
        raise CheckpointError(f"{json_path}: field '{missing[0]}' is missing; the training state "
                              f"is damaged; {no_resume_advice(folder)}")
    data = tensor_path.read_bytes()
    if _sha256(data) != payload.get("tensors_sha256"):
        raise CheckpointError(f"{tensor_path}: SHA-256 differs from {STATE_JSON_FILE}; the "
                              f"training state is damaged; {no_resume_advice(folder)}")
    return payload, load_tensors(data)


def read_online_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The optimizer's own weights kept in `folder`'s training state ({} when the checkpoint
    holds them itself, i.e. the run kept no moving average)."""
    return _online_part(_read_training_state(folder)[1])


def _online_part(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(ONLINE_PREFIX):]: v for k, v in tensors.items() if k.startswith(ONLINE_PREFIX)}


def load_training_state(folder: str | Path, optimizer: torch.optim.Optimizer, scheduler,
                        generators: dict[str, torch.Generator] | None = None) -> dict:
    """Restore what save_training_state wrote; returns {'epoch', 'extra', 'online'} (the
    online weights, {} when the state holds none)."""
    payload, tensors = _read_training_state(folder)
    json_path = Path(folder) / STATE_JSON_FILE
    device = next((p.device for g in optimizer.param_groups for p in g["params"]), "cpu")
    state: dict[int, dict] = {}
    for pid, entries in payload["optimizer"]["state"].items():
        state[int(pid)] = {k: (torch.tensor(v["scalar"], dtype=torch.float32) if v["tensor"]
                               else v["scalar"]) for k, v in entries.items()}
    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value.to(device)
    groups = payload["optimizer"]["param_groups"]
    for group in groups:  # JSON has no tuples; the optimizers keep betas as one
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise CheckpointError(f"{json_path}: the optimizer state does not fit this model ({e}); "
                              f"{no_resume_advice(folder)}") from None
    if scheduler is not None and payload.get("scheduler") is not None:
        scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted((t for t in tensors if t.startswith("rng/cuda/")),
                                           key=lambda t: int(t.rsplit("/", 1)[1]))]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    for name, gen in (generators or {}).items():
        key = f"rng/generator/{name}"
        if key in tensors:
            gen.set_state(tensors[key])
    py = payload["rng"]["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npr = payload["rng"]["numpy"]
    np.random.set_state((npr[0], np.asarray(npr[1], dtype=np.uint32), *npr[2:]))
    return {"epoch": payload["epoch"], "extra": payload.get("extra", {}),
            "online": _online_part(tensors)}
