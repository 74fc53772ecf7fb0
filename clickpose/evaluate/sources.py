"""Where the poses under correction come from: a predictions file or a trained checkpoint."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from clickpose.evaluate.editor import ModelOnlyEditor, PoseEditor
from clickpose.evaluate.inputs import EvalInputError, check_detections, keypoint_category
from clickpose.keypoints import KeypointSchema
from clickpose.poses import Poses


def poses_by_image(results: list[dict], dataset: dict, schema: KeypointSchema,
                   where: str = "predictions", gt_where: str = "ground truth"
                   ) -> dict[int, Poses]:
    """COCO keypoint results -> {image_id: Poses} for every ground-truth image (empty if none)."""
    check_detections(results, dataset, schema, where, gt_where)
    category_id = keypoint_category(dataset, where)["id"]
    grouped: dict[int, list[dict]] = defaultdict(list)
    for r in results:
        if r["category_id"] == category_id:
            grouped[r["image_id"]].append(r)
    return {im["id"]: Poses.from_coco_results(grouped.get(im["id"], []), schema.num_keypoints)
            for im in dataset["images"]}


def prediction_editors(results: list[dict], dataset: dict, schema: KeypointSchema,
                       where: str = "predictions", gt_where: str = "ground truth"
                       ) -> Callable[[int], PoseEditor]:
    """editor_for(image_id): a ModelOnlyEditor over that image's predicted poses."""
    poses = poses_by_image(results, dataset, schema, where, gt_where)
    return lambda image_id: ModelOnlyEditor(poses[image_id])


def checkpoint_editors(checkpoint: str | Path, data_dir: str | Path, dataset: dict, mode: str,
                       schema: KeypointSchema, initial: dict[int, Poses] | None = None,
                       device: str | None = None, use_click_prior: bool = True
                       ) -> Callable[[int], PoseEditor]:
    """editor_for(image_id) from a trained model (on `device`; default CUDA when present).

    refine: the model's interactive session (each click re-predicts the person);
    model-only: the model predicts once and clicks move only what they touch.
    `initial` poses (another detector's output) seed the sessions instead of the model's own.
    use_click_prior: refine sessions apply the checkpoint's click prior when it has one.
    """
    try:
        from clickpose.model.checkpoint import load_model
    except ImportError as e:
        raise EvalInputError(
            f"--checkpoint needs the Click-Pose model (clickpose.model.checkpoint.load_model), "
            f"which cannot be imported here ({e}); evaluate a predictions file with --predictions "
            "instead") from None
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    # With the data's schema, a checkpoint trained on other keypoints is refused by name.
    model = load_model(Path(checkpoint), device=device, schema=schema)
    return model_editors(model, data_dir, dataset, mode, initial, use_click_prior)


def model_editors(model, data_dir: str | Path, dataset: dict, mode: str,
                  initial: dict[int, Poses] | None = None, use_click_prior: bool = True
                  ) -> Callable[[int], PoseEditor]:
    """editor_for(image_id) from a model already loaded (checkpoint_editors says the rest)."""
    from clickpose.data.coco import load_image

    files = {im["id"]: Path(data_dir) / "images" / im["file_name"] for im in dataset["images"]}

    def editor_for(image_id: int) -> PoseEditor:
        path = files[image_id]
        if not path.is_file():
            raise EvalInputError(f"{path}: image {image_id} of the annotations is missing; "
                                 f"put it under {Path(data_dir) / 'images'}")
        image = load_image(path)  # a DataError names a file that cannot be decoded
        initial_poses = None if initial is None else initial[image_id]
        session = model.session(image, initial_poses=initial_poses,
                                use_click_prior=use_click_prior)
        return session if mode == "refine" else ModelOnlyEditor(session.poses)

    return editor_for
