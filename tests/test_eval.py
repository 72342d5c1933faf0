"""bench.eval: a checkpoint saved as the reference ST-Adapter code saves it is evaluated on the
pre-trained weights, with the recipe's views, and reproduces the logits of the model that saved it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.config import SYNTH, SYNTH_WORLD
from bench.data import build_dataset
from bench.engine.distributed import DistContext
from bench.engine.evaluate import evaluate
from bench.eval import main
from bench.store.predictions import load_predictions
from bench.store.records import load_records
from methods import build_model, export_st_adapter_checkpoint
from methods.weights import to_openai_visual_state_dict

OPTIONS = {"width": 32, "positions": "pre_attn,pre_mlp"}  # st_adapter's options under the synthetic recipes


@pytest.fixture()
def trained(tmp_path):
    """A 'trained' st_adapter (random non-zero weights everywhere), its backbone file and the
    checkpoint the reference training code's save_model would write for it."""
    torch.manual_seed(5)
    model = build_model("st_adapter", "vit_tiny_test", 10, SYNTH.clip.num_frames, random_init=True,
                        method_options=OPTIONS)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    model.head.dropout.p = 0.0
    backbone = tmp_path / "backbone.pt"
    visual = to_openai_visual_state_dict(model.encoder)
    torch.save(visual, backbone)
    released = export_st_adapter_checkpoint(model)
    checkpoint = tmp_path / "checkpoint-11.pth"
    torch.save({"model": {k: v for k, v in released.items() if k not in visual},
                "optimizer": {"state": {}, "param_groups": []}, "lr_sched": {}, "loss_scaler": {},
                "next_epoch": 12}, checkpoint)
    return model.eval(), backbone, checkpoint


def test_eval_reproduces_the_saving_models_outputs(trained, tmp_path, world_cache, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(world_cache))
    model, backbone, checkpoint = trained
    results = tmp_path / "results"
    assert main(["--methods", "st_adapter", "--datasets", "synth_motion", "--backbone", "vit_tiny_test",
                 "--recipe", "synth", "--weights", str(backbone), "--init", str(checkpoint),
                 "--results", str(results), "--executor", "debug", "--no-summary"]) == 0
    [record] = load_records(results)
    assert record.extra["eval_only"] and record.extra["init"] == str(checkpoint.resolve())
    assert record.extra["train_time_s"] == 0 and record.views == SYNTH.clip.views
    produced = load_predictions(results, record)
    val = build_dataset("synth_motion", "val", SYNTH.clip, train=False, synth=SYNTH_WORLD)
    expected = evaluate(model, val, SYNTH.clip.views, 32, None, DistContext(0, 1, 0, torch.device("cpu")), {})
    assert (produced.topk_index == expected.topk_index).all()
    np.testing.assert_allclose(produced.topk_prob, expected.topk_prob, rtol=0, atol=1e-6)
    assert record.top1 == pytest.approx(expected.metrics()["top1"])


def test_eval_needs_a_checkpoint(capsys):
    with pytest.raises(SystemExit):
        main(["--methods", "st_adapter"])
    assert "--init" in capsys.readouterr().err
