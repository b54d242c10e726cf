"""A sentence encoder: pretrained backbone + pooling (+ optional L2 normalisation).

Saved as a folder that `sentence_transformers.SentenceTransformer(folder)` also loads.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .backbone import DEFAULT_MODEL, load_backbone
from .batching import map_in_length_order, select
from .pooling import check_pooling, normalize, pool
from .serialization import give_default_mode
from .tokenization import pad_batch


class SentenceEncoder(nn.Module):
    def __init__(self, backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pooling: str = "mean",
                 normalize: bool = True, max_length: int = 256, name_or_path: str = DEFAULT_MODEL):
        super().__init__()
        vocab = backbone.get_input_embeddings().num_embeddings
        if len(tokenizer) > vocab:
            raise ValueError(f"the tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) does not match the "
                             f"backbone ({type(backbone).__name__}, {vocab} token embeddings): load both from the same model")
        self.backbone = backbone
        self.tokenizer = tokenizer  # not a module: tokenisation happens before forward, never inside it
        self.pooling = check_pooling(pooling)
        self.normalize = normalize
        self.max_length = max_length
        self.name_or_path = name_or_path
        self.encode_without_adapters = False  # per-task LoRA adapters: encode() is the pretrained encoder

    @classmethod
    def from_pretrained(cls, name_or_path: str = DEFAULT_MODEL, pooling: str = "mean", normalize: bool = True,
                        max_length: int = 256) -> "SentenceEncoder":
        check_pooling(pooling)
        settings_file = Path(name_or_path) / "mtl_encoder.json"
        if settings_file.is_file():  # a folder written by save_pretrained keeps its own settings
            settings = json.loads(settings_file.read_text())
            pooling, normalize, max_length = settings["pooling"], settings["normalize"], settings["max_length"]
            name_or_path_for_config = settings.get("name_or_path", str(name_or_path))
        else:
            name_or_path_for_config = str(name_or_path)
        backbone, tokenizer = load_backbone(str(name_or_path))
        return cls(backbone, tokenizer, pooling, normalize, max_length, name_or_path_for_config)

    @property
    def hidden_size(self) -> int:
        return self.backbone.config.hidden_size

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden states, (batch, seq, hidden)."""
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def sentence_vectors(self, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        vectors = pool(token_states, attention_mask, self.pooling)
        return normalize(vectors) if self.normalize else vectors

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.encode_without_adapters:
            with self.backbone.disable_adapter():
                return self.sentence_vectors(self.token_states(input_ids, attention_mask), attention_mask)
        return self.sentence_vectors(self.token_states(input_ids, attention_mask), attention_mask)

    def with_backbone(self, backbone: PreTrainedModel) -> "SentenceEncoder":
        """The same encoder settings and tokenizer around another backbone (e.g. LoRA merged or removed)."""
        return SentenceEncoder(backbone, self.tokenizer, self.pooling, self.normalize, self.max_length, self.name_or_path)

    def tokenize(self, sentences: list[str]) -> dict[str, list[list[int]]]:
        """Token ids without padding, truncated to max_length (with a warning saying how many were cut)."""
        encoded = self.tokenizer(list(sentences), truncation=False, add_special_tokens=True)
        too_long = sum(len(ids) > self.max_length for ids in encoded["input_ids"])
        if too_long:
            warnings.warn(f"{too_long} sentence(s) longer than {self.max_length} tokens were truncated", stacklevel=3)
            encoded = self.tokenizer(list(sentences), truncation=True, max_length=self.max_length)
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    @torch.inference_mode()
    def encode(self, sentences: list[str], batch_size: int = 64, show_progress: bool = False,
               convert_to_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Sentence vectors in input order. Batches are formed by length so padding stays small."""
        if isinstance(sentences, str):
            raise TypeError("encode() takes a list of sentences; wrap a single sentence in a list")
        if len(sentences) == 0:
            empty = torch.empty(0, self.hidden_size)
            return empty if convert_to_tensor else empty.numpy()
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        encoded = self.tokenize(sentences)

        def run(rows: list[int]) -> torch.Tensor:
            batch = pad_batch(select(encoded, rows, ("input_ids", "attention_mask")), self.tokenizer.pad_token_id)
            return self(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu()

        vectors = torch.stack(map_in_length_order([len(ids) for ids in encoded["input_ids"]], batch_size, run,
                                                  progress="encode" if show_progress else None))
        self.train(was_training)
        return vectors if convert_to_tensor else vectors.numpy()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write safetensors weights, tokenizer and a sentence-transformers module layout."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(directory, safe_serialization=True)
        give_default_mode(*directory.glob("*.safetensors"))  # transformers writes them with safetensors: 0600
        self.tokenizer.save_pretrained(directory)
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
            (directory / "2_Normalize").mkdir(exist_ok=True)
        (directory / "modules.json").write_text(json.dumps(modules, indent=2))
        (directory / "sentence_bert_config.json").write_text(
            json.dumps({"max_seq_length": self.max_length, "do_lower_case": False}, indent=2))
        (directory / "1_Pooling").mkdir(exist_ok=True)
        (directory / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": self.hidden_size,
            "pooling_mode_cls_token": self.pooling == "cls",
            "pooling_mode_mean_tokens": self.pooling == "mean",
            "pooling_mode_max_tokens": self.pooling == "max",
            "pooling_mode_mean_sqrt_len_tokens": False,
        }, indent=2))
        (directory / "mtl_encoder.json").write_text(json.dumps({
            "name_or_path": self.name_or_path, "pooling": self.pooling,
            "normalize": self.normalize, "max_length": self.max_length}, indent=2))
