"""A simulated active-learning campaign on synthetic people: AP against images and clicks.

    OMP_NUM_THREADS=1 .venv/bin/python bench/active_learning.py [--budget-minutes 55]
        [--unlabeled 2000] [--start 100] [--val-images 200] [--rounds 4] [--batch 100]
        [--seeds 2] [--strategies random,least_confidence,...] [--candidates 300] [--jobs 2]
        [--train-minutes M | --train-steps N [--initial-steps N0]]
        [--out work/bench_runs/active_learning]
        [--style art|photo] [--photo-share 0.8 [--val-photo-share 0.5]] [--frames-per-scene 5]
        [--pretrain-minutes 15 | --pretrain-steps N | --init CKPT|tiny-synthetic]
    .venv/bin/python bench/active_learning.py --quick     (a small pool, 2 rounds: a minute)
    .venv/bin/python bench/active_learning.py --plan-only (data, cost probe, estimate; stop)

The campaign starts from a model trained beforehand, as a team's would: `tiny` (small CPU
settings) trained on synthetic `photo` people for --pretrain-minutes on every core (once,
cached in --cache; its time is not the campaign's), or the --init checkpoint; the pool and
the val set are in --style (default `art`: a domain the start model has not seen). With
--photo-share the pool is mostly photo, the start model's own look, and --style a minority
(bench/mixed_pool.py), as a team's pool is mostly what its model already handles; the val
set mixes the looks in --val-photo-share (default: the pool's), and each round records the
looks it chose. With --frames-per-scene N the pool is clips, each scene as N near-identical
frames (bench/clip_pool.py), as a pool cut from video is; each round records the scenes it
chose and how many no earlier label showed.
Per seed, `--start` images drawn from the pool are the labeled start and fine-tune the start
model into the round-0 model (--pretrain-minutes 0: a fresh model). Then, for each strategy,
`--rounds` rounds: score `--candidates` unlabeled images (the first unlabeled ones of a
seeded permutation of the pool, the same for every strategy; 0 = the whole pool) with the
current model, choose `--batch` of them (selection.select_batch), let the simulated
annotator label them (NoC in `refine` mode, annotator protocol, until each image's OKS AP
reaches 95 or 17 rounds; it is charged those clicks), fine-tune on every label so far and
measure OKS AP on the fixed synthetic val set.

Strategies (selection scores and select_batch strategies):
  random              images in a seeded random order
  least_confidence    top 1 - mean keypoint confidence, weighted by person scores
  entropy             top binary entropy of person and keypoint confidences
  disagreement        top disagreement of query-noise passes (human boxes jittered, OKS)
  error_consistency   top 1 - OKS(decoder's repair of the training errors, prediction),
                      through InteractiveSession.refine
  expected_clicks     top predicted clicks (the hardest images first)
  cost_aware          least confidence per predicted click (select_batch 'top_per_click'),
                      the predictions calibrated on the clicks its earlier rounds took
                      (selection.click_calibration, as campaigns do: from the images'
                      click features once 70 labeled images kept them)
  cost_aware_raw      the same on the scorer's uncalibrated predictions
  k_center            core-set on pooled encoder memory, labeled images as first centers
  cluster_confidence  least confidence, k-means clusters of that memory in turn (hybrid)
  weighted_k_center   k-center on distances weighted by least confidence (hybrid)
  cost_aware_k_center k-center on distance per predicted click ('k_center_per_click',
                      calibrated like cost_aware): coverage of the pool's looks per click
  typical_clusters    TypiClust on that memory: k-means of the labeled and candidate images,
                      the most typical candidate of the least covered cluster first
                      (best with --candidates 0: typicality needs the pool's density)
The curves are AP against images labeled and against clicks spent (cost-aware selection is
judged on the clicks axis). The target: the best strategy reaches random selection's final
AP with <= 60 % of random's clicks (linear interpolation on the mean curves), judged only
when random's AP rose by at least MIN_AP_GAIN and by more than twice the seeds' spread.

Training is budgeted in steps, the same for every strategy: a short probe measures the
steps/s (and the scoring, annotation and evaluation costs) and fits the steps to what
--budget-minutes leaves (--initial-share of it to round 0, the rest to the rounds); each run still stops at 2x its planned time (the lr drop follows that
deadline, clickpose.train.optim.fit_drop_to_deadline). Runs go in --jobs processes of one
torch thread each. Prints JSON lines (machine, data, plan with the estimated run time,
rounds, curves, target) and writes results.json and curves.png in --out. A run whose
result.json is there (same settings) is reused, so a stopped bench resumes.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.clip_pool import clip_dataset, scene_of
from bench.latency import machine
from bench.mixed_pool import ap_by_look, check_share, look_of, mixed_dataset
from bench.synthetic_sets import CACHE, VAL_SEED_OFFSET, cached_dataset
from clickpose.campaign import labels as label_sets
from clickpose.campaign.config import CPU_MODEL, TrainSettings
from clickpose.campaign.retrain import fine_tune
from clickpose.campaign.simulate import simulate_annotation
from clickpose.data.synthetic import GENERATOR_VERSION
from clickpose.io import atomic_write_json
from selection import ImageScore, score_pool, select_batch
from selection.click_calibration import ClickCalibration
from selection.ids import stable_hash
from selection.scores import (
    disagreement,
    entropy,
    expected_clicks,
    least_confidence,
    random_score,
    session_error_consistency,
)

TARGET_FRACTION = 0.6
# Random's AP must rise by this much over the start model, and by more than twice the seeds'
# spread, before 'reaching random's final AP' means anything: below it, a strategy's curve
# crossing that line is noise (200 val images; AP 0.0005 +- 0.0004 at this CPU scale).
MIN_AP_GAIN = 0.01
ALL_STRATEGIES = ("random", "least_confidence", "entropy", "disagreement", "error_consistency",
                  "expected_clicks", "cost_aware", "cost_aware_raw", "k_center",
                  "cluster_confidence", "weighted_k_center", "cost_aware_k_center",
                  "typical_clusters")
DEFAULT_STRATEGIES = ("random", "least_confidence", "entropy", "disagreement",
                      "error_consistency", "cost_aware", "k_center")
QUICK_STRATEGIES = ("random", "error_consistency")
DISAGREEMENT_PASSES = 4
QUERY_NOISE = 0.1            # box noise of the disagreement passes (fraction of the box)
CONSISTENCY_TRIALS = 3
ANNOTATION_TARGET = 95       # the simulated annotator clicks until OKS AP 95 (or 17 rounds)
MIN_STEPS = 10               # fewer training steps than this per round teach nothing
CAP_FACTOR = 2.0             # a training run stops at 2x its planned time (+ 30 s)
SOURCE_STYLE = "photo"       # the look the start model is pretrained on (--pretrain-minutes)
SOURCE_SEED_OFFSET = 2000    # its images are other scenes than the pool's and the val's
SOURCE_LR = 8e-4


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- what each strategy needs from the model -----------------------------------------------
@dataclass(frozen=True)
class Strategy:
    name: str
    select: str          # selection.select_batch strategy
    needs: str           # the per-image model output: none, poses, passes, session, embedding
    # Predicted clicks fitted to the clicks the strategy's earlier rounds took, as campaigns
    # do (selection.click_calibration); the _raw variant reads the scorer's own figure.
    calibrate: bool = False


STRATEGIES = {s.name: s for s in (
    Strategy("random", "random", "none"),
    Strategy("least_confidence", "top", "poses"),
    Strategy("entropy", "top", "poses"),
    Strategy("disagreement", "top", "passes"),
    Strategy("error_consistency", "top", "session"),
    Strategy("expected_clicks", "top", "poses"),
    Strategy("cost_aware", "top_per_click", "poses", calibrate=True),
    Strategy("cost_aware_raw", "top_per_click", "poses"),
    Strategy("k_center", "k_center", "embedding"),
    # Hybrids: least confidence spread over the pool's look (k-means clusters in turn, or
    # k-center on distances weighted by it).
    Strategy("cluster_confidence", "cluster_top", "poses+embedding"),
    Strategy("weighted_k_center", "weighted_k_center", "poses+embedding"),
    Strategy("cost_aware_k_center", "k_center_per_click", "poses+embedding", calibrate=True),
    Strategy("typical_clusters", "typical_clusters", "embedding"),
)}


def _image_tensor(model, path: Path):
    from clickpose.model.inference import EvalTransform

    return EvalTransform.from_config(model.config)(path)


@torch.no_grad()
def query_noise_passes(model, path: Path, passes: int, generator: torch.Generator) -> list:
    """The clean prediction, then passes - 1 decodes from jittered human boxes (query noise):
    one backbone/encoder/human-detection run per image."""
    from clickpose.model.human_decoder import HumanState
    from clickpose.model.pose_errors import noise_boxes

    images, mask, size = _image_tensor(model, path)
    state = model.encode(images, mask)
    humans = model.detect_humans(state)
    out = [model.postprocess(model.predict_keypoints(state, humans), [size])[0]]
    for _ in range(passes - 1):
        boxes = noise_boxes(humans.boxes[0], QUERY_NOISE, generator)[None]
        noisy = HumanState(humans.content, boxes, humans.logits)
        out.append(model.postprocess(model.predict_keypoints(state, noisy), [size])[0])
    return out


@torch.no_grad()
def pooled_memory(model, path: Path) -> np.ndarray:
    """The image's embedding for k-center (clickpose.model.embedding), without decoding."""
    from clickpose.model.embedding import pooled_memory as of_state

    images, mask, _ = _image_tensor(model, path)
    return of_state(model.encode(images, mask))


