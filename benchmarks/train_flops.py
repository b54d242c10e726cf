"""Achieved training FLOP/s on CoNLL-2003 NER as a fraction of this machine's own large-matmul FLOP/s.

    python benchmarks/train_flops.py [--steps 30 --repeats 3 --batch-size 32]

The FLOPs are counted, not estimated: torch.utils.flop_counter.FlopCounterMode runs the real training
steps (forward + backward, length-grouped batches of 32 from `ner_training`, the model and AdamW of
`python -m mtl_utils.train`) and adds up every matrix product they execute (mm, addmm, bmm, and SDPA
kernels where they are used); the 6 * parameters * tokens rule of thumb is printed beside it. The same
steps are timed with the optimizer step included (median of repeats). The reference rate is torch.mm on
large square fp32 matrices (2048 and 4096; the faster one) measured in the same run, on the same threads.

    train_flops_fraction = (counted FLOPs / median seconds of the steps) / large-matmul FLOP/s

To show where the gap comes from, the script times every matrix product of the steps where it runs (a
dispatch mode around mm / addmm / bmm), replays the same products alone with the same operators, shapes
and memory layouts, and times torch.mm at the shapes that dominate the model (mean tokens per batch x
384 x 1536 and so on). The fraction then splits into two measured factors:

    fraction = (FLOP/s of the matrix products in the steps / large-matmul FLOP/s)   -- shapes, caches
             x (seconds in those matrix products / seconds of the steps)           -- time outside matmul

The timings are taken in interleaved rounds (steps, steps with matmuls timed, replay, large matmuls) so
that a busy moment hits all of them alike; the script prints how much CPU other processes used meanwhile.

Finally it profiles one pass over the batches with torch.profiler (CPU, grouped by operator, by self CPU
time) and sorts the time into matmul, dropout, optimizer, GELU, softmax, LayerNorm, embedding, memory
fill/copy, element-wise and the rest. All of it is written to results/benchmarks.json.

It also times the same steps under bf16 autocast and measures torch.mm on large bf16 matrices, so
the steps are reported against both peaks: train_flops_fraction (fp32 steps / fp32 peak, with the
fp32 steps / bf16 peak in its details) and train_bf16_flops_fraction (bf16 steps / bf16 peak).

What it found on a 2-core AMD EPYC with AVX-512 and bf16 units, torch threads 2 (2026-11-28): 1,285.6
GFLOP per pass of 30 steps counted (6 * N * tokens gives 1,270.0 G with N the 10.7M non-embedding
parameters; 2,691 G with all 22.6M, since half of them are embeddings, a lookup); fp32: 13.53 s per pass
-> 95.0 GFLOP/s against torch.mm 4096^3 at 170.4 GFLOP/s: fraction 0.558 (goal 0.5); against the bf16
peak (2048^3, 392.2 GFLOP/s, 2.30x fp32's) 0.242; under bf16 autocast 8.88 s -> 144.7 GFLOP/s, 0.369 of
the bf16 peak. The matrix shapes cost a little: torch.mm at the model's shapes (662 x 384 x 1536 ...)
runs at 0.85-0.99 of the large-matmul rate, the pass's matrix products replayed alone and in place at
0.86; matmul takes 65% of the step (0.86 x 0.65 = 0.56). The profile of one fp32 pass (self CPU time):
matrix products 61.7%, memory fill/copy 10.4%, dropout 9.3% (bernoulli_ alone 8.8%: CPU nn.Dropout
draws its masks with bernoulli_, 20 dropout layers per step), element-wise 4.7%, fused AdamW +
zero_grad 4.3%, GELU 4.0%, LayerNorm 1.3%, softmax 1.1%, embedding 0.2%, the rest 3.0%. (On the
2-core Intel Xeon of the first measurement, with a faster fp32 torch.mm, 265.4 GFLOP/s: 128.4 GFLOP/s,
fraction 0.484.)
"""
from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ner_training import grouped_batches, ner_setup, parse_arguments, train_steps
from timing import machine, median_seconds, report

aten = torch.ops.aten
MATMUL_OPS = {aten.mm.default, aten.addmm.default, aten.bmm.default}


