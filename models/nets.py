"""Plain torch networks: a window of feature rows in, one scaled forecast per window out."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LSTMNet", "TransformerNet"]


class LSTMNet(nn.Module):
    """A stacked LSTM read out at the last time step, beside a linear skip from the last row.

    Args:
        n_features: feature columns per row.
        hidden_size: LSTM state width.
        num_layers: stacked LSTM layers.
        dropout: between LSTM layers (when stacked) and before the output layer.
    """

    def __init__(self, n_features: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        # nn.LSTM applies dropout only between layers and warns when there is a single layer.
        self.lstm = nn.LSTM(n_features, hidden_size, num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        # The gates shrink the state well below unit scale, and Adam moves each weight by about the learning
        # rate per step: the layer norm and the linear skip (LSTNet's "highway") let the output layer reach
        # a linear signal within a few epochs.
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size + n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, lookback, n_features) -> (batch,)."""
        out, _ = self.lstm(x)  # (batch, lookback, hidden_size)
        last = self.dropout(self.norm(out[:, -1]))  # (batch, hidden_size): the state after row t
        return self.head(torch.cat([last, x[:, -1]], dim=-1)).squeeze(-1)  # (batch,); skip reads row t


class TransformerNet(nn.Module):
    """A Transformer encoder over the window, read out at the last position, beside a linear skip from the
    last row (as in LSTMNet).

    Args:
        n_features: feature columns per row.
        lookback: window length (rows); sizes the learned positional embedding.
        d_model: token width; `nhead` must divide it.
        nhead: attention heads.
        num_layers: encoder layers.
        dim_feedforward: width of each layer's feed-forward block.
        dropout: inside the encoder layers and before the output layer.
    """

    def __init__(self, n_features: int, lookback: int, d_model: int, nhead: int, num_layers: int,
                 dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"nhead ({nhead}) must divide d_model ({d_model})")
        self.project = nn.Linear(n_features, d_model)
        self.position = nn.Parameter(torch.zeros(1, lookback, d_model))  # (1, lookback, d_model)
        nn.init.trunc_normal_(self.position, std=0.02)
        # Pre-norm layers train stably without a warm-up; no padding mask, so nested tensors buy nothing.
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model),
                                             enable_nested_tensor=False)
        # On noisy returns the encoder mostly fits noise; the skip carries a linear signal past it.
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_model + n_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, lookback, n_features) -> (batch,)."""
        tokens = self.project(x) + self.position[:, : x.shape[1]]  # (batch, lookback, d_model)
        encoded = self.encoder(tokens)  # (batch, lookback, d_model); every row in the window is <= t
        last = self.dropout(encoded[:, -1])  # (batch, d_model)
        return self.head(torch.cat([last, x[:, -1]], dim=-1)).squeeze(-1)  # (batch,); skip reads row t
