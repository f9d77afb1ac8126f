"""The import layers docs/architecture.md promises: what runs on a device, and the CLI's start, import no torch;
no import circle; the upper floors (the CLI, the stages, the run Context) imported only from above."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "edgekd"


@pytest.mark.parametrize("modules", [
    # the remote runner and the memory probe run where only a runtime is installed; the probe's baseline
    # would also carry torch's libraries
    "edgekd.runtimes, edgekd.runtimes.memprobe, edgekd.remote, edgekd.compile, edgekd.measure",
    "edgekd.cli",  # `edgekd --help` answers without paying torch's import
])
def test_device_side_and_cli_import_no_torch(modules):
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"{modules} imported torch"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The edgekd modules `path` imports at run time (what `if TYPE_CHECKING:` imports is for annotations only)."""
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if _is_type_checking(node):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgekd"):
                found.update(f"{node.module}.{a.name}" for a in node.names)
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("edgekd"))
            if not top_level_only or isinstance(node, ast.If | ast.Try):
                visit(ast.iter_child_nodes(node))

    visit(ast.parse(path.read_text()).body)
    return found


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    """Module -> the modules it imports, with the packages a dotted import runs on the way (`a.b.c` runs `a.b`)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for target in _imports(path, top_level_only):
            parts = target.split(".")
            for i in range(2, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix in mods and prefix != name and not name.startswith(prefix + "."):
                    edges.add(prefix)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return found


def test_no_import_circle():
    assert _cycles(_graph(top_level_only=True)) == []


def test_the_upper_floors_are_imported_only_from_above():
    graph = _graph(top_level_only=False)
    above = {  # a module -> who may import it
        "edgekd.cli": {"edgekd.__main__"},
        "edgekd.stages": {"edgekd.pipeline", "edgekd.cli"},
        "edgekd.pipeline": {"edgekd.cli"},
        # the run Context is the stages' glue: the entry points make it (a DDP worker is a process of its own)
        "edgekd.context": {"edgekd.cli", "edgekd.pipeline", "edgekd.distill.worker"},
        # the track is chosen once, where the Context is made; the stages reach it as ctx.track
        "edgekd.tracks": {"edgekd.context"},
    }
    for upper, allowed in above.items():
        importers = {m for m, edges in graph.items() if upper in edges and not m.startswith(upper + ".")}
        assert importers <= allowed, f"{sorted(importers - allowed)} import {upper}"


def test_the_stages_never_ask_which_modality_they_run():
    """What a modality changes is the Track's (edgekd/tracks); a branch on the teacher's kind in a stage, the
    pipeline or the Context is a second copy of that choice."""
    import re

    found = []
    for path in [*(PACKAGE / "stages").glob("*.py"), PACKAGE / "pipeline.py", PACKAGE / "context.py"]:
        found += [f"{path.name}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
                  if re.search(r"is_text|\.task\s*[!=]=|\.kind\s*[!=]=|HF_PREFIX|\"hf:", line)]
    assert found == []


@pytest.mark.parametrize("name", ["image", "text"])
def test_every_track_provides_the_whole_protocol(name):
    from edgekd.tracks import Track, create_track, list_tracks

    assert sorted(list_tracks()) == ["image", "text"]
    wanted = {m for m in vars(Track) if not m.startswith("_")} | set(Track.__annotations__)
    track = create_track(name)
    assert sorted(m for m in wanted if not hasattr(track, m)) == []


def test_a_teacher_source_chooses_its_track():
    from edgekd.tracks import track_for_source

    assert track_for_source("hf:models/minilm").name == "text"
    for source in ("torchvision:resnet18", "teacher.onnx", None, "embedded"):
        assert track_for_source(source).name == "image"


@pytest.mark.parametrize("script", sorted((PACKAGE.parent / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_every_name_a_benchmark_imports_from_edgekd_exists(script):
    """Benchmarks run rarely and outside the tests: a refactor that renames what one imports must fail here,
    not in the session that next runs the benchmark."""
    import importlib.util

    missing = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgekd"):
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name} (line {node.lineno})" for a in node.names
                        if not hasattr(module, a.name) and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
    assert missing == []
