"""Search spaces, training-free scores, teacher signals (torch and ONNX), the evolution and the Pareto front."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.models.families import count_params, create_model, torchvision_arch
from edgekd.search.evolution import Candidate, evolve, pareto_front
from edgekd.search.scores import (
    Probe,
    RankEnsemble,
    create_score,
    list_scores,
    measure,
    members,
    pool_scores,
    rank_average,
    relation_distance,
    semantic_distance,
)
from edgekd.search.signals import cam_classes, module_signals, onnx_signals
from edgekd.search.spaces import arch_key, create_space, list_spaces, resolve_spaces

TV_TEACHERS = ["torchvision:resnet18", "torchvision:resnet50", "torchvision:mobilenet_v2",
               "torchvision:mobilenet_v3_small", "torchvision:mobilenet_v3_large"]


def _spaces():
    return [create_space(n, None) for n in list_spaces() if n != "shrunk"] + \
        [create_space("shrunk", t) for t in TV_TEACHERS]


# ----------------------------------------------------------------------------- spaces and families
@pytest.mark.parametrize("space", _spaces(), ids=lambda s: f"{s.name}-{s.base.get('base', s.base['family'])}")
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_space_archs_build_and_rebuild_from_json(space, shape):
    rng = np.random.default_rng(0)
    for arch in (space.minimal(), space.sample(rng)):
        torch.manual_seed(0)
        model = create_model(arch, shape[0], 7, shape[1:]).eval()
        again = json.loads(json.dumps(arch))  # what search.json stores
        torch.manual_seed(0)
        rebuilt = create_model(again, shape[0], 7, shape[1:]).eval()
        x = torch.randn(2, *shape)
        with torch.no_grad():
            assert model(x).shape == (2, 7)
            assert torch.equal(model(x), rebuilt(x))
        assert isinstance(model.features, nn.Sequential) and isinstance(model.classifier, nn.Linear)


def test_space_operators_stay_in_the_space_and_are_seeded():
    space = create_space("mobilenetv3", None)
    a, b = space.sample(np.random.default_rng(1)), space.sample(np.random.default_rng(2))
    assert space.sample(np.random.default_rng(1)) == a
    rng = np.random.default_rng(3)
    for _ in range(50):
        child = space.crossover(a, b, rng)
        assert all(child_v in (va, vb) for child_v, va, vb in
                   zip(space.values(child).values(), space.values(a).values(), space.values(b).values(), strict=True))
        mutant = space.mutate(a, rng)
        assert mutant != a
        assert all(v in space.genes[p] for p, v in space.values(mutant).items())


def test_minimal_arch_is_the_cheapest():
    from edgekd.cost.ops import kernels_from_torch

    for space in _spaces():
        flops = [sum(k.flops for k in kernels_from_torch(create_model(a, 3, 10, (32, 32)), (1, 3, 32, 32))[0])
                 for a in [space.minimal()] + [space.sample(np.random.default_rng(i)) for i in range(3)]]
        assert flops[0] <= min(flops[1:]), space.name


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "mobilenet_v2"])
def test_torchvision_arch_rebuilds_the_teachers_body(name):
    import torchvision

    ours = create_model(torchvision_arch(name), 3, 1000, (224, 224))
    theirs = torchvision.models.get_model(name)
    if hasattr(theirs, "features"):
        assert count_params(ours.features) == count_params(theirs.features)
    else:  # same blocks; only the stem differs (our 3x3 convolution for torchvision's 7x7)
        body = [m for n, m in theirs.named_children() if n not in ("fc", "avgpool")]
        assert count_params(ours.features) == sum(count_params(m) for m in body) - 64 * 3 * (49 - 9)


def test_shrunk_space_needs_a_known_torchvision_teacher():
    from edgekd.errors import InputError

    with pytest.raises(InputError, match="shrunk"):
        create_space("shrunk", "model.onnx")
    assert [s.name for s in resolve_spaces(["resnet"], "torchvision:resnet18", True)] == ["resnet", "shrunk"]
    assert [s.name for s in resolve_spaces(["resnet"], "model.onnx", True)] == ["resnet"]


def test_bad_arch_is_an_input_error():
    from edgekd.errors import InputError

    with pytest.raises(InputError, match="arch"):
        create_model({"family": "mobilenetv3", "depth": [1, 2]}, 1, 10, (8, 8))
    with pytest.raises(InputError, match="arch"):
        create_model({"family": "resnet", "widths": [8], "blocks": [1], "block": "wide"}, 1, 10, (8, 8))


# ----------------------------------------------------------------------------- scores
def _probe(teacher: nn.Module, shape=(1, 8, 8), n=16, classes=10, mode="eval") -> Probe:
    torch.manual_seed(1)
    x, y = torch.randn(n, *shape), torch.arange(n) % classes
    cls = cam_classes(y)
    teacher.train(mode == "train")
    return Probe(x, y, cls, module_signals(teacher, x, cls, "test teacher"))


@pytest.fixture(scope="module")
def teacher_net(tiny_arch):
    torch.manual_seed(0)
    return create_model(tiny_arch, 1, 10, (8, 8)).eval()


def _students() -> list[nn.Module]:
    torch.manual_seed(0)
    return [create_model(a, 1, 10, (8, 8)) for a in (
        {"family": "mobilenetv3", "width": 0.25}, {"family": "resnet", "widths": [8, 16, 16], "blocks": [1, 1, 1]},
        {"family": "resnet", "widths": [16, 32, 32], "blocks": [2, 1, 1]})]


@pytest.mark.parametrize("name", list_scores())
def test_every_score_is_finite_deterministic_and_leaves_the_model_alone(name, teacher_net):
    probe = _probe(teacher_net)
    pool = _students()
    before = [copy.deepcopy(m.state_dict()) for m in pool]
    rows = [measure([name], m, probe) for m in pool]
    assert set(rows[0]) == set(members(name))
    assert all(np.isfinite(v) for row in rows for v in row.values())
    assert measure([name], pool[0], probe) == rows[0]
    for m, b in zip(pool, before, strict=True):
        assert all(torch.equal(b[k], v) for k, v in m.state_dict().items())
    values = pool_scores(name, rows)
    assert values.shape == (3,) and np.isfinite(values).all()
    if isinstance(create_score(name), RankEnsemble):  # mean ranks over a pool of 3: in [1/3, 1]
        assert values.min() >= 1 / 3 - 1e-12 and values.max() <= 1 + 1e-12


@pytest.mark.parametrize("term", ["diswot-semantic", "diswot-relation"])
def test_diswot_terms_are_best_for_the_teachers_twin_and_lower_for_others(term, teacher_net):
    probe = _probe(teacher_net, mode="train")  # the twin is scored in train mode too: identical signals
    twin = copy.deepcopy(teacher_net)
    assert create_score(term)(twin, probe) == pytest.approx(0.0, abs=1e-9)
    torch.manual_seed(0)
    other = create_model({"family": "resnet", "widths": [16, 16, 16], "blocks": [1, 1, 1]}, 1, 10, (8, 8))
    assert create_score(term)(other, probe) < -1e-3
    rows = [measure(["diswot"], m, probe) for m in (other, twin)]
    assert pool_scores("diswot", rows).tolist() == [0.5, 1.0]  # the twin ranks first on both terms


@pytest.mark.parametrize("name", [n for n in list_scores() if isinstance(create_score(n), RankEnsemble)])
def test_rank_ensembles_are_invariant_to_each_members_scale(name):
    k = len(members(name))
    rng = np.random.default_rng(0)
    values = rng.standard_normal((20, k))
    rows = [dict(zip(members(name), r, strict=True)) for r in values]
    rescaled = [{m: (1e6 * v if i == 0 else np.exp(v)) for i, (m, v) in enumerate(r.items())} for r in rows]
    assert np.array_equal(pool_scores(name, rows), pool_scores(name, rescaled))


def test_rank_average_puts_terms_on_one_scale():
    # A term a million times larger would decide a plain sum alone; ranked, the two terms count equally.
    big, small = np.array([3e6, 2e6, 1e6]), np.array([1.0, 3.0, 2.0])
    assert np.argmax(big + small) == 0
    assert rank_average(np.column_stack([big, small])).tolist() == pytest.approx([4 / 6, 5 / 6, 3 / 6])


def test_zico_matches_its_definition_and_prefers_a_trainable_network(teacher_net):
    from edgekd.search.scores import ZICO_BATCHES

    probe = _probe(teacher_net, n=32)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))
    ref, expected = copy.deepcopy(net), 0.0
    grads = {0: [], 3: []}
    for xb, yb in zip(probe.x.chunk(ZICO_BATCHES), probe.y.chunk(ZICO_BATCHES), strict=True):
        ref.zero_grad()
        torch.nn.functional.cross_entropy(ref(xb), yb).backward()
        for i in grads:
            grads[i].append(ref[i].weight.grad.flatten().double().numpy().copy())
    for g in grads.values():
        g = np.array(g)
        std = g.std(axis=0)
        expected += np.log((np.abs(g).mean(axis=0)[std > 0] / std[std > 0]).sum())
    assert create_score("zico")(net, probe) == pytest.approx(expected, rel=1e-9)

    torch.manual_seed(0)
    good = create_model({"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}, 1, 10, (8, 8))
    dead = copy.deepcopy(good)
    with torch.no_grad():  # one zeroed convolution: no gradient reaches the layers before it
        dead.features[0][0].weight.zero_()
    assert create_score("zico")(good, probe) > create_score("zico")(dead, probe) + 1.0


def test_diswot_distances_ignore_scale_and_resolution():
    torch.manual_seed(0)
    f = torch.randn(8, 16, 4, 4)
    assert relation_distance(f, 3 * f) == pytest.approx(0, abs=1e-12)
    assert relation_distance(f, torch.randn(8, 32, 2, 2)) > 0.01
    cams = torch.rand(8, 5, 4, 4)
    assert semantic_distance(cams, 2 * cams) == pytest.approx(0, abs=1e-12)
    # the class-correlation matrix is N x N whatever the map size: a student at 2x2 is comparable
    assert semantic_distance(cams, torch.nn.functional.avg_pool2d(cams, 2)) < semantic_distance(
        cams, torch.rand(8, 5, 2, 2))


def test_nwot_prefers_networks_that_tell_samples_apart(teacher_net):
    probe = _probe(teacher_net)
    same = Probe(probe.x[:1].repeat(16, 1, 1, 1), probe.y, probe.classes, probe.teacher)
    torch.manual_seed(0)
    net = create_model({"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]}, 1, 10, (8, 8))
    assert create_score("nwot")(net, probe) > create_score("nwot")(net, same)


def test_synflow_is_data_free_and_grows_with_width(teacher_net):
    probe = _probe(teacher_net)
    torch.manual_seed(0)
    narrow = create_model({"family": "resnet", "widths": [8, 8, 8], "blocks": [1, 1, 1]}, 1, 10, (8, 8))
    wide = create_model({"family": "resnet", "widths": [32, 32, 32], "blocks": [1, 1, 1]}, 1, 10, (8, 8))
    noisy = Probe(probe.x * 5 + 1, probe.y, probe.classes, probe.teacher)
    assert create_score("synflow")(narrow, probe) == create_score("synflow")(narrow, noisy)
    assert create_score("synflow")(wide, probe) > create_score("synflow")(narrow, probe)


def test_grad_norm_params_and_flops_match_hand_computation(teacher_net):
    probe = _probe(teacher_net)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10))
    ref = copy.deepcopy(net)
    torch.nn.functional.cross_entropy(ref(probe.x), probe.y).backward()
    expected = float(ref[0].weight.grad.norm() + ref[3].weight.grad.norm())
    assert create_score("grad-norm")(net, probe) == pytest.approx(expected, rel=1e-6)
    assert create_score("params")(net, probe) == 4 * 9 + 4 + 256 * 10 + 10
    assert create_score("flops")(net, probe) == 2 * 64 * 4 * 9 + 2 * 10 * 256


# ----------------------------------------------------------------------------- teacher signals
class _NonLinearHead(nn.Module):
    """A MobileNetV3-like head (pool -> linear -> hardswish -> linear) over a small body."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(16, 12), nn.Hardswish(), nn.Linear(12, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


