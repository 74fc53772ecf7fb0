"""The annotation round as four calls, for scripts and flows (no Prefect here):

    results = request_annotation(view, "round3", "ground_truth", checkpoint)
    annotation_status(dataset, "round3")          # TaskStatus: done, left, clicks, seconds
    wait_for_annotation(dataset, "round3")        # until the annotator presses "finish"
    import_annotation(dataset, "round3")          # merge accepted labels into the field
"""
from __future__ import annotations

from clickpose.annotator.task import TaskStatus


def request_annotation(samples, anno_key: str, label_field: str, checkpoint,
                       launch: bool = False, **options):
    """Create the Click-Pose task for `samples` (pre-labelled by the checkpoint's model);
    with launch=True also start the annotator server. Returns the annotation results."""
    from clickpose.fo_backend.register import register_backend

    register_backend()
    return samples.annotate(anno_key, backend="clickpose", label_field=label_field,
                            label_type="keypoints", classes=["person"], checkpoint=checkpoint,
                            launch=launch, **options)


def annotation_status(dataset, anno_key: str) -> TaskStatus:
    return dataset.load_annotation_results(anno_key).status()


def wait_for_annotation(dataset, anno_key: str, timeout: float | None = None,
                        poll_seconds: float = 5.0) -> TaskStatus:
    return dataset.load_annotation_results(anno_key).wait(timeout, poll_seconds)


def import_annotation(dataset, anno_key: str, cleanup: bool = False) -> TaskStatus:
    """Merge the accepted images into the label field; returns the task's status."""
    results = dataset.load_annotation_results(anno_key)
    status = results.status()
    dataset.load_annotations(anno_key, unexpected="ignore", cleanup=cleanup)
    return status