def model_outputs(strategy: Strategy, model, images: dict[str, Path], seed: int):
    """predict_batch_fn(keys) for selection.score_pool: the model output the strategy reads."""
    def one(key: str):
        if strategy.needs == "none":
            return None
        if strategy.needs in ("poses", "poses+embedding"):
            return model.predict(images[key])
        if strategy.needs == "passes":
            generator = torch.Generator().manual_seed(stable_hash(f"{seed}:{key}") % 2**62)
            return query_noise_passes(model, images[key], DISAGREEMENT_PASSES, generator)
        if strategy.needs == "session":
            return model.session(images[key])
        return pooled_memory(model, images[key])

    return lambda keys: [one(key) for key in keys]


def scorer(strategy: Strategy, sigmas, seed: int):
    """scorer(key, output) -> ImageScore for selection.score_pool."""
    name = strategy.name
    if name in ("random", "k_center", "typical_clusters"):   # these read embeddings, not scores
        return lambda key, _output: random_score(key, seed)
    if name in ("least_confidence", "cluster_confidence", "weighted_k_center"):
        return least_confidence
    if name == "entropy":
        return entropy
    if name == "expected_clicks":
        return expected_clicks
    if name in ("cost_aware", "cost_aware_raw", "cost_aware_k_center"):
        def score(key, poses):
            clicks = expected_clicks(key, poses)
            return least_confidence(key, poses).model_copy(
                update={"cost": clicks.cost, "cost_features": clicks.cost_features})
        return score
    if name == "disagreement":
        return lambda key, passes: disagreement(key, passes, sigmas)
    if name == "error_consistency":
        return lambda key, session: session_error_consistency(
            key, session, trials=CONSISTENCY_TRIALS, seed=seed)
    raise ValueError(f"strategy '{name}' is unknown; use one of {', '.join(ALL_STRATEGIES)}")


