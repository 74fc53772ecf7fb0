"""Data-parallel training under torchrun: the collectives in real gloo processes, and a
real `torchrun ... clickpose train` run (two CPU processes) that saves once and resumes."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from clickpose.data.synthetic import generate_dataset
from clickpose.model.checkpoint import read_weights
from clickpose.train.distributed import join_process_group, weights_digest

SIZE = 128
TRAIN_SIZE = 96
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def _torchrun(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    # One torch thread per process, as torchrun sets by default.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}  # rich: no wrapped lines
    return subprocess.run([*TORCHRUN, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_one_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    parallel = join_process_group("cpu")
    assert not parallel.active and parallel.main
    assert parallel.any(True) and not parallel.any(False)
    assert parallel.from_main(2.5) == 2.5 and parallel.sum({"a": 1.0}) == {"a": 1.0}
    layer = nn.Linear(2, 1)
    layer(torch.ones(1, 2)).sum().backward()
    before = layer.weight.grad.clone()
    parallel.average_gradients(list(layer.parameters()))
    assert torch.equal(layer.weight.grad, before)
    parallel.check_same_weights(layer)  # nothing to compare with
    assert weights_digest(layer) == weights_digest(layer)


COLLECTIVES = """
import json, sys
import torch
from torch import nn
from clickpose.train.distributed import join_process_group, leave_process_group

parallel = join_process_group("cpu")
torch.manual_seed(parallel.rank)  # different weights, until broadcast
layers = nn.ModuleList([nn.Linear(3, 2), nn.Linear(2, 2), nn.Linear(2, 1)])
parallel.broadcast_weights(layers)
for p in layers[0].parameters():
    p.grad = torch.full_like(p, float(parallel.rank + 1))
for p in layers[1].parameters():  # a gradient on rank 1 only
    p.grad = torch.full_like(p, 4.0) if parallel.rank == 1 else None
parallel.average_gradients(list(layers.parameters()))
norm = nn.BatchNorm1d(2)
norm(torch.randn(4, 2) + parallel.rank)  # running statistics of this process's batch
parallel.sync_buffers(norm)
parallel.check_same_weights(nn.ModuleList([layers, norm]))  # process 0's statistics everywhere
result = {
    "rank": parallel.rank, "world": parallel.world,
    "mean": [p.grad.unique().tolist() for p in layers[0].parameters()],
    "one_rank": [p.grad.unique().tolist() for p in layers[1].parameters()],
    "none": [p.grad is None for p in layers[2].parameters()],
    "any": parallel.any(parallel.rank == 1), "all_false": parallel.any(False),
    "from_main": parallel.from_main(10.0 + parallel.rank),
    "sum": parallel.sum({"x": 1.0, f"only{parallel.rank}": 2.0}),
    "running_mean": norm.running_mean.tolist(),
}
if parallel.rank == 1:
    with torch.no_grad():
        layers[2].bias += 1.0
try:
    parallel.check_same_weights(layers)
    result["mismatch"] = None
except RuntimeError as e:
    result["mismatch"] = str(e)
with open(f"{sys.argv[1]}/rank{parallel.rank}.json", "w") as f:
    json.dump(result, f)
leave_process_group()
"""


def test_collectives_average_gradients_and_agree(tmp_path):
    script = tmp_path / "collectives.py"
    script.write_text(textwrap.dedent(COLLECTIVES))
    done = _torchrun(["--nproc_per_node", "2", str(script), str(tmp_path)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r in ranks:
        assert r["world"] == 2
        assert r["mean"] == [[1.5], [1.5]]            # (1 + 2) / 2
        assert r["one_rank"] == [[2.0], [2.0]]        # (0 + 4) / 2: rank 0 had none
        assert r["none"] == [True, True]              # nobody's gradient stays none
        assert r["any"] is True and r["all_false"] is False
        assert r["from_main"] == 10.0
        assert r["sum"] == {"x": 2.0, "only0": 2.0, "only1": 2.0}
        assert r["running_mean"] == ranks[0]["running_mean"]
        # Weights that drift apart are caught, naming the process.
        assert "process(es) [1] differ from process 0's" in r["mismatch"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    return {"train": generate_dataset(root / "train", 8, seed=21, size=SIZE, max_persons=2,
                                      progress=False),
            "val": generate_dataset(root / "val", 2, seed=22, size=SIZE, max_persons=2,
                                    progress=False)}


def _train_args(data, out: Path, epochs: int) -> list[str]:
    clickpose = shutil.which("clickpose", path=str(Path(sys.executable).parent))
    assert clickpose, "the clickpose command is installed beside this Python"
    return ["--nproc_per_node", "2", "--no-python", clickpose, "train",
            "--data", str(data["train"]), "--val", str(data["val"]), "--out", str(out),
            "--epochs", str(epochs), "--batch-size", "2", "--image-size", str(TRAIN_SIZE),
            "--workers", "0", "--dn-groups", "1", "--lr", "2e-4", "--device", "cpu"]


def test_two_processes_train_one_model_and_resume(data, tmp_path):
    out = tmp_path / "run"
    done = _torchrun(_train_args(data, out, epochs=1), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    # Process 0 alone reports: one start line, one epoch line, one summary.
    assert done.stdout.count("x 2 processes (batch 2 each)") == 1, done.stdout
    assert done.stdout.count("epoch 0: loss") == 1 and done.stdout.count("done: last") == 1
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    # Each process took half of the 8 images, 2 a step: 2 steps each, 8 images in all.
    assert record["train"]["steps"] == 2 and record["train"]["images"] == 8
    assert record["processes"] == 2
    assert "val" in record and 0.0 <= record["val"]["stats"]["AP"] <= 1.0
    first = read_weights(out / "last")

    # --resume under torchrun continues the same run at the next epoch.
    done = _torchrun([*_train_args(data, out, epochs=2), "--resume"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert done.stdout.count("resuming") == 1 and "epoch 1: loss" in done.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    second = read_weights(out / "last")
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_an_error_stops_every_process_with_its_message(data, tmp_path):
    out = tmp_path / "run"
    out.joinpath("last").mkdir(parents=True)
    out.joinpath("last", "config.json").write_text("{}")
    done = _torchrun(_train_args(data, out, epochs=1), cwd=tmp_path, timeout=120)
    assert done.returncode != 0
    assert "already holds a run" in done.stdout + done.stderr

