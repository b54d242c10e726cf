"""Same seed, same result; an interrupted and resumed run ends where an uninterrupted one does."""
import json

import pytest
import torch
from safetensors.torch import load_file

from mtl_utils.checkpointing import load_training_state, save_training_state
from mtl_utils.data import load_conll2003, load_sst2
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.model import MultiTaskModel
from mtl_utils.serialization import CheckpointError
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import tokenize_split
from mtl_utils.training import TrainConfig, train

CONFIG = dict(epochs=2, batch_size=16, seed=3, quiet=True, weight_decay=0.1)


@pytest.fixture(scope="module")
def tiny_data(shared_data):
    encoder = SentenceEncoder.from_pretrained()
    splits = {"ner": load_conll2003(shared_data), "sentiment": load_sst2(shared_data)}
    train_features, eval_sets = {}, {}
    for task, data in splits.items():
        spec = BUILTIN_TASKS[task]
        train_features[task] = tokenize_split(data["train"].select(range(40)), spec, encoder.tokenizer)
        held_out = data["validation"].select(range(24))
        eval_sets[task] = (held_out, tokenize_split(held_out, spec, encoder.tokenizer))
    return train_features, eval_sets


def fresh_model() -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(SentenceEncoder.from_pretrained(), [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])


def run(tiny_data, output_dir, resume=False, model=None):
    model = model or fresh_model()
    history = train(model, *tiny_data, TrainConfig(**CONFIG), output_dir=output_dir, resume=resume)
    return model, history


def assert_same_weights(a, b):
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name


def test_same_seed_same_weights_and_metrics(tiny_data, tmp_path):
    model_a, history_a = run(tiny_data, tmp_path / "a")
    model_b, history_b = run(tiny_data, tmp_path / "b")
    assert_same_weights(model_a, model_b)
    assert history_a["epochs"][-1]["validation"] == history_b["epochs"][-1]["validation"]
    assert [s["loss"] for s in history_a["steps"]] == [s["loss"] for s in history_b["steps"]]


def test_interrupted_and_resumed_equals_uninterrupted(tiny_data, tmp_path):
    reference, reference_history = run(tiny_data, tmp_path / "full")

    interrupted = fresh_model()
    calls = {"n": 0}
    steps_per_epoch = len(reference_history["steps"]) // 2

    def kill_in_second_epoch(module, args):
        calls["n"] += 1
        if calls["n"] > steps_per_epoch + 2:
            raise KeyboardInterrupt("simulated kill")

    handle = interrupted.encoder.backbone.register_forward_pre_hook(kill_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_data, tmp_path / "killed", model=interrupted)
    handle.remove()
    latest = json.loads((tmp_path / "killed" / "checkpoint" / "latest.json").read_text())
    assert latest["epoch"] == 1

    resumed, history = run(tiny_data, tmp_path / "killed", resume=True)
    assert_same_weights(reference, resumed)
    assert [s["loss"] for s in history["steps"]] == [s["loss"] for s in reference_history["steps"]]


def test_a_kill_while_writing_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    model, _ = run(tiny_data, tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint"
    assert json.loads((checkpoint / "latest.json").read_text())["epoch"] == 2

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-write")

    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    monkeypatch.setattr("mtl_utils.checkpointing.save_file", dies)
    with pytest.raises(KeyboardInterrupt):
        save_training_state(checkpoint, 3, 99, model, optimizer, scheduler, {})
    monkeypatch.undo()
    assert json.loads((checkpoint / "latest.json").read_text())["epoch"] == 2
    assert not (checkpoint / "epoch-3").exists()
    saved = load_file(checkpoint / "epoch-2" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    model = fresh_model()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_training_state(tmp_path, model, optimizer, scheduler)
    (tmp_path / "latest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_training_state(tmp_path, model, optimizer, scheduler)


def test_each_process_resumes_with_its_own_random_state(tmp_path):
    """Several processes (DDP): the main one writes every process's random state; each restores its own."""
    import random

    from mtl_utils.checkpointing import capture_rng_state

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    states, draws = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        random.seed(seed)
        states.append(capture_rng_state())
        draws.append((torch.rand(3), random.random()))
    save_training_state(tmp_path, 1, 5, model, optimizer, scheduler, {}, states)
    for process, expected in ((1, draws[1]), (0, draws[0]), (2, draws[0])):  # a 3rd process: the main one's
        torch.manual_seed(99)
        random.seed(99)
        load_training_state(tmp_path, model, optimizer, scheduler, process_index=process)
        assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_a_checkpoint_from_before_per_process_states_still_resumes(tmp_path):
    """The earlier layout (one process: "rng.torch", "rng": {...}) is still read."""
    import random

    from safetensors.torch import save_file

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    torch.manual_seed(5)
    random.seed(5)
    folder = save_training_state(tmp_path, 1, 5, model, optimizer, scheduler, {})
    expected = (torch.rand(3), random.random())
    state = json.loads((folder / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps({**state, "rng": state["rng"][0]}))
    tensors = load_file(folder / "optimizer.safetensors")
    save_file({("rng.torch" if k == "rng.0.torch" else k): v for k, v in tensors.items()}, folder / "optimizer.safetensors")
    load_training_state(tmp_path, model, optimizer, scheduler)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
