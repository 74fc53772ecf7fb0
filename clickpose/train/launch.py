"""One training run in several data-parallel processes, started from Python.

`train_in_processes(cfg, n)` writes `cfg` beside the run and starts
`torchrun --standalone --nproc_per_node n -m clickpose.train.launch CONFIG`, which is this
module's `main`: every process trains (clickpose.train.distributed) and process 0 writes the
run's summary for the caller; a process that fails writes its error, which the caller raises
again with its type (a DataError stays a DataError). Campaign rounds use it to retrain on
several GPUs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

from clickpose.io import atomic_write_text
from clickpose.train.loop import TrainConfig, train

LAUNCH_CONFIG = "launch_config.json"
LAUNCH_SUMMARY = "launch_summary.json"
LAUNCH_ERRORS = "launch_error-rank*.json"
# Lines of the processes' output kept for the error when the launch fails.
ERROR_TAIL_LINES = 40


def torchrun_command(config_file: Path, processes: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node", str(processes), "-m", "clickpose.train.launch", str(config_file)]


def train_in_processes(cfg: TrainConfig, processes: int, log=print) -> dict:
    """Train as `cfg` says in `processes` torchrun processes (one per GPU when training on
    CUDA; CPU processes otherwise); each line they print goes to `log`. Returns process 0's
    summary, as train() does."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    config_file = out / LAUNCH_CONFIG
    atomic_write_text(config_file, cfg.model_dump_json(indent=2))
    for stale in [out / LAUNCH_SUMMARY, *out.glob(LAUNCH_ERRORS)]:
        stale.unlink(missing_ok=True)
    tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
    with subprocess.Popen(torchrun_command(config_file, processes), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as launch:
        for line in launch.stdout:
            tail.append(line.rstrip())
            log(line.rstrip())
    if launch.returncode != 0:
        _raise_process_error(out)
        raise RuntimeError(f"training in {processes} processes ({config_file}) failed with exit "
                           f"status {launch.returncode}; its last lines:\n" + "\n".join(tail))
    return json.loads((out / LAUNCH_SUMMARY).read_text())


def _error_types() -> dict[str, type[Exception]]:
    """The errors train() raises for bad input, which callers tell apart."""
    from clickpose.data.errors import DataError
    from clickpose.keypoints import SchemaError
    from clickpose.model.checkpoint import CheckpointError

    return {t.__name__: t for t in (DataError, SchemaError, CheckpointError, FileExistsError,
                                    ValueError)}


def _raise_process_error(out: Path) -> None:
    """Raise the first error a process wrote, with its own type when it is one of
    _error_types() (a RuntimeError naming the type otherwise); nothing when none wrote one."""
    written = sorted(out.glob(LAUNCH_ERRORS))
    if not written:
        return
    error = json.loads(written[0].read_text())
    kind = _error_types().get(error["type"])
    if kind is not None:
        raise kind(error["message"])
    raise RuntimeError(f"{error['type']}: {error['message']}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of each torchrun process: `python -m clickpose.train.launch CONFIG`."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m clickpose.train.launch TRAIN_CONFIG.json")
    cfg = TrainConfig.model_validate_json(Path(args[0]).read_text())
    try:
        summary = train(cfg, log=lambda line: print(line, flush=True))
    except Exception as e:
        rank = os.environ.get("RANK", "0")
        atomic_write_text(Path(cfg.out) / LAUNCH_ERRORS.replace("*", rank),
                          json.dumps({"type": type(e).__name__, "message": str(e)}))
        raise
    if summary["main"]:
        atomic_write_text(Path(cfg.out) / LAUNCH_SUMMARY, json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
