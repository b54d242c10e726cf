"""LoRA adapters (shared and per task), weight interpolation and embedding distillation."""
import subprocess
import sys

import pytest
import torch

from mtl_utils.backbone import backbone_layout
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.distillation import check_distillation, embedding_distance, teacher_vectors
from mtl_utils.freezing import apply_freezing
from mtl_utils.interpolate import interpolate
from mtl_utils.llrd import llrd_parameter_groups
from mtl_utils.model import ModelConfig, MultiTaskModel
from mtl_utils.pooling import pool
from mtl_utils.tasks import BUILTIN_TASKS, SNIPS_INTENT_TASK
from mtl_utils.training import make_adamw
from tests.conftest import REPO
from tests.helpers import batches

TASKS = [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]]
SENTENCES = ["Angela Merkel visited Paris .", "a gorgeous , witty film"]


def lora_model(per_task: bool, rank: int = 4, targets: str = "attention") -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel.from_config(ModelConfig(lora=rank, lora_targets=targets, lora_per_task=per_task), TASKS)


def base_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.encoder.backbone.named_parameters() if "lora_" not in n}


def steps(model, tasks: list[str], weight_decay: float = 0.1, lr: float = 1e-2) -> None:
    optimizer = make_adamw(llrd_parameter_groups(model, lr, lr, 0.9, weight_decay), lr)
    data = batches(model.encoder.tokenizer)
    model.train()
    for task in tasks:
        model(task, **data[task])["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


@pytest.mark.parametrize("per_task", [False, True])
def test_base_weights_stay_bitwise_unchanged_under_weight_decay(per_task):
    model = lora_model(per_task)
    before = base_weights(model)
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    steps(model, ["ner", "sentiment", "ner"])
    assert all(torch.equal(before[n], p) for n, p in model.encoder.backbone.named_parameters() if n in before)
    assert any(not torch.equal(lora_before[n], p) for n, p in model.named_parameters() if n in lora_before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("heads.") for n in trainable)


def test_a_batch_of_one_task_never_updates_another_tasks_adapter():
    model = lora_model(per_task=True)
    sentiment = {n: p.detach().clone() for n, p in model.named_parameters() if ".sentiment." in n and "lora_" in n}
    assert sentiment
    steps(model, ["ner", "ner"])  # weight decay 0.1 too: a parameter without gradient is skipped
    assert all(torch.equal(sentiment[n], p) for n, p in model.named_parameters() if n in sentiment)
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in model.named_parameters() if "lora_B.ner" in n)


def test_encode_between_epochs_leaves_every_adapter_training():
    """The STS-B probe calls encode(), which runs without adapters; leaving peft's disable_adapter()
    re-activates only the active adapter and froze the others for the rest of training (found on the
    full data: the NER adapter stopped after epoch 1)."""
    model = lora_model(per_task=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".ner." in n for n in trainable) and any(".sentiment." in n for n in trainable)
    steps(model, ["ner", "sentiment"])
    model.encoder.encode(SENTENCES)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable
    ner = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B.ner" in n}
    steps(model, ["ner"])
    assert any(not torch.equal(ner[n], p) for n, p in model.named_parameters() if n in ner)


