"""World models over frame tokens: the spatial-temporal transformer, WM_act and WM_txt, their
batched rollout with a KV cache, instruction encoders and training (`worldmodel.train`:
`train_world_model`, `load_world_model`; imported on demand, it pulls in TensorBoard)."""

from roboscape_r.worldmodel.config import WMTrainConfig, WorldModelConfig
from roboscape_r.worldmodel.rollout import GoldenTrajectory, StepFrames, StepTokens, WorldModelRollout
from roboscape_r.worldmodel.text_encoder import (
    MiniLMTextEncoder,
    T5TextEncoder,
    TextEncoder,
    TextEncoderUnavailableError,
    make_text_encoder,
)
from roboscape_r.worldmodel.transformer import KVCache
from roboscape_r.worldmodel.world_model import WorldModel, WorldModelLosses, WorldModelOutput, world_model_losses

__all__ = [
    "GoldenTrajectory",
    "KVCache",
    "MiniLMTextEncoder",
    "StepFrames",
    "StepTokens",
    "T5TextEncoder",
    "TextEncoder",
    "TextEncoderUnavailableError",
    "WMTrainConfig",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelLosses",
    "WorldModelOutput",
    "WorldModelRollout",
    "make_text_encoder",
    "world_model_losses",
]
