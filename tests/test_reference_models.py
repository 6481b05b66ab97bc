"""Reference DPNet/EDRNet building blocks, positional encoding, MIL pooling and paper-size parameter counts."""
import math

import pytest
import torch
import torch.nn.functional as F

from avel_fast.reference import (
    DPBlock,
    DPNet,
    EDRNet,
    GatedFusion,
    TemporalConv,
    mil_loss,
    mil_pool,
    sinusoidal_positional_encoding,
)

SMALL_DPNET = dict(audio_dim=6, visual_dim=8, dim=4, blocks=2)
SMALL_EDRNET = dict(audio_dim=6, visual_dim=8, dim=4)


def linear_params(fan_in, fan_out):
    return fan_in * fan_out + fan_out


def conv_params(fan_in, fan_out, kernel):
    return fan_in * fan_out * kernel + fan_out


def test_paper_parameter_counts():
    """Counted by hand from the layer shapes of docs/models.md (d = 768, audio 128, visual 512, 29 classes)."""
    d, audio, visual, classes = 768, 128, 512, 29

    def rgct(fan_in):  # q, k, v (6 relations each), w1, w2
        return 3 * linear_params(fan_in, 6 * d) + linear_params(fan_in, d) + linear_params(d, d)

    tcn = 2 * conv_params(d, d, 3)
    dpnet = (
        linear_params(audio, visual)  # audio_proj
        + rgct(visual) + tcn + 3 * (rgct(d) + tcn)  # 4 DPBlocks
        + conv_params(2 * d, d, 1)  # gate
        + linear_params(d, classes)
    )
    edrnet = (
        conv_params(visual, visual, 9)  # 3x3 visual conv
        + sum(conv_params(branch, d, 3) + 3 * conv_params(d, d, 3) for branch in (audio, visual, audio + visual))
        + 2 * 4 * conv_params(d, d, 3)  # recomposition A and V
        + conv_params(2 * d, d, 3)  # gate, kernel 3
        + linear_params(d, classes)
    )
    with torch.device("meta"):
        counted = {"DPNet": DPNet(), "EDRNet": EDRNet()}
    counts = {name: sum(p.numel() for p in model.parameters()) for name, model in counted.items()}
    print(f"\nparameters at the paper configuration: DPNet {counts['DPNet']:,}  EDRNet {counts['EDRNet']:,}")
    assert counts == {"DPNet": dpnet, "EDRNet": edrnet}
    assert (dpnet, edrnet) == (58_942_493, 38_967_325)


def test_temporal_conv_pads_with_zeros_and_applies_swish():
    tcn = TemporalConv(1, 1).double()
    with torch.no_grad():
        tcn.audio.weight.copy_(torch.tensor([[[1.0, 0.0, 0.0]]]))  # audio output t = x_A[t-1]
        tcn.visual.weight.copy_(torch.tensor([[[0.0, 0.0, 2.0]]]))  # visual output t = 2·x_V[t+1]
        tcn.audio.bias.zero_()
        tcn.visual.bias.fill_(1.0)
    x = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]], dtype=torch.float64).unsqueeze(-1)
    y = tcn(x)[0, :, :, 0]
    torch.testing.assert_close(y[0], F.silu(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)))
    torch.testing.assert_close(y[1], F.silu(torch.tensor([11.0, 13.0, 1.0], dtype=torch.float64)))


def test_dp_block_is_rgct_then_temporal_conv():
    block = DPBlock(5, 4).eval()
    x = torch.randn(2, 2, 3, 5)
    torch.testing.assert_close(block(x, group_size=2), block.tcn(block.rgct(x, 2)))
    assert [name for name, _ in block.named_children()] == ["rgct", "tcn"]


@pytest.mark.parametrize("kernel_size", [0, 2])
def test_even_kernels_are_refused(kernel_size):
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int"):
        TemporalConv(3, 3, kernel_size)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int"):
        GatedFusion(3, kernel_size)


def test_gated_fusion_is_a_convex_combination():
    fusion = GatedFusion(1, kernel_size=1).double()
    with torch.no_grad():
        fusion.gate.weight.copy_(torch.tensor([[[1.0], [-1.0]]]))  # g = σ(a − v)
        fusion.gate.bias.zero_()
    a = torch.tensor([[[2.0], [0.0]]], dtype=torch.float64)
    v = torch.tensor([[[1.0], [3.0]]], dtype=torch.float64)
    g = torch.sigmoid(a - v)
    torch.testing.assert_close(fusion(a, v), g * a + (1 - g) * v)
    assert tuple(fusion.gate.weight.shape) == (1, 2, 1) and tuple(fusion.gate.bias.shape) == (1,)


