"""The CLI end to end on the embedded default, and every bad input path (exit 2, one line, nothing lost)."""

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import check_report, cli

# 4 epochs are too few for the default recipe's shifted, mixed views (75-84% on digits after 4): these tests are
# about the runtimes, so they train on plain views, which reach the accuracy budget in 4 epochs.
SHORT_RECIPE = ("--set", "distill.mix=none", "--set", "distill.augment=none")


def _snapshot(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_host_build_report_and_artifacts(host_build):
    report = json.loads((host_build / "report.json").read_text())
    assert report["schema"] == "edgekd.report/1"
    assert {b["name"] for b in report["budgets"]} == {"latency_ms", "memory_mb", "accuracy_drop", "speedup"}
    lat = next(b for b in report["budgets"] if b["name"] == "latency_ms")
    assert lat["source"] == "measured" and lat["interval"][0] <= lat["value"] <= lat["interval"][1]
    # the speed-up: student and teacher timed interleaved on the target's runtime, decided on its own interval
    speed = next(b for b in report["budgets"] if b["name"] == "speedup")
    assert speed["source"] == "measured" and speed["verdict"] == "pass" and speed["limit"] == 3.0
    assert speed["limit"] <= speed["interval"][0] <= speed["value"] <= speed["interval"][1]
    assert report["student"]["speedup"]["value"] == speed["value"]
    # the pair's own ratio (the median of the rounds' ratios) agrees with the two latencies within its interval
    assert speed["interval"][0] <= report["teacher"]["latency_ms"] / report["student"]["latency_ms"] \
        <= speed["interval"][1]
    # the teacher compressed without distillation is priced beside it
    alt = report["alternatives"]["teacher-int8"]
    assert alt["latency_source"] == "measured" and 0 <= alt["accuracy"] <= 1 and alt["speedup"] > 0
    assert [s["name"] for s in report["stages"]] == ["search", "distill", "export", "compile", "check"]
    assert report["preprocessing"]["input_size"] == [8, 8]
    assert (host_build / "report.md").read_text().startswith("## edgekd")
    assert "<testsuite" in (host_build / "junit.xml").read_text()
    # the deployed artifact loads and runs, and carries its preprocessing
    session = ort.InferenceSession(str(host_build / report["artifacts"]["compiled"]))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["preprocessing"])["mean"] == [0.0]
    out = session.run(None, {"input": np.zeros((3, 1, 8, 8), np.float32)})[0]
    assert out.shape == (3, 10)


def test_host_build_meets_the_report_contract(host_build):
    check = check_report(host_build / "report.json", "--latency-source", "measured", "--faster", "--min-speedup", "3")
    assert check.returncode == 0, check.stdout


@pytest.mark.slow
def test_jetson_build_skips_engine_and_predicts(tmp_path):
    out = tmp_path / "jetson"
    # The headline command at the target's own 3x: the embedded teacher is deep enough (55 kernels) that a
    # few-kernel student is predicted 3x faster on a launch-bound Jetson GPU (docs/architecture.md).
    result = cli("build", "--target", "jetson", "--out", out, "--epochs", "4", *SHORT_RECIPE)
    report = json.loads((out / "report.json").read_text())
    assert result.exit_code == (0 if report["passed"] else 1)
    assert next(s for s in report["stages"] if s["name"] == "search")["status"] == "passed"
    speed = next(b for b in report["budgets"] if b["name"] == "speedup")
    assert speed["limit"] == 3.0 and speed["source"] == "predicted"
    # a predicted speed-up carries the cost model's band for a ratio, and the search picked a student whose band
    # clears the budget: a prediction near 3x would be inconclusive (exit 3), not a pass
    assert speed["interval"] == pytest.approx([0.6 * speed["value"], speed["value"] / 0.6])
    assert speed["interval"][0] >= 3.0 and speed["verdict"] == "pass"
    compile_stage = next(s for s in report["stages"] if s["name"] == "compile")
    assert report["student"]["compile"]["lint"]["errors"] == 0  # the TensorRT lint ran on the student ONNX
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert compile_stage["status"] == "skipped" and "TensorRT" in compile_stage["reason"]
        assert "edgekd[tensorrt]" in result.output  # the install hint survives rich's markup
        assert all(b["source"] == "predicted" for b in report["budgets"] if b["name"] != "accuracy_drop")
    check = check_report(out / "report.json", "--skipped-stage")
    assert check.returncode == 0, check.stdout