def score_candidates(strategy: Strategy, model, images: dict[str, Path],
                     candidates: list[str], labeled: list[str], seed: int
                     ) -> tuple[list[ImageScore], dict | None, dict]:
    """(scores of the candidates, embeddings of candidates + labeled for k-center, stats).
    model: the current model (None for random, which reads none)."""
    sigmas = None if model is None else model.schema.sigmas_array
    started = time.perf_counter()
    embeddings = None
    if "embedding" in strategy.needs:
        embeddings = {key: pooled_memory(model, images[key]) for key in candidates + labeled}
    if strategy.needs == "embedding":
        scores = [random_score(key, seed) for key in candidates]
    else:
        scores = score_pool(candidates, model_outputs(strategy, model, images, seed),
                            scorer(strategy, sigmas, seed), batch_size=8).scores
    seconds = time.perf_counter() - started
    return scores, embeddings, {"images": len(candidates), "seconds": seconds}


# ---- one round: choose, annotate, train, evaluate ---------------------------------------------
def record_history(history: tuple[list[float], list[float], list[dict | None]], selection,
                   records: list[dict]) -> list[float]:
    """Add each chosen image's (predicted clicks, clicks taken, click features) to
    `history`; returns the round's uncalibrated predictions (none when the strategy predicts
    no clicks)."""
    taken = {rec["image"]: rec["clicks"] for rec in records}
    predicted = []
    for item in selection.items:
        raw = item.predicted_clicks
        if raw is None:
            continue
        predicted.append(raw)
        if str(item.image_id) in taken:
            history[0].append(raw)
            history[1].append(float(taken[str(item.image_id)]))
            history[2].append(item.cost_features or None)
    return predicted


def chosen_looks(chosen: list[str]) -> dict:
    """{"chosen_looks": {look: images}} for a mixed pool's batch; nothing for a plain pool."""
    looks = [look_of(key) for key in chosen]
    if not looks or None in looks:
        return {}
    return {"chosen_looks": {look: looks.count(look) for look in sorted(set(looks))}}


def train_settings(plan: dict, steps: int, labeled: int, seed: int, fresh: bool) -> TrainSettings:
    """About `steps` steps: epochs of at most ceil(steps / epochs) batches (the lr schedule
    spans them), capped in time at CAP_FACTOR x the planned seconds."""
    per_epoch = math.ceil(labeled / plan["batch_size"])
    epochs = max(1, math.ceil(steps / per_epoch))
    cap = math.ceil(steps / epochs)
    minutes = (CAP_FACTOR * steps / plan["steps_per_s"] + 30) / 60
    return TrainSettings(
        preset="tiny", epochs=epochs, max_minutes=minutes, batch_size=plan["batch_size"],
        max_steps_per_epoch=cap if cap < per_epoch else None,
        lr=plan["lr"], image_size=plan["image_size"], max_size=plan["image_size"],
        model_overrides=dict(CPU_MODEL) if fresh else {}, dn_groups=1, feedback_max_rounds=1,
        workers=0, threads=1, seed=seed,
        # Many epochs over a few hundred labels: the frozen backbone's features repeat.
        cache_backbone_features=True)


def val_ap(checkpoint: Path, val: Path) -> dict:
    """COCO OKS AP (pycocotools) of the checkpoint's predictions on the fixed val set (and on
    each look's images, when it mixes looks)."""
    from clickpose.evaluate import evaluate_ap
    from clickpose.evaluate.inputs import schema_for
    from clickpose.train.predict import predict_folder

    truth = json.loads((val / "annotations.json").read_text())
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' index-building chatter
        results = predict_folder(checkpoint, val, device="cpu", progress=False)
    schema = schema_for(truth, None, str(val / "annotations.json"))
    ap = evaluate_ap(truth, results, schema)
    metrics = {"ap": ap.stats["AP"], "ap50": ap.stats["AP50"]}
    by_look = ap_by_look(truth, results, schema)     # a mixed val set: which look gained
    return metrics | ({"ap_by_look": by_look} if by_look else {})


def ap_fields(metrics: dict) -> dict:
    """A round record's AP fields: AP, AP50, and AP per look on a mixed val set."""
    return {k: metrics[k] for k in ("ap", "ap50", "ap_by_look") if k in metrics}


def labels_folder(labels: dict, pool: Path, out: Path) -> Path:
    return label_sets.write_folder(labels, {label_sets.POOL: pool}, out)


def train_totals(run_folder: Path) -> dict:
    """Training steps and seconds over every epoch a run's metrics.jsonl records."""
    history = [json.loads(line) for line in (run_folder / "metrics.jsonl").read_text().splitlines()]
    return {"steps": sum(h["train"]["steps"] for h in history),
            "seconds": sum(h["train"]["seconds"] for h in history)}


def plan_init(plan: dict) -> Path | None:
    """The checkpoint the campaign's models start from, if the plan names one."""
    return Path(plan["init"]) if plan["init"] else None


def train_and_evaluate(plan: dict, labels: dict, folder: Path, steps: int, seed: int,
                       init: Path | None) -> tuple[Path, dict, dict]:
    """Train on `labels` into folder/train, evaluate on val: (checkpoint, metrics, seconds)."""
    data = labels_folder(labels, Path(plan["pool"]), folder / "labels")
    settings = train_settings(plan, steps, len(labels["images"]), seed, fresh=init is None)
    started = time.perf_counter()
    checkpoint = fine_tune(data, folder / "train", settings, init=init, log=lambda _line: None)
    trained = time.perf_counter()
    metrics = val_ap(checkpoint, Path(plan["val"]))
    metrics["train_steps"] = train_totals(folder / "train")["steps"]
    return checkpoint, metrics, {"train_s": trained - started,
                                 "eval_s": time.perf_counter() - trained}


def candidate_keys(plan: dict, seed: int, round_index: int, unlabeled: set[str]) -> list[str]:
    """The round's candidates: the first `candidates` unlabeled images of a permutation of the
    pool fixed by (seed, round): every strategy of a seed draws from the same order."""
    rng = np.random.default_rng([seed, round_index, 7])
    order = [plan["keys"][i] for i in rng.permutation(len(plan["keys"]))]
    available = [k for k in order if k in unlabeled]
    n = plan["candidates"]
    return sorted(available if n <= 0 else available[:n])


