"""Checkpoints: safetensors + JSON round trip, damage detection, schema checks, adaptation."""
import json

import pytest
import torch

from clickpose.keypoints import SchemaError, coco17, coco17_plus
from clickpose.model import build_model, preset_config
from clickpose.model.checkpoint import (
    CheckpointError,
    init_from_checkpoint,
    load_model,
    load_training_state,
    parent_keypoints,
    save_checkpoint,
    save_training_state,
)
from clickpose.train.optim import (
    build_optimizer,
    build_scheduler,
    follow_new_plan,
    schedule_plan,
)


def _tiny(schema, seed=0):
    torch.manual_seed(seed)
    return build_model(preset_config("tiny", image_size=96, max_size=128, num_queries=30,
                                     max_humans=6, enc_layers=1, keypoint_layers=2),
                       schema).eval()


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 64, 96, generator=g)
    mask = torch.zeros(2, 64, 96, dtype=torch.bool)
    mask[1, :, 72:] = True
    return images, mask


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "run"
    model = _tiny(coco17())
    with torch.no_grad():  # offsets start at zero; trained ones are not, and must survive
        model.keypoint_heatmap.offsets.weight.normal_(0.0, 0.1)
        model.keypoint_heatmap.offsets.bias.normal_(0.0, 0.1)
    save_checkpoint(folder, model, metrics={"AP": 0.5}, training={"epochs": 3},
                    dataset={"annotations_sha256": "abc"})
    return folder, model


def test_round_trip_gives_identical_outputs(saved):
    folder, model = saved
    loaded = load_model(folder / "model.safetensors")
    images, mask = _inputs()
    with torch.no_grad():
        a, b = model(images, mask), loaded(images, mask)
    for key in ("pred_logits", "pred_boxes", "pred_keypoints", "pred_visibility"):
        assert torch.equal(a[key], b[key]), key
    config = json.loads((folder / "config.json").read_text())
    assert config["metrics"] == {"AP": 0.5} and config["training"] == {"epochs": 3}
    assert config["schema"]["keypoints"] == coco17().keypoints
    assert loaded.config == model.config and loaded.schema == model.schema
    assert not loaded.training


def test_damaged_weights_are_refused(saved, tmp_path):
    folder, _ = saved
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.safetensors", "config.json"):
        (copy / name).write_bytes((folder / name).read_bytes())
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(copy)


def test_damaged_or_missing_config_is_refused(saved, tmp_path):
    folder, _ = saved
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (tmp_path / "config.json").write_text('{"format": "clickpose-checkpoint", "mod')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_the_config_are_refused(saved, tmp_path):
    folder, _ = saved
    config = json.loads((folder / "config.json").read_text())
    config["model"]["hidden_dim"] = 96
    config["model"]["num_heads"] = 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path)


def test_a_model_config_this_version_cannot_build_is_refused_naming_file_and_field(saved,
                                                                                   tmp_path):
    folder, _ = saved
    config = json.loads((folder / "config.json").read_text())
    config["model"]["keypoint_wings"] = 2  # written by a version with an option this one lacks
    config["model"]["hidden_dim"] = "wide"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "config.json") in message and "field 'model'" in message
    assert "keypoint_wings" in message and "hidden_dim" in message
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not an object"):
        load_model(tmp_path)


def test_schema_mismatch_names_both_schemas(saved):
    folder, _ = saved
    grown = coco17_plus(["head_top"])
    with pytest.raises(SchemaError) as err:
        load_model(folder, schema=grown)
    assert "coco17+head_top" in str(err.value) and "'coco17'" in str(err.value)


def test_keypoint_adaptation_copies_parents(saved):
    folder, old = saved
    new_schema = coco17_plus(["head_top", "left_toe"])
    model = _tiny(new_schema, seed=1)
    report = init_from_checkpoint(model, folder)
    assert report["adapted"] and report["fresh"] == []
    assert parent_keypoints(coco17(), new_schema)[17:] == [0, coco17().index("left_ankle")]
    old_state, new_state = old.state_dict(), model.state_dict()
    emb_old = old_state["keypoint_decoder.keypoint_embed.weight"]
    emb_new = new_state["keypoint_decoder.keypoint_embed.weight"]
    assert torch.equal(emb_new[:17], emb_old)
    assert torch.equal(emb_new[17], emb_old[0])
    assert torch.equal(emb_new[18], emb_old[15])
    # The heatmap offsets hold x, y per keypoint: each new keypoint's pair is its parent's.
    off_old = old_state["keypoint_heatmap.offsets.weight"]
    off_new = new_state["keypoint_heatmap.offsets.weight"]
    assert off_new.shape[0] == 2 * 19 and torch.equal(off_new[:34], off_old)
    assert torch.equal(off_new[34:36], off_old[0:2]) and torch.equal(off_new[36:38], off_old[30:32])
    same = [k for k in old_state if old_state[k].shape == new_state[k].shape]
    assert len(same) > 0.9 * len(old_state)
    assert all(torch.equal(old_state[k], new_state[k]) for k in same)
    # The adapted model runs and predicts the new keypoints.
    images, mask = _inputs()
    with torch.no_grad():
        assert model(images, mask)["pred_keypoints"].shape[2] == 19


