"""Data-parallel training: shards, gradient averaging, agreed stops, a real 2-process run."""
import hashlib
import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from clickpose.data import collate_batch, load_coco_dataset
from clickpose.data.errors import DataError
from clickpose.data.synthetic import generate_dataset
from clickpose.data.transforms import flip_resize_transforms
from clickpose.model import build_model, preset_config
from clickpose.model.checkpoint import read_weights
from clickpose.model.criterion import SetCriterion
from clickpose.model.pose_errors import ErrorProbs
from clickpose.train.engine import StepOptions, train_one_epoch
from clickpose.train.loop import TrainConfig, default_cpu_threads, train
from clickpose.train.optim import build_optimizer
from clickpose.train.parallel import Parallel, ShardSampler, launch

SIZE = 128
TRAIN_SIZE = 96
SMALL = {"num_queries": 30, "max_humans": 6, "enc_layers": 1, "keypoint_layers": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    return {"train": generate_dataset(root / "train", 8, seed=21, size=SIZE, max_persons=2,
                                      progress=False),
            "val": generate_dataset(root / "val", 2, seed=22, size=SIZE, max_persons=2,
                                    progress=False)}


def test_shards_are_disjoint_equal_and_reshuffled():
    shards = [ShardSampler(10, rank, 3, seed=5) for rank in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    own = [set(s.indices) for s in shards]
    assert set().union(*own) == set(range(10))
    assert all(not (own[a] & own[b]) for a in range(3) for b in range(a + 1, 3))
    first = list(shards[0])
    shards[0].set_epoch(1)
    second = list(shards[0])
    assert sorted(first) == sorted(second) and first != second
    assert list(ShardSampler(10, 0, 3, seed=5)) == first  # deterministic
    with pytest.raises(ValueError, match="2 training images cannot be shared by 3"):
        ShardSampler(2, 0, 3)


def test_one_process_needs_no_process_group():
    parallel = Parallel()
    assert parallel.main and parallel.any(True) and not parallel.any(False)
    assert parallel.from_main(2.5) == 2.5 and parallel.sum({"a": 1.0}) == {"a": 1.0}
    layer = nn.Linear(2, 1)
    layer(torch.ones(1, 2)).sum().backward()
    before = layer.weight.grad.clone()
    parallel.average_gradients(list(layer.parameters()))
    assert torch.equal(layer.weight.grad, before)


def _collectives(parallel: Parallel) -> dict:
    """Each rank: its own gradients and flags; what the collectives make of them."""
    torch.manual_seed(parallel.rank)  # different weights, until broadcast
    layers = nn.ModuleList([nn.Linear(3, 2), nn.Linear(2, 2), nn.Linear(2, 1)])
    parallel.broadcast_weights(layers)
    grads = [torch.full_like(p, float(parallel.rank + 1)) for p in layers[0].parameters()]
    for p, g in zip(layers[0].parameters(), grads):
        p.grad = g
    for p in layers[1].parameters():  # a gradient on rank 1 only
        p.grad = torch.full_like(p, 4.0) if parallel.rank == 1 else None
    parallel.average_gradients(list(layers.parameters()))
    return {
        "weights": hashlib.sha256(b"".join(p.detach().numpy().tobytes()
                                           for p in layers.parameters())).hexdigest(),
        "mean": [p.grad.unique().tolist() for p in layers[0].parameters()],
        "one_rank": [p.grad.unique().tolist() for p in layers[1].parameters()],
        "none": [p.grad is None for p in layers[2].parameters()],
        "any": parallel.any(parallel.rank == 1), "all_false": parallel.any(False),
        "from_main": parallel.from_main(10.0 + parallel.rank),
        "sum": parallel.sum({"x": 1.0, f"only{parallel.rank}": 2.0}),
    }


def test_collectives_average_gradients_and_agree():
    ranks = launch(_collectives, 2, 1)
    for r in ranks:
        assert r["mean"] == [[1.5], [1.5]]            # (1 + 2) / 2
        assert r["one_rank"] == [[2.0], [2.0]]        # (0 + 4) / 2: rank 0 had none
        assert r["none"] == [True, True]              # nobody's gradient stays none
        assert r["any"] is True and r["all_false"] is False
        assert r["from_main"] == 10.0
        assert r["sum"] == {"x": 2.0, "only0": 2.0, "only1": 2.0}
    assert ranks[0]["weights"] == ranks[1]["weights"]


def _fails_on_rank_1(parallel: Parallel) -> None:
    if parallel.rank == 1:
        raise DataError("bad.json: field 'keypoints' is missing; add it")
    parallel.barrier()  # would wait for rank 1 forever: the launcher must end it


def test_an_error_in_one_process_is_raised_with_its_type():
    with pytest.raises(DataError, match="field 'keypoints' is missing"):
        launch(_fails_on_rank_1, 2, 1)


def _epoch_in_two_processes(parallel: Parallel, train_dir: str) -> dict:
    """train_one_epoch on this rank's shard; returns a fingerprint of the weights."""
    torch.manual_seed(0)
    ds = load_coco_dataset(train_dir, seed=0)
    model = build_model(preset_config("tiny", image_size=TRAIN_SIZE, **SMALL), ds.schema)
    ds.transforms = flip_resize_transforms(ds.schema, TRAIN_SIZE, TRAIN_SIZE,
                                           mean=model.config.pixel_mean, std=model.config.pixel_std)
    parallel.broadcast_weights(model)
    sampler = ShardSampler(len(ds), parallel.rank, parallel.world, seed=0)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate_batch)
    optimizer = build_optimizer(model, lr=1e-3)
    # Each rank draws its own noise; the averaged gradients keep the weights the same.
    generator = torch.Generator().manual_seed(parallel.rank)
    stats = train_one_epoch(model, SetCriterion(ds.schema), loader, optimizer, None,
                            torch.device("cpu"), 0, ds.schema, generator,
                            StepOptions(dn_groups=1, error_probs=ErrorProbs(),
                                        feedback_max_rounds=1),
                            progress=False, max_steps=1 + parallel.rank, parallel=parallel)
    weights = b"".join(p.detach().numpy().tobytes() for p in model.parameters())
    return {"weights": hashlib.sha256(weights).hexdigest(), "steps": stats["steps"],
            "images": stats["images"], "loss": stats["losses"]["loss"]}


def test_processes_stay_identical_and_stop_together(data):
    # Rank 0 may take 1 step, rank 1 two: the stop is agreed, so both take one.
    ranks = launch(_epoch_in_two_processes, 2, 1, str(data["train"]))
    assert ranks[0]["weights"] == ranks[1]["weights"]
    assert [r["steps"] for r in ranks] == [1, 1]
    assert ranks[0]["images"] == ranks[1]["images"] == 4     # both processes' images
    assert ranks[0]["loss"] == pytest.approx(ranks[1]["loss"])


def test_two_process_training_run(data, tmp_path):
    cfg = TrainConfig(data=data["train"], val=data["val"], out=tmp_path / "run", epochs=2,
                      batch_size=4, workers=0, image_size=TRAIN_SIZE, max_size=TRAIN_SIZE,
                      dn_groups=1, progress=False, lr=2e-4, feedback_max_rounds=1,
                      model_overrides=SMALL, processes=2, threads=1,
                      cache_backbone_features=True)
    summary = train(cfg)
    history = summary["history"]
    assert [r["epoch"] for r in history] == [0, 1]
    assert all(r["train"]["images"] == 8 and r["train"]["steps"] == 2 for r in history)
    assert all(r["train"]["feature_cache"]["items"] > 0 for r in history)
    assert "AP" in history[-1]["val"]["stats"]
    weights = read_weights(tmp_path / "run" / "last")
    assert all(torch.isfinite(t).all() for t in weights.values())
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["processes"] == 2


def test_parallel_settings_are_checked_before_starting(data, tmp_path):
    base = {"data": data["train"], "out": tmp_path / "run", "workers": 0, "processes": 2}
    with pytest.raises(ValueError, match="--batch-size 3 must be a multiple of --processes 2"):
        train(TrainConfig(**base, batch_size=3))
    with pytest.raises(ValueError, match="trains on the CPU"):
        train(TrainConfig(**base, batch_size=4, device="cuda"))
    assert not (tmp_path / "run").exists()


def test_threads_default_to_each_process_share_of_the_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert default_cpu_threads(0, 1) == 8
    assert default_cpu_threads(0, 2) == 4
    assert default_cpu_threads(1, 2) == 3
    assert default_cpu_threads(0, 16) == 1
