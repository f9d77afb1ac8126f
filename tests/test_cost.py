import onnx
import pytest

from edgekd.config import list_names, load_profile
from edgekd.cost.ops import kernels_from_onnx, kernels_from_torch, liveness_peak_elems
from edgekd.cost.roofline import predict_onnx, predict_torch
from edgekd.models.families import create_model


def test_torch_and_onnx_extractors_agree(tiny_onnx, tiny_arch):
    from_onnx = kernels_from_onnx(onnx.load(str(tiny_onnx)))
    from_torch, _ = kernels_from_torch(create_model(tiny_arch, 1, 10, (8, 8)), (1, 1, 8, 8))
    flops_onnx, flops_torch = sum(k.flops for k in from_onnx), sum(k.flops for k in from_torch)
    assert flops_torch == pytest.approx(flops_onnx, rel=0.05)
    assert sum(k.weight_elems for k in from_torch) == pytest.approx(sum(k.weight_elems for k in from_onnx), rel=0.05)


def test_conv_flops_hand_computed(tiny_onnx):
    kernels = kernels_from_onnx(onnx.load(str(tiny_onnx)))
    # stem: 1 -> 8 channels, 3x3, 8x8 output, batch 1: 2 * 8*8*8 * (1*9) FLOPs
    assert kernels[0].kind == "conv" and kernels[0].flops == 2 * 8 * 8 * 8 * 9


def test_liveness_peak_counts_the_input(tiny_onnx):
    assert liveness_peak_elems(onnx.load(str(tiny_onnx))) >= 8 * 8 * 8  # stem output at least


@pytest.mark.parametrize("profile", list_names("profiles"))
def test_predictions_grow_with_width_on_every_profile(profile):
    p = load_profile(profile)
    small = create_model({"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}, 3, 10, (32, 32))
    big = create_model({"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]}, 3, 10, (32, 32))
    (ls, ms), (lb, mb) = (predict_torch(m, (1, 3, 32, 32), p, "fp32") for m in (small, big))
    assert ls.value < lb.value and ms.value < mb.value
    assert ls.source == "predicted" and ls.interval[0] < ls.value < ls.interval[1]


def test_int8_is_predicted_no_slower_than_fp32(tiny_onnx):
    p = load_profile("raspberry-pi-5")
    model = onnx.load(str(tiny_onnx))
    assert predict_onnx(model, p, "int8")[0].value <= predict_onnx(model, p, "fp32")[0].value
