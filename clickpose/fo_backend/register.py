"""Registering the `clickpose` backend in FiftyOne's annotation config (this process).

Other ways, for every process of a user:
    ~/.fiftyone/annotation_config.json:
        {"backends": {"clickpose": {"config_cls": "clickpose.fo_backend.ClickPoseBackendConfig"}}}
    or the environment:
        FIFTYONE_ANNOTATION_BACKENDS="*,clickpose"
        FIFTYONE_CLICKPOSE_CONFIG_CLS=clickpose.fo_backend.ClickPoseBackendConfig
Options set there (e.g. "checkpoint", "port") become defaults of annotate(..., backend=...).
"""
from __future__ import annotations

CONFIG_CLS = "clickpose.fo_backend.backend.ClickPoseBackendConfig"


def register_backend(**defaults) -> dict:
    """Add (or update) the `clickpose` entry of fo.annotation_config.backends; options the
    user configured already are kept unless given here."""
    import fiftyone as fo

    entry = fo.annotation_config.backends.setdefault("clickpose", {})
    entry.setdefault("config_cls", CONFIG_CLS)
    entry.update(defaults)
    return entry