def start_keys(plan: dict, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, 3])
    return sorted(plan["keys"][i] for i in rng.choice(len(plan["keys"]), plan["start"],
                                                      replace=False))


def ground_truth(plan: dict) -> dict:
    return json.loads((Path(plan["pool"]) / "annotations.json").read_text())


def _reuse(path: Path, config: dict) -> dict | None:
    if path.is_file():
        found = json.loads(path.read_text())
        if found.get("config") == config:
            return found
    return None


def run_start(plan: dict, seed: int) -> dict:
    """Round 0 of a seed: the start labels and the model trained on them (from the plan's
    init checkpoint when there is one), shared by every strategy of the seed."""
    torch.set_num_threads(1)
    folder = Path(plan["out"]) / f"seed-{seed}" / "round-000"
    config = {k: plan[k] for k in plan["fingerprint"]} | {"seed": seed}
    done = _reuse(folder / "result.json", config)
    if done is not None:
        return done
    if folder.exists():
        shutil.rmtree(folder)
    keys = start_keys(plan, seed)
    labels = label_sets.subset(ground_truth(plan), keys, label_sets.POOL)
    checkpoint, metrics, seconds = train_and_evaluate(plan, labels, folder,
                                                      plan["initial_steps"], seed, plan_init(plan))
    result = {"config": config, "seed": seed, "checkpoint": str(checkpoint), "labeled": keys,
              "round": {"round": 0, "images_labeled": len(keys), "clicks": 0,
                        **ap_fields(metrics), "train_steps": metrics["train_steps"],
                        **_rounded(seconds)}}
    atomic_write_json(folder / "result.json", result)
    log(f"seed {seed}: round 0 AP {metrics['ap']:.4f} ({metrics['train_steps']} steps)")
    return result


def run_strategy(plan: dict, name: str, seed: int, start: dict) -> dict:
    """Rounds 1..R of one strategy from the seed's round 0: one curve."""
    from clickpose.model.checkpoint import load_model

    torch.set_num_threads(1)
    strategy = STRATEGIES[name]
    folder = Path(plan["out"]) / f"seed-{seed}" / name
    config = {k: plan[k] for k in plan["fingerprint"]} | {"seed": seed, "strategy": name}
    done = _reuse(folder / "result.json", config)
    if done is not None:
        return done
    if folder.exists():
        shutil.rmtree(folder)
    gt = ground_truth(plan)
    images = {k: Path(plan["pool"]) / "images" / k.split("/", 1)[1] for k in plan["keys"]}
    labeled = list(start["labeled"])
    labels = label_sets.subset(gt, labeled, label_sets.POOL)
    checkpoint = Path(start["checkpoint"])
    rounds = [dict(start["round"])]
    clicks = 0
    # (predicted, taken, click features) per labeled image
    history: tuple[list[float], list[float], list[dict | None]] = ([], [], [])
    for r in range(1, plan["rounds"] + 1):
        round_dir = folder / f"round-{r:03d}"
        candidates = candidate_keys(plan, seed, r, set(plan["keys"]) - set(labeled))
        started = time.perf_counter()
        model = None if strategy.needs == "none" else load_model(checkpoint, "cpu")
        scores, embeddings, stats = score_candidates(strategy, model, images, candidates,
                                                     labeled, seed)
        del model
        calibration = ClickCalibration.fit(*history) if strategy.calibrate else None
        selection = select_batch(scores, budget_images=plan["batch"], strategy=strategy.select,
                                 seed=seed, labeled=labeled, embeddings=embeddings,
                                 calibration=calibration)
        scored = time.perf_counter()
        chosen = selection.image_ids
        batch = simulate_annotation(checkpoint, Path(plan["pool"]), gt, chosen,
                                    target=ANNOTATION_TARGET,
                                    max_rounds=plan["annotate_max_rounds"], threads=1)
        annotated = time.perf_counter()
        clicks += batch.clicks
        predicted = record_history(history, selection, batch.records)
        scenes = chosen_scenes(chosen, labeled)
        labeled += chosen
        labels = label_sets.merge(labels, batch.labels)
        checkpoint, metrics, seconds = train_and_evaluate(plan, labels, round_dir,
                                                          plan["steps"], seed + r, checkpoint)
        record = {"round": r, "images_labeled": len(labeled), "clicks": clicks,
                  "round_clicks": batch.clicks, **ap_fields(metrics),
                  "train_steps": metrics["train_steps"], "candidates": len(candidates),
                  "chosen": len(chosen), "mean_score": _mean([s.score for s in selection.items]),
                  "selected": chosen, **chosen_looks(chosen), **scenes,
                  **_rounded({"score_s": scored - started, "annotate_s": annotated - scored,
                              **seconds}),
                  "score_images_per_s": round(stats["images"] / max(stats["seconds"], 1e-9), 2)}
        if selection.total_cost is not None:
            record["predicted_clicks"] = round(selection.total_cost, 2)
            record["predicted_clicks_uncalibrated"] = round(sum(predicted), 2)
        if calibration is not None:
            record["calibration"] = calibration.model_dump(
                include={"slope", "offset", "pairs", "weights", "feature_offset",
                         "feature_pairs", "mean_abs_error_before", "mean_abs_error_after",
                         "rank_correlation", "rank_correlation_after"})
        rounds.append(record)
        log(f"{name} seed {seed} round {r}: AP {metrics['ap']:.4f}, {clicks} clicks")
    result = {"config": config, "strategy": name, "seed": seed, "rounds": rounds}
    atomic_write_json(folder / "result.json", result)
    return result


def _rounded(seconds: dict) -> dict:
    return {k: round(v, 2) for k, v in seconds.items()}


def _mean(values) -> float | None:
    return float(np.mean(values)) if len(values) else None