def test_a_new_task_trains_its_own_adapter_and_leaves_the_old_tasks_bitwise_unchanged(tmp_path):
    model = lora_model(per_task=True)
    steps(model, ["ner", "sentiment"])
    data = batches(model.encoder.tokenizer)
    model.eval()
    with torch.no_grad():
        before = {task: model(task, **data[task])["logits"] for task in ("ner", "sentiment")}
    model.add_task(SNIPS_INTENT_TASK)  # its adapter starts at zero: the encoder it sees is the pretrained one
    assert {n for n, _ in model.encoder.backbone.named_parameters() if ".intent." in n}
    apply_freezing(model, "head:ner,head:sentiment,adapter:ner,adapter:sentiment")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".intent." in n or n.startswith("heads.intent.") for n in trainable)
    intent_batch = {**data["sentiment"], "labels": torch.tensor([3, 5])}
    optimizer = make_adamw(llrd_parameter_groups(model, 1e-2, 1e-2, 0.9, 0.1), 1e-2)
    model.train()
    for _ in range(2):
        model("intent", **intent_batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B.intent" in n)
    model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m").eval()
    with torch.no_grad():
        for task in ("ner", "sentiment"):
            assert torch.equal(model(task, **data[task])["logits"], before[task])
            assert torch.equal(loaded(task, **data[task])["logits"], before[task])
        assert torch.equal(loaded("intent", **intent_batch)["logits"], model("intent", **intent_batch)["logits"])
    assert loaded.freeze == model.freeze


def test_freezing_an_adapter_needs_per_task_adapters_and_a_known_task():
    with pytest.raises(ValueError, match="no per-task LoRA adapters"):
        apply_freezing(lora_model(per_task=False), "adapter:ner")
    with pytest.raises(ValueError, match="unknown task 'pos'"):
        apply_freezing(lora_model(per_task=True), "adapter:pos")


def test_llrd_and_freezing_group_lora_parameters_by_their_layer():
    model = lora_model(per_task=False, targets="all")
    groups = llrd_parameter_groups(model, 1e-3, 1e-2, 0.5, 0.01)
    layers = backbone_layout(model.encoder.backbone).layers
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    for i, layer in enumerate(layers):
        lora = [p for n, p in layer.named_parameters() if "lora_" in n]
        assert lora and {rate_of[id(p)] for p in lora} == {1e-3 * 0.5 ** (len(layers) - 1 - i)}
    apply_freezing(model, "bottom:2")
    assert not any(p.requires_grad for layer in layers[:2] for p in layer.parameters())
    assert all(p.requires_grad for n, p in layers[2].named_parameters() if "lora_" in n)
    apply_freezing(model, "none")  # with LoRA, "none" still leaves the base weights frozen
    assert {n for n, p in model.encoder.backbone.named_parameters() if p.requires_grad} == \
           {n for n, _ in model.encoder.backbone.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("per_task", [False, True])
def test_save_load_gives_identical_logits_and_the_base_encoder_unchanged(per_task, tmp_path, encoder):
    model = lora_model(per_task)
    steps(model, ["ner", "sentiment"])
    model.eval()
    model.save_pretrained(tmp_path / "m")
    loaded = MultiTaskModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config and loaded.lora == model.lora
    data = batches(model.encoder.tokenizer)
    with torch.no_grad():
        for task in ("ner", "sentiment"):
            assert torch.equal(model(task, **data[task])["logits"], loaded(task, **data[task])["logits"])
    assert loaded.predict(SENTENCES) == model.predict(SENTENCES)
    pretrained = encoder.encode(SENTENCES)
    saved_base = SentenceEncoder.from_pretrained(str(tmp_path / "m" / "encoder"))
    assert (abs(saved_base.encode(SENTENCES) - pretrained) == 0).all()  # the base encoder, saved unchanged
    if per_task:  # encode() is the plain pretrained encoder: the general vectors are untouched
        assert (abs(model.encoder.encode(SENTENCES) - pretrained) == 0).all()
    else:
        assert abs(model.encoder.encode(SENTENCES) - pretrained).max() > 1e-4


def test_merged_shared_adapter_exports_a_plain_sentence_transformers_folder(tmp_path):
    from sentence_transformers import SentenceTransformer

    from mtl_utils.lora import merged_backbone

    model = lora_model(per_task=False)
    steps(model, ["ner", "sentiment"])
    model.encoder.with_backbone(merged_backbone(model.encoder.backbone, "shared")).save_pretrained(tmp_path / "e")
    vectors = SentenceTransformer(str(tmp_path / "e"), device="cpu").encode(SENTENCES)
    assert abs(vectors - model.encoder.encode(SENTENCES)).max() < 1e-5


def test_interpolation_endpoints_are_bitwise(model):
    pretrained = {k: v.clone() for k, v in model.encoder.backbone.state_dict().items()}
    steps(model, ["ner", "sentiment"], lr=1e-3)
    finetuned = model.encoder.backbone.state_dict()
    at0 = interpolate(model, pretrained, 0.0).encoder.backbone.state_dict()
    at1 = interpolate(model, pretrained, 1.0).encoder.backbone.state_dict()
    half = interpolate(model, pretrained, 0.5).encoder.backbone.state_dict()
    assert all(torch.equal(at0[k], pretrained[k]) and torch.equal(at1[k], finetuned[k]) for k in pretrained)
    moved = [k for k in pretrained if not torch.equal(pretrained[k], finetuned[k])]
    assert moved and all(torch.allclose(half[k], (pretrained[k] + finetuned[k]) / 2, atol=1e-6) for k in moved)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        interpolate(model, pretrained, 1.5)


def test_distillation_term_is_zero_at_the_start(model):
    data = batches(model.encoder.tokenizer)
    features = {k: v.tolist() for k, v in data["ner"].items()}
    teacher = teacher_vectors(model, features)
    model.eval()  # no dropout: the student is the teacher
    out = model("ner", **data["ner"], sentence_vectors=True)
    assert torch.allclose(out["sentence_vectors"], pool(*_states(model, data["ner"]), model.encoder.pooling))
    for distance in ("cosine", "mse"):
        assert embedding_distance(out["sentence_vectors"], teacher, distance).item() < 1e-6
    with pytest.raises(ValueError, match="must be >= 0"):
        check_distillation(-0.5, "cosine")


def _states(model, batch):
    return model.encoder.token_states(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"]


@pytest.mark.parametrize("args, message", [
    (["--lora", "0"], "LoRA rank must be a positive integer, got 0"),
    (["--lora", "4", "--lora-targets", "ffn"], "unknown LoRA targets 'ffn'"),
    (["--keep-embeddings", "-1"], "must be >= 0"),
])
def test_bad_lora_and_distillation_settings_are_one_clear_line(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mtl_utils.train", *args, "--output-dir", str(tmp_path), "--quiet",
                             "--max-train-samples", "8", "--epochs", "1", "--no-stsb"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr[-500:]


def test_interpolating_a_missing_run_or_a_lora_checkpoint_without_peft_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mtl_utils.interpolate", str(tmp_path)], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2 and "not a training run" in result.stderr and "Traceback" not in result.stderr
    lora_model(per_task=False).save_pretrained(tmp_path / "m")
    code = ("import sys; sys.modules['peft'] = None\n"
            "from mtl_utils.model import MultiTaskModel\n"
            f"try:\n    MultiTaskModel.from_pretrained({str(tmp_path / 'm')!r})\n"
            "except ValueError as err:\n    print(err)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert "LoRA needs the `peft` package" in result.stdout, result.stdout + result.stderr[-500:]


def test_training_with_distillation_records_the_distance_and_keeps_vectors_closer(shared_data):
    from mtl_utils.data import load_sst2
    from mtl_utils.tokenization import tokenize_split
    from mtl_utils.training import TrainConfig, train

    split = load_sst2(shared_data)["train"].select(range(48))
    drift = {}
    for weight in (0.0, 5.0):
        torch.manual_seed(0)
        model = MultiTaskModel.from_config(ModelConfig(), [BUILTIN_TASKS["sentiment"]])
        features = {"sentiment": tokenize_split(split, BUILTIN_TASKS["sentiment"], model.encoder.tokenizer)}
        before = model.encoder.encode(SENTENCES, convert_to_tensor=True)
        history = train(model, features, {}, TrainConfig(epochs=2, batch_size=8, lr=1e-3, quiet=True,
                                                         keep_embeddings=weight))
        after = model.encoder.encode(SENTENCES, convert_to_tensor=True)
        drift[weight] = (1 - torch.nn.functional.cosine_similarity(before, after)).mean().item()
        assert ("keep" in history["steps"][0]) == (weight > 0)
    # at step 1 the distance is dropout alone (the teacher ran without it): ~0.06 for MiniLM
    assert history["steps"][0]["keep"] < 0.1 and drift[5.0] < drift[0.0] / 2, drift
