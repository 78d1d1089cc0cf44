"""A small Transformer encoder over the last `lookback` rows of features."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Self

from pydantic import Field, model_validator
from torch import nn

from models.nets import TransformerNet
from models.sequence import SequenceForecaster, SequenceParams

if TYPE_CHECKING:
    import optuna

__all__ = ["TransformerForecaster", "TransformerParams"]


class TransformerParams(SequenceParams):
    """Transformer hyper-parameters; `nhead` must divide `d_model`."""

    d_model: int = Field(32, ge=1)
    nhead: int = Field(4, ge=1)
    num_layers: int = Field(2, ge=1)
    dim_feedforward: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Self:
        if self.d_model % self.nhead:
            raise ValueError(f"nhead ({self.nhead}) must divide d_model ({self.d_model})")
        return self


class TransformerForecaster(SequenceForecaster):
    """Forecasts the label from a window of feature rows with a Transformer encoder (models/nets.py)."""

    model_type: ClassVar[str] = "transformer"
    params_type: ClassVar[type[TransformerParams]] = TransformerParams
    params: TransformerParams

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> TransformerParams:
        # Widths are multiples of 8 and heads divide 8, so every draw is valid.
        return TransformerParams(**cls._suggest_training(trial),
                                 d_model=trial.suggest_categorical("d_model", [16, 32, 64]),
                                 nhead=trial.suggest_categorical("nhead", [1, 2, 4, 8]),
                                 num_layers=trial.suggest_int("num_layers", 1, 3),
                                 dim_feedforward=trial.suggest_categorical("dim_feedforward", [32, 64, 128]))

    def _build_net(self, n_features: int) -> nn.Module:
        p = self.params
        return TransformerNet(n_features, p.lookback, p.d_model, p.nhead, p.num_layers, p.dim_feedforward,
                              p.dropout)