def test_adaptation_refuses_a_schema_that_is_not_a_prefix(tmp_path):
    grown = _tiny(coco17_plus(["head_top"]))
    save_checkpoint(tmp_path / "grown", grown)
    with pytest.raises(SchemaError, match="neither"):
        init_from_checkpoint(_tiny(coco17()), tmp_path / "grown")


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_training_state_round_trip(tmp_path, schedule):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    net.backbone = torch.nn.Linear(2, 2)
    opt = build_optimizer(net, lr=1e-3)
    sched = build_scheduler(opt, total_steps=10, kind=schedule)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
        sched.step()
    gen = torch.Generator().manual_seed(5)
    torch.rand(2, generator=gen)
    save_training_state(tmp_path, opt, sched, epoch=4, generators={"noise": gen},
                        extra={"best": 0.25})
    expected_rand, expected_gen = torch.rand(3), torch.rand(3, generator=gen)

    opt2 = build_optimizer(net, lr=1e-3)
    sched2 = build_scheduler(opt2, total_steps=10, kind=schedule)
    gen2 = torch.Generator()
    state = load_training_state(tmp_path, opt2, sched2, {"noise": gen2})
    assert state == {"epoch": 4, "extra": {"best": 0.25}, "online": {}}
    assert torch.equal(torch.rand(3), expected_rand)
    assert torch.equal(torch.rand(3, generator=gen2), expected_gen)
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    assert vars(sched2.lr_lambdas[0]) == vars(sched.lr_lambdas[0])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid, entries in s1["state"].items():
        for key, value in entries.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(s2["state"][pid][key])), key
    # Damaged tensors are refused.
    data = bytearray((tmp_path / "training_state.safetensors").read_bytes())
    data[-1] ^= 0x1
    (tmp_path / "training_state.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged"):
        load_training_state(tmp_path, opt2, sched2)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_a_resume_with_more_epochs_follows_their_plan_until_its_drop(tmp_path, schedule):
    net = torch.nn.Linear(2, 2)

    def stepped(total: int, steps: int):
        opt = build_optimizer(net, lr=1e-3)
        sched = build_scheduler(opt, total_steps=total, warmup_steps=1, kind=schedule)
        for _ in range(steps):
            opt.step()
            sched.step()
        return opt, sched

    def resumed(steps_before: int):
        save_training_state(tmp_path, *stepped(10, steps_before), epoch=0)
        opt, sched = stepped(20, 0)               # the resumed run asks for twice the steps
        plan = schedule_plan(sched)
        load_training_state(tmp_path, opt, sched)
        return follow_new_plan(sched, plan), sched

    changed, sched = resumed(3)                   # the 10-step plan drops (or ends) later
    assert changed and sched.last_epoch == 3
    key = "drop_step" if schedule == "step" else "total_steps"
    assert getattr(sched.lr_lambdas[0], key) == (16 if schedule == "step" else 20)
    assert sched.get_last_lr()[0] == pytest.approx(1e-3 * sched.lr_lambdas[0](3))
    changed, sched = resumed(10)                  # its drop (or end) has passed: it stays
    assert not changed and getattr(sched.lr_lambdas[0], key) in (8, 10)
    opt, same = stepped(10, 0)
    plan = schedule_plan(same)
    save_training_state(tmp_path, *stepped(10, 3), epoch=0)
    load_training_state(tmp_path, opt, same)
    assert not follow_new_plan(same, plan)        # the same --epochs: nothing to change


def test_damaged_training_state_json_is_refused_naming_the_file(tmp_path):
    net = torch.nn.Linear(2, 2)
    opt = build_optimizer(net, lr=1e-3)
    sched = build_scheduler(opt, total_steps=10)
    save_training_state(tmp_path, opt, sched, epoch=0)
    path = tmp_path / "training_state.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # torn
    with pytest.raises(CheckpointError, match="training_state.json: not valid JSON") as err:
        load_training_state(tmp_path, opt, sched)
    assert "another --out" in str(err.value)
    payload = json.loads(text)
    del payload["optimizer"]
    path.write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="field 'optimizer' is missing"):
        load_training_state(tmp_path, opt, sched)
