"""The Click-Pose network, its presets and the interactive session."""
from clickpose.model.clickpose_model import ClickPose, build_model
from clickpose.model.encoder import EncoderState
from clickpose.model.human_decoder import HumanState
from clickpose.model.presets import PRESETS, ModelConfig, preset_config
from clickpose.model.session import InteractiveSession

__all__ = ["PRESETS", "ClickPose", "EncoderState", "HumanState", "InteractiveSession",
           "ModelConfig", "build_model", "preset_config"]
