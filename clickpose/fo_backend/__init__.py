"""FiftyOne annotation backend `clickpose` (registered on import) and a small Python API
for flows: request_annotation, annotation_status, wait_for_annotation, import_annotation."""
from clickpose.fo_backend.api import (
    annotation_status,
    import_annotation,
    request_annotation,
    wait_for_annotation,
)
from clickpose.fo_backend.backend import (
    ClickPoseAnnotationResults,
    ClickPoseBackend,
    ClickPoseBackendConfig,
)
from clickpose.fo_backend.register import register_backend

register_backend()

__all__ = ["ClickPoseAnnotationResults", "ClickPoseBackend", "ClickPoseBackendConfig",
           "annotation_status", "import_annotation", "register_backend", "request_annotation",
           "wait_for_annotation"]
