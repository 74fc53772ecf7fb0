"""The click prior: fitted statistics, what a click does with them, and where they are kept."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from annotator_fixtures import tiny_model
from session_fixtures import structured_image
from typer.testing import CliRunner

from clickpose.cli.main import app
from clickpose.data.synthetic import generate_dataset
from clickpose.keypoints import SchemaError
from clickpose.model.checkpoint import (
    CheckpointError,
    attach_click_prior,
    load_model,
    read_click_prior,
    read_inherited_click_prior,
    save_checkpoint,
)
from clickpose.model.click_prior import (
    ClickPrior,
    ClickPriorError,
    error_covariance,
    pooled,
    pose_prior,
)
from clickpose.model.click_propagation import heatmap_evidence, propagated, reseeded_starts
from clickpose.train.click_prior_fit import fit_click_prior, regularized


def prior_for(error_cov: np.ndarray, num_keypoints: int, pair_mean=None, pair_var=None,
              max_error: float = 0.3) -> ClickPrior:
    k = num_keypoints
    return ClickPrior(
        pair_mean=torch.zeros(k, k, 2, dtype=torch.float64) if pair_mean is None else pair_mean,
        pair_var=torch.full((k, k, 2), 0.25, dtype=torch.float64) if pair_var is None else pair_var,
        layout_mean=torch.zeros(k, 2, dtype=torch.float64),
        layout_var=torch.full((k, 2), 0.25, dtype=torch.float64),
        error_cov=torch.as_tensor(error_cov, dtype=torch.float64), persons_labelled=1,
        persons_predicted=1, max_error=max_error)


def test_error_covariance_recovers_correlated_errors_and_ignores_gross_ones():
    rng = np.random.default_rng(0)
    k = 3
    # x errors of the three keypoints share one cause (correlation 0.8); y independent.
    x_cov = 0.02 ** 2 * (0.2 * np.eye(k) + 0.8)
    x = rng.multivariate_normal(np.zeros(k), x_cov, size=4000)
    y = rng.normal(0.0, 0.01, size=(4000, k))
    residuals = np.stack([x, y], -1)                      # (P, K, 2)
    residuals[::7, 1] = np.nan                            # unlabelled now and then
    residuals[::50, 2] = (5.0, -5.0)                      # gross errors: another limb
    cov = error_covariance(residuals, shrink=0.0).numpy()
    assert cov.shape == (2 * k, 2 * k)
    xs = [0, 2, 4]
    np.testing.assert_allclose(cov[np.ix_(xs, xs)], x_cov, rtol=0.1, atol=2e-5)
    assert abs(cov[0, 1]) < 2e-5 and abs(cov[1, 3]) < 2e-5   # x with y, y with y: none
    assert np.linalg.eigvalsh(cov).min() > 0
    # Shrinkage keeps the variances and pulls the covariances toward 0.
    shrunk = error_covariance(residuals, shrink=0.5).numpy()
    np.testing.assert_allclose(np.diag(shrunk), np.diag(cov), rtol=1e-6)
    assert shrunk[0, 2] == pytest.approx(cov[0, 2] / 2, rel=1e-6)


def test_too_few_pairs_leave_a_statistic_uninformed():
    u = np.full((30, 2, 2), np.nan)
    u[:, 0] = (0.1, -0.2)
    u[:5, 1] = (0.3, 0.0)                                  # keypoint 1 seen 5 times only
    _, pair_var, layout_mean, layout_var = pose_prior(u)
    assert layout_mean[0].tolist() == pytest.approx([0.1, -0.2])
    assert layout_mean[1].tolist() == [0.0, 0.0] and layout_var[1].tolist() == [0.25, 0.25]
    assert pair_var[1, 0].tolist() == [0.25, 0.25]
    cov = error_covariance(np.full((3, 2, 2), np.nan)).numpy()
    assert np.isfinite(cov).all() and np.linalg.eigvalsh(cov).min() > 0


def fitted_on(offsets: np.ndarray, residuals: np.ndarray) -> ClickPrior:
    pair_mean, pair_var, layout_mean, layout_var = pose_prior(offsets)
    return ClickPrior(pair_mean, pair_var, layout_mean, layout_var,
                      error_covariance(residuals, shrink=0.0), persons_labelled=len(offsets),
                      persons_predicted=len(residuals))


def test_pooling_takes_both_samples_and_caps_the_inherited_one():
    rng = np.random.default_rng(1)
    k = 3
    # Two populations of persons: the inherited prior's and a fine-tune's own labels.
    old = rng.normal((0.1, -0.2), 0.05, size=(400, k, 2))
    new = rng.normal((0.2, -0.1), 0.08, size=(200, k, 2))
    old_errors, new_errors = (rng.normal(0.0, s, size=(n, k, 2)) for s, n in
                              ((0.02, 400), (0.04, 200)))
    inherited, fitted = fitted_on(old, old_errors), fitted_on(new, new_errors)
    both = fitted_on(np.concatenate([old, new]), np.concatenate([old_errors, new_errors]))
    # Uncapped, the pool is the prior of all persons together (mean and spread).
    pool = pooled(fitted, inherited, inherited_persons=10_000)
    assert pool.persons_labelled == 600 and pool.persons_predicted == 600
    for name in ("pair_mean", "pair_var", "layout_mean", "layout_var"):
        torch.testing.assert_close(getattr(pool, name), getattr(both, name), rtol=0.01,
                                   atol=1e-4)
    torch.testing.assert_close(pool.error_cov, both.error_cov, rtol=0.05, atol=2e-5)
    # Capped, the inherited persons count as the cap: the fine-tune's own data weighs more.
    capped = pooled(fitted, inherited, inherited_persons=100)
    assert capped.persons_labelled == 300
    weight = 200 / 300
    torch.testing.assert_close(capped.layout_mean, weight * fitted.layout_mean
                               + (1 - weight) * inherited.layout_mean)
    spread = (capped.layout_var - weight * fitted.layout_var
              - (1 - weight) * inherited.layout_var)
    assert (spread > 0).all()  # the two means differ: the mixture is wider than either part
    with pytest.raises(ClickPriorError, match="3-keypoint.*2-keypoint"):
        pooled(fitted, fitted_on(old[:, :2], old_errors[:, :2]), 100)


def test_a_fit_with_nothing_to_inherit_is_narrowed_only_as_far_as_its_persons_say():
    rng = np.random.default_rng(2)
    k = 3
    x = rng.multivariate_normal(np.zeros(k), 0.02 ** 2 * (0.2 * np.eye(k) + 0.8), size=50)
    residuals = np.stack([x, rng.normal(0.0, 0.01, size=(50, k))], -1)
    few = fitted_on(rng.normal((0.1, -0.2), 0.05, size=(50, k, 2)), residuals)
    kept = regularized(few, None)
    # 50 persons against a prior of 100 that says nothing: a third of the way.
    assert kept.persons_labelled == 50 and kept.persons_predicted == 50
    torch.testing.assert_close(kept.layout_mean, few.layout_mean / 3)
    assert (kept.pair_var[0, 1] > few.pair_var[0, 1]).all()
    torch.testing.assert_close(torch.diagonal(kept.error_cov), torch.diagonal(few.error_cov))
    torch.testing.assert_close(kept.error_cov[0, 2], few.error_cov[0, 2] / 3)
    # Thousands of persons barely move.
    many = dataclasses.replace(few, persons_labelled=10_000, persons_predicted=10_000)
    torch.testing.assert_close(regularized(many, None).layout_mean,
                               few.layout_mean * 10_000 / 10_100)


def test_a_click_moves_the_other_keypoints_by_their_expected_error():
    k = 3
    # Every x error is the same (a person shifted sideways); y errors are independent.
    cov = np.eye(2 * k) * 1e-4
    xs = [0, 2, 4]
    cov[np.ix_(xs, xs)] = 1e-4
    prior = prior_for(cov + np.eye(2 * k) * 1e-9, k)
    box = torch.tensor([0.0, 0.0, 100.0, 100.0])          # scale 100 px
    start = torch.tensor([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    decoded = start.clone()
    # Keypoint 0 was 5 px too far right: the others are too.
    moved = propagated(prior, decoded, start, {0: (5.0, 10.0)}, box)
    np.testing.assert_allclose(moved[1:].numpy(), [[15.0, 20.0], [25.0, 30.0]], atol=1e-3)
    assert moved[0].tolist() == [10.0, 10.0]              # the caller writes the click itself
    # A gross correction (another limb) says nothing about the others' small errors.
    unmoved = propagated(prior, decoded, start, {0: (90.0, 10.0)}, box)
    assert torch.equal(unmoved, decoded)


def test_a_click_reseeds_a_keypoint_on_the_wrong_limb_from_the_heatmaps():
    k, h, w = 2, 16, 16
    mask = torch.zeros(h, w, dtype=torch.bool)
    heatmap = torch.full((k, h, w), -8.0)
    left, right = (6 + 0.5) / w, (12 + 0.5) / w
    heatmap[1, 8, 6] = heatmap[1, 8, 12] = 3.0             # keypoint 1: two equal peaks
    # Keypoint 1 lies 0.3 box widths right of keypoint 0, give or take 0.02.
    pair_mean = torch.zeros(k, k, 2, dtype=torch.float64)
    pair_mean[1, 0, 0], pair_mean[0, 1, 0] = 0.3, -0.3
    pair_var = torch.full((k, k, 2), 0.02 ** 2, dtype=torch.float64)
    prior = prior_for(np.eye(2 * k) * 1e-4, k, pair_mean, pair_var)
    box = torch.tensor([0.5, 0.5, 1.0, 1.0])
    clicked = torch.tensor([True, False])
    # Keypoint 1 starts on the left peak; the click puts keypoint 0 where the right one fits.
    start = torch.tensor([[right - 0.3, 0.53], [left, (8 + 0.5) / h]])
    def reseeded_start(prior, heatmap, offsets, mask, box, start, clicked):  # one person
        return reseeded_starts(prior, heatmap_evidence(heatmap, mask), offsets, mask, box[None],
                               start[None], clicked[None])[0]

    new = reseeded_start(prior, heatmap, None, mask, box, start, clicked)
    assert torch.equal(new[0], start[0])                   # a click is never reseeded
    assert new[1].tolist() == pytest.approx([right, (8 + 0.5) / h])
    # A click that agrees with where keypoint 1 is leaves it there.
    start[0, 0] = left - 0.3
    assert torch.equal(reseeded_start(prior, heatmap, None, mask, box, start, clicked), start)
    # Without a click nothing is said: nothing moves.
    assert torch.equal(reseeded_start(prior, heatmap, None, mask, box, start,
                                      torch.zeros(k, dtype=torch.bool)), start)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    data = generate_dataset(tmp_path_factory.mktemp("prior") / "data", 4, seed=3, size=128,
                            max_persons=2, progress=False)
    model = tiny_model()
    return model, fit_click_prior(model, data, max_images=3), data


def test_fit_on_a_folder_and_keep_it_in_the_checkpoint(fitted, tmp_path):
    model, prior, _ = fitted
    assert prior.num_keypoints == 17 and prior.persons_labelled > 0
    assert prior.error_cov.shape == (34, 34)
    assert torch.linalg.eigvalsh(prior.error_cov).min() > 0
    folder = save_checkpoint(tmp_path / "ckpt", model)
    assert read_click_prior(folder) is None and load_model(folder).click_prior is None
    attach_click_prior(folder, prior)
    loaded = load_model(folder).click_prior
    for name in ("pair_mean", "pair_var", "layout_mean", "layout_var", "error_cov"):
        torch.testing.assert_close(getattr(loaded, name), getattr(prior, name), atol=1e-6,
                                   rtol=1e-6)
    # Saving the loaded model again keeps it (a packaged copy, a fine-tune's start).
    again = save_checkpoint(tmp_path / "again", load_model(folder))
    assert read_click_prior(again) is not None
    # A damaged field is named, with the fix.
    config = json.loads((folder / "config.json").read_text())
    config["click_prior"]["error_cov"] = [[1.0]]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"click_prior\.error_cov.*fit-click-prior"):
        load_model(folder)
    with pytest.raises(ClickPriorError, match="version"):
        ClickPrior.from_json({"version": 99}, 17, "x")


def test_a_checkpoint_tells_its_own_fit_from_the_prior_it_inherited(fitted, tmp_path):
    model, prior, _ = fitted
    parent = dataclasses.replace(prior, persons_labelled=7)
    model.click_prior = parent
    try:
        folder = save_checkpoint(tmp_path / "tuned", model)   # a fine-tune before its fit
    finally:
        model.click_prior = None
    assert read_inherited_click_prior(folder).persons_labelled == 7
    attach_click_prior(folder, prior, parent)                 # its fit, pooled with it
    assert read_click_prior(folder).persons_labelled == prior.persons_labelled
    assert read_inherited_click_prior(folder).persons_labelled == 7
    config = json.loads((folder / "config.json").read_text())
    config["click_prior_inherited"]["error_cov"] = [[1.0]]  # a damaged field is named
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'click_prior_inherited\.error_cov'"):
        read_inherited_click_prior(folder)
    attach_click_prior(folder, prior)                         # a fit that pooled nothing
    assert read_inherited_click_prior(folder) is None
    assert read_inherited_click_prior(save_checkpoint(tmp_path / "bare", model)) is None


def test_fit_refuses_data_of_another_schema(fitted, tmp_path):
    model, _, _ = fitted
    grown = generate_dataset(tmp_path / "grown", 2, seed=4, size=128, max_persons=1,
                             extra_keypoints=["head_top"], progress=False)
    with pytest.raises(SchemaError):
        fit_click_prior(model, grown)


def test_session_with_the_prior_moves_only_the_clicked_person_and_undoes(fitted):
    model, prior, _ = fitted
    # An untrained model finds nobody to learn errors from: give its keypoints errors
    # that share a cause, so that a click says something about the others.
    prior = dataclasses.replace(prior, error_cov=torch.eye(34, dtype=torch.float64) * 1e-3
                                + 1e-3)
    image = structured_image()
    plain = model.session(image, max_persons=4)
    model.click_prior = prior
    try:
        session = model.session(image, max_persons=4)
        without = model.session(image, max_persons=4, use_click_prior=False)
        assert np.array_equal(session.poses.keypoints, plain.poses.keypoints)
        before = session.poses.copy()
        poses = session.click(1, "left_wrist", 150.0, 130.0)
        reference = without.click(1, "left_wrist", 150.0, 130.0)
        assert tuple(poses.keypoints[1, 9]) == (150.0, 130.0)
        # Other persons are decoded as without the prior; the clicked one moves with it.
        others = [0, 2, 3]
        np.testing.assert_allclose(poses.keypoints[others], reference.keypoints[others],
                                   atol=1e-4)
        assert not np.allclose(poses.keypoints[1], reference.keypoints[1])
        session.undo()
        assert np.array_equal(session.poses.keypoints, before.keypoints)
    finally:
        model.click_prior = None


def test_fit_click_prior_command_stores_it(fitted, tmp_path):
    model, _, data = fitted
    folder = save_checkpoint(tmp_path / "ckpt", model)
    result = CliRunner().invoke(app, ["fit-click-prior", "--checkpoint", str(folder), "--data",
                                      str(data), "--images", "2"])
    assert result.exit_code == 0, result.output
    assert "labelled persons" in result.output
    assert read_click_prior(folder).num_keypoints == 17
    result = CliRunner().invoke(app, ["fit-click-prior", "--checkpoint", str(tmp_path / "none"),
                                      "--data", str(data)])
    assert result.exit_code == 1 and "no model.safetensors" in result.output
    # Pooled with the prior of the checkpoint it came from: both samples of persons count.
    own = read_click_prior(folder).persons_labelled
    tuned = save_checkpoint(tmp_path / "tuned", model)
    result = CliRunner().invoke(app, ["fit-click-prior", "--checkpoint", str(tuned), "--data",
                                      str(data), "--images", "2", "--pool-with", str(folder)])
    assert result.exit_code == 0, result.output
    assert read_click_prior(tuned).persons_labelled == 2 * own
    # A start without a prior is named, and nothing is written.
    bare = save_checkpoint(tmp_path / "bare", model)
    result = CliRunner().invoke(app, ["fit-click-prior", "--checkpoint", str(bare), "--data",
                                      str(data), "--pool-with", str(bare)])
    assert result.exit_code == 1 and "--pool-with" in result.output
    assert read_click_prior(bare) is None


def test_eval_noc_refines_with_or_without_the_prior(tmp_path):
    data = generate_dataset(tmp_path / "val", 6, seed=31, size=256, progress=False)
    after = {}
    for flag in ("--click-prior", "--no-click-prior"):
        out = tmp_path / f"{flag}.json"
        result = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--checkpoint",
                                          "tiny-synthetic", "--mode", "refine", flag,
                                          "--json", str(out)])
        assert result.exit_code == 0, result.output
        after[flag] = json.loads(out.read_text())["summary"]["dataset_ap_after"]
    # The same clicks (the first round's, on the same first poses), other poses after them.
    assert after["--click-prior"]["0"] == after["--no-click-prior"]["0"]
    assert after["--click-prior"] != after["--no-click-prior"]
