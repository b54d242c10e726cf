import subprocess
import sys

import numpy as np
import pytest
import torch

from mtl_utils.backbone import resolve_model_path, DEFAULT_MODEL
from mtl_utils.pooling import pool

SENTENCES = ["A man is playing the cello.", "Hello", "", "   ", "Emoji 🙂 text",
             "Multi-task learning shares one encoder between several heads and tasks."]


def test_mean_pooling_ignores_padding(encoder):
    ids = encoder.tokenizer(["A short one."], return_tensors="pt")
    extra = 7
    padded_ids = torch.cat([ids["input_ids"], torch.full((1, extra), encoder.tokenizer.pad_token_id)], dim=1)
    padded_mask = torch.cat([ids["attention_mask"], torch.zeros(1, extra, dtype=torch.long)], dim=1)
    encoder.eval()
    with torch.no_grad():
        plain = encoder(ids["input_ids"], ids["attention_mask"])
        padded = encoder(padded_ids, padded_mask)
    assert torch.allclose(plain, padded, atol=1e-6)
    # and a naive mean over all positions (padding included) would differ
    with torch.no_grad():
        states = encoder.token_states(padded_ids, padded_mask)
    assert not torch.allclose(states.mean(1), pool(states, padded_mask, "mean"), atol=1e-3)


def test_cls_and_max_pooling():
    states = torch.tensor([[[1.0, -1.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(states, mask, "cls").tolist() == [[1.0, -1.0]]
    assert pool(states, mask, "max").tolist() == [[3.0, 5.0]]  # the padded 100s are ignored
    assert pool(states, mask, "mean").tolist() == [[2.0, 2.0]]


def test_unknown_pooling_is_named():
    with pytest.raises(ValueError, match="unknown pooling 'avg'"):
        pool(torch.zeros(1, 1, 2), torch.ones(1, 1), "avg")


def test_matches_sentence_transformers(encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu").encode(SENTENCES)
    ours = encoder.encode(SENTENCES, batch_size=4)
    assert ours.shape == (len(SENTENCES), 384)
    assert np.abs(ours - reference).max() < 1e-5


def test_encode_keeps_input_order(encoder):
    together = encoder.encode(SENTENCES, batch_size=2)
    one_by_one = np.stack([encoder.encode([s])[0] for s in SENTENCES])
    assert np.abs(together - one_by_one).max() < 1e-5


def test_encode_empty_list_and_single_string(encoder):
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of sentences"):
        encoder.encode("not a list")


def test_export_loads_in_sentence_transformers(encoder, tmp_path):
    from sentence_transformers import SentenceTransformer

    encoder.save_pretrained(tmp_path / "enc")
    loaded = SentenceTransformer(str(tmp_path / "enc"), device="cpu")
    assert np.abs(loaded.encode(SENTENCES) - encoder.encode(SENTENCES)).max() < 1e-5
    assert not list((tmp_path / "enc").glob("*.bin")), "weights must be safetensors only"


@pytest.mark.parametrize("module", ["encoder", "pooling", "heads", "lora"])
def test_the_encoders_modules_import_no_data_or_metrics_library(module):
    """Layering: the encoder, pooling, heads and LoRA never need datasets, seqeval, scikit-learn or scipy."""
    code = (f"import sys, mtl_utils.{module}\n"
            "print(sorted({'datasets', 'seqeval', 'sklearn', 'scipy'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-500:]
