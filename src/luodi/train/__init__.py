"""Training: stages (sft, pretrain, cpt) over the HF Trainer, PEFT methods, model versions."""

from luodi.train.config import TrainConfig, load_train_config
from luodi.train.runner import TrainResult, run_train
from luodi.train.versions import load_model_version, merge

__all__ = [
    "TrainConfig",
    "TrainResult",
    "load_model_version",
    "load_train_config",
    "merge",
    "run_train",
]
