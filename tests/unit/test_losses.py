"""Every distillation loss against a value computed by hand (numpy, written from the papers' equations), and
for gradients that reach the student only."""

import numpy as np
import pytest
import torch

from edgekd.config import DistillConfig
from edgekd.distill.catalog import METHODS
from edgekd.distill.losses import LossInputs, decompose_kl
from edgekd.distill.method import Distiller, create_method, list_methods, make_adapter, objective, parse_method
from edgekd.distill.taps import TorchTeacher, feature_pairs
from edgekd.errors import InputError
from edgekd.models.families import create_model

ZS = np.array([[1.0, 2.0, 0.5, -0.3], [0.2, -1.0, 3.0, 0.7]])
ZT = np.array([[2.0, 0.5, -1.0, 0.1], [0.0, 1.0, 2.5, -0.5]])
Y = np.array([0, 2])
CFG = DistillConfig(temperature=2.0, kd_weight=0.9)


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def kl(p, q):
    return (p * np.log(p / q)).sum(-1)


def ce(z, y):
    return float(np.mean(-np.log(softmax(z)[np.arange(len(y)), y])))


def inputs(**kw):
    return LossInputs(torch.tensor(ZS, dtype=torch.float64), torch.tensor(ZT, dtype=torch.float64),
                      torch.tensor(Y), **kw)


def value(name, cfg=CFG, **kw):
    return float(create_method(name).fn(inputs(**kw), cfg))


def test_catalog_lists_exactly_the_registered_methods():
    assert set(METHODS) == set(list_methods())


def test_ce_and_kd():
    assert value("ce") == pytest.approx(ce(ZS, Y), rel=1e-9)
    t = 2.0
    soft = np.mean(kl(softmax(ZT / t), softmax(ZS / t)))
    assert value("kd") == pytest.approx(0.1 * ce(ZS, Y) + 0.9 * t * t * soft, rel=1e-9)


def test_dkd_target_and_non_target_terms_with_warmup():
    t, alpha, beta = 2.0, 1.5, 6.0
    pt, ps = softmax(ZT / t), softmax(ZS / t)
    total = 0.0
    for i, g in enumerate(Y):
        bt, bs = np.array([pt[i, g], 1 - pt[i, g]]), np.array([ps[i, g], 1 - ps[i, g]])
        rest = [c for c in range(4) if c != g]
        nt, ns = pt[i, rest] / pt[i, rest].sum(), ps[i, rest] / ps[i, rest].sum()
        total += alpha * kl(bt, bs) + beta * kl(nt, ns)
    cfg = DistillConfig(temperature=t, dkd_alpha=alpha, dkd_beta=beta, dkd_warmup_fraction=0.2)
    ramp = 0.05 / 0.2  # a quarter of the way through the warm-up
    assert value("dkd", cfg, progress=0.05) == pytest.approx(ce(ZS, Y) + ramp * t * t * total / 2, rel=1e-9)
    assert value("dkd", cfg, progress=0.5) == pytest.approx(ce(ZS, Y) + t * t * total / 2, rel=1e-9)


def test_normkd_uses_a_per_sample_temperature():
    scale = 1.5
    tt = scale * ZT.std(1, ddof=1, keepdims=True)
    ts = scale * ZS.std(1, ddof=1, keepdims=True)
    soft = np.mean(tt[:, 0] ** 2 * kl(softmax(ZT / tt), softmax(ZS / ts)))
    cfg = DistillConfig(normkd_temperature_scale=scale, kd_weight=0.9)
    assert value("normkd", cfg) == pytest.approx(0.1 * ce(ZS, Y) + 0.9 * soft, rel=1e-9)


def hand_decomposition(t):
    pt, ps = softmax(ZT / t), softmax(ZS / t)
    rows = []
    for i in range(len(ZT)):
        strong = pt[i] >= 1 / 4
        weak = ~strong
        bt = np.array([pt[i, strong].sum(), pt[i, weak].sum()])
        bs = np.array([ps[i, strong].sum(), ps[i, weak].sum()])
        scd = kl(pt[i, strong] / bt[0], ps[i, strong] / bs[0])
        wcd = kl(pt[i, weak] / bt[1], ps[i, weak] / bs[1])
        rows.append((kl(bt, bs), scd, wcd, bt[0], bt[1], kl(pt[i], ps[i])))
    return np.array(rows)


