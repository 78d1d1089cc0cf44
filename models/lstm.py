"""A stacked LSTM over the last `lookback` rows of features."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field
from torch import nn

from models.nets import LSTMNet
from models.sequence import SequenceForecaster, SequenceParams

if TYPE_CHECKING:
    import optuna

__all__ = ["LSTMForecaster", "LSTMParams"]


class LSTMParams(SequenceParams):
    """LSTM hyper-parameters; the shared training ones come from SequenceParams."""

    hidden_size: int = Field(32, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.9, ge=0.0, lt=1.0, description="before the output layer (and between stacked layers)")


class LSTMForecaster(SequenceForecaster):
    """Forecasts the label from a window of feature rows with an LSTM (models/nets.py)."""

    model_type: ClassVar[str] = "lstm"
    params_type: ClassVar[type[LSTMParams]] = LSTMParams
    params: LSTMParams

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> LSTMParams:
        return LSTMParams(**cls._suggest_training(trial),
                          hidden_size=trial.suggest_int("hidden_size", 8, 128, log=True),
                          num_layers=trial.suggest_int("num_layers", 1, 3))

    def _build_net(self, n_features: int) -> nn.Module:
        p = self.params
        return LSTMNet(n_features, p.hidden_size, p.num_layers, p.dropout)
