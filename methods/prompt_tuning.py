"""Visual prompt tuning (VPT, Jia et al. 2022), shallow and deep.

N learnable tokens sit right after the CLS token and are shared by all frames. Shallow: inserted
once, before the first block. Deep: a fresh set per block, replacing the previous block's prompt
outputs. Initialised uniform(-v, v), v = sqrt(6 / (3 * patch^2 + width)) (Xavier over the patch
projection's fan-in and fan-out, as in VPT). On K400 and SSv2: VPT-deep with 50 tokens (the
default); on the synthetic tasks: 4 tokens (a quarter of the 16 patches, like 50 of ViT-B/16's 196).

Where the first prompts enter: VPT's code (``incorporate_prompt``) concatenates them to the output of
the embedding layer (patch + CLS + position embeddings); its ViTs have no LayerNorm between the
embeddings and the first block. CLIP has one (``ln_pre``), so the prompts enter at the encoder's
``post_embed`` slot and pass through ``ln_pre`` like every other token, as CLIP prompt learners do
(MaPLe's and IVLP's visual prompts are concatenated before ``ln_pre``). VPT-deep's later prompts
replace the previous block's prompt outputs at the block input, as in VPT.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .base import MethodConfig, VideoClassifier
from .registry import register_method


class PromptTokens(nn.Module):
    """Puts ``num_tokens`` learned tokens after the prefix tokens of every frame.

    ``replace``: overwrite the prompt positions an earlier ``PromptTokens`` created (VPT-deep's
    later blocks) instead of inserting new ones.
    """

    def __init__(self, num_tokens: int, dim: int, init_bound: float, num_prefix_tokens: int,
                 replace: bool) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.empty(1, num_tokens, dim).uniform_(-init_bound, init_bound))
        self.num_prefix_tokens = num_prefix_tokens
        self.replace = replace

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        start = self.num_prefix_tokens
        rest = start + self.tokens.shape[1] if self.replace else start
        tokens = self.tokens.expand(x.shape[0], -1, -1).to(x.dtype)
        return torch.cat((x[:, :start], tokens, x[:, rest:]), dim=1)


@dataclass(frozen=True)
class PromptTuningConfig(MethodConfig):
    """``num_tokens`` prompts; ``deep`` True: a set before every block, False: before the first."""

    num_tokens: int = 50
    deep: bool = True

    def __post_init__(self) -> None:
        self.require_int("num_tokens", 1)
        if not isinstance(self.deep, bool):
            raise self.fail("deep", self.deep, "expected true (VPT-deep) or false (VPT-shallow)")

    @property
    def starts_as_image_model(self) -> bool:
        return False  # the prompts are attended to from the start


@register_method("prompt_tuning", PromptTuningConfig,
                 presets={"deep50": {"num_tokens": 50, "deep": True},
                          "shallow50": {"num_tokens": 50, "deep": False}},
                 recipe_options={"k400": {"preset": "deep50"}, "ssv2": {"preset": "deep50"},
                                 "synth": {"num_tokens": 4}},
                 version=2)  # 2: the first prompts pass ln_pre (VPT's incorporate_prompt)
def attach(model: VideoClassifier, cfg: PromptTuningConfig) -> list:
    encoder = model.encoder
    bound = math.sqrt(6.0 / (3 * encoder.config.patch_size ** 2 + encoder.width))
    prompts = []
    for i in range(encoder.depth if cfg.deep else 1):
        prompts.append(PromptTokens(cfg.num_tokens, encoder.width, bound,
                                    encoder.num_prefix_tokens, replace=i > 0))
        if i == 0:
            encoder.set_slot("post_embed", prompts[-1])
        else:
            encoder.set_slot("pre_attn", prompts[-1], i)
    return [*prompts, model.head]
