import pytest
import torch

from mtl_utils.freezing import apply_freezing, parameter_report, route_task
from mtl_utils.llrd import llrd_parameter_groups
from tests.helpers import batches, snapshot


def three_adamw_steps(model, tasks=("ner", "sentiment", "ner")):
    groups = llrd_parameter_groups(model, lr=1e-3, head_lr=1e-2, decay=0.9, weight_decay=0.1)
    optimizer = torch.optim.AdamW(groups) if groups else None
    data = batches(model.encoder.tokenizer)
    model.train()
    for task in tasks:
        loss = model(task, **data[task])["loss"]
        if optimizer is None:
            continue
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def block_of(name: str) -> str:
    if name.startswith("heads."):
        return "head." + name.split(".")[1]
    if ".embeddings." in name:
        return "embeddings"
    return "layer." + name.split(".layer.")[1].split(".")[0]


@pytest.mark.parametrize("scenario, frozen_blocks", [
    ("none", set()),
    ("all", {"embeddings", *(f"layer.{i}" for i in range(6)), "head.ner", "head.sentiment"}),
    ("backbone", {"embeddings", *(f"layer.{i}" for i in range(6))}),
    ("embeddings", {"embeddings"}),
    ("bottom:2", {"embeddings", "layer.0", "layer.1"}),
    ("head:sentiment", {"head.sentiment"}),
    ("bottom:1,head:ner", {"embeddings", "layer.0", "head.ner"}),
])
def test_frozen_unchanged_trainable_changed(model, scenario, frozen_blocks):
    apply_freezing(model, scenario)
    before = snapshot(model)
    three_adamw_steps(model)
    for name, parameter in model.named_parameters():
        if block_of(name) in frozen_blocks:
            assert not parameter.requires_grad, name
            assert torch.equal(parameter, before[name]), f"{name} is frozen but moved"
        else:
            assert parameter.requires_grad, name
            assert not torch.equal(parameter, before[name]), f"{name} is trainable but did not move"


def test_routing_updates_only_top_layers(model):
    route_task(model, "sentiment", 2)
    before = snapshot(model)
    three_adamw_steps(model, tasks=("sentiment",) * 3)
    for name, parameter in model.named_parameters():
        moved = not torch.equal(parameter, before[name])
        block = block_of(name)
        should_move = block in ("layer.4", "layer.5", "head.sentiment")
        assert moved == should_move, f"{name}: moved={moved}"


def test_routed_task_runs_lower_layers_without_graph(model):
    route_task(model, "sentiment", 1)
    data = batches(model.encoder.tokenizer)["sentiment"]
    model(**{"task": "sentiment"}, **data)["loss"].backward()
    assert all(p.grad is None for p in model.encoder.backbone.embeddings.parameters())
    assert all(p.grad is None for p in model.encoder.backbone.encoder.layer[4].parameters())
    assert all(p.grad is not None for p in model.encoder.backbone.encoder.layer[5].parameters())
    assert torch.is_grad_enabled()


def test_routing_leaves_other_tasks_alone(model):
    route_task(model, "sentiment", 1)
    data = batches(model.encoder.tokenizer)["ner"]
    model("ner", **data)["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.backbone.embeddings.word_embeddings.parameters())


@pytest.mark.parametrize("scenario, message", [
    ("top:2", "unknown freezing scenario 'top:2'"),
    ("bottom:7", "K=7 is out of range"),
    ("bottom:x", "K must be an integer"),
    ("head:pos", "unknown task 'pos'"),
])
def test_bad_scenarios(model, scenario, message):
    with pytest.raises(ValueError, match=message):
        apply_freezing(model, scenario)


def test_bad_routing(model):
    with pytest.raises(ValueError, match="K=0 is out of range"):
        route_task(model, "ner", 0)
    with pytest.raises(ValueError, match="unknown task 'pos'"):
        route_task(model, "pos", 2)


def test_parameter_report(model):
    apply_freezing(model, "bottom:2")
    rows = {r["module"]: r for r in parameter_report(model)}
    assert rows["layer.0"]["trainable"] == 0 and rows["layer.0"]["frozen"] == 1_774_464
    assert rows["layer.5"]["frozen"] == 0
    assert rows["total"]["trainable"] + rows["total"]["frozen"] == sum(p.numel() for p in model.parameters())
    assert rows["total"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
