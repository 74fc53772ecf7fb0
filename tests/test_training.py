"""Training: a few steps lower the loss; feedback clicks; run folder, resume, --init, predict."""
import itertools
import json

import pytest
import torch
from typer.testing import CliRunner

from clickpose.cli.main import app
from clickpose.data import collate_batch, load_coco_dataset, train_transforms
from clickpose.data.synthetic import generate_dataset
from clickpose.keypoints import SchemaError
from clickpose.model import build_model, preset_config
from clickpose.model.criterion import SetCriterion, normalize_targets
from clickpose.model.losses import box_xyxy_to_cxcywh
from clickpose.model.matcher import PaddedTargets
from clickpose.model.pose_errors import ErrorProbs
from clickpose.train.engine import StepOptions, compute_losses
from clickpose.train.feedback import simulate_clicks
from clickpose.train.loop import TrainConfig, resumable_epoch, train
from clickpose.train.optim import build_optimizer, build_scheduler

SIZE = 128  # synthetic images
TRAIN_SIZE = 96  # shorter side the model sees: small and fast
SMALL = {"num_queries": 30, "max_humans": 6, "enc_layers": 1, "keypoint_layers": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    train_dir = generate_dataset(root / "train", 6, seed=11, size=SIZE, max_persons=2,
                                 progress=False)
    val_dir = generate_dataset(root / "val", 3, seed=12, size=SIZE, max_persons=2, progress=False)
    grown_dir = generate_dataset(root / "grown", 4, seed=13, size=SIZE, max_persons=2,
                                 extra_keypoints=["head_top"], progress=False)
    return {"train": train_dir, "val": val_dir, "grown": grown_dir, "root": root}


def _config(sets, out, **kw):
    base = {"data": sets["train"], "out": out, "val": sets["val"], "epochs": 1, "batch_size": 2,
            "workers": 0, "image_size": TRAIN_SIZE, "max_size": TRAIN_SIZE, "dn_groups": 1,
            "max_steps_per_epoch": 1, "progress": False, "lr": 2e-4, "feedback_max_rounds": 1,
            "model_overrides": SMALL}
    return TrainConfig(**{**base, **kw})


def test_a_few_steps_lower_the_loss(data):
    torch.manual_seed(0)
    ds = load_coco_dataset(data["train"], seed=0)
    schema = ds.schema
    ds.transforms = train_transforms(schema, [TRAIN_SIZE], TRAIN_SIZE, crop=False,
                                     color_jitter=False)
    images, mask, targets = collate_batch([ds[i] for i in range(2)])
    model = build_model(preset_config("tiny", image_size=TRAIN_SIZE, **SMALL), schema)
    criterion = SetCriterion(schema)
    optimizer = build_optimizer(model, lr=1e-3)
    scheduler = build_scheduler(optimizer, total_steps=100, warmup_steps=4)
    generator = torch.Generator().manual_seed(0)
    train_options = StepOptions(dn_groups=1, error_probs=ErrorProbs(), feedback=True,
                                feedback_max_rounds=1)
    plain = StepOptions(dn_groups=0, feedback=False)

    def plain_loss():
        with torch.no_grad():
            return sum(compute_losses(model, criterion, images, mask, targets, schema,
                                      generator, plain).values()).item()

    before = plain_loss()
    for _ in range(10):
        losses = compute_losses(model, criterion, images, mask, targets, schema, generator,
                                train_options)
        assert any(k.startswith("loss_dn_") for k in losses)
        assert any(k.startswith("fb_loss_") for k in losses)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        optimizer.step()
        scheduler.step()
    after = plain_loss()
    assert after < 0.85 * before, (before, after)


def test_simulated_click_fixes_the_worst_keypoint():
    k = 5
    gt = torch.rand(2, k, 2)
    weights = torch.ones(2, k)
    weights[1, 4] = 0
    boxes = torch.cat([gt.min(1).values, gt.max(1).values], -1)
    targets = PaddedTargets.of([{"boxes": box_xyxy_to_cxcywh(boxes), "keypoints": gt,
                                 "keypoint_weights": weights, "area": torch.ones(2),
                                 "scale": torch.tensor([100.0, 100.0])}])
    pred = gt[[1, 0]].clone()[None]  # query 0 is person 1, query 1 is person 0
    pred = torch.cat([pred, torch.rand(1, 1, k, 2)], 1)  # and an unmatched query 2
    pred[0, 0, 2] += 0.3            # person 1's worst keypoint: 2
    pred[0, 0, 4] += 0.9            # worse, but unlabelled: never clicked
    pred[0, 1, 3] += 0.2            # person 0's worst keypoint: 3
    indices = [(torch.tensor([0, 1]), torch.tensor([1, 0]))]
    pinned = torch.zeros(1, 3, k, dtype=torch.bool)
    new, pin = simulate_clicks(pred, pinned, indices, targets)
    assert pin[0].nonzero().tolist() == [[0, 2], [1, 3]]
    assert torch.equal(new[0, 0, 2], gt[1, 2]) and torch.equal(new[0, 1, 3], gt[0, 3])
    assert torch.equal(new[0, 2], pred[0, 2])
    # The next click goes to the next worst keypoint, never to a pinned one.
    _, pin2 = simulate_clicks(new, pin, indices, targets)
    assert pin2.sum() == 4 and pin2[0, 0, 2] and pin2[0, 1, 3]


def test_feedback_round_keeps_clicked_keypoints_exact(data):
    torch.manual_seed(0)
    ds = load_coco_dataset(data["train"])
    schema = ds.schema
    images, mask, targets = collate_batch([ds[0], ds[1]])
    model = build_model(preset_config("tiny", image_size=TRAIN_SIZE, **SMALL), schema).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-like refinement heads: unpinned keypoints really move
        for p in model.keypoint_decoder.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    tn = normalize_targets(targets)
    criterion = SetCriterion(schema)
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        out = model.decode_keypoints(state, humans)
        indices = criterion.matcher({k: out[k] for k in ("pred_logits", "pred_boxes",
                                                         "pred_keypoints")}, tn)
        pinned = torch.zeros(out["pred_keypoints"].shape[:3], dtype=torch.bool)
        keypoints, pinned = simulate_clicks(out["pred_keypoints"], pinned, indices,
                                            PaddedTargets.of(tn))
        refined = model.decode_keypoints(state, humans, init_keypoints=keypoints, pinned=pinned)
    assert pinned.any()
    assert torch.equal(refined["pred_keypoints"][pinned], keypoints[pinned])
    free = pinned.any(-1, keepdim=True) & ~pinned   # the clicked persons' other keypoints
    assert (refined["pred_keypoints"][free] - keypoints[free]).abs().max() > 1e-3


def test_run_folder_resume_predict(data, tmp_path):
    out = tmp_path / "run"
    summary = train(_config(data, out), log=lambda *_: None)
    for sub in ("last", "best"):
        assert (out / sub / "model.safetensors").is_file() and (out / sub / "config.json").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["epoch"] == 0 and first["train"]["steps"] == 1
    assert 0.0 <= first["val"]["stats"]["AP"] <= 1.0
    config = json.loads((out / "last" / "config.json").read_text())
    assert config["dataset"]["num_images"] == 6 and len(config["dataset"]["annotations_sha256"]) == 64
    assert config["training"]["epochs"] == 1
    # The run ends by fitting the click prior of its checkpoints on the training images.
    assert config["click_prior"]["num_keypoints"] == 17
    assert config["click_prior"]["persons_labelled"] == summary["click_prior"]["last"][
        "persons_labelled"] > 0
    assert resumable_epoch(out) == 1
    # Without --resume an existing run is not overwritten.
    with pytest.raises(FileExistsError):
        train(_config(data, out), log=lambda *_: None)
    # A run stopped after logging epoch 1 but before saving its training state left a line.
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 1, "stale": True}) + "\n")
    # --resume continues at the next epoch and adds it to the log, once.
    summary = train(_config(data, out, epochs=2, resume=True), log=lambda *_: None)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1] and "stale" not in records[1]
    assert records[0] == first
    assert summary["last_epoch"] == 1 and resumable_epoch(out) == 2
    # Its click prior is fitted again from nothing inherited, not pooled with the first
    # run's own fit (which would count the same persons twice).
    again = json.loads((out / "last" / "config.json").read_text())
    assert again["click_prior"]["persons_labelled"] == config["click_prior"]["persons_labelled"]
    assert again["click_prior_inherited"] is None
    # A run stopped after saving epoch 2's weights but before their training state: the
    # state belongs to other weights, and --resume says so instead of mixing them.
    from clickpose.model.checkpoint import (
        CheckpointError,
        build_from_config,
        read_weights,
        save_checkpoint,
    )
    weights = read_weights(out / "last")
    model = build_from_config(json.loads((out / "last" / "config.json").read_text()))
    model.load_state_dict({k: v + 1e-3 if v.is_floating_point() else v
                           for k, v in weights.items()})
    state_before = (out / "last" / "training_state.json").read_bytes()
    save_checkpoint(out / "last", model, {"epoch": 2})
    with pytest.raises(CheckpointError, match="stopped between the two writes after epoch 2"):
        train(_config(data, out, epochs=3, resume=True), log=lambda *_: None)
    assert (out / "last" / "training_state.json").read_bytes() == state_before
    # clickpose predict writes COCO results for every image.
    preds = tmp_path / "preds.json"
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(out / "best"), "--data",
                                      str(data["val"]), "--out", str(preds), "--max-persons", "5"])
    assert result.exit_code == 0, result.output
    results = json.loads(preds.read_text())
    assert {r["image_id"] for r in results} == {1, 2, 3}
    assert all(len(r["keypoints"]) == 51 and 0 <= r["score"] <= 1 for r in results)
    # The same checkpoint refuses data labelled with other keypoints.
    result = CliRunner().invoke(app, ["predict", "--checkpoint", str(out / "best"), "--data",
                                      str(data["grown"]), "--out", str(tmp_path / "x.json")])
    assert result.exit_code == 1 and "schema mismatch" in result.output
    # --init on data with a new keypoint: keypoint adaptation, one step.
    adapted = tmp_path / "adapted"
    train(_config(data, adapted, data=data["grown"], val=None, init=out / "best"),
          log=lambda *_: None)
    grown_cfg = json.loads((adapted / "last" / "config.json").read_text())
    assert grown_cfg["schema"]["keypoints"][-1] == "head_top"
    # Its click prior is its own (the inherited one has other keypoints).
    assert grown_cfg["click_prior"]["num_keypoints"] == 18
    # ... but a checkpoint with more keypoints than the data is refused, naming both.
    with pytest.raises(SchemaError, match="neither"):
        train(_config(data, tmp_path / "bad", init=adapted / "last"), log=lambda *_: None)


