"""The transformer track's library pieces on tiny local encoders (tests/textkit.py): the teacher folder's
checks, text data and dynamic padding, students from the teacher, the cost model's transformer kernels, the
text losses, parity by cosine, ONNX export with dynamic batch and sequence, INT8 on both runtimes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import textkit  # noqa: E402

from edgekd.errors import InputError  # noqa: E402

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def emb_dir(tmp_path_factory) -> Path:
    return textkit.make_teacher(tmp_path_factory.mktemp("hf") / "emb")


@pytest.fixture(scope="module")
def teacher(emb_dir):
    from edgekd.text.hf import load_text_teacher

    return load_text_teacher(f"hf:{emb_dir}")


# ----------------------------------------------------------------------------- teacher folder
def test_task_comes_from_the_architectures(tmp_path):
    from edgekd.text.hf import load_text_teacher

    cls = load_text_teacher(f"hf:{textkit.make_teacher(tmp_path / 'cls', 'classification')}")
    assert cls.task == "classification" and cls.labels == ["neg", "pos"]
    with pytest.raises(InputError, match="no sequence-classification head"):
        load_text_teacher(f"hf:{textkit.make_teacher(tmp_path / 'emb')}", "classification")


def test_pickled_weights_are_refused(tmp_path, emb_dir):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(emb_dir, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    from edgekd.text.hf import load_text_teacher

    with pytest.raises(InputError, match=r"pytorch_model\.bin \(a pickle"):
        load_text_teacher(f"hf:{folder}")


def test_missing_tokenizer_and_foreign_models_are_refused(tmp_path, emb_dir):
    import json
    import shutil

    from edgekd.text.hf import load_text_teacher

    folder = tmp_path / "notok"
    shutil.copytree(emb_dir, folder)
    for name in ("tokenizer.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(InputError, match="no tokenizer files"):
        load_text_teacher(f"hf:{folder}")
    gpt = tmp_path / "gpt"
    shutil.copytree(emb_dir, gpt)
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(InputError, match="not a BERT-family encoder"):
        load_text_teacher(f"hf:{gpt}")


def test_teacher_embedding_is_the_masked_mean(teacher):
    enc = teacher.tokenizer(["apple red", "cat dog run fast and far"], padding=True, return_tensors="pt")
    out = teacher.module(enc["input_ids"], enc["attention_mask"])
    states = teacher.module.model(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    n = int(enc["attention_mask"][0].sum())
    assert torch.allclose(out[0], states[0, :n].mean(0), atol=1e-5)  # padding is not averaged in


# ----------------------------------------------------------------------------- data
def test_text_data_splits_and_pads_per_batch(tmp_path, teacher):
    from edgekd.text.data import load_text_data

    data = load_text_data(str(textkit.write_lines(tmp_path / "l.txt", 60)), teacher.tokenizer, "embedding", None,
                          8, 0, "tiny")
    assert len(data.train_idx) + len(data.val_idx) == 60 and not set(data.train_idx) & set(data.val_idx)
    assert set(data.calib_idx) <= set(data.train_idx)
    batch = data.encode(data.val_idx[:4])
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape[1] <= 8  # cut at --max-length
    short = data.encode([int(np.argmin([len(t) for t in data.texts]))])
    assert short["input_ids"].shape[1] < 8 or len(data.texts[0].split()) > 6  # padded to the longest, not to 8
    assert data.timing_feed()["input_ids"].shape == (1, 8)


@pytest.mark.parametrize(("content", "match"), [("\n  \n", "no text in it"), ("one line\n", "at least 12")])
def test_empty_text_is_bad_input(tmp_path, teacher, content, match):
    from edgekd.text.data import load_text_data

    (tmp_path / "e.txt").write_text(content)
    with pytest.raises(InputError, match=match):
        load_text_data(str(tmp_path / "e.txt"), teacher.tokenizer, "embedding", None, 16, 0, "tiny")


def test_a_folder_of_text_files_is_one_corpus(tmp_path, teacher):
    """--data DIR: every .txt / .csv / .jsonl under it, so a user can add text from several places."""
    from edgekd.text.data import load_text_data

    folder = tmp_path / "corpus"
    (folder / "more").mkdir(parents=True)
    textkit.write_lines(folder / "a.txt", 30, seed=1)
    textkit.write_lines(folder / "more" / "b.txt", 20, seed=2)
    (folder / "notes.md").write_text("not read\n")
    data = load_text_data(str(folder), teacher.tokenizer, "embedding", None, 16, 0, "tiny")
    want = (folder / "a.txt").read_text().split("\n") + (folder / "more" / "b.txt").read_text().split("\n")
    assert data.texts == [t.strip() for t in want if t.strip()] and len(data.train_idx) + len(data.val_idx) == 50
    with pytest.raises(InputError, match="needs labels"):  # a classifier's texts carry labels
        load_text_data(str(folder), teacher.tokenizer, "classification", ["neg", "pos"], 16, 0, "tiny")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"--data '.*empty': a folder without a \.txt"):
        load_text_data(str(tmp_path / "empty"), teacher.tokenizer, "embedding", None, 16, 0, "tiny")


def test_csv_without_label_column_is_bad_input(tmp_path, teacher):
    from edgekd.text.data import load_text_data

    path = textkit.write_csv(tmp_path / "c.csv", label_column="category")
    with pytest.raises(InputError, match=r"no label column .*'category'"):
        load_text_data(str(path), teacher.tokenizer, "classification", ["neg", "pos"], 16, 0, "tiny")
    data = load_text_data(str(textkit.write_csv(tmp_path / "ok.csv")), teacher.tokenizer, "classification",
                          ["neg", "pos"], 16, 0, "tiny")
    assert set(np.unique(data.y)) == {0, 1}


# ----------------------------------------------------------------------------- students
def test_layer_selection_copies_the_ends_by_default():
    from edgekd.config import TextConfig
    from edgekd.text.models import selected_layers

    assert TextConfig().layer_selection == "ends"  # 3 of all-MiniLM-L6-v2's layers: cosine 0.72 vs 0.36 at start
    assert selected_layers(6, 3) == [0, 2, 4]
    assert selected_layers(12, 6) == [0, 2, 4, 6, 8, 10]
    assert selected_layers(6, 2) == [0, 3]
    assert selected_layers(6, 3, "ends") == [0, 4, 5] and selected_layers(6, 1, "ends") == [0]


def test_hidden_states_pair_with_the_teacher_layers_they_stand_for():
    from edgekd.text.distill import layer_pairs

    assert layer_pairs(6, 3) == [(0, 0), (1, 2), (2, 4), (3, 6)]  # TinyBERT's uniform map
    assert layer_pairs(6, 3, "ends") == [(0, 0), (1, 1), (2, 5), (3, 6)]  # each copied layer with its original


def test_student_copies_the_teacher_where_shapes_allow(teacher):
    from edgekd.text.models import build_student

    arch = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    student, how = build_student(teacher.module, arch)
    s, t = student.base(), teacher.module.base()
    assert torch.equal(s.embeddings.word_embeddings.weight, t.embeddings.word_embeddings.weight)
    q_s, q_t = s.encoder.layer[0].attention.self.query.weight, t.encoder.layer[0].attention.self.query.weight
    assert torch.equal(q_s, q_t) and "[0] copied" in how
    up_s, up_t = s.encoder.layer[0].intermediate.dense.weight, t.encoder.layer[0].intermediate.dense.weight
    assert up_s.shape == (64, 32) and torch.equal(up_s, up_t[:64])  # the narrower feed-forward: leading units
    narrow, how = build_student(teacher.module, arch | {"hidden_size": 16, "intermediate_size": 32})
    assert how.startswith("random") and narrow.project is not None  # projected to the teacher's width
    ids = torch.tensor([[2, 10, 11, 3]])
    assert narrow(ids, torch.ones_like(ids)).shape == (1, 32)


def test_default_space_keeps_the_teacher_width_and_narrow_students_are_opt_in():
    from edgekd.config import TextConfig
    from edgekd.text import space

    t = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}
    default = space.candidates(t, TextConfig())
    assert {c["num_hidden_layers"] for c in default} == {1, 2, 3, 4, 6}
    assert all(space.tier(c, t) == "teacher-init" for c in default) and space.searched_tier(TextConfig()) == \
        "teacher-init"
    narrow = TextConfig(narrow_students=True)
    cands = space.candidates(t, narrow)
    assert {c["hidden_size"] for c in cands} == {192, 288} and space.searched_tier(narrow) == "random-init"
    assert all(space.tier(c, t) == "random-init" for c in cands)


# ----------------------------------------------------------------------------- distillation
def test_distillation_runs_the_teacher_once_and_stops_on_the_held_out_loss(tmp_path, emb_dir):
    from rich.console import Console

    from edgekd.config import BuildConfig
    from edgekd.context import make_context
    from edgekd.text.distill import run_text_distill

    lines = textkit.write_lines(tmp_path / "lines.txt", 60)
    # lr 1e-12: AdamW's steps are below float32's resolution of the weights, so the held-out loss never improves
    cfg = BuildConfig.model_validate({
        "teacher": {"source": f"hf:{emb_dir}"}, "data": str(lines), "out": str(tmp_path / "run"),
        "text": {"max_length": 16, "lr": 1e-12, "patience_epochs": 2}, "distill": {"epochs": 8, "batch_size": 8}})
    ctx = make_context(cfg, Console(quiet=True))
    rows = []
    hook = ctx.teacher.module.model.register_forward_hook(lambda m, args, kw, out: rows.append(len(kw["input_ids"])),
                                                          with_kwargs=True)
    arch = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 128}
    info = run_text_distill(ctx, arch)
    hook.remove()
    # the training texts once (their outputs reused every epoch), the held-out ones once for the quality
    assert sum(rows) == len(ctx.data.train_idx) + len(ctx.data.val_idx)
    assert info["epochs"] == 3 and info["best_epoch"] == 1 and info["max_epochs"] == 8
    assert 0 < info["teacher_seconds"] < info["seconds"] and info["stop_texts"] >= 2
    history = json.loads((ctx.run.distill / "history.json").read_text())
    assert [h["stop_loss"] for h in history] == [history[0]["stop_loss"]] * 3


def test_stop_split_is_held_out_of_training():
    from edgekd.text.distill import split_for_stopping

    fit, stop = split_for_stopping(np.arange(100), 0.1, 0)
    assert len(stop) == 10 and not set(fit) & set(stop) and len(fit) + len(stop) == 100
    assert len(split_for_stopping(np.arange(5), 0.1, 0)[1]) == 2  # at least 2


# ----------------------------------------------------------------------------- cost
def test_transformer_cost_grows_with_sequence_and_depth():
    from edgekd.config import TextConfig, load_profile
    from edgekd.text import space

    arch = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536}
    k128, k256 = space.encoder_kernels(arch, 128), space.encoder_kernels(arch, 256)
    attn = [k for k in k128 if k.kind == "gemm" and k.weight_elems == 0]
    attn256 = [k for k in k256 if k.kind == "gemm" and k.weight_elems == 0]
    assert len(attn) == 12 and attn256[0].flops == pytest.approx(4 * attn[0].flops)  # S^2
    assert any(k.act == "Gelu" for k in k128) and any(k.act == "LayerNormalization" for k in k128)
    profile = load_profile("intel-x86-cpu")
    t = space.predict(arch, profile, "fp32", 128)[0]
    s = space.predict(arch | {"num_hidden_layers": 2}, profile, "fp32", 128)[0]
    assert 2 < t.value / s.value < 3.1 and t.interval[0] < t.value < t.interval[1]
    cands = space.candidates(arch, TextConfig())
    assert arch in cands and all(c["hidden_size"] % c["num_attention_heads"] == 0 for c in cands)


# ----------------------------------------------------------------------------- losses
def test_text_losses_vanish_at_the_teacher_and_reach_only_the_student():
    from edgekd.config import DistillConfig
    from edgekd.distill.losses import LossInputs
    from edgekd.distill.method import create_method

    torch.manual_seed(0)
    cfg = DistillConfig()
    e = torch.randn(4, 8)
    assert create_method("emb").fn(LossInputs(e, e.clone(), torch.zeros(4)), cfg) == pytest.approx(0, abs=1e-6)
    qkv = tuple(torch.randn(4, 5, 8) for _ in range(3))
    mask = torch.ones(4, 5, dtype=torch.long)
    mask[0, 3:] = 0
    same = LossInputs(e, e, torch.zeros(4), mask=mask, student_qkv=[qkv], teacher_qkv=[qkv])
    assert create_method("minilm").fn(same, cfg) == pytest.approx(0, abs=1e-6)
    s_qkv = tuple(torch.randn(4, 5, 4, requires_grad=True) for _ in range(3))  # narrower student
    t_qkv = tuple(torch.randn(4, 5, 8, requires_grad=True) for _ in range(3))
    loss = create_method("minilm").fn(LossInputs(e, e, torch.zeros(4), mask=mask, student_qkv=[s_qkv],
                                                 teacher_qkv=[tuple(x.detach() for x in t_qkv)]), cfg)
    assert loss > 0
    loss.backward()
    assert all(x.grad is not None for x in s_qkv) and all(x.grad is None for x in t_qkv)
    h_s, h_t = torch.randn(4, 5, 8), torch.randn(4, 5, 8)
    masked = h_t.clone()
    masked[0, 3:] += 100  # differences at padded positions do not count
    b = LossInputs(e, e, torch.zeros(4), adapted_feats=[h_s], teacher_feats=[h_t], mask=mask)
    b2 = LossInputs(e, e, torch.zeros(4), adapted_feats=[h_s], teacher_feats=[masked], mask=mask)
    assert create_method("hidden").fn(b, cfg) == pytest.approx(float(create_method("hidden").fn(b2, cfg)))


def test_text_methods_compose_and_refuse_image_ones():
    from edgekd.config import DistillConfig
    from edgekd.distill.method import parse_method
    from edgekd.text.distill import parse_text_method

    plan = parse_text_method("emb+hidden+minilm", "embedding", DistillConfig())
    assert [t.name for t in plan.terms] == ["emb", "hidden", "minilm"] and plan.needs_adapters
    assert [t.name for t in parse_text_method("kd+minilm", "classification", DistillConfig()).terms] == ["kd", "minilm"]
    with pytest.raises(InputError, match="distils image models"):
        parse_text_method("emb+at", "embedding", DistillConfig())
    with pytest.raises(InputError, match="needs labels"):
        parse_text_method("kd", "embedding", DistillConfig())
    with pytest.raises(InputError, match="hf:DIR"):
        parse_method("minilm", DistillConfig())


# ----------------------------------------------------------------------------- parity
def test_neighbour_agreement_and_cosine_parity():
    from edgekd import parity

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 16))
    assert parity.neighbour_agreement(ref, ref, 10) == 1.0
    assert parity.neighbour_agreement(rng.normal(size=(40, 16)), ref, 10) < 0.5
    p = parity.compare_embeddings(ref + 1e-4, ref)
    assert p.mean_cosine > 0.9999 and parity.Parity.from_dict(p.as_dict()) == p
    parity.require(p, "fp32", "x")
    with pytest.raises(Exception, match="mean cosine"):
        parity.require(parity.compare_embeddings(rng.normal(size=(40, 16)), ref), "fp32", "x")


def test_quality_intervals_bracket_the_agreement_and_narrow_with_more_texts():
    from edgekd import parity
    from edgekd.parity import neighbour_overlaps
    from edgekd.text.quality import mean_interval

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(200, 16))
    got = ref + rng.normal(scale=0.6, size=ref.shape)
    overlaps = neighbour_overlaps(got, ref, 10)
    assert overlaps.mean() == pytest.approx(parity.neighbour_agreement(got, ref, 10))
    lo, hi = mean_interval(overlaps)
    assert lo < overlaps.mean() < hi
    lo40, hi40 = mean_interval(overlaps[:40])
    assert hi40 - lo40 > 1.5 * (hi - lo)  # ~sqrt(5) wider on a fifth of the texts


def test_int8_that_makes_a_quality_pass_inconclusive_is_not_kept():
    from types import SimpleNamespace

    from edgekd.config import Budgets
    from edgekd.tracks import create_track

    ctx = SimpleNamespace(budgets=Budgets(), teacher=SimpleNamespace(task="embedding"))
    within = create_track("text").within  # the precision guard's quality rule for text (edgekd/precision.py)
    fp = {"mean_cosine": 0.97, "mean_cosine_interval": (0.96, 0.98), "neighbour_agreement": 0.9,
          "neighbour_agreement_interval": (0.88, 0.92)}
    assert within(ctx, fp, fp)[0]
    straddles = fp | {"mean_cosine": 0.955, "mean_cosine_interval": (0.945, 0.965)}
    ok, said = within(ctx, straddles, fp)
    assert not ok and "[0.9450 .. 0.9650]" in said
    assert within(ctx, straddles, straddles)[0]  # no worse than the float artifact's verdict
    low = fp | {"neighbour_agreement": 0.7, "neighbour_agreement_interval": (0.6, 0.8)}
    assert not within(ctx, low, low)[0]


# ----------------------------------------------------------------------------- export and runtimes
@pytest.fixture(scope="module")
def exported(tmp_path_factory, teacher):
    from edgekd.text.export import export_text

    path = tmp_path_factory.mktemp("onnx") / "teacher.onnx"
    enc = teacher.tokenizer(["apple red banana", "cat"], padding=True, return_tensors="np")
    return export_text(teacher.module, path, {"task": "embedding"}, {k: enc[k].astype(np.int64) for k in
                                                                       ("input_ids", "attention_mask")})


def _feeds(teacher, texts):
    enc = teacher.tokenizer(texts, padding=True, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


def test_onnx_has_dynamic_batch_and_sequence(exported, teacher):
    import onnx

    from edgekd.runtimes.onnxruntime_backend import OrtSession
    from edgekd.text.export import torch_outputs

    model = onnx.load(str(exported))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert all(not d.HasField("dim_value") for i in model.graph.input for d in i.type.tensor_type.shape.dim)
    session = OrtSession(exported, 1)
    for texts in (["x"], ["apple red banana cherry lime kiwi fig"] * 3):  # other batch and sequence lengths
        f = _feeds(teacher, texts)
        assert np.allclose(session.run(f), torch_outputs(teacher.module, [f]), atol=1e-4)


def test_tensorrt_lint_reads_the_transformer_graph(exported):
    from edgekd.runtimes.tensorrt_lint import lint_file

    # Every operator of the BERT graph is one the TensorRT parser takes. The sequence axis is dynamic: without
    # a --max-length no profile covers it, and the lint says what to give; with one, nothing would fail.
    without = lint_file(exported, 1, 64)
    assert not [f for f in without if f.op not in ("input", "output", "initializer")], [f.to_dict() for f in without]
    assert {(f.node, f.severity) for f in without if "give its --max-length" in f.why} == {
        ("input_ids", "error"), ("attention_mask", "error")}
    with_length = lint_file(exported, 1, 64, sequence=128)
    assert not [f for f in with_length if f.severity == "error"], [f.to_dict() for f in with_length]
    assert {f.node for f in with_length if "network input is INT64" in f.why} == {"input_ids", "attention_mask"}


@pytest.mark.gpu
def test_tensorrt_engine_of_the_transformer_takes_any_batch_and_length(tmp_path, exported, teacher):
    from edgekd.parity import row_cosine
    from edgekd.runtimes import CompileOptions, create_backend
    from edgekd.text.export import torch_outputs

    backend = create_backend("tensorrt")
    if reason := backend.unavailable_reason():
        pytest.skip(reason)
    art = backend.compile(exported, tmp_path, "fp16", None, "x86_64", CompileOptions(transformer=True, sequence=32))
    assert art.settings["optimization_profile"]["input_ids"]["min_opt_max"] == [[1, 1], [1, 32], [64, 32]]
    session = backend.load(art, 1)
    for texts in (["x"], textkit.sentences(5, seed=4)):  # other batch sizes and sequence lengths
        f = _feeds(teacher, texts)
        cos = row_cosine(session.run(f), torch_outputs(teacher.module, [f]))
        assert cos.min() > 0.99, cos
    with pytest.raises(InputError, match="fp16 only"):
        backend.compile(exported, tmp_path, "int8", None, "x86_64", CompileOptions(transformer=True, sequence=32))


def test_tensorrt_int8_of_a_transformer_is_refused_before_any_build(tmp_path, exported):
    from edgekd.runtimes import CompileOptions, create_backend

    # Refused as bad input on any host (checked before TensorRT is imported), writing nothing.
    with pytest.raises(InputError, match="fp16 only"):
        create_backend("tensorrt").compile(exported, tmp_path / "trt", "int8", None, "x86_64",
                                           CompileOptions(transformer=True, sequence=32))
    assert not (tmp_path / "trt").exists()


def test_tensorrt_profile_spans_the_batch_and_a_token_inputs_sequence():
    from edgekd.runtimes.tensorrt_lint import profile_shapes

    assert profile_shapes((None, None), 1, 64, sequence=128) == ((1, 1), (1, 128), (64, 128))
    assert profile_shapes((None, 3, 32, 32), 4, 64) == ((1, 3, 32, 32), (4, 3, 32, 32), (64, 3, 32, 32))
    assert profile_shapes((1, 3, 32, 32), 1, 64) == ((1, 3, 32, 32),) * 3  # a fixed batch that is the target's
    assert "fixed to 8 but the target runs batch 1" in profile_shapes((8, 3, 32, 32), 1, 64)
    assert "give its --max-length" in profile_shapes((None, None), 1, 64)  # a text model without a length
    assert "export with a fixed input size" in profile_shapes((None, 3, None, None), 1, 64, sequence=128)


@pytest.mark.parametrize(("runtime", "precision"), [("onnxruntime", "int8"), ("openvino", "fp16"),
                                                     ("openvino", "int8")])
def test_transformer_compiles_and_keeps_its_direction(tmp_path, exported, teacher, runtime, precision):
    from edgekd.parity import row_cosine
    from edgekd.runtimes import CompileOptions, create_backend
    from edgekd.runtimes.memprobe import measure_memory_mb
    from edgekd.text.export import torch_outputs

    texts = textkit.sentences(24, seed=3)
    calib = tuple(_feeds(teacher, [t]) for t in texts[:16])
    backend = create_backend(runtime)
    art = backend.compile(exported, tmp_path, precision, None, "x86_64",
                          CompileOptions(transformer=True, calibration_feeds=calib))
    f = _feeds(teacher, texts)
    got = backend.load(art, 1).run(f)
    cos = row_cosine(got, torch_outputs(teacher.module, [f]))
    assert cos.mean() > (0.99 if precision == "fp16" else 0.9), cos
    if precision == "int8":
        assert "quantiz" in str(art.settings)
    assert measure_memory_mb(art, {"input_ids": (1, 16), "attention_mask": (1, 16)}, 1) > 0