@pytest.mark.parametrize("kind", ["convnet", "nonlinear-head"])
def test_onnx_teacher_signals_match_torch(kind, tiny_arch, tmp_path):
    from edgekd.onnx_export import export_onnx

    torch.manual_seed(0)
    model = (create_model(tiny_arch, 1, 10, (8, 8)) if kind == "convnet" else _NonLinearHead()).eval()
    path = export_onnx(model, (1, 8, 8), tmp_path / "t.onnx", {})
    x, y = torch.randn(12, 1, 8, 8), torch.arange(12) % 10
    cls = cam_classes(y)
    ref, got = module_signals(model, x, cls, "torch"), onnx_signals(path, x, cls)
    assert got.feature is not None and got.cams is not None, got.source
    for name in ("logits", "feature", "cams"):
        a, b = getattr(ref, name), getattr(got, name)
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-3 * float(a.abs().max()), name


def test_onnx_teacher_without_global_pool_gives_logits_only(tmp_path):
    from edgekd.onnx_export import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)).eval()
    path = export_onnx(model, (1, 8, 8), tmp_path / "flat.onnx", {})
    x = torch.randn(6, 1, 8, 8)
    got = onnx_signals(path, x, torch.tensor([0, 1]))
    assert got.feature is None and got.cams is None and "logits only" in got.source
    with torch.no_grad():
        assert torch.allclose(got.logits, model(x), atol=1e-5)


