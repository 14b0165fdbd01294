"""AD-NeRF's audio networks: per-frame audio code and its attention-smoothed blend over neighbouring frames."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class AudioNet(nn.Module):
    """One frame's window of audio features [F, 16, D] -> code [F, dim] (AD-NeRF's AudioNet, any D).

    Four stride-2 1-D convolutions over the 16 time steps (16 -> 8 -> 4 -> 2 -> 1), then a 2-layer MLP.
    """

    def __init__(self, in_dim: int, dim: int = 64, win: int = 16):
        super().__init__()
        layers, ch, steps = [], in_dim, win
        for out in (32, 32, 64, 64):
            layers += [nn.Conv1d(ch, out, 3, stride=2, padding=1), nn.LeakyReLU(0.02, True)]
            ch, steps = out, (steps + 1) // 2
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(ch * steps, 64), nn.LeakyReLU(0.02, True), nn.Linear(64, dim))

    def forward(self, a: Tensor) -> Tensor:  # [F, 16, D] -> [F, dim]
        y = self.conv(a.transpose(1, 2))  # [F, 64, 1]
        return self.fc(y.flatten(1))


class AudioAttNet(nn.Module):
    """Codes of W neighbouring frames [F, W, dim] -> attention-weighted blend [F, dim] (AD-NeRF's AudioAttNet).

    1-D convolutions over the sequence reduce each step's code to one score; a linear layer over the W scores
    and a softmax give the weights.
    """

    def __init__(self, dim: int = 64, seq_len: int = 9):
        super().__init__()
        layers, ch = [], dim
        for out in (16, 8, 4, 2, 1):
            layers += [nn.Conv1d(ch, out, 3, stride=1, padding=1), nn.LeakyReLU(0.02, True)]
            ch = out
        self.conv = nn.Sequential(*layers)
        self.seq_len = seq_len
        self.fc = nn.Linear(seq_len, seq_len)

    def weights(self, codes: Tensor) -> Tensor:  # [F, W, dim] -> [F, W], rows sum to 1
        if codes.shape[1] != self.seq_len:
            raise ValueError(f"AudioAttNet built for {self.seq_len} neighbouring frames, got {codes.shape[1]}")
        score = self.conv(codes.transpose(1, 2)).squeeze(1)  # [F, W]
        return torch.softmax(self.fc(score), dim=-1)

    def forward(self, codes: Tensor) -> Tensor:  # [F, W, dim] -> [F, dim]
        return (self.weights(codes)[..., None] * codes).sum(1)


def audio_windows(feats: Tensor, ids: Tensor, smooth: int) -> Tensor:
    """feats [N,16,D], frame ids [F] (rows of feats) -> [F, 2*smooth+1, 16, D]: each frame's neighbours, clamped
    at the clip's ends (centre in the middle)."""
    offsets = torch.arange(-smooth, smooth + 1, device=ids.device)
    return feats[(ids[:, None] + offsets).clamp(0, len(feats) - 1)]
