import json

import numpy as np
import pytest

from clickpose.keypoints import (
    COCO17_NAMES,
    KeypointSchema,
    SchemaError,
    coco17,
    coco17_plus,
    infer_flip_pairs,
)


def test_coco17_has_official_sigmas_and_skeleton():
    s = coco17()
    assert s.num_keypoints == 17
    assert s.keypoints[0] == "nose" and s.keypoints[16] == "right_ankle"
    # pycocotools' COCOeval default: np.array([.26, .25, ...]) / 10.0
    official = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                         1.07, 1.07, .87, .87, .89, .89]) / 10.0
    np.testing.assert_allclose(s.sigmas_array, official)
    assert len(s.skeleton) == 19
    assert (15, 13) in s.skeleton  # COCO's [16, 14] in 1-based form


def test_flip_permutation_swaps_left_and_right():
    s = coco17()
    perm = s.flip_permutation
    assert perm[s.index("nose")] == s.index("nose")
    assert perm[s.index("left_eye")] == s.index("right_eye")
    assert perm[s.index("right_ankle")] == s.index("left_ankle")
    assert sorted(perm) == list(range(17))
    assert [perm[p] for p in perm] == list(range(17))  # an involution


def test_extend_keeps_existing_indices_and_adds_sigmas_and_edges():
    s = coco17_plus(["head_top", "left_toe", "right_toe"])
    assert s.keypoints[:17] == COCO17_NAMES
    assert s.keypoints[17:] == ["head_top", "left_toe", "right_toe"]
    assert s.sigmas[17:] == [0.079, 0.089, 0.089]
    assert (s.index("left_toe"), s.index("right_toe")) in s.flip_pairs
    assert (s.index("left_ankle"), s.index("left_toe")) in s.skeleton
    assert coco17().is_prefix_of(s)
    assert not s.is_prefix_of(coco17())


def test_extend_with_custom_keypoint_defaults_sigma():
    s = coco17().extend(["tail"], name="with-tail")
    assert s.sigmas[-1] == pytest.approx(0.079)
    with pytest.raises(SchemaError, match="already has"):
        s.extend(["tail"])


def test_coco_category_round_trip_carries_sigmas_and_flips():
    s = coco17_plus(["head_top"])
    cat = json.loads(json.dumps(s.to_coco_category()))
    assert cat["skeleton"][0] == [16, 14]  # 1-based on the COCO side
    back = KeypointSchema.from_coco_category(cat)
    assert back == s


def test_plain_coco_category_gets_official_sigmas():
    cat = {"id": 1, "name": "person", "keypoints": list(COCO17_NAMES),
           "skeleton": [[16, 14], [14, 12]]}
    s = KeypointSchema.from_coco_category(cat)
    assert s.sigmas == coco17().sigmas
    assert s.name == "coco17"
    assert s.skeleton == [(15, 13), (13, 11)]


def test_category_without_keypoints_is_a_clear_error():
    with pytest.raises(SchemaError, match="annotations.json.*category id 1.*no 'keypoints'"):
        KeypointSchema.from_coco_category({"id": 1, "name": "person"}, where="annotations.json")


def test_require_same_names_the_difference():
    with pytest.raises(SchemaError) as e:
        coco17().require_same(coco17_plus(["head_top"]), where="ckpt/config.json")
    msg = str(e.value)
    assert "ckpt/config.json" in msg and "head_top" in msg and "17" in msg and "18" in msg
    coco17().require_same(coco17(), where="x")


def test_bad_schemas_are_refused():
    with pytest.raises(ValueError, match="2 sigmas for 3 keypoints"):
        KeypointSchema(name="x", keypoints=["a", "b", "c"], sigmas=[0.1, 0.1],
                       skeleton=[], flip_pairs=[])
    with pytest.raises(ValueError, match="duplicate"):
        KeypointSchema(name="x", keypoints=["a", "a"], sigmas=[0.1, 0.1],
                       skeleton=[], flip_pairs=[])
    with pytest.raises(ValueError, match="outside 0..1"):
        KeypointSchema(name="x", keypoints=["a", "b"], sigmas=[0.1, 0.1],
                       skeleton=[(0, 2)], flip_pairs=[])


def test_save_and_load(tmp_path):
    s = coco17_plus(["left_hand_tip", "right_hand_tip"])
    s.save(tmp_path / "schema.json")
    assert KeypointSchema.load(tmp_path / "schema.json") == s
    assert infer_flip_pairs(["left_a", "b", "right_a"]) == [(0, 2)]


def test_malformed_skeleton_names_the_field():
    cat = {"id": 1, "name": "person", "keypoints": list(COCO17_NAMES), "skeleton": [[1]]}
    with pytest.raises(SchemaError, match=r"^ann.json: category id 1: 'skeleton' is \[\[1\]\]; "
                       r"give a list of \[a, b\] pairs"):
        KeypointSchema.from_coco_category(cat, where="ann.json")
