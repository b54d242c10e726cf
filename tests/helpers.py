"""Small real batches for training-step tests."""
import torch

from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import pad_batch, tokenize_split
from datasets import Dataset

NER_EXAMPLES = Dataset.from_dict({"tokens": [["EU", "rejects", "German", "call"], ["Peter", "Blackburn", "spoke"]],
                                  "tags": [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER", "O"]]})
SENTIMENT_EXAMPLES = Dataset.from_dict({"text": ["a gorgeous , witty film", "dull and lifeless"],
                                        "label": ["positive", "negative"]})


def batches(tokenizer) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for task, split in (("ner", NER_EXAMPLES), ("sentiment", SENTIMENT_EXAMPLES)):
        features = tokenize_split(split, BUILTIN_TASKS[task], tokenizer)
        keys = [k for k in ("input_ids", "attention_mask", "word_shape_ids", "labels") if k in features]
        out[task] = pad_batch([{k: features[k][i] for k in keys} for i in range(len(split))], tokenizer.pad_token_id)
    return out


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}
