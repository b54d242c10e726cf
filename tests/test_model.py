import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from mtl_utils.freezing import apply_freezing, route_task
from mtl_utils.model import MultiTaskModel
from mtl_utils.serialization import CheckpointError
from mtl_utils.tasks import TaskSpec
from tests.helpers import batches

SENTENCES = ["Peter Blackburn flew from Paris to New York with the EU delegation .", "What a dull , lifeless film ."]


def test_forward_per_task(model):
    data = batches(model.encoder.tokenizer)
    ner = model("ner", **data["ner"])
    assert ner["logits"].shape == (*data["ner"]["input_ids"].shape, 9)
    sentiment = model("sentiment", **data["sentiment"])
    assert sentiment["logits"].shape == (2, 2)
    assert ner["loss"].item() > 0 and sentiment["loss"].item() > 0


def test_one_backbone_pass_per_batch(model):
    calls = []
    model.encoder.backbone.register_forward_hook(lambda *args: calls.append(1))
    model("ner", **batches(model.encoder.tokenizer)["ner"])
    model.predict(SENTENCES)
    assert len(calls) == 2  # one training batch, one prediction batch for both heads


def test_unknown_task_and_bad_labels(model):
    data = batches(model.encoder.tokenizer)
    with pytest.raises(ValueError, match="unknown task 'pos'; this model has tasks: ner, sentiment"):
        model("pos", **data["ner"])
    bad = dict(data["sentiment"], labels=torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"label ids must be in 0\.\.1"):
        model("sentiment", **bad)


def test_adding_a_task_adds_only_a_head(model):
    before = {n for n, _ in model.named_parameters()}
    model.add_task(TaskSpec("topic", "sentence", ("a", "b", "c")))
    added = {n for n, _ in model.named_parameters()} - before
    assert added == {"heads.topic.classifier.weight", "heads.topic.classifier.bias"}
    with pytest.raises(ValueError, match="already exists"):
        model.add_task(TaskSpec("topic", "sentence", ("a", "b")))


def test_predict_format(model):
    out = model.predict(SENTENCES)
    assert [o["text"] for o in out] == SENTENCES
    for o in out:
        assert o["sentiment"]["label"] in ("negative", "positive") and 0.5 <= o["sentiment"]["probability"] <= 1
        for entity in o["ner"]:
            assert entity["type"] in ("PER", "ORG", "LOC", "MISC")
            assert o["text"][entity["start"]:entity["end"]] == entity["text"]


def test_save_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["encoder", "heads", "mtl_config.json"]
    for task, keys in (("ner", ["dropout", "hidden_size", "num_labels", "word_shape_dim"]),
                       ("sentiment", ["dropout", "hidden_size", "num_labels"])):  # each head in a folder of its own
        folder = tmp_path / "m" / "heads" / task
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
        assert sorted(json.loads((folder / "config.json").read_text())) == keys
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m")
    model.eval(), loaded.eval()
    data = batches(model.encoder.tokenizer)
    for task in ("ner", "sentiment"):
        assert torch.equal(model(task, **data[task])["logits"], loaded(task, **data[task])["logits"])
    assert loaded.predict(SENTENCES) == model.predict(SENTENCES)


def test_checkpoint_expectations_and_corruption(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="expected"):
        MultiTaskModel.from_pretrained(tmp_path / "m", expected_tasks={"ner": ["O", "B-PER"]})
    heads = tmp_path / "m" / "heads" / "ner" / "model.safetensors"
    heads.write_bytes(heads.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="missing or corrupt"):
        MultiTaskModel.from_pretrained(tmp_path / "m")
    (tmp_path / "m" / "heads" / "ner" / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"ner[/\\]config\.json: missing or unreadable"):
        MultiTaskModel.from_pretrained(tmp_path / "m")
    with pytest.raises(CheckpointError, match="mtl_config.json is missing"):
        MultiTaskModel.from_pretrained(tmp_path)


def save_in_format_2(model, directory):
    """What save_pretrained wrote up to format 2: every head's weights in one heads.safetensors."""
    model.save_pretrained(directory)
    shutil.rmtree(directory / "heads")
    save_file({k: v.contiguous() for k, v in model.heads.state_dict().items()}, directory / "heads.safetensors")
    config = json.loads((directory / "mtl_config.json").read_text())
    (directory / "mtl_config.json").write_text(json.dumps({**config, "format_version": 2}))


def test_a_model_saved_in_format_2_loads_as_the_same_model(model, tmp_path):
    apply_freezing(model, "bottom:2")
    route_task(model, "sentiment", 3)
    save_in_format_2(model, tmp_path / "m")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config and list(loaded.tasks) == ["ner", "sentiment"]
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in model.parameters()]
    assert loaded.predict(SENTENCES) == model.predict(SENTENCES)
    loaded.save_pretrained(tmp_path / "again")  # and is saved in the current format
    assert MultiTaskModel.from_pretrained(tmp_path / "again").predict(SENTENCES) == model.predict(SENTENCES)
    (tmp_path / "m" / "heads.safetensors").unlink()
    with pytest.raises(CheckpointError, match="heads.safetensors: missing or corrupt"):
        MultiTaskModel.from_pretrained(tmp_path / "m")


def test_a_model_saved_in_a_newer_format_is_refused_in_one_line(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "mtl_config.json").read_text())
    (tmp_path / "m" / "mtl_config.json").write_text(json.dumps({**config, "format_version": 4}))
    with pytest.raises(CheckpointError, match=r"saved in format 4, newer than this mtl_utils reads \(1-3\)"):
        MultiTaskModel.from_pretrained(tmp_path / "m")


def test_a_task_finds_its_parts(model):
    route_task(model, "sentiment", 2)
    part = model.part("sentiment")
    assert part.spec is model.tasks["sentiment"] and part.head is model.heads["sentiment"]
    assert (part.top_k, part.adapter) == (2, None) and model.layer_routing == {"sentiment": 2}
    with pytest.raises(ValueError, match="unknown task 'pos'; this model has tasks: ner, sentiment"):
        model.part("pos")


def test_config_is_json(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "mtl_config.json").read_text())
    assert [t["name"] for t in config["tasks"]] == ["ner", "sentiment"]
    assert config["tasks"][0]["labels"][:3] == ["O", "B-PER", "I-PER"]


def test_frozen_lower_layers_keep_dropout_a_frozen_backbone_runs_without(model):
    """The decision documented in freezing.py: dropout follows training mode, not requires_grad."""
    from mtl_utils.backbone import backbone_layout
    from mtl_utils.freezing import apply_freezing
    from mtl_utils.training import TrainConfig, train
    from tests.helpers import batches

    apply_freezing(model, "bottom:2")
    layer0 = backbone_layout(model.encoder.backbone).layers[0]
    outputs = []
    handle = layer0.register_forward_hook(
        lambda module, args, output: outputs.append(output[0] if isinstance(output, tuple) else output))
    batch = batches(model.encoder.tokenizer)["sentiment"]
    model.train()
    with torch.no_grad():
        model("sentiment", **batch), model("sentiment", **batch)
    assert not torch.equal(outputs[0], outputs[1])  # frozen layer 0 still drops out in training
    handle.remove()

    apply_freezing(model, "backbone")
    features = {"sentiment": {k: v.tolist() for k, v in batch.items()}}
    seen = []
    model.encoder.backbone.register_forward_pre_hook(lambda module, args: seen.append(module.training))
    train(model, features, {}, TrainConfig(epochs=1, batch_size=2, quiet=True, cache_frozen_backbone=False))
    assert seen and not any(seen)  # the wholly frozen backbone ran in eval mode every step