def test_decomposition_terms_and_the_exact_identity():
    t = 2.0
    rows = hand_decomposition(t)
    d = decompose_kl(torch.tensor(ZS), torch.tensor(ZT), t)
    for j, key in enumerate(("bcd", "scd", "wcd", "mass_strong", "mass_weak")):
        np.testing.assert_allclose(d[key].numpy(), rows[:, j], rtol=1e-9)
    # KL = BCD + b_t^S SCD + b_t^W WCD, exactly
    np.testing.assert_allclose(rows[:, 0] + rows[:, 3] * rows[:, 1] + rows[:, 4] * rows[:, 2], rows[:, 5], rtol=1e-9)


def test_decomp_loss_weights_each_term_and_equals_kd_with_unit_weights():
    t = 2.0
    rows = hand_decomposition(t)
    cfg = DistillConfig(temperature=t, decomp_binary_weight=2.0, decomp_strong_weight=0.5, decomp_weak_weight=3.0)
    soft = np.mean(2.0 * rows[:, 0] + 0.5 * rows[:, 3] * rows[:, 1] + 3.0 * rows[:, 4] * rows[:, 2])
    assert value("decomp", cfg) == pytest.approx(0.1 * ce(ZS, Y) + 0.9 * t * t * soft, rel=1e-9)
    assert value("decomp") == pytest.approx(value("kd"), rel=1e-9)


def test_decomposition_with_an_empty_weak_set_stays_finite():
    zt = torch.zeros(1, 5)  # uniform teacher: every class is "strong"
    zs = torch.tensor([[0.5, -0.2, 0.1, 0.0, 0.3]], requires_grad=True)
    d = decompose_kl(zs, zt, 1.0)
    assert float(d["mass_weak"].detach()) == 0 and float(d["wcd"].detach()) == 0
    (d["bcd"] + d["scd"]).sum().backward()
    assert torch.isfinite(zs.grad).all()


FS = np.arange(2 * 3 * 2 * 2, dtype=np.float64).reshape(2, 3, 2, 2) / 10  # student features (N, C, H, W)
FT = np.cos(np.arange(2 * 5 * 2 * 2, dtype=np.float64)).reshape(2, 5, 2, 2)  # teacher features, 5 channels
FA = np.sin(np.arange(2 * 5 * 2 * 2, dtype=np.float64)).reshape(2, 5, 2, 2)  # adapted student features


def feats(**extra):
    t = lambda a: torch.tensor(a)  # noqa: E731
    return {"student_feats": [t(FS), t(FS[:, :2])], "teacher_feats": [t(FT), t(FT[:, 1:])],
            "adapted_feats": [t(FA), t(FA[:, 1:])], **extra}


def test_fitnet_is_the_relative_squared_error_through_the_adapters():
    expected = (np.mean((FA - FT) ** 2) / np.mean(FT ** 2)
                + np.mean((FA[:, 1:] - FT[:, 1:]) ** 2) / np.mean(FT[:, 1:] ** 2)) / 2
    assert value("feature", **feats()) == pytest.approx(expected, rel=1e-6)  # float32: bf16 maps are upcast
    # relative: teacher features 10x larger (and the adapter's output with them) give the same term
    big = {k: [10 * f for f in v] if k != "student_feats" else v for k, v in feats().items()}
    assert value("feature", **big) == pytest.approx(expected, rel=1e-5)


def test_attention_transfer():
    def att(f):
        a = (f ** 2).mean(1).reshape(len(f), -1)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    # all maps are 2x2 (under 4x4): only one pair is kept, and the term is the squared distance of unit vectors
    expected = np.mean(((att(FS) - att(FT)) ** 2).sum(1))
    assert value("at", **feats()) == pytest.approx(expected, rel=1e-6)
    assert 0 <= expected <= 4
    # maps of 4x4 and more are all kept, averaged over pairs
    rng = np.random.default_rng(0)
    fs, ft = rng.normal(size=(2, 3, 4, 4)), rng.normal(size=(2, 5, 4, 4))
    t = torch.tensor
    both = {"student_feats": [t(fs), t(fs[:, :2])], "teacher_feats": [t(ft), t(ft[:, 1:])]}
    expected = (np.mean(((att(fs) - att(ft)) ** 2).sum(1)) + np.mean(((att(fs[:, :2]) - att(ft[:, 1:])) ** 2).sum(1)))
    assert value("at", **both) == pytest.approx(expected / 2, rel=1e-6)


