"""`edgekd build --teacher hf:DIR` end to end on tiny local encoders (tests/textkit.py): real transformers,
onnxruntime and OpenVINO, the report contract, and bad input as one line with exit 2."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import onnx
import pytest
from conftest import assert_exit_is_verdict, check_report, cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import textkit  # noqa: E402

pytest.importorskip("transformers")

FAST = ["--epochs", "2", "--min-speedup", "1", "--max-length", "32", "--set", "search.top_k=2",
        "--set", "search.measure_rounds=1", "--set", "search.speedup_margin=0"]


@pytest.fixture(scope="module")
def hf(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hf")
    textkit.make_teacher(d / "emb", layers=3)
    # six layers: its 1- and 2-layer students are measurably faster on OpenVINO even on a loaded host (the search
    # takes a student only when the lower end of its speed-up's interval clears the budget)
    textkit.make_teacher(d / "emb6", layers=6)
    textkit.make_teacher(d / "cls", "classification", layers=3)
    textkit.write_lines(d / "lines.txt", 120)
    textkit.write_csv(d / "labels.csv", 160)
    return d


def _build(hf: Path, out: Path, teacher: str, data: str, target: str, *extra: str) -> tuple:
    result = cli("build", "--teacher", f"hf:{hf / teacher}", "--data", hf / data, "--target", target, "--out", out,
                 *FAST, *extra)
    assert result.exit_code in (0, 1, 3), result.output + result.stderr
    report = assert_exit_is_verdict(result, out / "report.json")
    return result, report


@pytest.mark.slow
def test_embedding_build_on_host_cpu(hf, tmp_path):
    out = tmp_path / "run"
    _, report = _build(hf, out, "emb", "lines.txt", "host-cpu")
    checked = check_report(out / "report.json", "--latency-source", "measured")
    assert checked.returncode == 0, checked.stdout
    budgets = {b["name"]: b for b in report["budgets"]}
    assert {"embedding_cosine", "neighbour_agreement", "accuracy_drop", "speedup"} <= set(budgets)
    assert budgets["embedding_cosine"]["value"] == pytest.approx(report["student"]["mean_cosine"])
    assert report["student"]["mean_cosine"] > 0.9  # started from the teacher's layers, then distilled
    # the text search ranks by FLOPs alone: the report offers no --score choices, and shows its pick's row
    assert report["search"]["scores_available"] == []
    assert [c["picked"] for c in report["search"]["considered"]].count(True) == 1
    assert budgets["latency_ms"]["source"] == "measured" and budgets["memory_mb"]["value"] > 0
    assert report["teacher"]["task"] == "embedding" and report["text"]["max_length"] == 32
    model = onnx.load(str(out / "export" / "student.onnx"))
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask"]
    assert (out / "distill" / "student" / "model.safetensors").is_file()
    assert (out / "distill" / "student" / "tokenizer.json").is_file()
    assert report["student"]["parity"]["mean_cosine"] > 0.999
    assert report["student"]["method"] == "emb+hidden+minilm"
    distilled = report["distillation"]  # the teacher ran once; its share of the distillation time is reported
    assert 0 < distilled["teacher_seconds"] < distilled["seconds"] and distilled["epochs"] <= distilled["max_epochs"]
    cosine = budgets["embedding_cosine"]  # decided on its bootstrap interval over the held-out texts
    assert cosine["interval"][0] <= cosine["value"] <= cosine["interval"][1]
    assert "teacher-int8" in report["alternatives"]  # the teacher quantized alone, timed beside it
    # edgekd check gates the transformer ONNX too: latency at the export's 32 tokens, memory
    gate = cli("check", out / "export" / "student.onnx", "--target", "host-cpu", "--latency-ms", "1000",
               "--memory-mb", "1000", "--json", tmp_path / "check.json")
    assert gate.exit_code == 0, gate.output + gate.stderr
    checked = json.loads((tmp_path / "check.json").read_text())
    names = {b["name"]: b for b in checked["budgets"]}
    assert names["latency_ms"]["source"] == "measured" and names["memory_mb"]["value"] > 0
    assert checked["student"]["audits"]["no-input-caching"]["passed"]
    refused = cli("check", out / "export" / "student.onnx", "--target", "host-cpu", "--latency-ms", "1000",
                  "--data", hf / "lines.txt")
    assert refused.exit_code == 2 and "text encoder" in refused.stderr


@pytest.mark.slow
def test_embedding_build_on_openvino_with_int8_guard(hf, tmp_path):
    out = tmp_path / "ov"
    # the target's 5 ms would test the host's load: the search takes a student only when the upper end of its
    # latency interval is within the budget, and this test is about the IR path and the INT8 guard
    _, report = _build(hf, out, "emb6", "lines.txt", "openvino", "--latency-ms", "1000", "--memory-mb", "1000")
    assert check_report(out / "report.json").returncode == 0
    guard = json.loads((out / "compile" / "compile.json").read_text())["precision_guard"]
    assert set(guard["candidates"]) == {"fp16", "int8"} and guard["shipped"] in ("fp16", "int8")
    assert guard["candidates"]["int8"]["settings"]["model_type"] == "transformer"
    assert guard["candidates"]["fp16"]["parity"]["mean_cosine"] > 0.99
    assert report["artifacts"]["compiled"].endswith(".xml")
    assert report["target"]["runtime"] == "openvino"
    gate = cli("check", out / report["artifacts"]["compiled"], "--target", "openvino", "--latency-ms", "1000",
               "--memory-mb", "1000")
    assert gate.exit_code == 0, gate.output + gate.stderr


@pytest.mark.slow
def test_classification_build_keeps_the_accuracy_contract(hf, tmp_path):
    out = tmp_path / "cls"
    _, report = _build(hf, out, "cls", "labels.csv", "host-cpu", "--max-accuracy-drop", "50")
    assert check_report(out / "report.json").returncode == 0
    budgets = {b["name"]: b for b in report["budgets"]}
    assert budgets["accuracy_drop"]["limit"] == 50 and "embedding_cosine" not in budgets
    assert report["student"]["method"] == "kd+hidden+minilm"
    drop = 100 * (report["teacher"]["accuracy"] - report["student"]["accuracy"])
    assert budgets["accuracy_drop"]["value"] == pytest.approx(drop)


@pytest.mark.slow
def test_mobile_target_is_predicted_and_ships_ort_format(hf, tmp_path):
    out = tmp_path / "mobile"
    _, report = _build(hf, out, "emb", "lines.txt", "mobile-cpu")
    assert check_report(out / "report.json", "--latency-source", "predicted").returncode == 0
    budgets = {b["name"]: b for b in report["budgets"]}
    assert budgets["latency_ms"]["source"] == "predicted" and "raspberry-pi-5" in budgets["latency_ms"]["detail"]
    assert report["artifacts"]["compiled"].endswith(".ort")


@pytest.mark.slow
def test_jetson_target_lints_the_token_profile_and_ships_the_onnx(hf, tmp_path):
    out = tmp_path / "jetson"
    result, report = _build(hf, out, "emb", "lines.txt", "jetson")
    assert check_report(out / "report.json", "--latency-source", "predicted").returncode == 0
    lint = report["student"]["compile"]["lint"]  # the sequence axis is covered by the profile (1..--max-length)
    assert lint["errors"] == 0 and {f["node"] for f in lint["findings"]} == {"input_ids", "attention_mask"}
    assert report["artifacts"]["compiled"].endswith(".onnx")  # the engine is built on the device
    assert "pip install 'edgekd[tensorrt]' there" in " ".join(result.output.split())
    budgets = {b["name"]: b for b in report["budgets"]}
    assert budgets["latency_ms"]["source"] == "predicted" and report["target"]["profile"] == "jetson-orin-nano"
    student = out / "export" / "student.onnx"  # `edgekd lint` says the same, given the length
    assert cli("lint", student, "--max-length", "32").exit_code == 0
    without = cli("lint", student)
    assert without.exit_code == 1 and "give its --max-length" in without.output


def _one_line_exit_2(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_bad_text_inputs_are_one_line_and_exit_2(hf, tmp_path):
    pickled = tmp_path / "pickled"
    shutil.copytree(hf / "emb", pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    r = cli("build", "--teacher", f"hf:{pickled}", "--data", hf / "lines.txt", "--out", tmp_path / "a")
    _one_line_exit_2(r, "pytorch_model.bin", "safetensors")
    notok = tmp_path / "notok"
    shutil.copytree(hf / "emb", notok)
    for name in ("tokenizer.json", "vocab.txt"):
        (notok / name).unlink(missing_ok=True)
    _one_line_exit_2(cli("build", "--teacher", f"hf:{notok}", "--data", hf / "lines.txt", "--out", tmp_path / "b"),
                     "no tokenizer files")
    (tmp_path / "empty.txt").write_text("")
    _one_line_exit_2(cli("build", "--teacher", f"hf:{hf / 'emb'}", "--data", tmp_path / "empty.txt", "--out",
                         tmp_path / "c"), "empty.txt", "no text")
    textkit.write_csv(tmp_path / "nolabel.csv", label_column="topic")
    _one_line_exit_2(cli("build", "--teacher", f"hf:{hf / 'cls'}", "--data", tmp_path / "nolabel.csv", "--out",
                         tmp_path / "d"), "nolabel.csv", "no label column")
    _one_line_exit_2(cli("build", "--teacher", f"hf:{tmp_path / 'nowhere'}", "--data", hf / "lines.txt"),
                     "folder not found")
    assert not any((tmp_path / n).exists() for n in "abcd")  # nothing written for bad input


@pytest.mark.slow
def test_text_build_that_cannot_be_fast_enough_fails_with_a_report(hf, tmp_path):
    out = tmp_path / "slow"
    result = cli("build", "--teacher", f"hf:{hf / 'emb'}", "--data", hf / "lines.txt", "--target", "host-cpu",
                 "--out", out, "--min-speedup", "500", "--max-length", "32", "--set", "search.top_k=1",
                 "--set", "search.measure_rounds=1")
    assert result.exit_code == 1, result.output + result.stderr
    report = json.loads((out / "report.json").read_text())
    stages = {s["name"]: s["status"] for s in report["stages"]}
    assert stages["search"] == "failed" and stages["check"] == "skipped"
    speed = next(b for b in report["budgets"] if b["name"] == "speedup")
    # the fastest student of the tier was timed against the teacher: the failure says what it reached
    assert speed["limit"] == 500 and speed["passed"] is False and speed["source"] == "measured"
    reason = next(s["reason"] for s in report["stages"] if s["name"] == "search")
    assert "the fastest" in reason and "teacher-init tier" in reason and f"{speed['value']:.2f}x" in reason
    record = json.loads((out / "search" / "search.json").read_text())
    timed = [c for c in record["candidates"] if "measured" in c]
    # never a narrower (random-init) student: the search stays in the teacher-initialisable tier
    assert timed and all(c["origin"] == "teacher-init" and c["arch"]["hidden_size"] == 32 for c in timed)
    assert min(c["arch"]["num_hidden_layers"] for c in timed) == 1  # the tier's fastest
    assert report["teacher"]["latency_source"] == "predicted"  # what the search priced is still reported