# FlopCounterMode knows the CUDA flash/efficient attention kernels but not the CPU flash kernel, which
# Hugging Face's SDPA attention uses when a batch needs no mask; count it with torch's own SDPA formulas.
def _cpu_flash_flop(query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_flop_count(query.shape, key.shape, value.shape)


def _cpu_flash_backward_flop(grad_out, query, key, value, *args, out_val=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


_cpu_flash_flop._get_raw = True
_cpu_flash_backward_flop._get_raw = True
CPU_ATTENTION_FLOPS = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_flop,
                       aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flop}


class MatmulRecorder(TorchDispatchMode):
    """Records operator, shapes and strides of every mm / addmm / bmm, so that they can be replayed alone,
    and the wall time each one takes inside the real step."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []
        self.seconds = 0.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func not in MATMUL_OPS:
            return func(*args, **(kwargs or {}))
        layout = tuple((tuple(a.shape), a.stride()) if isinstance(a, torch.Tensor) else a for a in args)
        self.calls.append((func, layout, dict(kwargs or {})))
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds += time.perf_counter() - start
        return out


def matmul_flops(func, layout) -> int:
    shapes = [entry[0] for entry in layout if isinstance(entry, tuple)]
    a, b = shapes[-2:]  # addmm's first argument is the bias
    return 2 * (a[0] * a[1] * a[2] * b[2] if func is aten.bmm.default else a[0] * a[1] * b[1])


def replay(calls: list[tuple]):
    """A function that runs the recorded matrix products (same operators, shapes, layouts) on random data."""
    cache: dict = {}

    def tensor(shape, stride):
        if (shape, stride) not in cache:
            size = 1 + sum((n - 1) * s for n, s in zip(shape, stride))
            cache[shape, stride] = torch.randn(size).as_strided(shape, stride)
        return cache[shape, stride]

    prepared = [(func, [tensor(*e) if isinstance(e, tuple) else e for e in layout], kwargs)
                for func, layout, kwargs in calls]

    def run():
        for func, args, kwargs in prepared:
            func(*args, **kwargs)
    return run


def mm_flops_per_s(m: int, k: int, n: int, repeats: int, min_seconds: float = 0.2) -> float:
    """Median FLOP/s of torch.mm (m x k) @ (k x n) in fp32; small products are looped to min_seconds."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    start, loops = time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds / 4 or loops < 1:
        torch.mm(a, b)
        loops += 1
    per_call = (time.perf_counter() - start) / loops
    inner = max(1, round(min_seconds / per_call))

    def run():
        for _ in range(inner):
            torch.mm(a, b)
    return 2 * m * k * n * inner / median_seconds(run, repeats)


CATEGORIES = [  # (category, operator names); the first match wins, everything else is "other"
    ("matmul", {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
                "aten::_scaled_dot_product_flash_attention_for_cpu",
                "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}),
    ("dropout (mask: bernoulli_, div_)", {"aten::bernoulli_", "aten::div_", "aten::native_dropout",
                                          "aten::native_dropout_backward", "aten::dropout"}),
    ("optimizer (fused AdamW, zero_grad)", {"aten::_fused_adamw_", "Optimizer.step#AdamW.step",
                                            "Optimizer.zero_grad#AdamW.zero_grad"}),
    ("GELU", {"aten::gelu", "aten::gelu_backward"}),
    ("softmax", {"aten::_softmax", "aten::_softmax_backward_data"}),
    ("LayerNorm", {"aten::native_layer_norm", "aten::native_layer_norm_backward"}),
    ("embedding (forward, backward)", {"aten::embedding", "aten::embedding_backward", "aten::embedding_dense_backward",
                                       "aten::index_select", "aten::index_add_", "aten::index_put_",
                                       "aten::_index_put_impl_", "aten::sort", "aten::_embedding_bag"}),
    ("loss (log_softmax, nll)", {"aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
                                 "aten::nll_loss_backward"}),
    ("memory fill/copy (fill_, zero_, copy_, cat)", {"aten::fill_", "aten::zero_", "aten::copy_", "aten::cat",
                                                     "aten::empty", "aten::empty_strided", "aten::zeros",
                                                     "aten::clone", "aten::contiguous"}),
    ("element-wise (add, mul, sum, where, ...)", {"aten::add", "aten::add_", "aten::mul", "aten::mul_", "aten::sum",
                                                  "aten::where", "aten::sub", "aten::div", "aten::neg", "aten::all",
                                                  "aten::masked_fill", "aten::masked_fill_", "aten::ne", "aten::eq",
                                                  "aten::lt", "aten::ge", "aten::min", "aten::max", "aten::any"}),
]


def busy_cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds all processes have used, CPU seconds this process has used), on Linux; None elsewhere.

    Their difference over the run is the CPU time other processes took: on 2 cores, anything else
    running slows every measurement here (OpenMP threads wait for each other), so the script reports it.
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    own = os.times()
    return (sum(fields) - fields[3] - fields[4]) / ticks, own.user + own.system  # minus idle and iowait


def category(name: str) -> str:
    for label, names in CATEGORIES:
        if name in names:
            return label
    return "other (views, autograd bookkeeping, Python)"


def main() -> None:
    args = parse_arguments(__doc__.split("\n")[0])
    encoder, model, optimizer, features = ner_setup()
    keys = ["input_ids", "attention_mask", "word_shape_ids", "labels"]
    batches = grouped_batches(features, keys, args.batch_size, args.steps, encoder.tokenizer.pad_token_id)
    padded_tokens = sum(b["input_ids"].numel() for b in batches)
    real_tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    mean_tokens = padded_tokens / len(batches)

    # 1. FLOPs of the real steps, counted on the actual batches (one pass), and their matrix products recorded.
    load_before = os.getloadavg()
    cpu_before = busy_cpu_seconds()
    wall_before = time.perf_counter()
    train_steps(model, optimizer, batches[:2])  # warm-up (allocator, AdamW state)
    recorder = MatmulRecorder()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter, recorder:
        train_steps(model, optimizer, batches)
    flops = counter.get_total_flops()
    flops_by_op = {str(op): count for op, count in counter.get_flop_counts()["Global"].items()}
    recorded_flops = sum(matmul_flops(func, layout) for func, layout, _ in recorder.calls)

    trainable = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in trainable)
    embedding_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    estimate_all = 6 * n_params * padded_tokens
    estimate_non_embedding = 6 * (n_params - embedding_params) * padded_tokens

    # 2. Interleaved rounds, so that a busy moment hits every measurement alike: the training steps (optimizer
    # included); the same steps with each matrix product timed where it runs; the matrix products replayed
    # alone; torch.mm on large square fp32 matrices (this machine's matmul rate). Medians over the rounds.
    def in_situ() -> float:
        timer = MatmulRecorder()
        with timer:
            train_steps(model, optimizer, batches)
        return timer.seconds

    def bf16_steps() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            train_steps(model, optimizer, batches)

    run_replay = replay(recorder.calls)
    large_sizes = (2048, 4096)
    large_mm = {(dtype, size): (torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype))
                for dtype in (torch.float32, torch.bfloat16) for size in large_sizes}
    times: dict = defaultdict(list)
    for round_ in range(args.repeats + 1):  # round 0 is the warm-up
        measured = {"steps": median_seconds(lambda: train_steps(model, optimizer, batches), 1, 0),
                    "in_situ_matmul": in_situ(),
                    "replay": median_seconds(run_replay, 1, 0),
                    "steps_bf16": median_seconds(bf16_steps, 1, 0)}
        for (dtype, size), (x, y) in large_mm.items():
            measured[dtype, size] = median_seconds(lambda: [torch.mm(x, y) for _ in range(max(1, 4096 // size) ** 3)],
                                                   1, 0)
        if round_:
            for key, value in measured.items():
                times[key].append(value)
    t = {key: statistics.median(values) for key, values in times.items()}
    t_steps, t_matmul, t_replay = t["steps"], t["in_situ_matmul"], t["replay"]
    large = {size: 2 * 4096 ** 3 / t[torch.float32, size] for size in large_sizes}
    peak_size = max(large, key=large.get)
    peak = large[peak_size]
    # This CPU's bf16 matmul peak, for the same steps in fp32 and under bf16 autocast (the same FLOPs).
    large_bf16 = {size: 2 * 4096 ** 3 / t[torch.bfloat16, size] for size in large_sizes}
    peak_bf16 = max(large_bf16.values())
    achieved_bf16 = flops / t["steps_bf16"]

    # 3. torch.mm alone at the shapes that dominate the model, for a mean-sized batch.
    m = round(mean_tokens)
    shapes = {f"{m}x384x384 (Q, K, V, output)": (m, 384, 384), f"{m}x384x1536 (FFN up)": (m, 384, 1536),
              f"{m}x1536x384 (FFN down)": (m, 1536, 384), f"1536x{m}x384 (FFN weight gradient)": (1536, m, 384)}
    shape_rates = {name: mm_flops_per_s(*mkn, repeats=5) for name, mkn in shapes.items()}

    achieved = flops / t_steps
    matmul_rate = recorded_flops / t_matmul
    replay_rate = recorded_flops / t_replay
    fraction = achieved / peak

    # 4. Where the time goes: one profiled pass, grouped by operator.
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_steps(model, optimizer, batches)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events)
    top_ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    shares: dict[str, float] = defaultdict(float)
    for e in events:
        shares[category(e.key)] += e.self_cpu_time_total / total_us
    shares = dict(sorted(shares.items(), key=lambda kv: kv[1], reverse=True))

    cpu_after, wall = busy_cpu_seconds(), time.perf_counter() - wall_before
    # share of the machine's CPU time (all cores) that other processes used while this script measured
    others = (None if cpu_before is None or cpu_after is None else
              max(0.0, (cpu_after[0] - cpu_before[0]) - (cpu_after[1] - cpu_before[1]))
              / (wall * (os.cpu_count() or 1)))

    g = 1e9
    print(f"{len(batches)} batches of {args.batch_size}: {padded_tokens} tokens with padding "
          f"({mean_tokens:.0f} per batch), {real_tokens} without; torch threads {torch.get_num_threads()}")
    print(f"counted FLOPs per pass (FlopCounterMode): {flops / g:.1f} G "
          f"({', '.join(f'{k} {v / g:.1f} G' for k, v in flops_by_op.items())})")
    print(f"6 * N * tokens: {estimate_all / g:.1f} G with all {n_params / 1e6:.1f}M trainable parameters, "
          f"{estimate_non_embedding / g:.1f} G without the {embedding_params / 1e6:.1f}M embedding parameters "
          f"(a lookup, no FLOPs); counted / non-embedding estimate = {flops / estimate_non_embedding:.2f} "
          "(the rest is attention)")
    print(f"training steps: median {t_steps:.2f} s per pass -> {achieved / g:.1f} GFLOP/s")
    print("large-matmul rate: " + ", ".join(f"{s}^3 {r / g:.1f} GFLOP/s" for s, r in large.items())
          + f" -> reference {peak / g:.1f} GFLOP/s ({peak_size})")
    for name, rate in shape_rates.items():
        print(f"  torch.mm {name}: {rate / g:.1f} GFLOP/s ({rate / peak:.2f} of the reference)")
    print(f"the pass's {len(recorder.calls)} matrix products, timed where they run in the steps: {t_matmul:.2f} s, "
          f"{matmul_rate / g:.1f} GFLOP/s ({matmul_rate / peak:.2f} of the reference)")
    print(f"the same matrix products replayed alone: {t_replay:.2f} s, {replay_rate / g:.1f} GFLOP/s "
          f"({replay_rate / peak:.2f} of the reference)")
    print("large bf16 matmul rate: " + ", ".join(f"{s}^3 {r / g:.1f} GFLOP/s" for s, r in large_bf16.items())
          + f" -> bf16 reference {peak_bf16 / g:.1f} GFLOP/s ({peak_bf16 / peak:.2f}x fp32's)")
    print(f"the steps in fp32: {fraction:.3f} of the fp32 reference, {achieved / peak_bf16:.3f} of the bf16 one; "
          f"under bf16 autocast: median {t['steps_bf16']:.2f} s per pass -> {achieved_bf16 / g:.1f} GFLOP/s, "
          f"{achieved_bf16 / peak_bf16:.3f} of the bf16 reference")
    print(f"fraction {fraction:.3f} = matmul FLOP/s at the training shapes / reference {matmul_rate / peak:.2f} "
          f"x matmul share of step time {t_matmul / t_steps:.2f} "
          f"(x counted / matmul FLOPs {flops / recorded_flops:.3f})")
    if others is not None:
        print(f"other processes used {others:.1%} of the CPU while this ran"
              + (" -- the timings are disturbed; run it again on an idle machine" if others > 0.05 else ""))
    print(f"profile of one pass ({total_us / 1e6:.2f} s self CPU time; the profiler adds some overhead), by category:")
    for name, share in shares.items():
        print(f"  {share:6.1%}  {name}")
    print("top 12 operators by self CPU time:")
    for e in top_ops:
        print(f"  {e.self_cpu_time_total / total_us:6.1%}  {e.self_cpu_time_total / 1e3:8.1f} ms  "
              f"{e.count:6d} calls  {e.key}")

    bf16 = {"large_matmul_bf16_gflop_per_s": peak_bf16 / g,
            "large_matmul_bf16_gflop_per_s_by_size": {str(s): r / g for s, r in large_bf16.items()},
            "fp32_steps_fraction_of_bf16_peak": achieved / peak_bf16,
            "bf16_autocast_seconds_per_pass": t["steps_bf16"], "bf16_autocast_gflop_per_s": achieved_bf16 / g}
    report({"train_bf16_flops_fraction": achieved_bf16 / peak_bf16},
           {"achieved_gflop_per_s": achieved_bf16 / g, "large_matmul_gflop_per_s": peak_bf16 / g,
            "fp32_achieved_gflop_per_s": achieved / g, "large_matmul_fp32_gflop_per_s": peak / g,
            "counted_gflop_per_pass": flops / g, "steps": args.steps, "batch_size": args.batch_size,
            "repeats": args.repeats, "other_processes_cpu_share": others, **machine(),
            "note": "the same steps and counted FLOPs as train_flops_fraction, under torch.autocast(bfloat16)"})
    report({"train_flops_fraction": fraction},
           {"achieved_gflop_per_s": achieved / g, "large_matmul_gflop_per_s": peak / g, **bf16,
            "large_matmul_gflop_per_s_by_size": {str(s): r / g for s, r in large.items()},
            "training_matmul_gflop_per_s_in_situ": matmul_rate / g,
            "training_matmul_fraction_in_situ": matmul_rate / peak,
            "training_matmul_gflop_per_s_replayed": replay_rate / g,
            "training_matmul_fraction_replayed": replay_rate / peak,
            "matmul_share_of_step_time": t_matmul / t_steps, "seconds_per_pass_matmul": t_matmul,
            "mm_gflop_per_s_at_model_shapes": {k: v / g for k, v in shape_rates.items()},
            "counted_gflop_per_pass": flops / g, "counted_gflop_by_op": {k: v / g for k, v in flops_by_op.items()},
            "six_n_tokens_gflop": {"all_parameters": estimate_all / g, "non_embedding": estimate_non_embedding / g},
            "trainable_parameters": n_params, "embedding_parameters": embedding_params,
            "seconds_per_pass": t_steps, "tokens_per_batch": mean_tokens,
            "real_tokens_per_batch": real_tokens / len(batches),
            "profile_share_by_category": shares,
            "profile_top_ops": [{"op": e.key, "share": e.self_cpu_time_total / total_us,
                                 "ms_per_pass": e.self_cpu_time_total / 1e3, "calls": e.count} for e in top_ops],
            "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats,
            **machine(), "load_average_before": load_before[0],
            "other_processes_cpu_share": others,
            "note": "FLOPs counted with FlopCounterMode on the real forward+backward; time includes the AdamW step"})


if __name__ == "__main__":
    main()
