"""Draw the book's two diagrams into book/images/ (PNG, 200 dpi, 9 inches wide at most).

    python book/diagrams.py

architecture.png   one shared encoder, a token head and a sentence head, one backbone pass
keeping.png        three ways to keep the encoder's general knowledge while it learns: LoRA,
                   distillation of its own sentence vectors, weight interpolation
freezing_llrd.png  which blocks train under each freezing scenario, and at what learning rate
                   under layer-wise decay (the rates follow mtl_utils.llrd: layer i of L gets
                   lr * d ** (L - 1 - i), the embeddings lr * d ** L)
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

IMAGES = Path(__file__).resolve().parent / "images"
SHARED, TOKEN, SENTENCE, DATA = "#dbe7f5", "#fde3c8", "#d9f0d3", "#f2f2f2"
N_LAYERS, BASE_LR, HEAD_LR = 6, 2e-4, 1e-3  # the defaults of mtl_utils.training.TrainConfig


def box(ax, x, y, w, h, text, colour, size=12, weight="normal"):
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=colour,
            edgecolor="#555555",
            linewidth=1,
        )
    )
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight)


def arrow(ax, start, end, text=None):
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle="-|>", mutation_scale=12, color="#444444", linewidth=1.1
        )
    )
    if text:
        ax.text(
            (start[0] + end[0]) / 2 + 0.08,
            (start[1] + end[1]) / 2,
            text,
            fontsize=10,
            va="center",
            color="#444444",
        )


# The architecture as boxes: (x, y, width, height, text, colour, bold), in inches of a 9 x 5.2 figure.
BOXES = [
    (2.6, 4.55, 3.8, 0.5, "words: Apple buys Shazam", DATA, False),
    (2.6, 3.75, 3.8, 0.5, "subwords: [CLS] apple buys sha ##zam [SEP]", DATA, False),
    (2.6, 2.55, 3.8, 0.9, "shared encoder\nembeddings + 6 transformer layers\n(one pass per batch)",
     SHARED, True),
    (2.6, 1.85, 3.8, 0.45, "token states: one 384-d vector per subword", SHARED, False),
    (0.1, 1.0, 3.0, 0.55, "first subword of each word\n+ word-shape embedding", TOKEN, False),
    (0.1, 0.2, 3.0, 0.55, "token head (linear)\nB-ORG  O  B-ORG", TOKEN, True),
    (5.9, 1.0, 3.0, 0.55, "mean pooling (no padding)\n-> sentence vector, 384-d", SENTENCE, False),
    (5.9, 0.2, 1.75, 0.55, "sentence head\nnegative / positive", SENTENCE, True),
    (7.75, 0.2, 1.15, 0.55, "STS-B:\ncosine", DATA, False),
]
ARROWS = [((4.5, 4.55), (4.5, 4.25), "tokenizer (once, before training)"), ((4.5, 3.75), (4.5, 3.45), None),
          ((4.5, 2.55), (4.5, 2.3), None), ((3.4, 1.85), (2.2, 1.55), None), ((1.6, 1.0), (1.6, 0.75), None),
          ((5.6, 1.85), (6.8, 1.55), None), ((6.8, 1.0), (6.8, 0.75), None), ((8.3, 1.0), (8.3, 0.75), None)]


def architecture() -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9, 5.2))
    ax.set(xlim=(0, 9), ylim=(0, 5.2))
    ax.axis("off")
    for x, y, width, height, text, colour, bold in BOXES:
        box(ax, x, y, width, height, text, colour, size=11, weight="bold" if bold else "normal")
    for start, end, text in ARROWS:
        arrow(ax, start, end, text)
    ax.text(0.1, 1.95, "NER: a tag per word\n(strict entity F1)", fontsize=11, color="#8a4b08")
    ax.text(6.6, 1.95, "sentiment: a label per\nsentence (accuracy)", fontsize=11, color="#2d6a1f")
    fig.tight_layout(pad=0.2)
    return fig


def freezing_llrd() -> plt.Figure:
    blocks = ["embeddings"] + [f"layer {i}" for i in range(N_LAYERS)] + ["heads"]
    scenarios = {  # which blocks train (True) under each freezing scenario
        "none": [True] * 8,
        "embeddings": [False] + [True] * 7,
        "bottom:2": [False] * 3 + [True] * 5,
        "bottom:4": [False] * 5 + [True] * 3,
        "backbone": [False] * 7 + [True],
    }
    fig, (ax_freeze, ax_lr) = plt.subplots(
        1, 2, figsize=(9, 4.4), gridspec_kw={"width_ratios": [1.15, 1]}
    )
    for col, (name, trains) in enumerate(scenarios.items()):
        for row, trained in enumerate(trains):
            ax_freeze.add_patch(
                plt.Rectangle(
                    (col + 0.06, row + 0.08),
                    0.88,
                    0.84,
                    facecolor=SHARED if trained else "#bfbfbf",
                    edgecolor="white",
                )
            )
            ax_freeze.text(
                col + 0.5,
                row + 0.5,
                "trains" if trained else "frozen",
                ha="center",
                va="center",
                fontsize=9.5,
                color="#1f3b5c" if trained else "#404040",
            )
    ax_freeze.set(
        xlim=(0, len(scenarios)),
        ylim=(0, len(blocks)),
        xticks=[c + 0.5 for c in range(len(scenarios))],
        yticks=[r + 0.5 for r in range(len(blocks))],
        title="Freezing: which blocks train",
    )
    ax_freeze.set_xlabel("scenario (--freeze)", fontsize=11)
    ax_freeze.set_xticklabels(scenarios, fontsize=10, rotation=30, ha="right")
    ax_freeze.set_yticklabels(blocks, fontsize=10.5)
    ax_freeze.tick_params(length=0)
    for side in ax_freeze.spines.values():
        side.set_visible(False)

    depth = range(len(blocks) - 1)  # embeddings, layer 0 .. layer 5
    for decay, colour in [(1.0, "#7f7f7f"), (0.9, "#1f77b4"), (0.7, "#d62728")]:
        rates = [BASE_LR * decay**N_LAYERS] + [
            BASE_LR * decay ** (N_LAYERS - 1 - i) for i in range(N_LAYERS)
        ]
        ax_lr.plot(
            rates,
            [d + 0.5 for d in depth],
            "o-",
            color=colour,
            label=f"d = {decay}" + (" (one rate)" if decay == 1.0 else ""),
        )
    ax_lr.plot([HEAD_LR], [len(blocks) - 0.5], "s", color="black", label="heads (1e-3)")
    ax_lr.set(
        ylim=(0, len(blocks)),
        yticks=[r + 0.5 for r in range(len(blocks))],
        xscale="log",
        xlim=(1.5e-5, 1.6e-3),
        xlabel="learning rate (log scale)",
        title="Layer-wise decay: rate per block",
    )
    ax_lr.set_yticklabels(blocks, fontsize=10.5)
    ax_lr.grid(axis="x", alpha=0.3)
    ax_lr.legend(fontsize=9.5, loc="upper center", bbox_to_anchor=(0.45, -0.2), ncol=2)
    fig.tight_layout()
    return fig


FROZEN, TEACHER = "#bfbfbf", "#efe3f7"
# The three panels as boxes (x, y, width, height, text, colour, font size) and arrows, in inches.
KEEPING_BOXES = [
    # LoRA: x -> W (frozen) and x -> A -> B, summed
    (0.2, 2.55, 2.5, 0.45, "x (token states in)", DATA, 10), (0.2, 1.45, 1.1, 0.7, "W\nfrozen", FROZEN, 10),
    (1.6, 1.9, 1.1, 0.4, "A (r x in)", SHARED, 10), (1.6, 1.3, 1.1, 0.4, "B = 0 at start", SHARED, 9),
    (0.2, 0.3, 2.5, 0.55, "W x + (alpha / r) B A x", SHARED, 10),
    # distillation: teacher vectors once, student every step
    (3.2, 2.45, 1.25, 0.6, "encoder before\ntraining (once)", TEACHER, 9.5),
    (4.6, 2.45, 1.25, 0.6, "encoder now\n(every step)", SHARED, 9.5),
    (3.2, 1.5, 1.25, 0.5, "teacher vector t", TEACHER, 9.5), (4.6, 1.5, 1.25, 0.5, "student vector s", SHARED, 9.5),
    (3.2, 0.3, 2.65, 0.65, "task loss\n+ lambda (1 - cos(s, t))", SHARED, 10),
    # interpolation: a slider between the two weight sets
    (6.2, 2.45, 1.2, 0.6, "pretrained\nweights", TEACHER, 9.5),
    (7.6, 2.45, 1.2, 0.6, "fine-tuned\nweights", SHARED, 9.5),
    (6.2, 1.35, 2.6, 0.6, "(1 - a) pretrained + a fine-tuned\na = 0 ... 1, no training", DATA, 9.5),
    (6.2, 0.3, 2.6, 0.65, "heads: the fine-tuned ones\n(evaluations only)", SENTENCE, 9.5),
]
KEEPING_ARROWS = [((0.75, 2.55), (0.75, 2.15)), ((2.15, 2.55), (2.15, 2.3)), ((2.15, 1.9), (2.15, 1.7)),
                  ((0.75, 1.45), (0.75, 0.85)), ((2.15, 1.3), (2.15, 0.85)), ((3.82, 2.45), (3.82, 2.0)),
                  ((5.22, 2.45), (5.22, 2.0)), ((3.82, 1.5), (4.2, 0.95)), ((5.22, 1.5), (4.85, 0.95)),
                  ((6.8, 2.45), (7.2, 1.95)), ((8.2, 2.45), (7.8, 1.95)), ((7.5, 1.35), (7.5, 0.95))]


def keeping() -> plt.Figure:
    """Three panels, 3 inches each: what trains and what stays (grey: frozen)."""
    fig, ax = plt.subplots(figsize=(9, 3.7))
    ax.set(xlim=(0, 9), ylim=(0, 3.65))
    ax.axis("off")
    titles = ["LoRA\na low-rank update beside W", "distillation\nthe old vectors as a target",
              "interpolation\nmix the weights after training"]
    for x, title in zip((0.05, 3.05, 6.05), titles):
        ax.text(x + 1.45, 3.3, title, ha="center", va="center", fontsize=10, weight="bold")
    for x, y, width, height, text, colour, size in KEEPING_BOXES:
        box(ax, x, y, width, height, text, colour, size=size)
    for start, end in KEEPING_ARROWS:
        arrow(ax, start, end)
    fig.tight_layout(pad=0.2)
    return fig


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    for name, draw in [("architecture", architecture), ("freezing_llrd", freezing_llrd), ("keeping", keeping)]:
        fig = draw()
        fig.savefig(IMAGES / f"{name}.png", dpi=200)
        plt.close(fig)
        print(f"book/images/{name}.png")


if __name__ == "__main__":
    main()