# ---- curves and the target -----------------------------------------------------------------
def mean_curves(runs: list[dict]) -> dict:
    """Per strategy, over seeds: mean (and std) of images, clicks and AP after each round."""
    by_strategy: dict[str, list[dict]] = {}
    for run in runs:
        by_strategy.setdefault(run["strategy"], []).append(run)
    curves = {}
    for name, group in by_strategy.items():
        table = {k: np.array([[r[k] for r in run["rounds"]] for run in group], dtype=np.float64)
                 for k in ("images_labeled", "clicks", "ap")}
        curves[name] = {"seeds": [run["seed"] for run in group],
                        "images": table["images_labeled"].mean(0).tolist(),
                        "clicks": table["clicks"].mean(0).tolist(),
                        "clicks_std": table["clicks"].std(0).tolist(),
                        "ap": table["ap"].mean(0).tolist(), "ap_std": table["ap"].std(0).tolist()}
        by_look = mean_ap_by_look(group)
        if by_look:
            curves[name]["ap_by_look"] = by_look
    return curves


def mean_ap_by_look(group: list[dict]) -> dict[str, list[float]]:
    """Mean AP per look after each round, over the seeds; {} unless every round has it
    (runs from before the bench recorded it, or a val set of one look)."""
    rounds = [r for run in group for r in run["rounds"]]
    if not rounds or any("ap_by_look" not in r for r in rounds):
        return {}
    return {look: np.mean([[r["ap_by_look"][look] for r in run["rounds"]] for run in group],
                          axis=0).tolist()
            for look in rounds[0]["ap_by_look"]}


def clicks_to_reach(clicks: list[float], ap: list[float], target: float) -> float | None:
    """Clicks at which the curve first reaches `target` AP, linear between rounds; None when
    it never does."""
    for i, value in enumerate(ap):
        if value >= target:
            if i == 0:
                return float(clicks[0])
            x0, x1, y0, y1 = clicks[i - 1], clicks[i], ap[i - 1], value
            return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0))
    return None


def target_report(curves: dict) -> dict:
    """The best strategy's clicks to reach random's final AP, as a fraction of random's."""
    if "random" not in curves:
        return {"kind": "target", "note": "random is not among the strategies: no target"}
    random = curves["random"]
    target_ap, random_clicks = random["ap"][-1], random["clicks"][-1]
    gain = target_ap - random["ap"][0]
    spread = random["ap_std"][-1] + random["ap_std"][0]
    informative = bool(random_clicks > 0 and gain >= MIN_AP_GAIN and gain > 2 * spread)
    fractions = {}
    for name, curve in curves.items():
        reached = clicks_to_reach(curve["clicks"], curve["ap"], target_ap)
        fractions[name] = (None if reached is None or random_clicks <= 0
                           else reached / random_clicks)
    others = {k: v for k, v in fractions.items() if k != "random" and v is not None}
    best = min(others, key=others.get) if others else None
    report = {"kind": "target", "random_final_ap": target_ap, "random_clicks": random_clicks,
              "start_ap": random["ap"][0], "fractions": fractions, "best_strategy": best,
              "best_fraction": others.get(best), "target_fraction": TARGET_FRACTION,
              "random_gain": gain, "random_seed_spread": spread, "informative": informative,
              "met": bool(informative and best is not None and others[best] <= TARGET_FRACTION)}
    if informative and best is None:
        report["note"] = ("no other strategy reached random selection's final AP within the "
                          "clicks it spent: random is the best choice on this campaign")
    if not informative:
        report["note"] = (
            f"random selection gained no AP that the seeds resolve (gain {gain:.4f}; needs "
            f">= {MIN_AP_GAIN} and > 2 x the seeds' spread {spread:.4f}) or spent no clicks: "
            "which strategy 'reaches' its final AP first is noise, the fraction says nothing")
    return report


def clicks_axis_title(target: dict) -> str:
    """The clicks plot's title: what the target line concluded."""
    title = "AP vs clicks spent"
    if "random_final_ap" not in target:
        return title
    if not target.get("informative"):
        return title + "\n(random selection gained no AP the seeds resolve: no click target)"
    if target.get("best_fraction") is None:
        return title + "\n(no strategy reached random's final AP within its clicks)"
    return title + (f"\n{target['best_strategy']} reaches random's final AP with "
                    f"{100 * target['best_fraction']:.0f}% of its clicks")


