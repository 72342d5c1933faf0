"""The frame encoder's insertion sites: each calls its module where the docstring says, with the
frozen sublayer at hand; pass-through modules change nothing; the backbone keeps its keys."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from methods import EncoderSiteError, FrameEncoder, get_backbone_config

TINY = get_backbone_config("vit_tiny_test")


class Scaled(nn.Module):
    """``factor * inner`` for every call signature the sites use."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.tensor(factor))

    def forward(self, x, num_frames_or_linear, branch=None):
        if branch is not None:  # residual branch: (x, T, branch)
            return self.factor * branch(x)
        if callable(num_frames_or_linear):  # projection: (x, linear)
            return self.factor * num_frames_or_linear(x)
        return self.factor * x  # slot or parallel side: (x, T)


def encoder(seed: int = 0) -> FrameEncoder:
    torch.manual_seed(seed)
    enc = FrameEncoder(TINY).eval()
    with torch.no_grad():  # non-trivial norms
        for name, param in enc.named_parameters():
            if "norm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return enc


def frames(n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_plain_encoder_runs_timms_blocks():
    enc = encoder()
    with torch.no_grad():
        x = enc.norm_pre(enc.embed(frames()))
        for block in enc.blocks:
            x = block(x)
        assert torch.equal(enc(frames(), 2), x[:, 0])


@pytest.mark.parametrize("insert", [
    lambda enc, m: enc.set_slot("post_embed", m),
    lambda enc, m: enc.set_slot("pre_attn", m, 1),
    lambda enc, m: enc.set_slot("pre_mlp", m, 2),
    lambda enc, m: enc.wrap_branch("attn", 0, m),
    lambda enc, m: enc.wrap_branch("mlp", 3, m),
    lambda enc, m: enc.wrap_projection("attn.qkv", 1, "probe", m),
    lambda enc, m: enc.wrap_projection("attn.proj", 2, "probe", m),
    lambda enc, m: enc.wrap_projection("mlp.fc1", 0, "probe", m),
    lambda enc, m: enc.wrap_projection("mlp.fc2", 3, "probe", m),
], ids=["post_embed", "pre_attn", "pre_mlp", "attn", "mlp", "qkv", "proj", "fc1", "fc2"])
def test_a_pass_through_changes_nothing_and_keeps_backbone_keys(insert):
    plain, enc = encoder(), encoder()
    keys = plain.backbone_state_keys()
    insert(enc, Scaled(1.0))
    assert enc.backbone_state_keys() == keys and set(enc.state_dict()) - keys  # the module's own key
    with torch.no_grad():
        assert torch.equal(enc(frames(), 2), plain(frames(), 2))
        enc.load_state_dict(plain.state_dict(), strict=False)  # backbone keys only: loads
        for module in enc.modules():
            if isinstance(module, Scaled):
                module.factor.fill_(0.5)
        assert not torch.equal(enc(frames(), 2), plain(frames(), 2))  # the site is really called


def test_projection_wrapper_keys_and_unwrap():
    enc = encoder()
    enc.wrap_projection("attn.qkv", 1, "probe", Scaled(2.0))
    state = enc.state_dict()
    assert {"blocks.1.attn.qkv.weight", "blocks.1.attn.qkv.bias", "blocks.1.attn.qkv.probe.factor"} <= set(state)
    x = torch.randn(3, 5, 64)
    qkv = enc.blocks[1].attn.qkv
    torch.testing.assert_close(qkv(x), 2 * nn.functional.linear(x, qkv.weight, qkv.bias))
    assert enc.projection("attn.qkv", 1) is qkv and type(enc.projection("attn.proj", 1)) is nn.Linear
    removed = enc.unwrap_projection("attn.qkv", 1)
    assert isinstance(removed, Scaled) and type(enc.blocks[1].attn.qkv) is nn.Linear
    assert enc.blocks[1].attn.qkv.weight is qkv.weight and set(enc.state_dict()) == enc.backbone_state_keys()


def test_branch_wrapper_replaces_the_residual_branch():
    """A branch returning zero skips the sublayer: block 0 without its MLP."""
    class Zero(nn.Module):
        def forward(self, x, num_frames, branch):
            return torch.zeros_like(x)

    enc = encoder()
    enc.wrap_branch("mlp", 0, Zero())
    plain = encoder()
    with torch.no_grad():
        x = plain.norm_pre(plain.embed(frames()))
        block = plain.blocks[0]
        x = x + block.attn(block.norm1(x))  # ... and no MLP
        for block in plain.blocks[1:]:
            x = block(x)
        torch.testing.assert_close(enc(frames(), 2), x[:, 0], rtol=0, atol=0)


def test_parallel_branch_reads_the_normalised_input():
    seen = {}

    class Record(nn.Module):
        def forward(self, hidden, num_frames):
            seen["hidden"], seen["frames"] = hidden, num_frames
            return torch.zeros_like(hidden)

    enc = encoder()
    enc.add_parallel("mlp", 2, Record())
    captured = {}
    enc.blocks[2].norm2.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    with torch.no_grad():
        enc(frames(), 2)
    assert seen["frames"] == 2 and torch.equal(seen["hidden"], captured["out"])


def test_post_embed_runs_before_norm_pre():
    seen = {}

    class Record(nn.Module):
        def forward(self, x, num_frames):
            seen["x"] = x
            return x

    enc = encoder()
    enc.set_slot("post_embed", Record())
    with torch.no_grad():
        enc(frames(), 2)
        assert torch.equal(seen["x"], enc.embed(frames()))


def test_block_features_read_what_the_forward_computes_and_stop_after_the_last_block():
    """Each asked-for block's output tokens and its qkv output (the wrapper's, when the projection
    is wrapped), in the order asked; the blocks after the last one do not run; nothing is left
    behind (the hooks are gone, the forward is unchanged)."""
    enc = encoder()
    enc.wrap_projection("attn.qkv", 1, "probe", Scaled(2.0))
    ran = []
    for i, block in enumerate(enc.blocks):
        block.norm1.register_forward_hook(lambda m, inputs, out, i=i: ran.append(i))
    with torch.no_grad():
        tokens, qkv, x = {}, {}, enc.norm_pre(enc.embed(frames()))
        for i, block in enumerate(enc.blocks):
            h = block.norm1(x)
            qkv[i] = block.attn.qkv(h)  # the wrapped projection: 2 x the linear
            x = x + block.attn(h)
            x = x + block.mlp(block.norm2(x))
            tokens[i] = x
        ran.clear()
        features = enc.block_features(frames(), 2, [2, 1])
        assert ran == [0, 1, 2]  # block 3 never ran
        for feature, i in zip(features, (2, 1)):
            assert torch.equal(feature.tokens, tokens[i]) and torch.equal(feature.qkv, qkv[i])
        assert not enc.blocks[1].attn.qkv._forward_hooks and torch.equal(enc(frames(), 2), x[:, 0])
    with pytest.raises(EncoderSiteError, match=r"block=4 is not a block index"):
        enc.block_features(frames(), 2, [4])


@pytest.mark.parametrize("insert,message", [
    (lambda enc: enc.set_slot("pre_ffn", nn.Identity(), 0), r"no residual-stream slot 'pre_ffn'"),
    (lambda enc: enc.set_slot("post_embed", nn.Identity(), 0), r"no residual-stream slot 'post_embed' \(block=0\)"),
    (lambda enc: enc.set_slot("pre_mlp", nn.Identity(), 4), r"block=4 is not a block index of this 4-block"),
    (lambda enc: enc.wrap_branch("ffn", 0, nn.Identity()), r"no residual branch 'ffn'; branches: \('attn', 'mlp'\)"),
    (lambda enc: enc.wrap_projection("attn.q", 0, "m", nn.Identity()), r"no projection 'attn\.q'"),
    (lambda enc: enc.wrap_projection("attn.qkv", 0, "weight", nn.Identity()), r"wrapper name 'weight'"),
    (lambda enc: enc.unwrap_projection("attn.qkv", 0), r"projection 'attn\.qkv' of block 0 is not wrapped"),
])
def test_bad_sites(insert, message):
    with pytest.raises(EncoderSiteError, match=message):
        insert(encoder())


@pytest.mark.parametrize("insert,message", [
    (lambda enc: enc.set_slot("pre_attn", Scaled(1.0), 0), r"slot 'pre_attn' of block 0 already holds a Scaled"),
    (lambda enc: enc.wrap_branch("attn", 0, Scaled(1.0)), r"branch 'attn' of block 0 is already wrapped by a Scaled"),
    (lambda enc: enc.wrap_projection("attn.qkv", 0, "again", Scaled(1.0)),
     r"projection 'attn\.qkv' of block 0 is already wrapped by 'probe'"),
])
def test_a_site_takes_one_module(insert, message):
    enc = encoder()
    enc.set_slot("pre_attn", Scaled(1.0), 0)
    enc.wrap_branch("attn", 0, Scaled(1.0))
    enc.wrap_projection("attn.qkv", 0, "probe", Scaled(1.0))
    with pytest.raises(EncoderSiteError, match=message):
        insert(enc)


def test_time_major_round_trip_and_layout():
    from methods.temporal import frame_major, time_major
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).view(2 * 3, 4, 5)  # 2 clips x 3 frames, 4 tokens
    series = time_major(x, 3)
    assert series.shape == (2 * 4, 3, 5)
    assert torch.equal(series[4 + 1, 2], x[3 + 2, 1])  # clip 1, token 1, frame 2
    assert torch.equal(frame_major(series, 4), x)


@pytest.mark.parametrize("skip", [0, 1])
def test_temporal_embedding_adds_one_vector_per_frame(skip):
    from methods.temporal import TemporalEmbedding
    embedding = TemporalEmbedding(3, 5, skip)
    with torch.no_grad():
        embedding.time_embed.copy_(torch.randn(1, 3, 5))
    x = torch.randn(2 * 3, 4, 5)
    out = embedding(x, 3)
    assert torch.equal(out[:, :skip], x[:, :skip])
    expected = x[:, skip:] + embedding.time_embed[0].repeat(2, 1)[:, None]
    torch.testing.assert_close(out[:, skip:], expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="built for 3 frames but got clips of 2"):
        embedding(x, 2)