# ----------------------------------------------------------------------------- the loop and the front
def _fake(fits_below: float, score_of=lambda arch: float(sum(arch["widths"]))):
    def evaluate(space, arch, origin, index):
        size = sum(arch.get("widths", [100])) * sum(arch.get("blocks", [1]))
        ok = size < fits_below
        return Candidate(index, space.name, origin, arch, size, 0.0, float(size), (size, size), 1.0, ok,
                         "" if ok else "too big", () if ok else ("latency_ms",), score_of(arch) if ok else None)
    return evaluate


def test_evolution_is_seeded_distinct_and_beats_its_random_phase():
    space = create_space("resnet", None)
    runs = [evolve([space], _fake(600), seed=5, max_candidates=40, population=10) for _ in range(2)]
    assert [c.arch for c in runs[0]] == [c.arch for c in runs[1]]
    keys = [arch_key(c.arch) for c in runs[0]]
    assert len(keys) == len(set(keys))
    fitting = [c for c in runs[0] if c.fits]
    assert len(fitting) == 40
    random_best = max(c.score for c in fitting if c.origin != "evolved")
    evolved = [c.score for c in fitting if c.origin == "evolved"]
    assert np.mean(sorted(evolved)[-10:]) > random_best * 0.9 and max(evolved) >= random_best


