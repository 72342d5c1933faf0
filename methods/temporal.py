"""Pieces shared by the methods that let frames interact: the time-major view of a clip's tokens
(one sequence over time per token position) and a learned per-frame embedding."""
from __future__ import annotations

import torch
from torch import nn


def time_major(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Tokens [B*T, L, C] (frames of a clip contiguous) -> [B*L, T, C], one series per position."""
    _, tokens, dim = x.shape
    return x.reshape(-1, num_frames, tokens, dim).transpose(1, 2).reshape(-1, num_frames, dim)


def frame_major(series: torch.Tensor, tokens: int) -> torch.Tensor:
    """The inverse of ``time_major``: [B*L, T, C] -> [B*T, L, C]."""
    _, num_frames, dim = series.shape
    return series.view(-1, tokens, num_frames, dim).transpose(1, 2).reshape(-1, tokens, dim)


class TemporalEmbedding(nn.Module):
    """Adds a learned, zero-initialised vector per frame to every token after the first ``skip``
    (TimeSformer leaves the CLS token alone, AIM does not); built for a fixed number of frames."""

    def __init__(self, num_frames: int, dim: int, skip: int) -> None:
        super().__init__()
        self.skip = skip
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, dim))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        if num_frames != self.time_embed.shape[1]:
            raise ValueError(f"the model's temporal embedding was built for {self.time_embed.shape[1]} "
                             f"frames but got clips of {num_frames}; build the model with "
                             f"num_frames={num_frames}")
        kept, embedded = x[:, :self.skip], x[:, self.skip:]
        clips = embedded.view(-1, num_frames, *embedded.shape[1:])
        embedded = (clips + self.time_embed.unsqueeze(2).to(x.dtype)).flatten(0, 1)
        return torch.cat((kept, embedded), dim=1)
