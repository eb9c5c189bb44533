"""Motion auto-encoder networks over sequences of pose codes (B, T, latent).

E_m: stacked bidirectional LSTM; the last forward and backward states → FC → box·tanh = v.
D_m: v is the input at every step and sets the initial states; stacked BiLSTM → FC →
box·tanh = ẑ_t (decoded to poses by the frozen pose decoder).
"""
from __future__ import annotations

import torch
from torch import nn

from posedistill.models.pose_prior import box_tanh


class MotionEncoder(nn.Module):
    """(B, T, latent) → (B, dim_v)."""

    def __init__(self, latent: int = 32, hidden: int = 64, layers: int = 2, dim_v: int = 128, box: float = 10.0):
        super().__init__()
        self.lstm = nn.LSTM(latent, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, dim_v)
        self.box = box

    def forward(self, z_seq: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(z_seq)  # h: (layers·2, B, hidden)
        last = torch.cat([h[-2], h[-1]], -1)  # last layer, forward and backward
        return box_tanh(self.fc(last), self.box)


class MotionDecoder(nn.Module):
    """(B, dim_v) → (B, T, latent)."""

    def __init__(self, latent: int = 32, hidden: int = 64, layers: int = 2, dim_v: int = 128,
                 seq_len: int = 30, latent_box: float = 1.0):
        super().__init__()
        self.layers, self.hidden, self.seq_len, self.latent_box = layers, hidden, seq_len, latent_box
        self.init = nn.Linear(dim_v, 2 * layers * 2 * hidden)  # (h, c) for every layer and direction
        self.lstm = nn.LSTM(dim_v, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, latent)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        b = v.shape[0]
        hc = torch.tanh(self.init(v)).view(b, 2, 2 * self.layers, self.hidden).permute(1, 2, 0, 3)
        out, _ = self.lstm(v[:, None].expand(b, self.seq_len, v.shape[-1]),
                           (hc[0].contiguous(), hc[1].contiguous()))  # (B, T, 2·hidden)
        return box_tanh(self.fc(out), self.latent_box)
