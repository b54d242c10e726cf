"""A sentence encoder: pretrained backbone + pooling (+ optional L2 normalisation), saved as a folder
that `sentence_transformers.SentenceTransformer(folder)` also loads."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase  # not PreTrainedModel: its module imports scipy

from .backbone import DEFAULT_MODEL, load_backbone
from .batching import run_in_eval, select
from .lora import without_adapters
from .pooling import check_pooling, normalize, pool
from .serialization import give_default_mode, write_json
from .tokenization import pad_batch, tokenize_sentences


class SentenceEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, tokenizer: PreTrainedTokenizerBase, pooling: str = "mean",
                 normalize: bool = True, max_length: int = 256, name_or_path: str = DEFAULT_MODEL):
        super().__init__()
        vocab = backbone.get_input_embeddings().num_embeddings
        if len(tokenizer) > vocab:
            raise ValueError(f"the tokenizer ({type(tokenizer).__name__}, {len(tokenizer)} tokens) does not match "
                             f"the backbone ({type(backbone).__name__}, {vocab} token embeddings): load both from the "
                             "same model")
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
        settings_file, source = Path(name_or_path) / "mtl_encoder.json", str(name_or_path)
        if settings_file.is_file():  # a folder written by save_pretrained keeps its own settings
            settings = json.loads(settings_file.read_text())
            pooling, normalize, max_length = settings["pooling"], settings["normalize"], settings["max_length"]
            source = settings.get("name_or_path", source)
        return cls(*load_backbone(str(name_or_path)), pooling, normalize, max_length, source)

    @property
    def hidden_size(self) -> int:
        return self.backbone.config.hidden_size

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's last hidden states, (batch, seq, hidden)."""
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with without_adapters(self.backbone) if self.encode_without_adapters else contextlib.nullcontext():
            vectors = pool(self.token_states(input_ids, attention_mask), attention_mask, self.pooling)
        return normalize(vectors) if self.normalize else vectors

    def set_backbone(self, backbone: nn.Module, encode_without_adapters: bool = False) -> None:
        """Run on another backbone (LoRA-wrapped); per-task adapters: encode() is the pretrained encoder."""
        self.backbone, self.encode_without_adapters = backbone, encode_without_adapters

    def with_backbone(self, backbone: nn.Module) -> "SentenceEncoder":
        """The same settings and tokenizer around another backbone (e.g. LoRA merged or removed)."""
        return SentenceEncoder(backbone, self.tokenizer, self.pooling, self.normalize, self.max_length,
                               self.name_or_path)

    @torch.inference_mode()
    def encode(self, sentences: list[str], batch_size: int = 64, show_progress: bool = False,
               convert_to_tensor: bool = False) -> np.ndarray | torch.Tensor:
        """Sentence vectors in input order. Batches are formed by length so padding stays small."""
        if isinstance(sentences, str):
            raise TypeError("encode() takes a list of sentences; wrap a single sentence in a list")
        if len(sentences) == 0:
            empty = torch.empty(0, self.hidden_size)
            return empty if convert_to_tensor else empty.numpy()
        device = next(self.parameters()).device
        encoded = tokenize_sentences(self.tokenizer, sentences, self.max_length, "encode()")  # warns of cut ones

        def run(rows: list[int]) -> torch.Tensor:
            batch = pad_batch(select(encoded, rows, ("input_ids", "attention_mask")), self.tokenizer.pad_token_id)
            return self(batch["input_ids"].to(device), batch["attention_mask"].to(device)).float().cpu()

        vectors = torch.stack(run_in_eval(self, encoded, batch_size, run, "encode" if show_progress else None))
        return vectors if convert_to_tensor else vectors.numpy()

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Safetensors weights, tokenizer and a sentence-transformers module layout."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(directory, safe_serialization=True)
        give_default_mode(*directory.glob("*.safetensors"))  # transformers writes them with safetensors: 0600
        self.tokenizer.save_pretrained(directory)
        st = "sentence_transformers.models."
        modules = [{"idx": 0, "name": "0", "path": "", "type": st + "Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": st + "Pooling"}]
        if self.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": st + "Normalize"})
            (directory / "2_Normalize").mkdir(exist_ok=True)
        write_json(directory / "modules.json", modules)
        write_json(directory / "sentence_bert_config.json", {"max_seq_length": self.max_length, "do_lower_case": False})
        write_json(directory / "1_Pooling" / "config.json", {
            "word_embedding_dimension": self.hidden_size, "pooling_mode_cls_token": self.pooling == "cls",
            "pooling_mode_mean_tokens": self.pooling == "mean", "pooling_mode_max_tokens": self.pooling == "max",
            "pooling_mode_mean_sqrt_len_tokens": False})
        write_json(directory / "mtl_encoder.json", {"name_or_path": self.name_or_path, "pooling": self.pooling,
                                                    "normalize": self.normalize, "max_length": self.max_length})