def test_a_fine_tune_pools_its_fit_with_the_inherited_click_prior(data, tmp_path):
    start = tmp_path / "start"
    train(_config(data, start), log=lambda *_: None)
    inherited = json.loads((start / "last" / "config.json").read_text())["click_prior"]
    persons = inherited["persons_labelled"]
    # Without a fit of its own the fine-tune keeps the prior it started from...
    kept = tmp_path / "kept"
    train(_config(data, kept, init=start / "last", click_prior_images=0), log=lambda *_: None)
    for name in ("last", "best"):
        config = json.loads((kept / name / "config.json").read_text())
        assert config["click_prior"] == inherited
    # ... and with one, the inherited prior counts beside the persons of its own data.
    pooled = tmp_path / "pooled"
    summary = train(_config(data, pooled, init=start / "last"), log=lambda *_: None)
    config = json.loads((pooled / "last" / "config.json").read_text())
    assert summary["click_prior"]["last"]["persons_labelled"] == 2 * persons
    assert config["click_prior"]["persons_labelled"] == 2 * persons
    # A fine-tune stopped before its end keeps the inherited prior through --resume.
    stopped = tmp_path / "stopped"
    train(_config(data, stopped, init=start / "last", click_prior_images=0), log=lambda *_: None)
    train(_config(data, stopped, epochs=2, resume=True, click_prior_images=0),
          log=lambda *_: None)
    config = json.loads((stopped / "last" / "config.json").read_text())
    assert config["training"]["epochs"] == 2 and config["click_prior"] == inherited


