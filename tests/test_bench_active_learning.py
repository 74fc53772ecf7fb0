"""bench/active_learning.py: the --quick campaign for real, and its pieces on known inputs."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from annotator_fixtures import tiny_model
from bench_scripts import load_bench
from PIL import Image

from clickpose.poses import Poses
from selection import ImageScore, expected_clicks, least_confidence, random_score, select_batch

K = 17


@pytest.fixture(scope="module")
def bench():
    module = load_bench("active_learning")
    yield module
    sys.modules.pop(module.__name__, None)


def test_quick_campaign_writes_curves_plot_and_target(bench, tmp_path, capsys):
    results = bench.main(["--quick", "--cache", str(tmp_path / "cache"),
                          "--out", str(tmp_path / "run")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds[:4] == ["machine", "data", "pretrain", "plan"]
    assert kinds[-2:] == ["target", "summary"]
    assert lines[0]["cores"] >= 1 and lines[0]["cpu"] and lines[0]["torch"]
    data, pretrain, plan = lines[1], lines[2], lines[3]
    assert data["pool_images"] == 24 and data["unlabeled_after_start"] == 16
    # The start model is pretrained on photo people and meets the art pool.
    assert data["style"] == "art" and "/art-" in data["pool"]
    assert pretrain["style"] == "photo" and pretrain["train_steps"] == 2
    assert 0.0 <= pretrain["val_ap"] <= 1.0 and pretrain["val_style"] == "art"
    assert results["plan"]["init"] == pretrain["checkpoint"]
    assert plan["estimated_minutes"] > 0 and plan["train_steps_per_round"] == 2
    assert plan["strategies"] == ["random", "error_consistency"] and plan["seeds"] == 2

    # One curve per strategy and seed, each from its seed's round-0 model.
    runs = {(r["strategy"], r["seed"]): r for r in results["runs"]}
    assert set(runs) == {(s, seed) for s in ("random", "error_consistency") for seed in (0, 1)}
    pool = {f"pool/{p.name}" for p in (Path(data["pool"]) / "images").iterdir()}
    for (strategy, seed), run in runs.items():
        rounds = run["rounds"]
        assert [r["round"] for r in rounds] == [0, 1, 2]
        assert [r["images_labeled"] for r in rounds] == [8, 12, 16]
        assert rounds[0]["clicks"] == 0
        assert [r["clicks"] for r in rounds[1:]] == list(np.cumsum(
            [r["round_clicks"] for r in rounds[1:]]))
        assert all(r["round_clicks"] > 0 for r in rounds[1:])   # persons were annotated
        assert all(0.0 <= r["ap"] <= 1.0 for r in rounds)
        # Training is budgeted in steps: the same for every strategy.
        assert rounds[0]["train_steps"] == 4 and all(r["train_steps"] == 2 for r in rounds[1:])
        assert rounds[0] == runs[("random", seed)]["rounds"][0]
        chosen = rounds[1]["selected"] + rounds[2]["selected"]
        assert len(chosen) == len(set(chosen)) == 8 and set(chosen) <= pool
        start = json.loads((tmp_path / "run" / f"seed-{seed}" / "round-000" / "result.json")
                           .read_text())["labeled"]
        assert not set(chosen) & set(start)
        assert (tmp_path / "run" / f"seed-{seed}" / strategy / "round-002" / "train" /
                "last").is_dir()

    # The curves are the seeds' means; the target reads them.
    random = results["curves"]["random"]
    clicks = np.mean([[r["clicks"] for r in runs[("random", s)]["rounds"]] for s in (0, 1)], 0)
    ap = np.mean([[r["ap"] for r in runs[("random", s)]["rounds"]] for s in (0, 1)], 0)
    np.testing.assert_allclose(random["clicks"], clicks)
    np.testing.assert_allclose(random["ap"], ap)
    target = results["target"]
    assert target == lines[-2]
    assert target["random_final_ap"] == pytest.approx(ap[-1])
    assert target["random_clicks"] == pytest.approx(clicks[-1])
    assert set(target["fractions"]) == {"random", "error_consistency"}
    ap_std = np.std([[r["ap"] for r in runs[("random", s)]["rounds"]] for s in (0, 1)], 0)
    gain = ap[-1] - ap[0]
    assert target["informative"] == bool(gain >= bench.MIN_AP_GAIN
                                         and gain > 2 * (ap_std[-1] + ap_std[0]))

    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["target"] == target and len(saved["runs"]) == 4
    assert saved["machine"]["kind"] == "machine"
    with Image.open(tmp_path / "run" / "curves.png") as png:
        assert png.format == "PNG" and png.size == (1320, 495)
        pixels = np.asarray(png.convert("L"))
    assert pixels.std() > 5   # axes, curves and text were drawn
    assert lines[-1]["plot"] == str(tmp_path / "run" / "curves.png")


def test_a_clip_pool_holds_as_many_frames_and_rounds_count_new_scenes(bench, tmp_path):
    args = bench.parse(["--cache", str(tmp_path), "--unlabeled", "5", "--start", "2",
                        "--size", "64", "--frames-per-scene", "3", "--photo-share", "0.5"])
    pool = bench.pool_dataset(args)
    names = sorted(p.name for p in (pool / "images").iterdir())
    assert len(names) == 7 and names[0].endswith("-f0.jpg")      # 3 scenes: 3 + 3 + 1 frames
    assert len({bench.scene_of(n) for n in names}) == 3
    assert {bench.look_of(n) for n in names} == {"art", "photo"}
    assert bench.pool_dataset(args) == pool                          # cached
    plain = bench.pool_dataset(bench.parse(["--cache", str(tmp_path), "--unlabeled", "5",
                                            "--start", "2", "--size", "64"]))
    assert len(list((plain / "images").iterdir())) == 7 and plain != pool
    chosen = ["pool/art-000001-f1.jpg", "pool/art-000001-f2.jpg", "pool/photo-000002-f0.jpg"]
    assert bench.chosen_scenes(chosen, ["pool/art-000001-f0.jpg"]) == {"scenes": 2,
                                                                       "new_scenes": 1}
    with pytest.raises(SystemExit, match="--frames-per-scene 0: give 1"):
        bench.parse(["--frames-per-scene", "0"])


def test_curves_average_ap_per_look_when_every_round_has_it(bench):
    def run(seed, art):
        return {"strategy": "k_center", "seed": seed, "rounds": [
            {"images_labeled": 100 * (r + 1), "clicks": 10 * r, "ap": 0.2,
             "ap_by_look": {"art": art[r], "photo": 0.3}} for r in range(2)]}

    curves = bench.mean_curves([run(0, [0.1, 0.2]), run(1, [0.1, 0.4])])
    assert curves["k_center"]["ap_by_look"] == {"art": pytest.approx([0.1, 0.3]),
                                                "photo": pytest.approx([0.3, 0.3])}
    older = run(1, [0.1, 0.4])
    del older["rounds"][0]["ap_by_look"]          # a run from before the bench recorded it
    assert "ap_by_look" not in bench.mean_curves([run(0, [0.1, 0.2]), older])["k_center"]


def _curve(clicks, ap):
    return {"seeds": [0], "images": list(range(len(ap))), "clicks": clicks,
            "clicks_std": [0.0] * len(ap), "ap": ap, "ap_std": [0.0] * len(ap)}


def test_target_is_interpolated_on_the_clicks_axis(bench):
    curves = {"random": _curve([0, 100, 200], [0.1, 0.2, 0.3]),
              "fast": _curve([0, 80, 160], [0.1, 0.3, 0.4]),
              "slow": _curve([0, 100, 200], [0.1, 0.25, 0.35]),
              "never": _curve([0, 50, 90], [0.1, 0.15, 0.2])}
    report = bench.target_report(curves)
    assert report["fractions"]["random"] == pytest.approx(1.0)
    assert report["fractions"]["fast"] == pytest.approx(0.4)
    assert report["fractions"]["slow"] == pytest.approx(0.75)   # 150 of 200 clicks
    assert report["fractions"]["never"] is None
    assert report["best_strategy"] == "fast" and report["met"] and report["informative"]
    curves["fast"] = _curve([0, 100, 190], [0.1, 0.2, 0.3])       # 0.3 at 190 clicks: 95%
    del curves["slow"]
    report = bench.target_report(curves)
    assert report["best_strategy"] == "fast" and report["best_fraction"] == pytest.approx(0.95)
    assert not report["met"]


def test_random_ahead_of_every_strategy_is_said_so(bench):
    curves = {"random": _curve([0, 100, 200], [0.10, 0.15, 0.20]),
              "worse": _curve([0, 90, 180], [0.10, 0.12, 0.16])}
    report = bench.target_report(curves)
    assert report["informative"] and not report["met"] and report["best_strategy"] is None
    assert "random is the best choice" in report["note"]
    assert "no strategy reached random's final AP" in bench.clicks_axis_title(report)
    report = bench.target_report({**curves, "better": _curve([0, 50, 100], [0.1, 0.2, 0.3])})
    assert bench.clicks_axis_title(report).endswith("better reaches random's final AP with "
                                                    "25% of its clicks")
    noisy = bench.target_report({"random": _curve([0, 100, 200], [0.2, 0.2, 0.1])})
    assert "no AP the seeds resolve" in bench.clicks_axis_title(noisy)


def test_a_random_curve_without_gain_is_not_a_target(bench):
    curves = {"random": _curve([0, 100, 200], [0.2, 0.2, 0.1]),
              "other": _curve([0, 100, 200], [0.2, 0.3, 0.4])}
    report = bench.target_report(curves)
    assert not report["informative"] and not report["met"] and "no AP" in report["note"]


def test_a_gain_inside_the_seeds_noise_is_not_a_target(bench):
    # AP 0.0003 -> 0.0005 with seeds 0.0004 apart: a strategy 'reaching' it early is luck.
    noisy = _curve([0, 100, 200], [0.0003, 0.0001, 0.0005])
    noisy["ap_std"] = [0.00005, 0.0001, 0.0002]
    curves = {"random": noisy, "lucky": _curve([0, 30, 60], [0.0003, 0.0006, 0.0002])}
    report = bench.target_report(curves)
    assert report["fractions"]["lucky"] == pytest.approx(0.1)
    assert not report["informative"] and not report["met"] and "noise" in report["note"]
    # The same shape an order of magnitude up, seeds close together: now it counts.
    clear = _curve([0, 100, 200], [0.03, 0.01, 0.05])
    clear["ap_std"] = [0.001, 0.002, 0.002]
    curves = {"random": clear, "lucky": _curve([0, 30, 60], [0.03, 0.06, 0.02])}
    report = bench.target_report(curves)
    assert report["informative"] and report["met"]


def _person(x0: float, confidence: float, person_score: float) -> Poses:
    box = np.array([[x0, 0, x0 + 50, 100]])
    layout = np.random.default_rng(0).uniform(0.1, 0.9, size=(K, 2))
    return Poses(keypoints=box[:, None, :2] + layout[None] * 50,
                 keypoint_scores=np.full((1, K), confidence),
                 visibility=np.full((1, K), 2), boxes=box, scores=np.array([person_score]))


def test_cost_aware_scores_least_confidence_per_predicted_click(bench):
    score = bench.scorer(bench.STRATEGIES["cost_aware"], None, seed=0)
    # Same uncertainty, fewer predicted clicks: the cheap image is worth more per click.
    cheap, dear = _person(0, 0.5, 0.35), _person(0, 0.5, 0.95)
    a, b = score("cheap", cheap), score("dear", dear)
    assert a.score == least_confidence("cheap", cheap).score == b.score
    assert a.cost == expected_clicks("cheap", cheap).cost < b.cost
    picked = select_batch([b, a], budget_images=1, strategy="top_per_click")
    assert picked.image_ids == ["cheap"]


def test_calibrated_cost_aware_learns_from_the_clicks_its_rounds_took(bench):
    from selection.click_calibration import MIN_PAIRS, ClickCalibration

    assert bench.STRATEGIES["cost_aware"].calibrate and not bench.STRATEGIES["cost_aware_raw"].calibrate
    scores = [ImageScore(image_id=f"pool/{i}.png", method="expected_clicks", score=1.0 + i,
                         cost=1.0 + i) for i in range(12)]
    calibration = ClickCalibration(slope=3.0, offset=2.0, pairs=MIN_PAIRS)
    selection = select_batch(scores, budget_images=12, strategy="top",
                             calibration=calibration)
    records = [{"image": f"pool/{i}.png", "clicks": 4 * (1 + i) + 1} for i in range(11)]
    history = ([], [], [])
    predicted = bench.record_history(history, selection, records)
    # The uncalibrated predictions are kept; an image without a record adds no pair.
    assert sorted(predicted) == [1.0 + i for i in range(12)]
    assert sorted(history[0]) == [1.0 + i for i in range(11)]
    assert history[2] == [None] * 11          # these scores kept no click features
    refit = ClickCalibration.fit(*history)
    assert refit.slope == pytest.approx(4.0) and refit.offset == pytest.approx(1.0)
    unpriced = select_batch({"a": 1.0}, budget_images=1)
    assert bench.record_history(([], [], []), unpriced, [{"image": "a", "clicks": 3}]) == []


def test_cost_aware_scores_keep_the_click_features(bench):
    poses = _person(0, 0.7, 0.9)
    score = bench.scorer(bench.STRATEGIES["cost_aware_k_center"], None, 0)("a", poses)
    clicks = expected_clicks("a", poses)
    assert score.cost == clicks.cost and score.cost_features == clicks.cost_features
    assert score.cost_features["shown_persons"] == 1.0


def test_query_noise_passes_and_pooled_memory(bench, tmp_path):
    model = tiny_model()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
    image[20:80, 30:50] = 200
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    passes = bench.query_noise_passes(model, path, 3, torch.Generator().manual_seed(1))
    again = bench.query_noise_passes(model, path, 3, torch.Generator().manual_seed(1))
    clean = model.predict(path)
    assert len(passes) == 3
    np.testing.assert_allclose(passes[0].keypoints, clean.keypoints, atol=1e-6)
    assert np.abs(passes[1].boxes - passes[0].boxes).max() > 0.01   # the queries moved
    for a, b in zip(passes, again):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
    vector = bench.pooled_memory(model, path)
    assert vector.shape == (model.config.hidden_dim,)
    assert np.linalg.norm(vector) == pytest.approx(1.0)
    np.testing.assert_array_equal(vector, bench.pooled_memory(model, path))


def test_hybrid_strategies_read_confidence_and_embeddings(bench, tmp_path):
    model = tiny_model()
    rng = np.random.default_rng(0)
    images = {}
    for i in range(4):
        image = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
        image[20:80, 10 + 20 * i:30 + 20 * i] = 200
        images[f"pool/{i}.png"] = tmp_path / f"{i}.png"
        Image.fromarray(image).save(images[f"pool/{i}.png"])
    candidates, labeled = ["pool/0.png", "pool/1.png", "pool/2.png"], ["pool/3.png"]
    for name in ("cluster_confidence", "weighted_k_center", "cost_aware_k_center"):
        strategy = bench.STRATEGIES[name]
        scores, embeddings, stats = bench.score_candidates(strategy, model, images, candidates,
                                                           labeled, seed=0)
        expected = [least_confidence(k, model.predict(images[k])).score for k in candidates]
        assert [s.score for s in scores] == pytest.approx(expected)
        assert sorted(embeddings) == sorted(candidates + labeled) and stats["images"] == 3
        if strategy.select == "k_center_per_click":     # least confidence, with its clicks
            assert all(s.cost is not None and s.cost >= 0 for s in scores)
        chosen = select_batch(scores, budget_images=2, strategy=strategy.select, seed=0,
                              labeled=labeled, embeddings=embeddings).image_ids
        assert len(chosen) == 2 and set(chosen) <= set(candidates)
    typical = bench.STRATEGIES["typical_clusters"]        # embeddings only, like k_center
    scores, embeddings, _ = bench.score_candidates(typical, model, images, candidates, labeled,
                                                   seed=0)
    assert sorted(embeddings) == sorted(candidates + labeled)
    assert [s.score for s in scores] == [random_score(k, 0).score for k in candidates]
    chosen = select_batch(scores, budget_images=2, strategy=typical.select, seed=0,
                          labeled=labeled, embeddings=embeddings).image_ids
    assert len(chosen) == 2 and set(chosen) <= set(candidates)
    # An image that looks exactly like a labeled one adds nothing to cover: k-center, however
    # weighted by doubt, leaves it.
    embeddings["pool/0.png"] = embeddings["pool/3.png"]
    chosen = select_batch(scores, budget_images=2, strategy="weighted_k_center", seed=0,
                          labeled=labeled, embeddings=embeddings).image_ids
    assert sorted(chosen) == ["pool/1.png", "pool/2.png"]
