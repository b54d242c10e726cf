"""Mixed precision on a CPU: bf16 where it is fast, fp32 with one line where it is not, and what
stays fp32 under bf16 (pooling, the losses, evaluation)."""
import logging
import math

import pytest
import torch

from mtl_utils import precision
from mtl_utils.evaluation import evaluate_task
from mtl_utils.pooling import pool
from mtl_utils.training import TrainConfig, train

from .test_training_loop import NER_TRAIN, model_and_features

NER_HELD_OUT = NER_TRAIN.select(range(16))  # the dtypes are checked here, not the scores




def held_out(features: dict) -> dict:
    return {key: values[:16] for key, values in features["ner"].items()}


def linear_output_dtypes(model) -> list:
    seen = []
    model.encoder.backbone.encoder.layer[0].attention.self.query.register_forward_hook(
        lambda module, args, output: seen.append(output.dtype))
    return seen


def test_bf16_on_a_cpu_without_fast_bf16_falls_back_to_fp32_with_one_line(monkeypatch, caplog):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: False)
    model, features = model_and_features()
    seen = linear_output_dtypes(model)
    with caplog.at_level(logging.WARNING):
        history = train(model, {"ner": features["ner"]}, {},
                        TrainConfig(epochs=1, batch_size=16, quiet=True, mixed_precision="bf16"))
    assert history["config"]["mixed_precision"] == "bf16" and history["mixed_precision"] == "no"
    assert set(seen) == {torch.float32}
    lines = [r.getMessage() for r in caplog.records if r.name == "mtl_utils.precision"]
    assert len(lines) == 1 and "training in fp32" in lines[0] and "\n" not in lines[0]


def test_bf16_where_fast_trains_in_bf16_and_evaluates_in_fp32(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: True)  # forced: this CPU may lack bf16 units
    model, features = model_and_features()
    seen = linear_output_dtypes(model)
    steps = math.ceil(len(NER_TRAIN) / 16)  # then one evaluation batch (16 sentences, batch size 128)
    history = train(model, {"ner": features["ner"]}, {"ner": (NER_HELD_OUT, held_out(features))},
                    TrainConfig(epochs=1, batch_size=16, quiet=True, mixed_precision="bf16"))
    assert history["mixed_precision"] == "bf16" and len(history["steps"]) == steps
    assert seen == [torch.bfloat16] * steps + [torch.float32]  # training steps in bf16, evaluation in fp32
    assert all(math.isfinite(s["loss"]) for s in history["steps"])
    assert 0 <= history["epochs"][0]["validation"]["ner"]["f1"] <= 1
    seen.clear()
    evaluate_task(model, "ner", NER_HELD_OUT, held_out(features))  # after train(): fp32 too
    assert seen == [torch.float32]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 master weights


def test_mean_pooling_sums_in_fp32_and_fp32_input_is_untouched():
    states, mask = torch.randn(2, 300, 8) * 100, torch.ones(2, 300, dtype=torch.long)
    assert torch.equal(pool(states, mask), (states * mask.unsqueeze(-1).float()).sum(1) / 300)
    half = states.bfloat16()
    assert pool(half, mask).dtype == torch.float32
    assert torch.equal(pool(half, mask), pool(half.float(), mask))  # summed in fp32, not bf16


def test_unknown_mixed_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown mixed precision 'bf32'"):
        TrainConfig(mixed_precision="bf32")


def test_the_probe_answers_remembers_and_leaves_the_global_generator_alone():
    precision.cpu_bf16_is_fast.cache_clear()
    state = torch.get_rng_state()
    first = precision.cpu_bf16_is_fast()
    precision.matmul_seconds(torch.float32)  # the timing part (oneDNN may answer before it)
    assert torch.equal(torch.get_rng_state(), state)  # train() probes after seeding: dropout must not move
    assert isinstance(first, bool) and precision.cpu_bf16_is_fast() is first


@pytest.mark.parametrize("fast", [True, False])
def test_auto_is_bf16_where_the_cpu_is_fast_and_fp32_silently_elsewhere(monkeypatch, caplog, fast):
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: fast)
    with caplog.at_level(logging.WARNING):
        used = precision.resolve_mixed_precision("auto", torch.device("cpu"))
    assert used == ("bf16" if fast else "no") and not caplog.records


@pytest.mark.parametrize("capability, expected", [((7, 5), "no"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_on_a_gpu_is_bf16_from_ampere_on(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)  # T4: 7.5
    assert precision.resolve_mixed_precision("auto", torch.device("cuda", 0)) == expected


def test_one_process_can_train_in_bf16_then_in_fp32(monkeypatch):
    """A notebook comparing the two trains in bf16, then in fp32, in one process (autocast is per step)."""
    monkeypatch.setattr(precision, "cpu_bf16_is_fast", lambda: True)
    used = []
    for requested in ("bf16", "no", "bf16"):
        model, features = model_and_features()
        seen = linear_output_dtypes(model)
        history = train(model, {"ner": features["ner"]}, {},
                        TrainConfig(epochs=1, batch_size=16, quiet=True, mixed_precision=requested))
        used.append((history["mixed_precision"], set(seen)))
    assert used == [("bf16", {torch.bfloat16}), ("no", {torch.float32}), ("bf16", {torch.bfloat16})]


def test_accelerate_launchs_mixed_precision_does_not_add_its_own_autocast(monkeypatch):
    """`accelerate launch --mixed_precision bf16` sets ACCELERATE_MIXED_PRECISION; the command's own
    --mixed-precision decides (here fp32), so no second autocast wraps the forward."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    model, features = model_and_features()
    seen = linear_output_dtypes(model)
    train(model, {"ner": features["ner"]}, {}, TrainConfig(epochs=1, batch_size=16, quiet=True))
    assert set(seen) == {torch.float32}
