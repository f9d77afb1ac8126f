"""Configuration schema: hardware profiles, deployment targets, budgets and the build config.

Every model forbids unknown fields, so a typo in a YAML file is an error that names the file and field,
never a silently ignored setting. YAML is read with yaml.safe_load only, with aliases bounded
(safe_yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgekd.distill.catalog import DEFAULT_METHOD
from edgekd.errors import InputError
from edgekd.hostinfo import detected_fields
from edgekd.runtimes import list_runtimes

Precision = Literal["fp32", "fp16", "int8"]
RuntimeName = Literal[tuple(list_runtimes())]  # the registered backends (edgekd/runtimes)
PositiveFloat = Annotated[float, Field(gt=0)]


class Strict(BaseModel):
    # allow_inf_nan: a NaN or infinite budget, mean or size passes every comparison the wrong way (NaN is never
    # over a limit; an infinite speed-up bar sends the search hunting for a minute), so none is accepted.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Beyond any edge deployment, and small enough that the arrays they size cannot exhaust a host's memory
# (an unbounded --input-size or --batch asked numpy for terabytes).
MAX_SIDE = 8192
MAX_BATCH = 4096
MAX_INPUT_VALUES = 2**30  # one input batch fed to a model: 4 GiB of float32


# ----------------------------------------------------------------------------- profiles
class Sourced(Strict):
    """A hardware number and where it comes from (datasheet, derivation, or measurement)."""

    value: PositiveFloat
    source: Annotated[str, Field(min_length=3)]


class Profile(Strict):
    """What a device *is*: compute per precision, memory, cores, and the runtimes it has."""

    name: str
    description: str
    arch: Literal["x86_64", "aarch64"]
    device: Literal["cpu", "gpu"]
    runtimes: list[RuntimeName]
    # Host architectures on which a local measurement stands in for this device (a generic x86 CPU
    # profile is measured on any x86_64 host; a Raspberry Pi never is). `host` is always measured.
    measurable_on: list[Literal["x86_64", "aarch64"]] = []
    # True for `host`: the numbers below are detected on the machine at run time.
    detect: bool = False
    threads: int | None = Field(default=None, gt=0)
    cores: Sourced | None = None
    ram_mb: Sourced | None = None
    memory_bandwidth_gbs: Sourced | None = None
    peak_gops: dict[Precision, Sourced] | None = None
    # Fixed cost per executed kernel (runtime dispatch, launch), which dominates tiny edge models.
    dispatch_overhead_us: Sourced | None = None

    @model_validator(mode="after")
    def _complete_unless_detected(self) -> Profile:
        if not self.detect:
            needed = ("threads", "cores", "ram_mb", "memory_bandwidth_gbs", "peak_gops", "dispatch_overhead_us")
            missing = [f for f in needed if getattr(self, f) is None]
            if missing:
                raise ValueError(f"missing {', '.join(missing)} (only a profile with detect: true may omit them)")
            if set(self.peak_gops) != {"fp32", "fp16", "int8"}:
                raise ValueError("peak_gops needs fp32, fp16 and int8 entries")
        return self


# ----------------------------------------------------------------------------- targets
class Budgets(Strict):
    latency_ms: PositiveFloat | None = None
    memory_mb: PositiveFloat | None = None
    max_accuracy_drop: Annotated[float, Field(ge=0)] | None = None  # percentage points
    # teacher latency / student latency on the target's runtime, timed interleaved in one process
    min_speedup: Annotated[float, Field(ge=1)] | None = None
    # Text embedding students (docs/report-contract.md): mean cosine of the compiled student's sentence
    # embeddings to the teacher's, and the share of each held-out sentence's 10 nearest neighbours they agree
    # on. None: the defaults in edgekd/text/quality.py.
    min_embedding_cosine: Annotated[float, Field(gt=0, le=1)] | None = None
    min_neighbour_agreement: Annotated[float, Field(gt=0, le=1)] | None = None

    def merged(self, override: Budgets) -> Budgets:
        """These budgets with every field `override` sets replacing ours."""
        return self.model_copy(update=override.model_dump(exclude_none=True))


class Target(Strict):
    """Where a model is deployed: a profile + a runtime + a precision + default budgets."""

    name: str
    description: str
    profile: str
    runtime: RuntimeName
    precision: Precision
    batch_size: int = Field(default=1, gt=0, le=MAX_BATCH)
    budgets: Budgets


# ----------------------------------------------------------------------------- build config
class Preprocess(Strict):
    """Pixels are scaled to 0..1, resized to input_size, then (x - mean) / std per channel."""

    input_size: tuple[Annotated[int, Field(gt=0, le=MAX_SIDE)], Annotated[int, Field(gt=0, le=MAX_SIDE)]] | None = None
    mean: list[float] | None = None
    std: list[Annotated[float, Field(gt=0)]] | None = None

    @model_validator(mode="after")
    def _same_channels(self) -> Preprocess:
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        return self


class TeacherSpec(Strict):
    source: str | None = None  # None: the embedded digits teacher
    weights: Path | None = None
    trust_pickle: bool = False


class SearchConfig(Strict):
    spaces: list[str] = ["mobilenetv2", "mobilenetv3", "resnet"]
    # Also search the teacher's own family, scaled down, when it is a torchvision model of a known family.
    shrink_teacher: bool = True
    # The best-measured ranking of post-KD accuracy on our data (benchmarks/search_quality.py, Kendall tau over
    # 22 students each: flops 0.35 on digits and 0.54 on fonts; params 0.14 and 0.47; nwot 0.31 and 0.44;
    # diswot -0.13 and 0.01).
    score: str = "flops"
    max_candidates: int = Field(default=48, gt=0)  # candidates scored (those that fit; the rest are only priced)
    population: int = Field(default=16, gt=1)  # random candidates before evolution, and the population's size
    top_k: int = Field(default=8, gt=0)  # best candidates timed on the runtime (where it runs), listed in search.json
    # Where the target's runtime can be timed (here, or on the --remote device), the candidates that fit are timed
    # against the teacher in score order, top_k x measure_rounds at most, and the first whose measured speed-up
    # clears the budget is the pick (edgekd/search/measured.py).
    measure_rounds: int = Field(default=3, ge=0)
    # How far above budgets.min_speedup a candidate's prediction, scaled by what the anchors measured, must be for
    # it to fit where candidates are timed. Timing accepts at the budget itself (the check's rule); the margin keeps
    # the best-ranked candidates, which sit at the prediction's bar, away from the bar timing decides on, so a few
    # percent of timing noise does not pick another student in the next run.
    speedup_margin: Annotated[float, Field(ge=0, le=1)] = 0.15
    score_batch_size: int = Field(default=64, gt=1)
    # A student pinned by hand (build --student-arch): the search is skipped and this arch is distilled, so a CI
    # job builds the same network on every run.
    student_arch: dict | None = None


class DistillConfig(Strict):
    # A registered method or names joined by '+' (`dkd+feature`); `edgekd distill --help` lists them.
    method: str = DEFAULT_METHOD
    epochs: int = Field(default=30, gt=0)
    batch_size: int = Field(default=64, gt=0)  # global batch (all processes together)
    lr: PositiveFloat = 0.05
    weight_decay: Annotated[float, Field(ge=0)] = 5e-4
    temperature: PositiveFloat = 4.0
    kd_weight: Annotated[float, Field(ge=0, le=1)] = 0.9  # lambda in (1-l)*CE + l*T^2*KL
    # --- methods (edgekd/distill/losses.py documents each equation)
    method_weights: dict[str, Annotated[float, Field(ge=0)]] = {}  # per '+' term; default: the paper's weight
    dkd_alpha: Annotated[float, Field(ge=0)] = 1.0  # target-class (binary) term
    # non-target-class term; the paper's 8 (CIFAR-100) left a small student level with scratch on shapes, 2 brings
    # it level with kd (3 seeds, docs/benchmarks.md)
    dkd_beta: Annotated[float, Field(ge=0)] = 2.0
    dkd_warmup_fraction: Annotated[float, Field(ge=0, le=1)] = 0.1  # share of training over which DKD ramps in
    normkd_temperature_scale: PositiveFloat = 1.5  # T_norm: per-sample T = T_norm * std(logits)
    decomp_binary_weight: Annotated[float, Field(ge=0)] = 1.0  # binary (strong vs weak mass) term
    decomp_strong_weight: Annotated[float, Field(ge=0)] = 1.0  # within strongly correlated classes
    decomp_weak_weight: Annotated[float, Field(ge=0)] = 1.0  # within weakly correlated classes
    # (teacher layer or ONNX tensor name, student layer name); None: paired by spatial size
    feature_pairs: list[tuple[str, str]] | None = None
    feature_max_pairs: int = Field(default=4, gt=0)  # deepest pairs kept when pairing automatically
    relation_heads: int = Field(default=0, ge=0)  # MiniLM (text): relation heads; 0: student width / 64
    rkd_distance_weight: Annotated[float, Field(ge=0)] = 25.0
    rkd_angle_weight: Annotated[float, Field(ge=0)] = 50.0
    assistant_arch: dict[str, Any] | None = None  # teacher-assistant (`ta+...`); None: picked from the search
    # also train the same student on labels alone with the same budget, to report what distillation bought
    baseline_scratch: bool = False
    # --- training
    optimizer: Literal["sgd", "adamw"] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9  # SGD (nesterov)
    schedule: Literal["cosine", "step"] = "cosine"
    step_milestones_fraction: list[Annotated[float, Field(gt=0, lt=1)]] = [0.5, 0.75]  # step: where lr *= gamma
    step_gamma: Annotated[float, Field(gt=0, le=1)] = 0.1
    grad_clip_norm: PositiveFloat | None = None
    # Teacher and student always see the same augmented batch. shift: random translation (zero padding);
    # shift_flip: and horizontal flips (natural images only: a flipped character is another character).
    augment: Literal["none", "shift", "shift_flip"] = "shift"
    augment_shift_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.125  # max shift, share of the side
    augment_views: int | None = Field(default=None, gt=0)  # fixed views per image (FKD style): inputs repeat
    cache_teacher: bool = False  # teacher logits cached per (image, view); only when inputs repeat exactly
    # Function matching (Beyer et al. 2022): each batch is mixed with itself (mixup blends, cutmix pastes a box),
    # teacher and student see the same mixed images; label terms use both labels weighted by their shares.
    # Off by default: at the default 30 epochs mixed views undertrain small students (docs/benchmarks.md).
    mix: Literal["none", "mixup", "cutmix", "mixup_cutmix"] = "none"
    mix_alpha: PositiveFloat = 1.0  # the mixed share lam ~ Beta(alpha, alpha)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 on cuda, off on cpu
    channels_last: bool = True  # cuda only
    compile: bool = False  # torch.compile the student (and adapters)
    # threads that gather the next batches of a set too large for the GPU (a memory-mapped ImageFolder cache)
    loader_workers: int = Field(default=4, ge=0)
    loader_device_max_mb: int = Field(default=2048, ge=0)  # cuda: a training set under this is kept on the GPU whole
    # --- faults
    max_nonfinite_steps: int = Field(default=10, ge=0)  # NaN/Inf steps skipped before the run stops (exit 1)
    max_oom_retries: int = Field(default=3, ge=0)  # CUDA out-of-memory: halve the batch at most this often
    keep_checkpoints: int = Field(default=2, ge=2)  # newest per-epoch checkpoints kept (a damaged one falls back)


class TextConfig(Strict):
    """Transformer teachers (--teacher hf:DIR): what the model does, how text is cut, which students are
    searched and how they train (edgekd/text; docs/architecture.md "Transformer teachers")."""

    # auto: from config.json's architectures (*ForSequenceClassification -> classification, else embedding)
    task: Literal["auto", "embedding", "classification"] = "auto"
    max_length: int = Field(default=128, ge=8, le=4096)  # tokens; also the sequence length latency is timed at
    # The declarative student space (edgekd/text/space.py): every combination, pruned by the cost model.
    layers: list[Annotated[int, Field(gt=0)]] = [1, 2, 3, 4, 6]
    # None: the teacher's (students that start from its layers); with narrow_students, 3/4 and 1/2 of it
    hidden_sizes: list[Annotated[int, Field(gt=0)]] | None = None
    # Search the narrower students instead (random init: they cannot copy the teacher's layers). The search
    # never mixes the two tiers: a 1-layer student at 288 wide reached cosine 0.36 where the teacher-wide
    # ones keep >= 0.9 (docs/benchmarks.md), so a narrow one is never a silent fallback.
    narrow_students: bool = False
    heads: list[Annotated[int, Field(gt=0)]] | None = None  # None: hidden / 64 (at least 1) per hidden size
    intermediate_ratios: list[PositiveFloat] = [4.0, 2.0]  # intermediate size = ratio * hidden size
    # Defaults of the encoder KD literature (MiniLM, TinyBERT): AdamW at 1e-4 .. 5e-4 with a linear decay.
    # Teacher layers a same-width student copies: ends (the first and the last L-1: 0, 4, 5 of 6), which starts
    # all-MiniLM-L6-v2's 3-layer student at cosine 0.72 instead of 0.36 for every_other (DistilBERT: 0, 2, 4 of 6)
    # on stdlib docstrings (docs/benchmarks.md).
    layer_selection: Literal["every_other", "ends"] = "ends"
    lr: PositiveFloat = 3e-4
    warmup_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.06
    # distill.epochs is the most; training stops when the loss on a held-out share of the training texts has not
    # improved for `patience` epochs, and the best epoch's student is kept (edgekd/text/distill.py)
    patience_epochs: int = Field(default=3, gt=0)
    stop_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.1


class BuildConfig(Strict):
    target: str = "host-cpu"
    teacher: TeacherSpec = TeacherSpec()
    data: str = "digits"
    preprocess: Preprocess = Preprocess()
    text: TextConfig = TextConfig()
    budgets: Budgets = Budgets()  # overrides of the target's defaults
    search: SearchConfig = SearchConfig()
    distill: DistillConfig = DistillConfig()
    out: Path | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # ssh://user@host[:port]: compile (TensorRT engines) and measure on that device (edgekd.remote)
    remote: str | None = None
    # student: ship the distilled student; best: ship the teacher compressed without distillation instead when
    # it is within every budget and the better deal (edgekd/pipeline.py says when)
    ship: Literal["student", "best"] = "student"


# ----------------------------------------------------------------------------- loading
def format_validation_error(where: str, err: ValidationError) -> str:
    """One line: the file (or option), the dotted field, and what is wrong with it."""
    first = err.errors()[0]
    # a key may hold any text (newlines too): escaped, so the message stays one line
    field = ".".join(str(p).encode("unicode_escape").decode() for p in first["loc"]) or "(top level)"
    msg = " ".join(first["msg"].split())
    if first["type"] == "extra_forbidden":
        msg = "unknown field; remove it or check its spelling"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: field '{field}': {msg}{more}"


MAX_YAML_NODES = 100_000  # a build config has a few hundred; an alias bomb expands to billions


class YamlTooLarge(yaml.YAMLError):
    """A document whose aliases expand past MAX_YAML_NODES, or refer to themselves."""


class _BoundedLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a document whose aliases expand to more than MAX_YAML_NODES nodes.

    Aliases make a 1 KB document a shared graph that anything walking it (validation of a free-form dict,
    model_dump, json) expands in full: the "billion laughs" grew a build to 6 GB. The composed graph is sized
    here, each shared node counted once per use, before any Python object is constructed."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, {}, set())
        return node


def _expanded_size(node, sizes: dict, open_: set) -> int:
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise YamlTooLarge("an alias refers to the node that contains it (a recursive document)")
    open_.add(id(node))
    size = 1
    if isinstance(node.value, list):
        for item in node.value:
            for child in item if isinstance(item, tuple) else (item,):  # mappings hold (key, value) pairs
                size += _expanded_size(child, sizes, open_)
                if size > MAX_YAML_NODES:
                    raise YamlTooLarge(f"its aliases expand to more than {MAX_YAML_NODES:,} values "
                                         "(an alias bomb?); write the values out")
    open_.discard(id(node))
    sizes[id(node)] = size
    return size


def safe_yaml(text: str):
    """yaml.safe_load with aliases bounded (_BoundedLoader)."""
    return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506  (a SafeLoader subclass)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = safe_yaml(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; give a .yaml file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file (YAML must be UTF-8 text)") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply to read; simplify the YAML") from None
    except YamlTooLarge as e:
        raise InputError(f"{path}: refused: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line, as exit 2 promises
        raise InputError(f"{path}:{where} is not valid YAML ({problem}); fix the syntax") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def validate(model: type[Strict], data: dict[str, Any], where: str):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise InputError(format_validation_error(where, e)) from None


def data_dir(kind: Literal["profiles", "targets"]) -> Path:
    """profiles/ and targets/: inside the installed wheel, or at the top of a source checkout."""
    packaged = Path(__file__).parent / "_data" / kind
    return packaged if packaged.is_dir() else Path(__file__).parents[1] / kind


def _load_named(kind: Literal["profiles", "targets"], model: type[Strict], name_or_path: str):
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = data_dir(kind) / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(list_names(kind))
            option = "--target" if kind == "targets" else "profile"
            raise InputError(f"unknown {kind[:-1]} '{name_or_path}' ({option}); known: {known}, "
                             f"or a path to a .yaml file")
    obj = validate(model, read_yaml(path), str(path))
    if path.parent == data_dir(kind) and obj.name != path.stem:
        raise InputError(f"{path}: field 'name' is '{obj.name}' but the file is {path.name}; make them agree")
    return obj


def list_names(kind: Literal["profiles", "targets"]) -> list[str]:
    return sorted(p.stem for p in data_dir(kind).glob("*.yaml"))


def load_target(name_or_path: str) -> Target:
    return _load_named("targets", Target, name_or_path)


def load_profile(name_or_path: str) -> Profile:
    """A profile; `detect: true` profiles (host) are completed from this machine."""
    profile = _load_named("profiles", Profile, name_or_path)
    if profile.detect:
        found = detected_fields(profile.arch, profile.description, profile.threads)
        keep = {k: v for k, v in found.items() if k in ("arch", "description") or getattr(profile, k) is None}
        profile = Profile.model_validate(profile.model_dump() | keep)
    return profile


def apply_overrides(data: dict[str, Any], pairs: list[str]) -> dict[str, Any]:
    """--set a.b=value pairs; values are parsed as YAML scalars (numbers, booleans, lists)."""
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set '{pair}': expected key=value, e.g. --set distill.epochs=5")
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise InputError(f"--set '{pair}': '{part}' is not a section")
        try:
            node[leaf] = safe_yaml(raw)
        except (yaml.YAMLError, RecursionError):
            raise InputError(f"--set '{pair}': value is not a valid YAML scalar") from None
    return data


def load_build_config(path: Path | None, overrides: dict[str, Any], pairs: list[str],
                      base: dict[str, Any] | None = None, base_name: str = "") -> BuildConfig:
    """Config file (or `base`, a config an earlier run saved) < explicit CLI options < --set pairs,
    validated once at the end."""
    data = read_yaml(path) if path else dict(base or {})
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    apply_overrides(data, pairs)
    where = str(path) if path else base_name or "options"
    if pairs:
        where += " (with --set " + " ".join(pairs) + ")"
    return validate(BuildConfig, data, where)