def assert_ran_every_stage(result, report: dict) -> None:
    """Every stage ran (so the facts a test reads were reached) and the exit code is the report's verdict's."""
    from edgekd.gate.verdict import exit_code
    from edgekd.rerender import report_from_dict

    assert [s["status"] for s in report["stages"]] == ["passed"] * 5, report["stages"]
    assert result.exit_code == exit_code(report_from_dict(report).verdict), result.output + result.stderr


@pytest.mark.slow
def test_openvino_build_measures_an_ir(tmp_path):
    out = tmp_path / "ov"
    # This test is about the IR path (compile, guard, measured figures); whether the default 3x is met on this
    # host is benchmarks/outcome.py's question. On 2 cores the embedded teacher's students run 2-3x at fp16 on
    # OpenVINO (more at INT8), so 2x leaves the search room on a CPU other than the one this was measured on.
    result = cli("build", "--target", "openvino", "--out", out, "--epochs", "4", "--min-speedup", "2", *SHORT_RECIPE)
    report = json.loads((out / "report.json").read_text())
    assert_ran_every_stage(result, report)
    assert report["artifacts"]["compiled"].endswith(".xml")
    assert report["student"]["latency_source"] == "measured"
    assert report["student"]["session"]["INFERENCE_PRECISION_HINT"] == "f32"
    guard = report["student"]["compile"]["precision_guard"]
    assert report["target"]["precision"] == "int8" and report["student"]["artifact"]["precision"] == guard["shipped"]
    for c in guard["candidates"].values():  # each artifact run through OpenVINO on the held-out split
        assert c["latency_source"] == "measured" and c["parity"]["samples"] == report["data"]["val"]
    int8 = guard["candidates"]["int8"]
    assert int8["settings"]["quantization"].startswith("nncf.quantize")
    # int8 and fp16 timed interleaved: the guard decides on their ratio's interval
    faster = int8["speedup_over_float"]["interval"][0] > 1
    assert (guard["shipped"] == "int8") == (faster and int8["accuracy_drop"] <= 2.0)


@pytest.mark.slow
def test_mobile_build_ships_an_ort_format_artifact(tmp_path):
    out = tmp_path / "mobile"
    # A ResNet student distils within the budget in 4 epochs; which family the search prefers for a
    # Raspberry Pi (the cost model's call) is not what this test is about.
    result = cli("build", "--target", "mobile-cpu", "--out", out, "--epochs", "4", "--set", "search.spaces=[resnet]",
                 *SHORT_RECIPE)
    report = json.loads((out / "report.json").read_text())
    assert_ran_every_stage(result, report)
    guard = report["student"]["compile"]["precision_guard"]
    assert report["artifacts"]["compiled"] == f"compile/student-{guard['shipped']}.ort"
    int8, fp32 = guard["candidates"]["int8"], guard["candidates"]["fp32"]
    assert int8["latency_source"] == "predicted"  # no Raspberry Pi here
    assert int8["settings"]["format"] == "ort" and int8["settings"]["from"] == "onnx-qdq"  # converted from QDQ
    limit = next(b["limit"] for b in report["budgets"] if b["name"] == "accuracy_drop")
    # predicted figures: the guard compares them by value
    assert (guard["shipped"] == "int8") == (int8["latency_ms"] < fp32["latency_ms"] and int8["accuracy_drop"] <= limit)
    assert report["student"]["evaluated_with"].startswith(f"onnxruntime {guard['shipped']}")
    assert abs(report["student"]["accuracy"] - guard["candidates"][guard["shipped"]]["accuracy"]) < 1e-9


def test_a_pinned_student_skips_the_search(tmp_path, host_build):
    """A CI job pins the student an earlier run picked (its search.json): the same network, no search."""
    earlier = json.loads((host_build / "search" / "search.json").read_text())
    out = tmp_path / "pinned"
    r = cli("build", "--out", out, "--student-arch", host_build / "search" / "search.json", "--epochs", "2",
            "--min-speedup", "1.5", "--max-accuracy-drop", "30", *SHORT_RECIPE)
    report = json.loads((out / "report.json").read_text())
    assert r.exit_code == 0, r.output + r.stderr
    assert report["student"]["arch"] == earlier["pick"] and "the student is pinned" in r.output
    search = report["stages"][0]
    assert (search["name"], search["status"]) == ("search", "skipped") and "--student-arch" in search["reason"]
    assert not (out / "search" / "search.json").exists()


