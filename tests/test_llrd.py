import pytest
from transformers import AutoModel, BertConfig, DistilBertConfig, RobertaConfig, GPT2Config

from mtl_utils.backbone import UnsupportedArchitectureError, backbone_layout
from mtl_utils.freezing import apply_freezing
from mtl_utils.llrd import format_llrd_table, llrd_parameter_groups, llrd_table, plot_llrd


def test_every_trainable_parameter_once(model):
    apply_freezing(model, "bottom:1")
    groups = llrd_parameter_groups(model, lr=1e-4, head_lr=1e-3, decay=0.8)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    blocks = {g["name"].removesuffix(" (no decay)") for g in groups}
    assert "embeddings" not in blocks and "layer.0" not in blocks and "layer.1" in blocks


def test_rates_grow_with_depth(model):
    groups = llrd_parameter_groups(model, lr=1e-4, head_lr=1e-3, decay=0.8)
    rate = {g["name"]: g["lr"] for g in groups if "no decay" not in g["name"]}
    order = ["embeddings"] + [f"layer.{i}" for i in range(6)]
    rates = [rate[name] for name in order]
    assert all(a < b for a, b in zip(rates, rates[1:]))
    assert rate["layer.5"] == pytest.approx(1e-4)
    assert rate["embeddings"] == pytest.approx(1e-4 * 0.8 ** 6)
    assert rate["head.ner"] == pytest.approx(1e-3)


def test_no_weight_decay_on_bias_and_layernorm(model):
    groups = llrd_parameter_groups(model, lr=1e-4, decay=0.9, weight_decay=0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    for g in groups:
        for p in g["params"]:
            name = names[id(p)]
            if name.endswith("bias") or "LayerNorm" in name:
                assert g["weight_decay"] == 0.0, name
            else:
                assert g["weight_decay"] == 0.05, name


def test_decay_out_of_range(model):
    for decay in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"decay must be in \(0, 1\]"):
            llrd_parameter_groups(model, lr=1e-4, decay=decay)


def test_table(model):
    groups = llrd_parameter_groups(model, lr=1e-4, decay=0.9)
    table = llrd_table(groups)
    assert sum(r["parameters"] for r in table) == sum(p.numel() for p in model.parameters())
    assert "embeddings" in format_llrd_table(groups)


def test_parameters_outside_the_layout_are_refused(model):
    """load_backbone removes the pooler; a backbone that still has one is refused, not half-optimised."""
    tiny = AutoModel.from_config(BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64))
    model.encoder.backbone = tiny
    model.heads.clear()
    with pytest.raises(ValueError, match=r"outside embeddings, layers and heads: \['encoder\.backbone\.pooler\."):
        llrd_parameter_groups(model, lr=1e-4, decay=0.5)
    tiny.pooler = None
    rate = {g["name"]: g["lr"] for g in llrd_parameter_groups(model, lr=1e-4, decay=0.5)}
    assert rate["layer.2"] == pytest.approx(1e-4)
    assert rate["embeddings"] == pytest.approx(1e-4 * 0.5 ** 3)


@pytest.mark.parametrize("config, n_layers", [
    (DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64), 2),
    (RobertaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64), 3),
])
def test_other_layouts(config, n_layers):
    layout = backbone_layout(AutoModel.from_config(config))
    assert len(layout.layers) == n_layers


def test_unsupported_architecture_is_named():
    gpt2 = AutoModel.from_config(GPT2Config(n_embd=32, n_layer=2, n_head=2))
    with pytest.raises(UnsupportedArchitectureError, match="GPT2Model"):
        backbone_layout(gpt2)


def test_plot_shows_one_bar_per_block(model):
    import matplotlib

    matplotlib.use("Agg")
    ax = plot_llrd(llrd_parameter_groups(model, lr=1e-4, head_lr=1e-3, decay=0.8))
    heights = [bar.get_height() for bar in ax.patches]
    assert len(heights) == 1 + 6 + 2  # embeddings, six layers, two heads
    assert heights[:7] == sorted(heights[:7])