def plot(curves: dict, target: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, curve in sorted(curves.items()):
        ap, std = np.array(curve["ap"]), np.array(curve["ap_std"])
        style = {"linestyle": "--" if name == "random" else "-", "marker": "o", "markersize": 3,
                 "linewidth": 2.2 if name.startswith("cost_aware") else 1.4}
        for ax, x in ((axes[0], curve["images"]), (axes[1], curve["clicks"])):
            line, = ax.plot(x, ap, label=name, **style)
            ax.fill_between(x, ap - std, ap + std, color=line.get_color(), alpha=0.12)
    if target.get("random_final_ap") is not None:
        for ax in axes:
            ax.axhline(target["random_final_ap"], color="grey", linewidth=0.8, linestyle=":")
    seeds = len(next(iter(curves.values()))["seeds"]) if curves else 0
    axes[0].set(xlabel="images labeled", ylabel="val OKS AP", title="AP vs images labeled")
    axes[1].set(xlabel="clicks spent (simulated annotator, refine mode)", ylabel="val OKS AP",
                title=clicks_axis_title(target))
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Active learning on synthetic people (tiny preset, mean of {seeds} seeds)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


# ---- the plan: probe the costs, fit the training to the budget --------------------------------
def probe(plan: dict, out: Path) -> dict:
    """Seconds per scored image (per kind of model output), per annotated image, per val
    image, and training steps/s, measured on this machine with a model briefly trained (from
    the plan's init, when there is one: its predictions decide the annotation's cost)."""
    torch.set_num_threads(1)
    folder = out / "probe"
    if folder.exists():
        shutil.rmtree(folder)
    keys = start_keys(plan, 0)[:max(8, plan["batch_size"] * 2)]
    labels = label_sets.subset(ground_truth(plan), keys, label_sets.POOL)
    data = labels_folder(labels, Path(plan["pool"]), folder / "labels")
    probe_plan = {**plan, "steps_per_s": 1.0}
    started = time.perf_counter()
    init = plan_init(plan)
    settings = train_settings(probe_plan, plan["probe_steps"], len(keys), 0, fresh=init is None)
    checkpoint = fine_tune(data, folder / "train", settings, init=init, log=lambda _line: None)
    train_wall = time.perf_counter() - started
    totals = train_totals(folder / "train")
    steps, steps_s = totals["steps"], totals["seconds"]
    from clickpose.model.checkpoint import load_model

    images = {k: Path(plan["pool"]) / "images" / k.split("/", 1)[1] for k in keys}
    sample = keys[:plan["probe_images"]]
    started = time.perf_counter()
    model = load_model(checkpoint, "cpu")
    load = time.perf_counter() - started
    per_image = {"none": 0.0}
    for name in plan["strategies"]:   # one strategy per kind of model output
        needs = STRATEGIES[name].needs
        if needs not in per_image:
            started = time.perf_counter()
            score_candidates(STRATEGIES[name], model, images, sample, [], 0)
            per_image[needs] = (time.perf_counter() - started) / len(sample)
    started = time.perf_counter()
    simulate_annotation(checkpoint, Path(plan["pool"]), ground_truth(plan), sample,
                        target=ANNOTATION_TARGET, max_rounds=plan["annotate_max_rounds"],
                        threads=1)
    annotate = (time.perf_counter() - started) / len(sample)
    started = time.perf_counter()
    val_ap(checkpoint, Path(plan["val"]))
    evaluate = time.perf_counter() - started
    return {"steps_per_s": steps / max(steps_s, 1e-9),
            "train_overhead_s": max(0.0, train_wall - steps_s), "model_load_s": load,
            "score_s": per_image,
            "annotate_s": annotate, "evaluate_s": evaluate}


def estimate(plan: dict, costs: dict, steps: int, initial_steps: int) -> dict:
    """Seconds of the whole bench on `jobs` parallel processes, from the probe's costs."""
    jobs, seeds = plan["jobs"], plan["seeds"]
    train = lambda n: n / costs["steps_per_s"] + costs["train_overhead_s"]
    start = math.ceil(seeds / jobs) * (train(initial_steps) + costs["evaluate_s"])
    labeled_mean = plan["start"] + plan["batch"] * (plan["rounds"] - 1) / 2
    per_run = []
    for name in plan["strategies"]:
        needs = STRATEGIES[name].needs
        scored = plan["candidates_per_round"] + (labeled_mean if "embedding" in needs else 0)
        per_round = (costs["model_load_s"] + scored * costs["score_s"][needs]
                     + plan["batch"] * costs["annotate_s"]
                     + train(steps) + costs["evaluate_s"])
        per_run.append(plan["rounds"] * per_round)
    runs = sum(per_run) * seeds
    return {"start_s": start, "runs_s": runs / jobs, "total_s": start + runs / jobs}


def fit_steps(plan: dict, costs: dict, budget_s: float) -> tuple[int, int]:
    """(steps per round, round-0 steps) that fill what the budget leaves after scoring,
    annotation and evaluation: `initial_share` of it for round 0 (paid once per seed and
    shared by every strategy), the rest for the rounds; at least MIN_STEPS each."""
    fixed = estimate(plan, costs, 0, 0)["total_s"]
    left = max(0.0, budget_s - fixed)
    start_per_step = estimate(plan, costs, 0, 1)["total_s"] - fixed     # wall s per step
    round_per_step = estimate(plan, costs, 1, 0)["total_s"] - fixed
    initial = int(plan["initial_share"] * left / start_per_step)
    steps = int((1 - plan["initial_share"]) * left / round_per_step)
    return max(MIN_STEPS, steps), max(MIN_STEPS, initial)


def source_model(args: argparse.Namespace, val: Path) -> tuple[Path, dict]:
    """The start model of a domain-shift campaign: `tiny` (the bench's CPU settings and input
    size) trained on `photo` people (scenes of their own) for --pretrain-minutes on every
    core. Trained once and kept in --cache, like the pretrained model a team starts from;
    its time is not the campaign's. Returns (checkpoint, its 'pretrain' JSON line)."""
    data = cached_dataset(args.cache, args.pretrain_images, args.data_seed + SOURCE_SEED_OFFSET,
                          args.size, style=SOURCE_STYLE)
    limit = (f"{args.pretrain_steps}steps" if args.pretrain_steps
             else f"{args.pretrain_minutes:g}min")
    folder = args.cache / (f"source-tiny-v{GENERATOR_VERSION}-{SOURCE_STYLE}-"
                           f"n{args.pretrain_images}-{args.size}px-in{args.image_size}-{limit}")
    threads = os.cpu_count() or 1
    started = time.perf_counter()
    per_epoch = math.ceil(args.pretrain_images / args.batch_size)
    settings = TrainSettings(
        preset="tiny", epochs=1 if args.pretrain_steps else 40,
        max_minutes=None if args.pretrain_steps else args.pretrain_minutes,
        batch_size=args.batch_size, lr=SOURCE_LR, image_size=args.image_size,
        max_size=args.image_size, model_overrides=dict(CPU_MODEL), dn_groups=1,
        feedback_max_rounds=1, workers=0, threads=threads, seed=0,
        max_steps_per_epoch=min(args.pretrain_steps, per_epoch) if args.pretrain_steps else None,
        cache_backbone_features=True)
    checkpoint = fine_tune(data, folder, settings, log=lambda _line: None)
    torch.set_num_threads(1)   # the campaign's processes run one thread each
    totals = train_totals(folder)
    record = {"kind": "pretrain", "style": SOURCE_STYLE, "data": str(data),
              "images": args.pretrain_images,
              "minutes": None if args.pretrain_steps else args.pretrain_minutes,
              "train_steps": totals["steps"], "train_seconds": round(totals["seconds"], 1),
              "checkpoint": str(checkpoint), "threads": threads,
              "seconds_this_run": round(time.perf_counter() - started, 1),
              # The domain gap: the source model on the campaign's val set, before any label.
              "val_style": args.style, **{f"val_{k}": v for k, v in val_ap(checkpoint, val).items()}}
    return checkpoint, record


def pool_dataset(args: argparse.Namespace) -> Path:
    """The pool folder: distinct scenes, or with --frames-per-scene N clips of N frames each
    (bench.clip_pool), as many images either way."""
    images = args.unlabeled + args.start
    if args.frames_per_scene <= 1:
        return mixed_dataset(args.cache, images, args.data_seed, args.size, args.style,
                             args.photo_share)
    scenes = mixed_dataset(args.cache, -(-images // args.frames_per_scene), args.data_seed,
                           args.size, args.style, args.photo_share)
    return clip_dataset(scenes, args.frames_per_scene, images, args.data_seed,
                        args.cache / f"{scenes.name}-clips{args.frames_per_scene}-n{images}")


def chosen_scenes(chosen: list[str], labeled: list[str]) -> dict:
    """{"new_scenes": scenes of the batch that no earlier label shows} in a clip pool."""
    before = {scene_of(key) for key in labeled}
    batch = {scene_of(key) for key in chosen}
    return {"scenes": len(batch), "new_scenes": len(batch - before)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plan-only", action="store_true",
                        help="generate the data, probe the costs, print the plan and stop")
    parser.add_argument("--quick", action="store_true",
                        help="a small pool, 2 rounds, 2 strategies: checks the bench end to end")
    parser.add_argument("--budget-minutes", type=float, default=55.0,
                        help="the whole bench's time; the training steps per round fit it")
    parser.add_argument("--train-minutes", type=float, default=None,
                        help="training time per round instead of fitting the budget")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="training steps per round instead of fitting the budget")
    parser.add_argument("--initial-steps", type=int, default=None,
                        help="with --train-steps: round 0's steps (default 2x them); the "
                             "steps of an earlier run let it reuse that run's results")
    parser.add_argument("--initial-share", type=float, default=0.3,
                        help="share of the training time that goes to round 0 (the start "
                             "model every strategy of a seed shares)")
    parser.add_argument("--unlabeled", type=int, default=2000)
    parser.add_argument("--start", type=int, default=100, help="labeled images to start with")
    parser.add_argument("--val-images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="images labeled per round")
    parser.add_argument("--candidates", type=int, default=300,
                        help="unlabeled images scored per round (0: the whole pool)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--annotate-max-rounds", type=int, default=17,
                        help="the simulated annotator's correction rounds per image at most")
    parser.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                        help=f"comma-separated, of {', '.join(ALL_STRATEGIES)}")
    parser.add_argument("--style", default="art", choices=("photo", "art"),
                        help="the look of the pool and val images (art: the start model, "
                             "pretrained on photo, meets a new domain)")
    parser.add_argument("--photo-share", type=float, default=0.0,
                        help="share of the pool drawn in photo, the start model's own look, "
                             "the rest in --style: a pool mostly of what the model knows")
    parser.add_argument("--frames-per-scene", type=int, default=1,
                        help="the pool as clips: each scene as this many near-identical "
                             "frames (bench/clip_pool.py), as a pool cut from video is")
    parser.add_argument("--val-photo-share", type=float, default=None,
                        help="the same share for the val set (default: the pool's)")
    parser.add_argument("--init", type=Path, default=None,
                        help="start round 0 from this checkpoint instead of pretraining one")
    parser.add_argument("--pretrain-minutes", type=float, default=15.0,
                        help="train the start model on photo people first, on every core "
                             "(cached in --cache, not counted in --budget-minutes; 0: round 0 "
                             "starts from a fresh model)")
    parser.add_argument("--pretrain-steps", type=int, default=None,
                        help="pretrain for this many steps instead of --pretrain-minutes")
    parser.add_argument("--pretrain-images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128, help="synthetic image size")
    parser.add_argument("--image-size", type=int, default=96, help="model input size")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=4e-4)
    parser.add_argument("--data-seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=None,
                        help="parallel runs, one torch thread each (default: the cores)")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=Path("work/bench_runs/active_learning"))
    args = parser.parse_args(argv)
    check_share(args.photo_share, "--photo-share")
    if args.val_photo_share is None:
        args.val_photo_share = args.photo_share
    check_share(args.val_photo_share, "--val-photo-share")
    if args.frames_per_scene < 1:
        raise SystemExit(f"--frames-per-scene {args.frames_per_scene}: give 1 (distinct "
                         "scenes) or more frames per scene")
    if args.quick:
        args.unlabeled, args.start, args.val_images, args.rounds = 16, 8, 4, 2
        args.annotate_max_rounds = 4
        args.batch, args.candidates, args.seeds, args.size, args.image_size = 4, 0, 2, 64, 64
        args.batch_size = 4
        args.train_steps = args.train_steps or 2
        args.pretrain_images, args.pretrain_steps = 8, args.pretrain_steps or 2
        if args.strategies == ",".join(DEFAULT_STRATEGIES):
            args.strategies = ",".join(QUICK_STRATEGIES)
        args.jobs = args.jobs or 1
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise SystemExit(f"--strategies: '{unknown[0]}' is unknown; use {', '.join(ALL_STRATEGIES)}")
    jobs = args.jobs or max(1, min(os.cpu_count() or 1, len(strategies) * args.seeds))
    torch.set_num_threads(1)
    emit({**machine("cpu"), "jobs": jobs, "torch_threads_per_job": 1})
    started = time.perf_counter()

    pool = pool_dataset(args)
    val = mixed_dataset(args.cache, args.val_images, args.data_seed + VAL_SEED_OFFSET, args.size,
                        args.style, args.val_photo_share)
    keys = sorted(label_sets.folder_keys(pool, label_sets.POOL))
    emit({"kind": "data", "style": args.style, "pool": str(pool), "val": str(val),
          "pool_photo_share": args.photo_share, "val_photo_share": args.val_photo_share,
          "frames_per_scene": args.frames_per_scene,
          "pool_images": len(keys), "unlabeled_after_start": len(keys) - args.start,
          "val_images": args.val_images, "size": args.size,
          "seconds": round(time.perf_counter() - started, 1)})
    init = args.init
    if init is None and (args.pretrain_minutes > 0 or args.pretrain_steps):
        init, record = source_model(args, val)
        emit(record)
        started = time.perf_counter()   # the campaign's budget starts after the pretraining

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    candidates = len(keys) - args.start if args.candidates <= 0 else min(
        args.candidates, len(keys) - args.start)
    plan = {"out": str(out), "pool": str(pool), "val": str(val), "keys": keys,
            "start": args.start, "rounds": args.rounds, "batch": args.batch,
            "candidates": args.candidates, "candidates_per_round": candidates,
            "batch_size": args.batch_size, "lr": args.lr, "image_size": args.image_size,
            "seeds": args.seeds, "jobs": jobs, "strategies": strategies,
            "initial_share": args.initial_share, "steps_per_s": None,
            "init": str(init) if init else None,
            "annotate_max_rounds": args.annotate_max_rounds,
            "probe_steps": 2 if args.quick else 12, "probe_images": 1 if args.quick else 6}
    costs = probe(plan, out)
    plan["steps_per_s"] = costs["steps_per_s"]
    if args.train_steps is not None:
        steps, initial = args.train_steps, args.initial_steps or 2 * args.train_steps
    elif args.train_minutes is not None:
        steps = max(1, round(args.train_minutes * 60 * costs["steps_per_s"]))
        initial = 3 * steps
    else:
        steps, initial = fit_steps(plan, costs, args.budget_minutes * 60
                                   - (time.perf_counter() - started))
    plan["steps"], plan["initial_steps"] = steps, initial
    plan["fingerprint"] = ["pool", "val", "init", "start", "rounds", "batch", "candidates",
                           "batch_size", "lr", "image_size", "steps", "initial_steps",
                           "annotate_max_rounds"]
    planned = estimate(plan, costs, steps, initial)
    emit({"kind": "plan", "strategies": strategies, "seeds": args.seeds, "rounds": args.rounds,
          "batch": args.batch, "start": args.start, "candidates_per_round": candidates,
          "train_steps_per_round": steps, "initial_train_steps": initial,
          "train_seconds_per_round": round(steps / costs["steps_per_s"], 1),
          "probe": {k: (round(v, 4) if isinstance(v, float) else
                        {n: round(s, 4) for n, s in v.items()}) for k, v in costs.items()},
          "estimated_minutes": round((planned["total_s"] + time.perf_counter() - started) / 60, 1),
          "budget_minutes": args.budget_minutes})
    if planned["total_s"] + time.perf_counter() - started > 60 * args.budget_minutes:
        log(f"the estimate exceeds --budget-minutes {args.budget_minutes}: fewer --candidates, "
            "--strategies or --seeds, or a longer budget")
    if args.plan_only:
        return {"plan": plan, "probe": costs, "estimated_seconds": planned["total_s"]}

    starts = dict(_map(run_start, [(plan, seed) for seed in range(args.seeds)], jobs,
                       key=lambda a: a[1]))
    for seed, start in sorted(starts.items()):
        emit({"kind": "round", "strategy": "start", "seed": seed, **start["round"]})
    tasks = [(plan, name, seed, starts[seed]) for seed in range(args.seeds) for name in strategies]
    runs = [run for _, run in _map(run_strategy, tasks, jobs, key=lambda a: (a[1], a[2]))]
    for run in sorted(runs, key=lambda r: (r["strategy"], r["seed"])):
        for record in run["rounds"][1:]:
            emit({"kind": "round", "strategy": run["strategy"], "seed": run["seed"], **record})

    curves = mean_curves(runs)
    target = target_report(curves)
    for name, curve in sorted(curves.items()):
        emit({"kind": "curve", "strategy": name, **curve})
    emit(target)
    plot(curves, target, out / "curves.png")
    total = time.perf_counter() - started
    results = {"machine": machine("cpu"), "plan": {k: v for k, v in plan.items() if k != "keys"},
               "probe": costs, "estimated_seconds": planned["total_s"], "runs": runs,
               "curves": curves, "target": target, "total_seconds": total}
    atomic_write_json(out / "results.json", results)
    summary = {"kind": "summary", "results": str(out / "results.json"),
               "plot": str(out / "curves.png"), "best_strategy": target.get("best_strategy"),
               "best_fraction": target.get("best_fraction"), "target_met": target.get("met"),
               "estimated_minutes": round(planned["total_s"] / 60, 1),
               "total_minutes": round(total / 60, 2)}
    emit(summary)
    return results


def _map(fn, tasks: list[tuple], jobs: int, key):
    """[(key(task), fn(*task))] in parallel processes (jobs > 1) or here, one by one."""
    if jobs <= 1:
        return [(key(task), fn(*task)) for task in tasks]
    import multiprocessing

    with ProcessPoolExecutor(max_workers=jobs,
                             mp_context=multiprocessing.get_context("spawn")) as executor:
        futures = {executor.submit(fn, *task): key(task) for task in tasks}
        return [(futures[f], f.result()) for f in as_completed(futures)]


if __name__ == "__main__":
    main()