def test_resumable_epoch_names_a_damaged_training_state(tmp_path):
    from clickpose.model.checkpoint import CheckpointError

    last = tmp_path / "last"
    last.mkdir()
    for name in ("model.safetensors", "config.json"):
        (last / name).write_text("{}")
    (last / "training_state.json").write_text('{"epo')
    with pytest.raises(CheckpointError, match=r"training_state.json: field 'epoch'"):
        resumable_epoch(tmp_path)


def test_validation_schema_must_match(data, tmp_path):
    with pytest.raises(SchemaError) as err:
        train(_config(data, tmp_path / "run", val=data["grown"]), log=lambda *_: None)
    assert "head_top" in str(err.value) and "coco17" in str(err.value)


def test_train_command_line(data, tmp_path):
    out = tmp_path / "cli-run"
    args = ["train", "--data", str(data["train"]), "--out", str(out), "--epochs", "1",
            "--batch-size", "6", "--image-size", str(TRAIN_SIZE), "--workers", "0",
            "--dn-groups", "1", "--lr", "1e-4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "done: last checkpoint" in result.output and "train loss" in result.output
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train"]["steps"] == 1 and record["train"]["images"] == 6
    # A second run into the same folder needs --resume; errors are one clear line, exit 1.
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "--resume" in result.output
    # Resuming on data labelled with other keypoints is refused, naming both schemas.
    result = CliRunner().invoke(app, ["train", "--data", str(data["grown"]), "--out", str(out),
                                      "--resume", "--epochs", "2"])
    assert result.exit_code == 1 and "schema mismatch" in result.output
    assert "coco17+head_top" in result.output and "'coco17'" in result.output


def test_epoch_stops_at_the_deadline(data):
    from clickpose.train.engine import train_one_epoch

    ds = load_coco_dataset(data["train"])
    ds.transforms = train_transforms(ds.schema, [TRAIN_SIZE], TRAIN_SIZE, crop=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_batch)
    model = build_model(preset_config("tiny", image_size=TRAIN_SIZE, **SMALL), ds.schema)
    optimizer = build_optimizer(model)
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_one_epoch(model, SetCriterion(ds.schema), loader, optimizer, None,
                            torch.device("cpu"), 0, ds.schema, torch.Generator(), StepOptions(),
                            deadline=0.0, progress=False)
    assert stats["stopped_early"] and stats["steps"] == 0 and stats["images"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_time_limit_moves_the_lr_drop_into_the_run():
    from clickpose.train.optim import fit_drop_to_deadline

    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, lr=1e-3)
    scheduler = build_scheduler(optimizer, total_steps=10_000, warmup_steps=10)
    assert scheduler.lr_lambdas[0].drop_step == 8_000
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    # 100 steps done, 2 steps/s, 150 s left: about 400 steps in all, drop at 80% of them.
    assert fit_drop_to_deadline(scheduler, 100, 2.0, 150.0) == 320
    # The next epoch runs faster (a warm cache): the drop that has not happened moves later.
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    assert fit_drop_to_deadline(scheduler, 200, 4.0, 25.0) == 240
    assert fit_drop_to_deadline(scheduler, 200, 4.0, 75.0) == 400
    # Never past the drop the epoch count planned.
    assert fit_drop_to_deadline(scheduler, 200, 100.0, 1e4) == 8_000
    assert fit_drop_to_deadline(scheduler, 200, 2.0, 150.0) == 400
    for _ in range(200):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[-1]["lr"] == pytest.approx(1e-4)
    # Once the lr has dropped, no estimate moves the drop again.
    assert fit_drop_to_deadline(scheduler, 400, 0.5, 10.0) == 400
    assert fit_drop_to_deadline(scheduler, 400, 50.0, 1e4) == 400
    fresh = build_scheduler(build_optimizer(model), total_steps=1_000, warmup_steps=10)
    assert fit_drop_to_deadline(fresh, 5, 1.0, 0.0) == 10


def test_cosine_schedule_decays_smoothly_and_fits_the_deadline():
    from clickpose.train.optim import WarmupCosineSchedule, fit_schedule_to_deadline

    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, lr=1e-3)
    scheduler = build_scheduler(optimizer, total_steps=1_000, warmup_steps=10, kind="cosine")
    schedule = scheduler.lr_lambdas[0]
    assert isinstance(schedule, WarmupCosineSchedule)
    factors = [schedule(step) for step in range(1_200)]
    assert factors[0] == pytest.approx(0.1) and factors[10] == pytest.approx(1.0)
    after_warmup = factors[10:]
    assert all(a >= b for a, b in itertools.pairwise(after_warmup))  # never rises
    assert factors[505] == pytest.approx(0.5 + 0.5 * 0.01, abs=1e-3)     # halfway: half
    assert factors[1_000] == pytest.approx(0.01) and factors[1_199] == pytest.approx(0.01)
    for _ in range(100):
        optimizer.step()
        scheduler.step()
    # 100 steps done, 2 steps/s, 150 s left: the cosine ends at step 400 instead of 1,000.
    assert fit_schedule_to_deadline(scheduler, 100, 2.0, 150.0) == 400
    assert schedule(400) == pytest.approx(0.01)
    # Never past the planned end, never before the steps already done.
    assert fit_schedule_to_deadline(scheduler, 100, 100.0, 1e4) == 1_000
    assert fit_schedule_to_deadline(scheduler, 100, 1.0, 0.0) == 101
    with pytest.raises(ValueError, match="lr schedule 'linear' is unknown"):
        build_scheduler(optimizer, total_steps=10, kind="linear")


