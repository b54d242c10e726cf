"""The checkpoint protocol's own guarantees: weights on disk before latest.json names them, a damaged
latest checkpoint falls back to the one before it, and the resume position skips the batches done."""
import os

import pytest
import torch

from mtl_utils import checkpointing
from mtl_utils.checkpointing import Position, load_training_state, save_training_state
from mtl_utils.serialization import CheckpointError


def tiny_state(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def test_weight_files_are_flushed_before_latest_json_names_them(tmp_path, monkeypatch):
    events, fsync, write_json = [], checkpointing._fsync, checkpointing._write_json
    monkeypatch.setattr(checkpointing, "_fsync", lambda path: events.append(("fsync", path.name)) or fsync(path))
    monkeypatch.setattr(checkpointing, "_write_json",
                        lambda path, data: events.append(("write", path.name)) or write_json(path, data))
    save_training_state(tmp_path, 1, 4, *tiny_state(), {})
    named = events.index(("write", "latest.json"))
    assert {("fsync", "model.safetensors"), ("fsync", "optimizer.safetensors"), ("write", "state.json"),
            ("fsync", tmp_path.name)} <= set(events[:named])  # the folder too, after the rename


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path):
    model, optimizer, scheduler = tiny_state()
    save_training_state(tmp_path, 1, 4, model, optimizer, scheduler, {"steps": [4]}, keep=2)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    latest = save_training_state(tmp_path, 2, 8, model, optimizer, scheduler, {"steps": [8]}, keep=2)
    weights = latest / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)  # a file cut short

    other, other_optimizer, other_scheduler = tiny_state(seed=1)
    with pytest.warns(UserWarning, match="epoch-2: corrupt checkpoint .*resuming from the checkpoint before it"):
        restored = load_training_state(tmp_path, other, other_optimizer, other_scheduler)
    assert (restored["epoch"], restored["step"], restored["history"]) == (1, 4, {"steps": [4]})
    assert all(torch.equal(first[k], v) for k, v in other.state_dict().items())


def test_with_one_checkpoint_kept_a_damaged_one_is_a_clear_error(tmp_path):
    model, optimizer, scheduler = tiny_state()
    latest = save_training_state(tmp_path, 1, 4, model, optimizer, scheduler, {})
    os.truncate(latest / "optimizer.safetensors", 10)
    with pytest.raises(CheckpointError, match="epoch-1: corrupt checkpoint"):
        load_training_state(tmp_path, *tiny_state())


def test_a_position_resumed_inside_an_epoch_skips_its_batches_and_keeps_the_random_state():
    position = Position(step=7, epoch=1, resumed={"epoch_step": 3, "processes": 1, "sentences": 12, "seconds": 5.0})
    batches = iter(range(10))
    state = torch.get_rng_state()
    position.begin_epoch(batches, processes=1)
    assert next(batches) == 3 and (position.epoch_step, position.sentences) == (3, 12)
    assert torch.equal(torch.get_rng_state(), state) and position.resumed is None
    assert position.within_epoch(1)["seconds"] >= 5.0
    position.begin_epoch(iter(range(10)), processes=1)  # the next epoch starts from its first batch
    assert (position.epoch_step, position.sentences) == (0, 0)


def test_a_position_resumed_with_more_processes_splits_the_done_batches():
    position = Position(resumed={"epoch_step": 4, "processes": 1, "sentences": 16, "seconds": 1.0})
    batches = iter(range(10))
    with pytest.warns(UserWarning, match="with 2 processes instead of 1"):
        position.begin_epoch(batches, processes=2)
    assert next(batches) == 2 and position.epoch_step == 2
