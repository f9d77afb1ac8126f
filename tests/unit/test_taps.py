"""Feature taps: torch hooks, ONNX tensors exposed as graph outputs (through the real onnxruntime), pairing
by spatial size or by name, and clear refusals where a tensor cannot be read."""


import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgekd.config import DistillConfig
from edgekd.distill.method import parse_method
from edgekd.distill.stage import auto_method
from edgekd.distill.taps import OnnxTeacher, TorchTeacher, feature_pairs, named_pairs, probe_onnx, probe_torch
from edgekd.errors import InputError
from edgekd.models.families import create_model

STUDENT = {"family": "resnet", "widths": [4, 8, 16], "blocks": [1, 1, 1]}


def tiny_torch(tiny_arch):
    torch.manual_seed(0)  # the same weights conftest's tiny_onnx was exported from
    return create_model(tiny_arch, 1, 10, (8, 8)).eval()


def test_torch_layers_pair_by_spatial_size(tiny_arch):
    teacher, student = tiny_torch(tiny_arch), create_model(STUDENT, 1, 10, (8, 8))
    pairs = feature_pairs(teacher, student, (1, 8, 8), None, 4, "the teacher")
    # one pair per resolution both produce (8x8 and 4x4), the last layer of each, shallow to deep
    assert [(t[0], s[0]) for t, s in pairs] == [("features.2", "features.2"), ("features", "features")]
    assert [(t[1], s[1]) for t, s in pairs] == [((16, 8, 8), (8, 8, 8)), ((32, 4, 4), (16, 4, 4))]
    assert len(feature_pairs(teacher, student, (1, 8, 8), None, 1, "t")) == 1  # deepest kept


def test_a_module_run_twice_is_not_a_tap():
    """torchvision's Bottleneck runs one ReLU before its stride-2 convolution and after it: the hooked output is
    the last call's, so the layer paired at each size must give that size when the teacher runs."""
    teacher = create_model({"family": "resnet", "block": "bottleneck", "widths": [4, 4, 8, 8], "blocks": [1, 1, 1, 1]},
                           1, 10, (8, 8)).eval()
    pairs = feature_pairs(teacher, create_model(STUDENT, 1, 10, (8, 8)), (1, 8, 8), None, 4, "the teacher")
    assert not any(t[0].endswith("relu") for t, _ in pairs)
    run = TorchTeacher(teacher, [t[0] for t, _ in pairs], torch.device("cpu"), False)
    feats = run(torch.zeros(2, 1, 8, 8)).feats
    assert [tuple(f.shape[1:]) for f in feats] == [t[1] for t, _ in pairs]
    assert [t[1][1:] for t, _ in pairs] == [(8, 8), (4, 4)]


def test_onnx_tensors_become_outputs_and_match_torch(tiny_onnx, tiny_arch):
    layers = probe_onnx(onnx.load(str(tiny_onnx)), (1, 8, 8))
    deepest = [name for name, shape in layers if shape == (32, 4, 4)][-1]
    runner = OnnxTeacher(tiny_onnx, [deepest], threads=1)
    x = torch.randn(5, 1, 8, 8)
    out = runner(x)
    module = tiny_torch(tiny_arch)
    hooked = TorchTeacher(module, ["features"], torch.device("cpu"), channels_last=False)(x)
    np.testing.assert_allclose(out.logits.numpy(), hooked.logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(out.feats[0].numpy(), hooked.feats[0].numpy(), atol=1e-4)
    runner.close()


def test_onnx_teacher_pairs_automatically(tiny_onnx):
    from edgekd.config import TeacherSpec
    from edgekd.models.teacher import load_teacher

    teacher = load_teacher(TeacherSpec(source=str(tiny_onnx)))
    pairs = feature_pairs(teacher, create_model(STUDENT, 1, 10, (8, 8)), (1, 8, 8), None, 4, "the teacher")
    assert [t[1][1:] for t, _ in pairs] == [(8, 8), (4, 4)]


def test_onnx_refuses_what_cannot_be_a_graph_output(tiny_onnx, tmp_path):
    with pytest.raises(InputError, match="'no_such_tensor' is not a tensor of this graph"):
        OnnxTeacher(tiny_onnx, ["no_such_tensor"], threads=1)
    weight = onnx.load(str(tiny_onnx)).graph.initializer[0].name
    with pytest.raises(InputError, match="is a weight"):
        OnnxTeacher(tiny_onnx, [weight], threads=1)
    # a tensor that only exists inside an If branch
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])
    branch = lambda op, name: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["x"], [name])], f"{op}_branch", [],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 1, 2, 2])])
    nodes = [helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
             helper.make_node("If", ["cond"], ["y"], then_branch=branch("Relu", "inner"),
                              else_branch=branch("Neg", "inner2"))]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "if.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError, match="'inner' is inside a control-flow subgraph"):
        OnnxTeacher(path, ["inner"], threads=1)


def test_named_pairs_check_names_and_sizes(tiny_arch):
    teacher, student = tiny_torch(tiny_arch), create_model(STUDENT, 1, 10, (8, 8))
    t_layers, s_layers = probe_torch(teacher, (1, 8, 8), "t"), probe_torch(student, (1, 8, 8), "s")
    ok = named_pairs(t_layers, s_layers, [("features.2", "features.1")], "the teacher")
    assert ok[0][0] == ("features.2", (16, 8, 8))
    with pytest.raises(InputError, match="'features.33' is not a 4-D feature map of the student; close: features.3"):
        named_pairs(t_layers, s_layers, [("features.2", "features.33")], "the teacher")
    with pytest.raises(InputError, match=r"spatial sizes \(8, 8\) and \(4, 4\)"):
        named_pairs(t_layers, s_layers, [("features.2", "features")], "the teacher")


def test_torchscript_teacher_cannot_be_tapped(tiny_arch):
    scripted = torch.jit.script(tiny_torch(tiny_arch))
    with pytest.raises(InputError, match="TorchScript: forward hooks cannot see inside it"):
        feature_pairs(scripted, create_model(STUDENT, 1, 10, (8, 8)), (1, 8, 8), None, 4, "the teacher")


def test_auto_is_feature_where_layers_pair_and_kd_where_they_cannot(tiny_arch):
    teacher, student = tiny_torch(tiny_arch), create_model(STUDENT, 1, 10, (8, 8))
    method, why = auto_method(teacher, student, (1, 8, 8), DistillConfig(), "the teacher")
    assert method == "feature" and "features.2 <- features.2" in why
    method, why = auto_method(torch.jit.script(teacher), student, (1, 8, 8), DistillConfig(), "the teacher")
    assert method == "kd" and "TorchScript" in why
    # a teacher that downsamples further (8x8 -> 4x4 -> 2x2) shares the 4x4 size, but not the stage
    deeper = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, 2, 1), torch.nn.Conv2d(8, 16, 3, 2, 1),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    method, why = auto_method(deeper, student, (1, 8, 8), DistillConfig(), "the teacher")
    assert method == "kd" and "ends at (2, 2) where the student ends at (4, 4)" in why
    # a pair the user named is checked, not a reason to fall back
    with pytest.raises(InputError, match="'nope' is not a 4-D feature map"):
        auto_method(teacher, student, (1, 8, 8), DistillConfig(feature_pairs=[("nope", "features")]), "the teacher")


def test_auto_is_resolved_by_the_stage_not_combined():
    with pytest.raises(InputError, match="auto stands alone"):
        parse_method("auto+kd", DistillConfig())