def test_evolution_stops_early_when_nothing_fits():
    space = create_space("resnet", None)
    out = evolve([space, create_space("mobilenetv2", None)], _fake(0), seed=0, max_candidates=40, population=8)
    assert [c.origin for c in out] == ["smallest", "smallest"] and not any(c.fits for c in out)


def test_pareto_front():
    def cand(i, ms, score, fits=True):
        return Candidate(i, "s", "random", {}, 0, 0.0, ms, (ms, ms), 1.0, fits, "", (), score if fits else None)

    cs = [cand(0, 1.0, 0.1), cand(1, 2.0, 0.5), cand(2, 1.5, 0.05), cand(3, 3.0, 0.4), cand(4, 0.5, 9, fits=False),
          cand(5, 4.0, 0.9)]
    assert [c.index for c in pareto_front(cs)] == [0, 1, 5]


# ----------------------------------------------------------------------------- what the search says when it fails
def _candidate(index: int, space: str, arch: dict) -> Candidate:
    return Candidate(index, space, "anchor" if index < 0 else "evolved", arch, 1000, 1e6, 0.1, (0.09, 0.11), 1.0,
                     True, "", (), 1.0)


@pytest.mark.parametrize("index, speedup, need, hint", [
    (7, 2.3, 3.0, "--min-speedup 2.2 would take it"),  # its lower bound 2.2 under 3x
    (-1, 2.3, 2.0, "timed to scale the cost model's predictions (an anchor), not as a pick"),  # it clears 2x
    (7, 2.5, 2.0, "its latency, up to 0.11 ms, breaks --latency-ms"),  # a candidate refused on latency alone
    (7, 1.05, 2.0, "none is measurably faster than the teacher")])  # 0.95 .. 1.15
