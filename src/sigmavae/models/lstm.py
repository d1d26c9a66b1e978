"""SVG's LSTMs (Denton & Fergus 2018): a deterministic frame predictor and Gaussian LSTMs.

Both are a linear embedding of the input to ``hidden_size``, a stack of ``nn.LSTMCell`` layers
and linear outputs from the top layer's hidden state. They step one time step per call and take
and return their recurrent state explicitly (``None``: a zero state for this batch), so that no
state is kept between calls or batches.
"""

from __future__ import annotations

import torch
from torch import nn

#: The recurrent state of a stack of LSTM cells: one ``(h, c)`` pair ``(B, hidden_size)`` per
#: layer, bottom first.
LSTMState = list[tuple[torch.Tensor, torch.Tensor]]


class LSTMStack(nn.Module):
    """``Linear(input_size, hidden_size)`` followed by ``layers`` LSTM cells.

    ``forward(inputs (B, input_size), state)`` -> ``(top hidden state (B, hidden_size), state)``.
    """

    def __init__(self, input_size: int, hidden_size: int, layers: int) -> None:
        super().__init__()
        if min(input_size, hidden_size, layers) < 1:
            raise ValueError(f"LSTM sizes must be >= 1, got input_size={input_size}, "
                             f"hidden_size={hidden_size}, layers={layers}")
        self.input_size, self.hidden_size, self.layers = input_size, hidden_size, layers
        self.embed = nn.Linear(input_size, hidden_size)
        self.cells = nn.ModuleList(nn.LSTMCell(hidden_size, hidden_size) for _ in range(layers))

    def initial_state(self, like: torch.Tensor) -> LSTMState:
        """The zero state for the batch of ``like`` ``(B, ...)`` (its device and dtype)."""
        zeros = like.new_zeros(like.shape[0], self.hidden_size)
        return [(zeros, zeros) for _ in range(self.layers)]

    def forward(self, inputs: torch.Tensor,
                state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        if inputs.dim() != 2 or inputs.shape[1] != self.input_size:
            raise ValueError(f"LSTM input must have shape (B, {self.input_size}), got "
                             f"{tuple(inputs.shape)}")
        hidden = self.embed(inputs)
        if state is None:
            state = self.initial_state(hidden)
        new_state: LSTMState = []
        for cell, layer_state in zip(self.cells, state, strict=True):
            h, c = cell(hidden, layer_state)
            new_state.append((h, c))
            hidden = h
        return hidden, new_state


class PredictorLSTM(nn.Module):
    """SVG's frame predictor: ``LSTMStack`` then ``tanh(Linear(hidden_size, output_size))``.

    ``forward(inputs (B, input_size), state)`` -> ``(output (B, output_size) in (-1, 1), state)``.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, layers: int) -> None:
        super().__init__()
        self.rnn = LSTMStack(input_size, hidden_size, layers)
        self.out = nn.Linear(hidden_size, output_size)

    def forward(self, inputs: torch.Tensor,
                state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        hidden, state = self.rnn(inputs, state)
        return torch.tanh(self.out(hidden)), state


class GaussianLSTM(nn.Module):
    """SVG's posterior and prior networks: ``LSTMStack`` then two linear layers giving the mean
    and the log-variance of a diagonal Gaussian.

    ``forward(inputs (B, input_size), state)`` -> ``(mu (B, output_size), log_var (B,
    output_size), state)``; the caller draws ``z = mu + exp(log_var / 2) * noise``.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, layers: int) -> None:
        super().__init__()
        self.rnn = LSTMStack(input_size, hidden_size, layers)
        self.mu = nn.Linear(hidden_size, output_size)
        self.log_var = nn.Linear(hidden_size, output_size)

    def forward(self, inputs: torch.Tensor, state: LSTMState | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        hidden, state = self.rnn(inputs, state)
        return self.mu(hidden), self.log_var(hidden), state