def test_gated_fusion_kernel_three_looks_at_the_previous_segment():
    fusion = GatedFusion(1, kernel_size=3).double()
    with torch.no_grad():
        fusion.gate.weight.zero_()
        fusion.gate.weight[0, 0, 0] = 1.0  # gate at t reads a[t-1] (zero padding before t=0)
        fusion.gate.bias.zero_()
    a = torch.tensor([[[1.0], [2.0], [3.0]]], dtype=torch.float64)
    v = torch.zeros_like(a)
    g = torch.sigmoid(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)).view(1, 3, 1)
    torch.testing.assert_close(fusion(a, v), g * a)


def test_gated_fusion_shapes_are_checked():
    with pytest.raises(ValueError, match=r"audio and visual must both have shape \[B, T, 3\]"):
        GatedFusion(3)(torch.randn(2, 4, 3), torch.randn(2, 5, 3))


def test_dpnet_shapes_and_features():
    model = DPNet(**SMALL_DPNET).eval()
    audio, visual = torch.randn(4, 10, 6), torch.rand(4, 10, 7, 7, 8)
    logits, features = model(audio, visual, group_size=2, return_features=True)
    assert logits.shape == (4, 10, 29) and features.shape == (4, 10, 4)
    torch.testing.assert_close(logits, model.classifier(features))
    assert [type(b.rgct).__name__ for b in model.blocks] == ["RGCT", "RGCT"]
    assert model.blocks[0].rgct.in_dim == 8 and model.blocks[1].rgct.in_dim == 4


def test_dpnet_pooled_and_full_visual_agree():
    torch.manual_seed(0)
    model = DPNet(**SMALL_DPNET).eval()
    audio, visual = torch.randn(2, 10, 6), torch.rand(2, 10, 7, 7, 8)
    torch.testing.assert_close(model(audio, visual), model(audio, visual.mean(dim=(2, 3))))


def test_dpnet_link_changes_the_output():
    torch.manual_seed(0)
    model = DPNet(**SMALL_DPNET).eval()
    audio, visual = torch.randn(2, 10, 6), torch.rand(2, 10, 8)
    assert not torch.allclose(model(audio, visual, group_size=1), model(audio, visual, group_size=2))


def test_dpnet_visual_shape_is_checked():
    with pytest.raises(ValueError, match=r"visual must have shape \[B, T, H, W, 8\]"):
        DPNet(**SMALL_DPNET)(torch.randn(2, 10, 6), torch.randn(2, 10, 7, 7, 5))


def test_dpnet_audio_and_visual_must_agree():
    with pytest.raises(ValueError, match=r"audio and visual disagree on \[B, T\]"):
        DPNet(**SMALL_DPNET)(torch.randn(2, 9, 6), torch.randn(2, 10, 8))


def test_dpnet_audio_shape_is_checked():
    with pytest.raises(ValueError, match=r"audio must have shape \[B, T, 6\]"):
        DPNet(**SMALL_DPNET)(torch.randn(2, 10, 7), torch.randn(2, 10, 8))


def test_positional_encoding_eq1_by_hand():
    # d_b = 4: ω_0 = 1, ω_1 = 10^(-8/4) = 0.01; features (sin ω_0 t, cos ω_0 t, sin ω_1 t, cos ω_1 t), t = 1..3.
    expected = [[math.sin(t), math.cos(t), math.sin(0.01 * t), math.cos(0.01 * t)] for t in (1, 2, 3)]
    torch.testing.assert_close(sinusoidal_positional_encoding(3, 4), torch.tensor(expected))
    # Odd d_b = 3: the last feature is sin(ω_1 t) with ω_1 = 10^(-8/3).
    odd = sinusoidal_positional_encoding(2, 3)
    torch.testing.assert_close(odd[:, 2], torch.tensor([math.sin(10 ** (-8 / 3) * t) for t in (1, 2)]))


def test_positional_encoding_is_a_buffer_not_a_parameter():
    model = EDRNet(**SMALL_EDRNET)
    assert "pe_audio_visual" in dict(model.named_buffers())
    assert not any(name.startswith("pe_") for name, _ in model.named_parameters())
    assert not any(name.startswith("pe_") for name in model.state_dict())
    torch.testing.assert_close(model.pe_audio_visual, sinusoidal_positional_encoding(10, 6 + 8))


def test_edrnet_lengths_shrink_then_grow():
    model = EDRNet(**SMALL_EDRNET)
    lengths = []
    for conv in [*model.decompose["audio"], *model.recompose["audio"]]:
        conv.register_forward_hook(lambda module, inputs, output: lengths.append(output.shape[-1]))
    logits, features = model(torch.randn(2, 10, 6), torch.rand(2, 10, 7, 7, 8), return_features=True)
    assert lengths == [8, 6, 4, 2, 4, 6, 8, 10]
    assert logits.shape == (2, 10, 29) and features.shape == (2, 10, 4)


@pytest.mark.parametrize("kernel_size,layers", [(2, 9), (4, 3), (5, 2), (3, 1)])
def test_edrnet_length_arithmetic_generalises(kernel_size, layers):
    model = EDRNet(**SMALL_EDRNET, kernel_size=kernel_size, layers=layers)
    assert model(torch.randn(1, 10, 6), torch.rand(1, 10, 3, 3, 8)).shape == (1, 10, 29)


