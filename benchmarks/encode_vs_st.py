"""`SentenceEncoder.encode` vs `SentenceTransformer.encode` on 5,000 SST-2 sentences: same vectors, which is faster?

    python benchmarks/encode_vs_st.py [--sentences 5000 --repeats 3 --batch-size 64]
"""
from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from mtl_utils.backbone import DEFAULT_MODEL, resolve_model_path
from mtl_utils.data import load_sst2
from mtl_utils.encoder import SentenceEncoder
from timing import median_seconds, report

parser = argparse.ArgumentParser()
parser.add_argument("--sentences", type=int, default=5000)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=64)
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
sentences = list(load_sst2()["train"]["text"][: args.sentences])
ours = SentenceEncoder.from_pretrained().to(device)
theirs = SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device=device)

difference = float(np.abs(ours.encode(sentences, batch_size=args.batch_size)
                          - theirs.encode(sentences, batch_size=args.batch_size)).max())
assert difference < 1e-5, f"the vectors differ by {difference}"
t_ours = median_seconds(lambda: ours.encode(sentences, batch_size=args.batch_size), args.repeats)
t_theirs = median_seconds(lambda: theirs.encode(sentences, batch_size=args.batch_size), args.repeats)
print(f"mtl_utils {len(sentences) / t_ours:.0f} sentences/s, sentence-transformers {len(sentences) / t_theirs:.0f} "
      f"sentences/s, max |difference| {difference:.1e}")
report({"encode_vs_st_ratio": t_theirs / t_ours},
       {"ours_sentences_per_s": len(sentences) / t_ours, "st_sentences_per_s": len(sentences) / t_theirs,
        "max_abs_difference": difference, "sentences": len(sentences), "batch_size": args.batch_size,
        "repeats": args.repeats, "device": device, "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine()})