def test_none_fast_enough_names_the_fastest_timed_arch_and_what_would_take_it(index, speedup, need, hint):
    from types import SimpleNamespace

    from edgekd.search import none_fast_enough
    from edgekd.search.measured import Timed

    ctx = SimpleNamespace(target=SimpleNamespace(runtime="openvino", precision="fp16"))
    candidates = [_candidate(-1, "resnet", {"w": 1}), _candidate(7, "resnet", {"w": 7})]
    timed = [Timed(8, "resnet", 0.1, (0.09, 0.11), 0.8, (0.7, 0.9), 2.4),
             Timed(index, "resnet", 0.1, (0.09, 0.11), speedup, (speedup - 0.1, speedup + 0.1), 2.4)]
    if index < 0:  # the pool's #7 timed too, slower
        timed.append(Timed(7, "resnet", 0.1, (0.09, 0.11), 1.5, (1.4, 1.6), 2.4))
    pool = candidates[1:] + [_candidate(8, "resnet", {"w": 8})]
    said = str(none_fast_enough(ctx, timed, candidates + pool[1:], need, {}, pool))
    named = f"#{index} {{\"w\": {index}}}" if index >= 0 else "the resnet anchor {\"w\": 1}"
    assert f"the fastest, {named}, runs {speedup:.2f}x [{speedup - 0.1:.2f} .. {speedup + 0.1:.2f}]" in said, said
    assert hint in said and "were not timed" not in said, said


def test_none_fast_enough_says_how_many_that_fit_were_not_timed():
    from types import SimpleNamespace

    from edgekd.search import none_fast_enough
    from edgekd.search.measured import Timed

    ctx = SimpleNamespace(target=SimpleNamespace(runtime="onnxruntime", precision="fp32"))
    timed = [Timed(7, "resnet", 0.1, (0.09, 0.11), 2.9, (2.8, 3.0), 4.0)]
    pool = [_candidate(i, "resnet", {"w": i}) for i in range(7, 13)]
    failure = none_fast_enough(ctx, timed, pool, 3.0, {}, pool)
    assert "5 more that fit were not timed" in str(failure) and failure.budgets[0].verdict == "inconclusive"


def test_none_fast_enough_holds_the_shipped_precision_against_the_budget():
    """An INT8 gain timed on the anchor multiplies what the float candidate measured: the figure named is the
    shipped one, its interval the two intervals combined (relative half-widths in quadrature)."""
    from types import SimpleNamespace

    from edgekd.interleave import Ratio
    from edgekd.search import none_fast_enough
    from edgekd.search.measured import Timed

    ctx = SimpleNamespace(target=SimpleNamespace(runtime="openvino", precision="int8"))
    timed = [Timed(-1, "resnet", 0.1, (0.09, 0.11), 2.0, (1.9, 2.1), 2.4)]
    said = str(none_fast_enough(ctx, timed, [_candidate(-1, "resnet", {"w": 1})], 3.0,
                                 {"resnet": Ratio(1.4, (1.3, 1.5))}, []))
    assert "runs 2.80x [2.56 .. 3.05]" in said and "at int8 (its measured gain applied)" in said, said


def test_the_measured_scale_is_rounded_down_to_quarter_octaves():
    """Anchors a few percent apart from run to run give the evolution one scale (the same candidates fit);
    rounding down keeps it at or under what was measured."""
    from edgekd.interleave import Ratio
    from edgekd.search.measured import scales

    runs = [scales({"resnet": c}, {"resnet": Ratio(g, (g * 0.9, g * 1.1))}) for c, g in ((0.62, 1.30), (0.60, 1.36),
                                                                                         (0.64, 1.28))]
    assert runs[0] == runs[1] == runs[2] == {"resnet": pytest.approx(2 ** (-2 / 4))}  # 0.81, 0.82, 0.82
    assert scales({"a": 1.0, "b": 1.18, "c": 0.5}, {}) == {"a": 1.0, "b": 1.0, "c": 0.5}  # exact octaves stay
    assert scales({"a": 0.9}, {"a": Ratio(0.8, (0.7, 0.9))})["a"] == pytest.approx(2 ** (-1 / 4))  # gain < 1: none