def test_stage_commands_run_alone(tmp_path):
    out = tmp_path / "stages"
    assert cli("search", "--out", out, "--target", "host-cpu", "--set", "search.measure_rounds=0").exit_code == 0
    assert json.loads((out / "search" / "search.json").read_text())["pick"]
    arch = json.dumps({"family": "resnet", "widths": [8, 16, 32], "blocks": [1, 1, 1]})
    assert cli("distill", "--out", out, "--arch", arch, "--epochs", "1",
               "--set", "budgets.max_accuracy_drop=100").exit_code == 0
    assert cli("export", "--out", out).exit_code == 0
    assert (out / "export" / "student.onnx").is_file()
    assert cli("compile", "--out", out, "--target", "openvino").exit_code == 0
    guard = json.loads((out / "compile" / "compile.json").read_text())["precision_guard"]
    assert guard["requested"] == "int8" and set(guard["candidates"]) == {"fp16", "int8"}
    assert (out / "compile" / f"student-{guard['shipped']}.xml").is_file() and guard["reason"]


def test_search_fails_early_when_no_candidate_fits(tmp_path):
    out = tmp_path / "tight"
    result = cli("search", "--out", out, "--latency-ms", "0.000001")
    assert result.exit_code == 1 and "none of" in result.stderr


def test_targets_and_profiles_json():
    t = cli("targets", "--json")
    assert t.exit_code == 0 and {x["name"] for x in json.loads(t.stdout)} >= {"jetson", "host-cpu"}
    p = cli("profiles", "--json")
    assert p.exit_code == 0 and any(x["name"] == "raspberry-pi-5" for x in json.loads(p.stdout))


@pytest.fixture()
def bad_inputs(tmp_path, tiny_arch):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx file at all")
    pickled = tmp_path / "whole.pt"
    from edgekd.models.families import create_model

    torch.save(create_model(tiny_arch, 1, 10, (8, 8)), pickled)
    extra = tmp_path / "extra.yaml"
    extra.write_text("distill:\n  epochs: 2\n  warmup_epochs: 3\n")
    one_class = tmp_path / "one" / "cat"
    one_class.mkdir(parents=True)
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(one_class / f"{i}.png")
    mixed = tmp_path / "mixed"
    for c, size in (("a", 8), ("b", 12)):
        (mixed / c).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.zeros((size, size), np.uint8)).save(mixed / c / f"{i}.png")
    scripted = tmp_path / "teacher.ts"  # TorchScript: no fixed input size, so mixed sizes stay mixed
    torch.jit.script(create_model(tiny_arch, 1, 2, (8, 8)).eval()).save(str(scripted))
    return {
        "missing teacher": (["--teacher", tmp_path / "nope.onnx"], "file not found"),
        "corrupt onnx": (["--teacher", corrupt], "not a valid ONNX model"),
        "pickle": (["--teacher", pickled], "--trust-pickle"),
        "unknown target": (["--target", "jetsonn"], "unknown target 'jetsonn'"),
        "unknown yaml field": (["--config", extra], "field 'distill.warmup_epochs': unknown field"),
        "one class": (["--teacher", scripted, "--data", one_class.parent], "one class"),
        "mixed sizes": (["--teacher", scripted, "--data", mixed], "different sizes"),
        "bad --set": (["--set", "distill.epochs"], "expected key=value"),
        "bad --mean": (["--mean", "a,b"], "comma-separated numbers"),
        "bad --student-arch": (["--student-arch", "{resnet"], "--student-arch: '{resnet' is neither an arch"),
        "--student-arch not an arch": (["--student-arch", "[1, 2]"], "is not an arch (a JSON object with 'family')"),
    }


def test_bad_inputs_exit_2_with_one_line_and_keep_earlier_artifacts(host_build, bad_inputs):
    before = _snapshot(host_build)
    for name, (args, expected) in bad_inputs.items():
        result = cli("build", "--out", host_build, "--overwrite", *args)  # past the earlier-run guard
        lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not set(ln.strip()) <= set("╭─╮│╰╯")]
        assert result.exit_code == 2, f"{name}: exit {result.exit_code}\n{result.output}{result.stderr}"
        assert expected in result.stderr, f"{name}: {result.stderr}"
        assert "Traceback" not in result.stderr, name
        if name not in ("bad --mean",):  # click frames its own usage errors in a box
            assert len(lines) == 1, f"{name}: {result.stderr}"
    assert _snapshot(host_build) == before