def test_relational_distance_and_angle():
    rng = np.random.default_rng(0)
    es, et = rng.normal(size=(4, 3)), rng.normal(size=(4, 6))  # embeddings of 4 samples

    def dist(e):
        d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
        return d / d[~np.eye(4, dtype=bool)].mean()

    def ang(e):
        out = np.zeros((4, 4, 4))
        for i in range(4):
            for j in range(4):
                for k in range(4):
                    u, v = e[j] - e[i], e[k] - e[i]
                    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
                    out[i, j, k] = 0 if nu == 0 or nv == 0 else u @ v / (nu * nv)
        return out.ravel()

    def smooth_l1(a, b):
        x = np.abs(a - b)
        return np.mean(np.where(x < 1, 0.5 * x * x, x - 0.5))

    expected = 25 * smooth_l1(dist(es), dist(et)) + 50 * smooth_l1(ang(es), ang(et))
    # RKD embeds the deepest pair by global average pooling: a 1x1 map is the embedding itself
    b = {"student_feats": [torch.tensor(es)[:, :, None, None]], "teacher_feats": [torch.tensor(et)[:, :, None, None]]}
    assert value("rkd", **b) == pytest.approx(expected, rel=1e-7)


# ----------------------------------------------------------------------------- gradients reach only the student
TEACHER = {"family": "resnet", "widths": [16, 32, 64], "blocks": [1, 1, 1]}
STUDENT = {"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}


@pytest.mark.parametrize("name", [n for n in list_methods() if create_method(n).modality != "text"])
def test_gradients_reach_the_student_and_never_the_teacher(name):
    torch.manual_seed(0)
    teacher = create_model(TEACHER, 1, 10, (8, 8))
    student = create_model(STUDENT, 1, 10, (8, 8))
    plan = parse_method(name, DistillConfig())
    pairs = feature_pairs(teacher, student, (1, 8, 8), None, 4, "teacher") if plan.needs_features else []
    adapters = [make_adapter(s[1][0], t[1][0]) for t, s in pairs] if plan.needs_adapters else []
    distiller = Distiller(student, [s[0] for _, s in pairs], adapters).train()
    x, y = torch.randn(6, 1, 8, 8), torch.arange(6) % 10
    # the teacher runs WITH autograd and trainable weights here: only the objective stands between them
    teacher.train()
    hooks, t_feats = {}, []
    modules = dict(teacher.named_modules())
    for tn, _ in (t for t, _ in pairs):
        hooks[tn] = modules[tn].register_forward_hook(lambda m, a, out: t_feats.append(out))
    t_logits = teacher(x)
    assert t_logits.requires_grad
    logits, s_feats, adapted = distiller(x)
    loss, values = objective(plan, LossInputs(logits, t_logits, y, 0.5, s_feats, adapted, t_feats), DistillConfig())
    assert set(values) == {t.name for t in plan.terms} and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in student.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    for a in distiller.adapters:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in a.parameters())


def test_torch_teacher_runner_is_frozen_and_gradient_free():
    teacher = create_model(TEACHER, 1, 10, (8, 8))
    runner = TorchTeacher(teacher, ["features"], torch.device("cpu"), channels_last=False)
    out = runner(torch.randn(2, 1, 8, 8))
    assert not out.logits.requires_grad and not out.feats[0].requires_grad
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    runner.close()


# ----------------------------------------------------------------------------- method strings
def test_method_strings_parse_into_weighted_terms():
    cfg = DistillConfig(method_weights={"feature": 10.0})
    plan = parse_method("dkd+feature", cfg)
    assert [(t.name, t.weight) for t in plan.terms] == [("dkd", 1.0), ("feature", 10.0)]
    assert plan.needs_adapters and not plan.assistant
    at = parse_method("at", DistillConfig())  # no label term: CE is added, as in the paper
    assert [(t.name, t.weight) for t in at.terms] == [("ce", 1.0), ("at", 1.0)]
    ta = parse_method("ta", DistillConfig())
    assert ta.assistant and [t.name for t in ta.terms] == ["kd"]
    assert parse_method("ta+dkd", DistillConfig()).name == "dkd"


@pytest.mark.parametrize(("text", "weights", "message"), [
    ("dkdd", {}, "did you mean 'dkd'"),
    ("kd++at", {}, "joined by '+'"),
    ("kd+kd", {}, "each once"),
    ("kd", {"feature": 2.0}, "method_weights: ['feature'] not in method 'kd'"),
])
def test_bad_method_strings_name_the_problem(text, weights, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[").replace("+", r"\+")):
        parse_method(text, DistillConfig(method_weights=weights))

