import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekd.config import list_names, load_profile
from edgekd.cost.ops import (
    kernels_from_onnx,
    kernels_from_torch,
    liveness_peak_elems,
    make_kernel,
    onnx_kernels_and_peak,
)
from edgekd.cost.roofline import UNCALIBRATED_BAND, predict_onnx, predict_torch
from edgekd.cost.samples import kernel_model
from edgekd.models.families import create_model

MBV2 = {"family": "mobilenetv2", "width": 0.25, "depth": 0.5, "expand": 3, "last_channel": 64}
RESNET_DOWN = {"family": "resnet", "widths": [8, 16], "blocks": [1, 2]}  # a downsample block and an identity one


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two family networks (depthwise + identity residuals; 1x1 downsample residuals) exported by edgekd."""
    import torch

    from edgekd.onnx_export import export_onnx

    out = {}
    for name, arch in (("mbv2", MBV2), ("resnet", RESNET_DOWN)):
        torch.manual_seed(0)
        model = create_model(arch, 3, 10, (16, 16)).eval()
        out[name] = (model, export_onnx(model, (3, 16, 16), tmp_path_factory.mktemp(name) / "m.onnx", {}))
    return out


def _shape(k):
    """A kernel without its tensor names (which differ between the two extractors by construction)."""
    return dataclasses.replace(k, inputs=(), output="")


@pytest.mark.parametrize("name", ["mbv2", "resnet"])
def test_torch_and_onnx_give_the_same_fused_kernels(exported, name):
    model, path = exported[name]
    from_onnx, peak_onnx = onnx_kernels_and_peak(onnx.load(str(path)))
    from_torch, peak_torch = kernels_from_torch(model, (1, 3, 16, 16))
    assert [k.kind for k in from_onnx] == [k.kind for k in from_torch]
    for a, b in zip(from_onnx, from_torch, strict=True):
        assert (a.cin, a.cout, a.hw_in, a.hw_out, a.k, a.stride, a.act, a.residual) == \
               (b.cin, b.cout, b.hw_in, b.hw_out, b.k, b.stride, b.act, b.residual)
        assert a.flops == b.flops
    assert peak_torch == peak_onnx
    # every residual block's Add is fused into a convolution, nothing is left as a stand-alone eltwise
    assert not any(k.kind == "eltwise" for k in from_onnx)
    assert sum(k.residual for k in from_onnx) >= 2


def test_torch_and_onnx_extractors_agree_on_weights(tiny_onnx, tiny_arch):
    from_onnx = kernels_from_onnx(onnx.load(str(tiny_onnx)))
    from_torch, _ = kernels_from_torch(create_model(tiny_arch, 1, 10, (8, 8)), (1, 1, 8, 8))
    w_onnx, w_torch = sum(k.weight_elems for k in from_onnx), sum(k.weight_elems for k in from_torch)
    assert w_torch == pytest.approx(w_onnx, rel=0.05)


def test_conv_flops_hand_computed(tiny_onnx):
    kernels = kernels_from_onnx(onnx.load(str(tiny_onnx)))
    # stem: 1 -> 8 channels, 3x3, 8x8 output, batch 1: 2 * 8*8*8 * (1*9) FLOPs, relu fused
    assert kernels[0].kind == "conv" and kernels[0].flops == 2 * 8 * 8 * 8 * 9 and kernels[0].act == "Relu"


def _graph(nodes, inits, inputs, out_shape):
    t = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
    graph = helper.make_graph(nodes, "g", t, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_fusion_rules_on_hand_built_graphs():
    w = {"w": np.ones((4, 4, 3, 3)), "s": np.ones(4), "b": np.zeros(4), "m": np.zeros(4), "v": np.ones(4)}
    bn_relu = _graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
                      helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
                      helper.make_node("Relu", ["n"], ["y"])], w, [("x", [1, 4, 8, 8])], [1, 4, 8, 8])
    [k] = kernels_from_onnx(bn_relu)
    assert (k.kind, k.act, k.residual) == ("conv", "Relu", False)
    residual = _graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1] * 4),
                       helper.make_node("Add", ["c", "x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])],
                      {"w": w["w"]}, [("x", [1, 4, 8, 8])], [1, 4, 8, 8])
    [k] = kernels_from_onnx(residual)
    assert (k.kind, k.act, k.residual) == ("conv", "Relu", True)
    assert k.activation_elems == 3 * 4 * 8 * 8  # input, residual operand, output
    # an Add of two graph inputs has no convolution to join: it is a kernel of its own
    plain = _graph([helper.make_node("Add", ["x", "z"], ["y"])], {}, [("x", [1, 4, 8, 8]), ("z", [1, 4, 8, 8])],
                   [1, 4, 8, 8])
    assert [k.kind for k in kernels_from_onnx(plain)] == ["eltwise"]


@pytest.mark.parametrize("kernel", [
    make_kernel("conv", 16, 32, 8, 3, 2, "Relu"), make_kernel("conv", 24, 24, 16, 1, 1, "", residual=True),
    make_kernel("conv", 8, 16, 4, 1, 1, "Relu", residual=True), make_kernel("dwconv", 48, 48, 8, 3, 1, "Clip"),
    make_kernel("gemm", 64, 10, 1), make_kernel("pool", 32, 32, 4), make_kernel("eltwise", 16, 16, 8)],
    ids=lambda k: f"{k.kind}-{k.act or 'none'}{'-res' if k.residual else ''}")
def test_one_kernel_models_are_priced_as_the_kernel_they_time(kernel):
    """Calibration times kernel_model(k); the extractor must see exactly k in it, or the fit is off."""
    [found] = kernels_from_onnx(kernel_model(kernel))
    assert dataclasses.replace(found, inputs=(), output="") == dataclasses.replace(kernel, inputs=(), output="")


def test_liveness_peak_counts_the_input(tiny_onnx):
    assert liveness_peak_elems(onnx.load(str(tiny_onnx))) >= 1 * 8 * 8 + 8 * 8 * 8  # input + stem output


@pytest.mark.parametrize("profile", list_names("profiles"))
def test_predictions_grow_with_width_on_every_profile(profile):
    p = load_profile(profile)
    small = create_model({"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}, 3, 10, (32, 32))
    big = create_model({"family": "resnet", "widths": [32, 64, 128], "blocks": [2, 2, 2]}, 3, 10, (32, 32))
    for runtime in [None, *p.runtimes]:
        (ls, ms), (lb, mb) = (predict_torch(m, (1, 3, 32, 32), p, "fp32", runtime=runtime) for m in (small, big))
        assert ls.value < lb.value and ms.value < mb.value
        assert ls.source == "predicted" and ls.interval[0] < ls.value < ls.interval[1]
        assert ms.interval[0] < ms.value < ms.interval[1]


def test_uncalibrated_prediction_says_so_and_has_the_wide_band(tiny_onnx):
    lat, mem = predict_onnx(onnx.load(str(tiny_onnx)), load_profile("raspberry-pi-5"), "fp32", runtime="onnxruntime")
    assert "uncalibrated" in lat.detail and "no calibration for raspberry-pi-5 + onnxruntime" in lat.detail
    assert lat.interval == pytest.approx((lat.value * UNCALIBRATED_BAND[0], lat.value * UNCALIBRATED_BAND[1]))
    assert "uncalibrated" in mem.detail


def test_int8_is_predicted_no_slower_than_fp32(tiny_onnx):
    p = load_profile("raspberry-pi-5")
    model = onnx.load(str(tiny_onnx))
    assert predict_onnx(model, p, "int8")[0].value <= predict_onnx(model, p, "fp32")[0].value