def test_a_scale_within_one_step_of_an_earlier_runs_is_kept(tmp_path, monkeypatch):
    """Hysteresis across runs: a machine whose scale lies at a grid step's edge flips between two steps from run to
    run; the step the first run settled on is kept while later runs land within one step of it, and two steps
    away (a changed machine) replaces it. Another search (key) has its own."""
    from edgekd.search.measured import remembered

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    step = 2 ** 0.25
    assert remembered("k", {"resnet": 0.84}) == ({"resnet": 0.84}, {"resnet": "measured"})
    assert remembered("k", {"resnet": 0.84 / step}) == ({"resnet": 0.84}, {"resnet": "remembered"})
    assert remembered("k", {"resnet": 0.84 * step}) == ({"resnet": 0.84}, {"resnet": "remembered"})
    assert remembered("k", {"resnet": 0.84 / step ** 2})[1] == {"resnet": "measured"}
    assert remembered("k", {"resnet": 0.84 / step})[0] == {"resnet": pytest.approx(0.84 / step ** 2)}
    assert remembered("other", {"resnet": 1.0})[1] == {"resnet": "measured"}
    (path,) = (tmp_path / "edgekd" / "search").glob("scales-k.json")
    path.write_text("{torn")
    assert remembered("k", {"resnet": 1.0}) == ({"resnet": 1.0}, {"resnet": "measured"})


@pytest.mark.parametrize("margin, correction, hint", [(1.0, 1.0, "--min-speedup 2.3 or less"),
                                                      (1.15, 1.0, "--min-speedup 2 or less"),
                                                      (1.15, 0.5, "--min-speedup 1 or less"),
                                                      (1 / 0.6, 1.0, "--min-speedup 1.3 or less"),  # predicted
                                                      (1 / 0.6, 0.5, "smaller networks in search.spaces")])
def test_nothing_fits_suggests_a_budget_the_search_would_take(margin, correction, hint):
    """The suggested --min-speedup is one the fastest candidate would fit: its predicted speed-up, corrected by
    what the anchors measured, over the search's margin when candidates are timed (over the cost model's band's
    low end when they are not); and none where even 1x is out of reach."""
    from types import SimpleNamespace

    from edgekd.search import _nothing_fits

    slow = replace(_candidate(3, "resnet", {"w": 3}), fits=False, violations=("speedup",), predicted_speedup=2.3,
                   score=None)
    budgets = SimpleNamespace(latency_ms=None, memory_mb=None)
    said = str(_nothing_fits([slow], budgets, {"speedup": 1}, {"resnet": correction}, margin))
    assert "none of 1 candidates fits (1 over speedup)" in said and f"it would need {hint}" in said, said


class _ScriptedTimer:
    """Stands in for RuntimeTimer's timing (the runtime is timed for real in tests/e2e/test_search_cli.py): the
    speed-up each candidate times at, as scripted, with a +-3% interval."""

    def __init__(self, speedups: dict[int, float]):
        self.speedups, self.timed, self.precision = speedups, [], "fp16"

    def time(self, c):
        from edgekd.search.measured import Timed
        self.timed.append(c.index)
        s = self.speedups[c.index]
        return Timed(c.index, c.space, 0.1, (0.09, 0.11), s, (0.97 * s, 1.03 * s), 4.0)


@pytest.mark.parametrize("speedups, pick, timed", [({1: 3.2, 2: 3.7}, 1, [1]),  # clears 3x: the best score stays
                                                   ({1: 3.05, 2: 3.6}, 2, [1, 2]),  # 2.96 under 3x: the next
                                                   ({1: 2.9, 2: 2.9, 3: 2.9}, None, [1, 2, 3])])  # none: no pick
def test_candidates_are_timed_in_score_order_and_accepted_by_the_checks_rule(speedups, pick, timed):
    """Timing only accepts or refuses, in score order: the first whose whole interval clears the budget (3x; the
    search's margin is on the prediction, not here) is the pick, and nothing after it is timed."""
    from types import SimpleNamespace

    from edgekd.config import SearchConfig
    from edgekd.search import pick_measured

    ranked = [replace(_candidate(i, "resnet", {"w": i}), score=10.0 - i, predicted_speedup=4.0) for i in (1, 2, 3)]
    ctx = SimpleNamespace(cfg=SimpleNamespace(search=SearchConfig(top_k=3, measure_rounds=1)),
                          console=SimpleNamespace(print=print),
                          budgets=SimpleNamespace(min_speedup=3.0, latency_ms=None),
                          target=SimpleNamespace(runtime="onnxruntime", precision="fp32"))
    timer = _ScriptedTimer(speedups)
    got, all_timed = pick_measured(ctx, timer, ranked, [], {})
    assert (got.index if got else None) == pick and timer.timed == timed
    assert [t.index for t in all_timed] == timed


