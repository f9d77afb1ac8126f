from pathlib import Path

import pytest

from edgekd.config import (
    BuildConfig,
    Target,
    apply_overrides,
    list_names,
    load_build_config,
    load_profile,
    load_target,
    read_yaml,
    validate,
)
from edgekd.errors import InputError


@pytest.mark.parametrize("name", list_names("profiles"))
def test_every_profile_validates_and_is_complete(name):
    p = load_profile(name)
    assert p.name == name
    assert p.cores.value > 0 and p.ram_mb.value > 0 and p.memory_bandwidth_gbs.value > 0
    assert set(p.peak_gops) == {"fp32", "fp16", "int8"}
    assert all(len(v.source) > 10 for v in p.peak_gops.values())  # every number carries its source


@pytest.mark.parametrize("name", list_names("targets"))
def test_every_target_validates_and_resolves_its_profile(name):
    t = load_target(name)
    assert t.runtime in load_profile(t.profile).runtimes
    assert t.budgets.latency_ms and t.budgets.memory_mb and t.budgets.max_accuracy_drop is not None


def test_the_required_targets_exist():
    assert {"jetson", "openvino", "mobile-cpu", "host-cpu"} <= set(list_names("targets"))
    assert {"jetson-orin-nano", "jetson-agx-orin", "raspberry-pi-5", "intel-x86-cpu", "android-arm64",
            "host"} <= set(list_names("profiles"))


def test_unknown_field_names_file_and_field(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text((Path(__file__).parents[2] / "targets" / "host-cpu.yaml").read_text()
                    .replace("latency_ms:", "latency_msx:"))
    with pytest.raises(InputError, match=r"t\.yaml: field 'budgets\.latency_msx': unknown field"):
        load_target(str(path))


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nprofile: [host\n")
    with pytest.raises(InputError, match=r"broken\.yaml: line \d+ is not valid YAML"):
        read_yaml(path)


def test_unknown_target_lists_known_ones():
    with pytest.raises(InputError, match="unknown target 'jetsn'.*host-cpu"):
        load_target("jetsn")


def test_set_overrides_are_typed_and_validated():
    cfg = load_build_config(None, {}, ["distill.epochs=3", "budgets.latency_ms=1.5"])
    assert cfg.distill.epochs == 3 and cfg.budgets.latency_ms == 1.5
    with pytest.raises(InputError, match=r"field 'distill\.epochs'"):
        load_build_config(None, {}, ["distill.epochs=-1"])
    with pytest.raises(InputError, match="expected key=value"):
        apply_overrides({}, ["distill.epochs"])


def test_budget_override_merges_over_target_defaults():
    t = load_target("host-cpu")
    merged = t.budgets.merged(BuildConfig(budgets={"latency_ms": 1.0}).budgets)
    assert merged.latency_ms == 1.0 and merged.memory_mb == t.budgets.memory_mb


def test_target_model_forbids_extra_fields():
    data = load_target("host-cpu").model_dump() | {"colour": 1}
    with pytest.raises(InputError, match="x.yaml: field 'colour': unknown field"):
        validate(Target, data, "x.yaml")


def test_host_profile_is_detected_with_sources():
    p = load_profile("host")
    assert p.threads >= 1 and p.peak_gops["fp32"].source.startswith("measured")