def test_edrnet_refuses_too_many_layers():
    with pytest.raises(ValueError, match="need num_segments >= 11"):
        EDRNet(**SMALL_EDRNET, layers=5)


def test_edrnet_recomposition_follows_eq3():
    """L = 2 and N = 5 written out: D^1 (length 3), D^2 (length 1), R^1 = ReLU(T1(D_b^2 + D_AV^2)),
    R^2 = ReLU(T2(R^1 + D_b^1 + D_AV^1)), gate kernel 3."""
    torch.manual_seed(0)
    model = EDRNet(**SMALL_EDRNET, layers=2, num_segments=5).double()
    audio, visual = torch.randn(2, 5, 6, dtype=torch.float64), torch.rand(2, 5, 3, 3, 8, dtype=torch.float64)
    maps = visual.flatten(0, 1).permute(0, 3, 1, 2)
    pooled = F.relu(model.visual_conv(maps)).mean(dim=(2, 3)).view(2, 5, 8)
    inputs = {"audio": audio, "visual": pooled, "audio_visual": torch.cat([audio, pooled], -1)}
    decomposed = {}
    for branch, x in inputs.items():
        x = (x + sinusoidal_positional_encoding(5, x.shape[-1]).double()).transpose(1, 2)
        first = F.relu(model.decompose[branch][0](x))
        decomposed[branch] = (first, F.relu(model.decompose[branch][1](first)))
    recomposed = []
    for branch in ("audio", "visual"):
        (d1, d2), (av1, av2) = decomposed[branch], decomposed["audio_visual"]
        r1 = F.relu(model.recompose[branch][0](d2 + av2))
        recomposed.append(F.relu(model.recompose[branch][1](r1 + d1 + av1)).transpose(1, 2))
    _, features = model(audio, visual, return_features=True)
    torch.testing.assert_close(features, model.fusion(*recomposed))
    assert model.fusion.gate.kernel_size == (3,)


def test_edrnet_visual_channels_knob():
    model = EDRNet(**SMALL_EDRNET, visual_channels=3)
    assert tuple(model.visual_conv.weight.shape) == (3, 8, 3, 3)
    assert model.decompose["audio_visual"][0].in_channels == 6 + 3
    assert model(torch.randn(1, 10, 6), torch.rand(1, 10, 7, 7, 8)).shape == (1, 10, 29)


def test_edrnet_needs_the_visual_maps():
    with pytest.raises(ValueError, match=r"visual must have shape \[B, T, H, W, 8\] \(channels last\)"):
        EDRNet(**SMALL_EDRNET)(torch.randn(2, 10, 6), torch.rand(2, 10, 8))


def test_edrnet_segment_count_is_checked():
    with pytest.raises(ValueError, match="EDRNet was built for num_segments=10, got T=8"):
        EDRNet(**SMALL_EDRNET)(torch.randn(2, 8, 6), torch.rand(2, 8, 7, 7, 8))


def test_mil_pool_by_hand():
    log3 = math.log(3.0)
    logits = torch.tensor([[[0.0, log3], [log3, 0.0]], [[0.0, 0.0], [0.0, log3]]])
    # Video 0: softmax rows (1/4, 3/4) and (3/4, 1/4); video 1: (1/2, 1/2) and (1/4, 3/4).
    torch.testing.assert_close(mil_pool(logits), torch.tensor([[0.5, 0.5], [0.375, 0.625]]))


def test_mil_loss_by_hand():
    log3 = math.log(3.0)
    logits = torch.tensor([[[0.0, log3], [log3, 0.0]], [[0.0, 0.0], [0.0, log3]]])
    # Video 0 with label {0}: -log 0.5; video 1 with labels {0, 1} normalised to (1/2, 1/2).
    expected = (-math.log(0.5) - 0.5 * (math.log(0.375) + math.log(0.625))) / 2
    assert mil_loss(logits, torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(expected)


def test_mil_loss_clamps_the_log():
    logits = torch.tensor([[[-200.0, 200.0]]])
    assert mil_loss(logits, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(-math.log(1e-8))


@pytest.mark.parametrize("row", [[0.0, 0, 0, 0], [1.0, -1, 0, 0]])
def test_mil_video_labels_need_a_positive_class(row):
    with pytest.raises(ValueError, match="at least one positive class per video"):
        mil_loss(torch.zeros(2, 3, 4), torch.tensor([[1.0, 0, 0, 0], row]))


def test_mil_video_labels_shape_is_checked():
    with pytest.raises(ValueError, match=r"video_labels must have shape \[2, 4\]"):
        mil_loss(torch.zeros(2, 3, 4), torch.ones(2, 5))


def test_mil_logits_shape_is_checked():
    with pytest.raises(ValueError, match=r"logits must have shape \[B, T, C\]"):
        mil_pool(torch.zeros(3, 4))