def test_the_shipped_precisions_gain_counts_and_the_walk_stops_at_its_limit():
    """An INT8 gain timed on the anchor counts toward the budget (2.5x float x 1.3 = 3.25x clears 3x), and no more
    than top_k x measure_rounds candidates are timed."""
    from types import SimpleNamespace

    from edgekd.config import SearchConfig
    from edgekd.interleave import Ratio
    from edgekd.search import pick_measured

    ranked = [replace(_candidate(i, "resnet", {"w": i}), score=10.0 - i, predicted_speedup=8.0) for i in (1, 2, 3, 4)]
    ctx = SimpleNamespace(cfg=SimpleNamespace(search=SearchConfig(top_k=1, measure_rounds=2)),
                          console=SimpleNamespace(print=print),
                          budgets=SimpleNamespace(min_speedup=3.0, latency_ms=None),
                          target=SimpleNamespace(runtime="openvino", precision="int8"))
    gain = {"resnet": Ratio(1.3, (1.28, 1.32))}
    got, _ = pick_measured(ctx, _ScriptedTimer({1: 2.0, 2: 2.5, 3: 4.0}), ranked, [], gain)
    assert got.index == 2
    timer = _ScriptedTimer({1: 2.0, 2: 2.0, 3: 4.0})
    got, _ = pick_measured(ctx, timer, ranked, [], gain)
    assert got is None and timer.timed == [1, 2]  # #3 would clear, but the walk's limit is 2


def test_the_report_shows_the_candidates_the_pick_was_chosen_among_with_their_scores():
    from edgekd.results import SearchResult

    def cand(i, score, **extra):
        return {"index": i, "space": "resnet", "arch": {"widths": [i]}, "params": 10 * i, "flops": 100.0 * i,
                "score": score, "scores": {"zico": score, "flops": 100.0 * i}, "latency_ms": 0.1 * i, "fits": True,
                **extra}

    timed = {"speedup": 3.4, "speedup_interval": [3.2, 3.6]}
    refused = {"speedup": 2.7, "speedup_interval": [2.6, 2.8]}
    record = {"pick": {"widths": [5]}, "pick_index": 5, "score": "zico",
              "candidates": [cand(2, 9.0, measured=refused), cand(5, 8.0, measured=timed), cand(7, 7.0),
                             cand(9, 1.0, measured=refused)],
              "top_k": [2, 5, 7]}
    rows = SearchResult.from_record(record).considered
    # the top-k in rank order, then any other candidate timed; only the pick is marked
    assert [r["index"] for r in rows] == [2, 5, 7, 9]
    assert [r["picked"] for r in rows] == [False, True, False, False]
    assert rows[1]["scores"] == {"zico": 8.0, "flops": 500.0} and rows[1]["latency_source"] == "predicted"
    assert rows[1]["measured_speedup"] == 3.4 and rows[1]["measured_speedup_interval"] == [3.2, 3.6]
    assert "measured_speedup" not in rows[2]  # not timed: no measured figure is invented


def test_any_registered_scores_joined_by_plus_are_ranked_as_one_ensemble():
    from edgekd.errors import InputError

    joined = create_score("zico+flops")
    assert isinstance(joined, RankEnsemble) and joined.members == ("zico", "flops")
    assert members("diswot+flops") == ("diswot-semantic", "diswot-relation", "flops")  # an ensemble's members
    rows = [{"zico": 1.0, "flops": 30.0}, {"zico": 3.0, "flops": 20.0}, {"zico": 2.0, "flops": 10.0}]
    # mean rank over the pool: (1+3)/2, (3+2)/2, (2+1)/2, over 3 candidates
    assert pool_scores("zico+flops", rows).tolist() == pytest.approx([2 / 3, 2.5 / 3, 1.5 / 3])
    with pytest.raises(InputError, match=r"unknown search score 'zicco'; did you mean 'zico'"):
        create_score("zicco+flops")
    with pytest.raises(InputError, match="empty name"):
        create_score("zico+")