def test_tiny_backbone_is_pretrained_and_frozen():
    from clickpose.keypoints import coco17
    from clickpose.model.lite0_weights import lite0_timm_state_dict
    from clickpose.train.loop import default_cpu_threads

    model = build_model(preset_config("tiny"), coco17())
    body = model.backbone.body
    weights = lite0_timm_state_dict()
    assert torch.equal(body.conv_stem.weight, weights["conv_stem.weight"])
    assert torch.equal(body.blocks[3][0].conv_pw.weight, weights["blocks.3.0.conv_pw.weight"])
    assert not any(p.requires_grad for p in body.parameters())  # batch norms: frozen buffers
    assert all(p.requires_grad for p in model.input_proj.parameters())
    partly = build_model(preset_config("tiny", frozen_backbone_blocks=2), coco17()).backbone.body
    frozen = {n.split(".")[0] + ("." + n.split(".")[1] if n.startswith("blocks.") else "")
              for n, p in partly.named_parameters() if not p.requires_grad}
    assert frozen == {"conv_stem", "blocks.0", "blocks.1"}
    assert all(p.requires_grad for n, p in partly.named_parameters() if n.startswith("blocks.2"))
    assert model.backbone.strides == [8, 16]
    assert 1 <= default_cpu_threads(workers=2) <= torch.get_num_threads()
