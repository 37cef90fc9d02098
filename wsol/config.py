"""Typed configs: one dataclass schema per config group, registered in Hydra's ConfigStore.

Composition itself rejects an unknown key or a value of the wrong type; :func:`check_overrides` turns
Hydra's message into one line naming the valid keys or the expected type, and :func:`validate`
checks the values the types cannot (ranges, option pairs) before any work starts. Defaults live once:
here, or in the signatures of the dataset builders and CAM methods, whose schemas are derived from
them (config groups mirror the code's registries: ``method=<name>`` is every registered method,
``dataset=<name>`` every dataset format). The ``model``, ``localize`` and ``protocol`` groups are YAML
presets (``conf/``) of the schemas below.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .errors import WsolError
from .registry import close_matches

__all__ = [
    "CONF_DIR",
    "WsolConfig",
    "ModelConfig",
    "LocalizeConfig",
    "EvalConfig",
    "SpeedConfig",
    "ShardConfig",
    "PerturbationConfig",
    "FiguresConfig",
    "TableConfig",
    "check_overrides",
    "compose_config",
    "group_choices",
    "protocol_label",
    "register_configs",
    "classifier_config",
    "resolve_threshold",
    "threshold_from_run",
    "to_dict",
    "validate",
]

CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
GROUPS = ("dataset", "model", "method", "localize", "protocol")


class Mode(enum.StrEnum):
    sweep = "sweep"  # every threshold of np.arange(0, 1, interval): MaxBoxAcc / V2 choose one dataset-wide
    fixed = "fixed"  # one threshold


class Resize(enum.StrEnum):
    bicubic = "bicubic"
    bilinear = "bilinear"
    nearest = "nearest"


class Normalize(enum.StrEnum):
    after_resize = "after_resize"  # wsolevaluation's inference.py: resize, then min-max
    before_resize = "before_resize"  # pytorch-grad-cam's: min-max (+1e-7), resize, min-max (+1e-7) again


class Rule(enum.StrEnum):
    cc = "cc"  # 8-connected components
    contours = "contours"  # the reference's cv2.findContours(RETR_TREE), holes too


class Engine(enum.StrEnum):
    fast = "fast"  # one union-find pass per map for every threshold
    reference = "reference"  # scikit-image / OpenCV level by level (identical results)


class CiStyle(enum.StrEnum):
    pm = "pm"  # 58.10 ± 1.30: the value and the interval's half-width
    interval = "interval"  # 58.10 [56.80, 59.40]: the value and the percentile interval
    none = "none"


class Target(enum.StrEnum):
    gt = "gt"  # maps of the GT class (GT-known)
    top1 = "top1"  # maps of the top-1 prediction


class Fusion(enum.StrEnum):
    mean = "mean"
    max = "max"
    layercam = "layercam"


class Precision(enum.StrEnum):
    fp32 = "fp32"
    bf16 = "bf16"


class Architecture(enum.StrEnum):  # wsolevaluation's architecture types (HaS and CutMix train cam)
    cam = "cam"
    adl = "adl"
    acol = "acol"
    spg = "spg"


class Source(enum.StrEnum):  # where a model comes from
    builtin = "builtin"  # torchvision's classifiers, efficientnet_lite0, wsoleval_* (by model.name)
    timm = "timm"  # model=timm model.name=<any timm model>
    custom = "custom"  # model=custom model.target=<your builder>


class LayoutKind(enum.StrEnum):  # how a layer's output holds its map (wsol/cams/layout.py)
    auto = "auto"  # read off the output's shape and the model
    nchw = "nchw"
    nhwc = "nhwc"  # channels-last stages (Swin)
    tokens = "tokens"  # a transformer's [B, N, C] tokens


@dataclass
class TokensConfig:
    prefix: int | None = None  # tokens before the patch grid (class, distillation, registers); null: the model's
    grid: list[int] | None = None  # [h, w] of the patch tokens; null: from their count and the input's aspect


@dataclass
class ModelConfig:
    name: str = MISSING  # a torchvision classifier, efficientnet_lite0, wsoleval_* or (model=timm) a timm model
    source: Source = Source.builtin  # set by the model=timm and model=custom presets
    weights: str | None = "DEFAULT"  # torchvision weights enum name; null: random init
    checkpoint: str | None = None  # a local state_dict (fine-tuned, or saved by wsolevaluation's training)
    num_classes: int | None = None  # the classifier's width; wsoleval_*: read from the checkpoint when null
    layer: Any = None  # a dotted module name, or a list of them (fused); null: found by structure
    fusion: Fusion = Fusion.mean  # several layers: mean | max of min-max maps, layercam: max of tanh(2M/max M)
    mean: list[float] | None = None  # input normalisation; null: the weights' own (ImageNet's)
    std: list[float] | None = None
    layout: LayoutKind = LayoutKind.auto  # how the target layer's output holds its map
    tokens: TokensConfig = field(default_factory=TokensConfig)  # layout tokens: prefix count and grid
    # wsoleval_* models only (the reference's options that shape the network at evaluation):
    architecture: Architecture = Architecture.cam  # --wsol_method's architecture type
    large_feature_map: bool = False  # --large_feature_map: 28×28 maps instead of 14×14
    acol_drop_threshold: float = 0.7  # --acol_threshold: acol erases where the first head's attention ≥ it
    # model=timm and model=custom:
    pretrained: bool = True  # timm: its pretrained weights (from its hub)
    target: str | None = None  # custom: pkg.module.builder or path/to/file.py:builder (Hydra's _target_)
    kwargs: Any = None  # a dict: custom: the builder's arguments; timm: create_model's (model.kwargs='{k: v}')
    output: str | None = None  # the logits' key, index or attribute when the forward returns a dict/tuple/object


@dataclass
class LocalizeConfig:
    mode: Mode = MISSING
    interval: float | None = MISSING  # sweep: np.arange(0, 1, interval); also the PxAP bin width
    threshold: Any = MISSING  # fixed: the one threshold, a fraction of the map's max, or from:VAL_RUN_DIR (the
    # threshold that run chose: its loc_threshold, read from its metrics.json)
    backend: Rule = MISSING
    resize: Resize = Resize.bicubic  # map upsampling to the eval size
    normalize: Normalize = Normalize.after_resize
    engine: Engine = Engine.fast
    clip_boxes: bool = True  # clip a box's far corner (x + w, y + h) to (W - 1, H - 1): wsolevaluation; TS-CAM: false
    empty_box: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # the box of an empty foreground; TS-CAM's
    # get_bboxes gives [0, 0, 1, 1]


@dataclass
class EvalConfig:
    target: Target = Target.gt
    iou_thresholds: list[int] = field(default_factory=lambda: [30, 50, 70])
    records: bool = True  # per-image IoU and box in per_image.csv
    pointing_tolerance: float = 15.0  # pixels at the eval size (TorchRay's default)
    strict_class_loc: bool = False  # top-1 / top-5 loc count IoU > δ, not ≥ δ (TS-CAM's cls_loc_err)
    clip_gt_boxes: bool = False  # clip GT corners to S - 1 at the eval size S (TS-CAM's loaders)
    classifier: Any = None  # top-1 / top-5 classes from another model: a model= preset (densenet161) or its keys
    # ({source: timm, name: tf_efficientnet_b7}, {name: resnet50, checkpoint: PATH, num_classes: 200})
    predictions: str | None = None  # or from a file: image id → top-5 classes (CSV id,c1,…,c5 or JSON {id: [c1, …]})
    faithfulness: list[str] = field(default_factory=list)  # opt-in: average_drop, increase_in_confidence, deletion,
    # insertion, road (perturbation.* says how)
    bootstrap: int = 1000  # resamples of the images for 95 % intervals (0: none); seconds even at ImageNet size
    bootstrap_seed: int = 0  # the resamples' seed: runs on the same images draw the same resamples (paired)


class Score(enum.StrEnum):
    softmax = "softmax"  # the class probability (the papers)
    logit = "logit"  # the raw logit (pytorch-grad-cam's and torchcam's default target)


class Baseline(enum.StrEnum):
    zero = "zero"  # zeros of the normalised input (torchcam's default)
    black = "black"  # pixels 0
    blur = "blur"  # the image blurred, 11×11 Gaussian, σ = 5 (RISE's insertion start)


class Multiply(enum.StrEnum):
    normalized = "normalized"  # map × the normalised input tensor (pytorch-grad-cam, torchcam)
    pixels = "pixels"  # map × the [0, 1] pixels, then normalised (Grad-CAM++'s L ∘ I)


@dataclass
class PerturbationConfig:
    """How eval.faithfulness perturbs images (wsol/faithfulness.py, docs/faithfulness.md)."""

    score: Score = Score.softmax
    steps: int = 20  # deletion / insertion: points ceil(P / steps) pixels apart (torchcam's rule)
    baseline: Baseline = Baseline.zero
    multiply: Multiply = Multiply.normalized  # average drop / increase in confidence: how the map masks
    relative: bool = True  # average drop divided by the original score (the paper, torchcam); false: pytorch-grad-cam
    chunk: int = 64  # perturbed images per forward (the memory budget)
    road_percentiles: list[int] = field(default_factory=lambda: [10, 20, 30, 40, 50, 60, 70, 80, 90])
    road_noise: float = 0.01  # ROAD: the imputed pixels' noise (standard deviation, in normalised input units)


@dataclass
class SpeedConfig:
    precision: Precision = Precision.fp32  # bf16: autocast the forward and backward; maps stay float32
    channels_last: Any = "auto"  # model and inputs channels-last; auto: on a CPU device (oneDNN is faster so)
    fold_batchnorm: bool = True  # eval batch norms folded into the convolutions feeding them (wsol/models/fold.py)
    keep_freed_memory: Any = "auto"  # glibc keeps freed blocks for the next batch (wsol/allocator.py); auto: on a CPU
    compile: Any = False  # true, or a torch.compile mode (reduce-overhead, max-autotune): all but the target layer
    overlap: bool = True  # localize and accumulate batch i on a CPU thread while batch i+1 is scored
    box_threads: int | None = None  # threads of the box engine (numba); null: half the cores when the loop
    # overlaps on a CPU device (scoring keeps torch's threads), else every core


@dataclass
class ShardConfig:
    index: int = 0  # evaluate contiguous shard index of count, then python -m wsol.merge
    count: int = 1


@dataclass
class FiguresConfig:
    num_images: int = 8  # sample shown per run: evenly spaced over the evaluated images
    extremes: int = 4  # best and worst localized images shown
    colormap: str = "jet"  # any Matplotlib colormap
    alpha: float = 0.5  # map opacity over the image


@dataclass
class TableConfig:
    protocol: str | None = None  # set by the protocol preset
    requires: dict[str, Any] = field(default_factory=dict)  # the settings that define the preset
    columns: list[str] | None = None  # metrics.json keys to show; null = all
    ci: CiStyle = CiStyle.pm  # the bootstrap interval in tables: pm (value ± half-width), interval ([lo, hi]), none


@dataclass
class WsolConfig:
    dataset: Any = MISSING  # a dataset format's schema (derived from its builder)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = MISSING  # a CAM method's schema (derived from its options)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = 32
    num_workers: Any = "auto"  # DataLoader workers: auto = the cores this process may use, less one
    limit: int | None = None  # evaluate only the first N images of the split
    seed: int = 0  # seed of the stochastic methods; sweeps over seeds aggregate as mean ± std
    cache_dir: str | None = "${oc.env:WSOL_CACHE,'~/.cache/wsol'}"  # score maps per batch; null: off
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    shard: ShardConfig = field(default_factory=ShardConfig)
    image_cache: bool = False  # keep decoded eval-size images under cache_dir/images for sweeps
    save_maps: bool = False  # write each normalised map to maps_dir/<image_id>.npy (wsolevaluation's layout)
    maps_dir: str | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)
    report: bool = False  # figures/ and report.html in the run folder (and the sweep folder)
    figures: FiguresConfig = field(default_factory=FiguresConfig)
    progress: Any = "auto"  # auto: a bar on a terminal, a line every 30 s otherwise; false: none
    table: TableConfig = field(default_factory=TableConfig)


def schema_from_signature(name: str, functions: list, exclude: tuple[str, ...] = ()) -> Any:
    """A dataclass with ``name`` and the keyword-only parameters of ``functions`` (types and defaults from
    their signatures; no default → required)."""
    fields: dict[str, tuple] = {}
    for function in functions:
        hints = typing.get_type_hints(function)
        for p in inspect.signature(function).parameters.values():
            if p.kind is not p.KEYWORD_ONLY or p.name in exclude or p.name in fields:
                continue
            default = MISSING if p.default is p.empty else p.default
            fields[p.name] = (p.name, hints.get(p.name, Any), field(default=default))
    spec = [("name", str, field(default=name)), *fields.values()]
    return dataclasses.make_dataclass(f"{name.title().replace('_', '')}Config", spec)


def register_configs() -> None:
    """Register the top-level schema, and one schema per dataset format and CAM method, in the ConfigStore."""
    from .cams import METHODS
    from .data import DATASETS

    store = ConfigStore.instance()
    store.store(name="wsol_schema", node=WsolConfig)
    for name in DATASETS.names():
        node = schema_from_signature(name, [DATASETS.get(name)], exclude=("num_classes",))
        store.store(group="dataset", name=name, node=node)
    for name in METHODS.names():
        classes = [c.__init__ for c in METHODS.get(name).__mro__ if "__init__" in vars(c) and c is not object]
        store.store(group="method", name=name, node=schema_from_signature(name, classes, ("fusion", "seed", "layout")))
    from_files = dataclasses.make_dataclass(
        "FromFilesConfig", [("name", str, field(default="from_files")), ("maps_dir", str, field(default=MISSING))]
    )
    store.store(group="method", name="from_files", node=from_files)


register_configs()


def group_choices(group: str) -> list[str]:
    """The choices of a config group: its ConfigStore entries and its YAML files."""
    stored = ConfigStore.instance().repo.get(group, {})
    files = os.listdir(os.path.join(CONF_DIR, group)) if os.path.isdir(os.path.join(CONF_DIR, group)) else []
    return sorted({name.removesuffix(".yaml") for name in [*stored, *files] if name.endswith(".yaml")})


def _describe(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(m.value for m in annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return f"{_describe(inner[0])} or null"
    if origin is list:
        plural = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}
        return f"a list of {plural.get(typing.get_args(annotation)[0], 'values')}"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(annotation, str(annotation))


def _keys_of(cfg: DictConfig, path: list[str]) -> list[str]:
    node = cfg
    for key in path:
        node = node[key] if isinstance(node, DictConfig) and key in node else None
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _one_line(error: Exception, override: str, defaults: DictConfig) -> str:
    """Hydra's composition error as one line: the unknown key with the valid ones, or the expected type."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    unknown = (ConfigKeyError, ConfigAttributeError)
    cause = error
    while cause.__cause__ is not None and not isinstance(cause, (*unknown, ValidationError)):
        cause = cause.__cause__
    key = override.lstrip("+~").split("=", 1)[0]
    path = key.split(".")
    if isinstance(cause, unknown):
        valid = _keys_of(defaults, path[:-1])
        hint = close_matches(path[-1], valid)
        where = f"{'.'.join(path[:-1])}." if len(path) > 1 else ""
        suggestion = f"; did you mean: {', '.join(where + h for h in hint)}" if hint else ""
        scope = f"of {'.'.join(path[:-1])}" if len(path) > 1 else "at the top level"
        return f"unknown config key {key!r}{suggestion} (the keys {scope}: {', '.join(valid)})"
    if isinstance(cause, ValidationError):
        value = override.split("=", 1)[1] if "=" in override else ""
        parent = OmegaConf.select(defaults, ".".join(path[:-1])) if len(path) > 1 else defaults
        node = parent._get_node(path[-1]) if isinstance(parent, DictConfig) and path[-1] in parent else None
        expected = _describe(node._metadata.ref_type) if node is not None else str(cause).splitlines()[0]
        return f"{key}={value}: expected {expected}"
    return str(error).splitlines()[0]


def compose_config(overrides: list[str] = (), conf_dir: str = CONF_DIR) -> DictConfig:
    """The composed (untyped-view) config of ``overrides``, as ``python -m wsol.run`` composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _sweep_variants(overrides: list[str]) -> list[list[str]]:
    """One override list per value of each swept key (the others at their first value): composing each checks
    every value a multirun will use."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("hydra")])
    first = [f"{p.get_key_element()}={next(iter(p.sweep_string_iterator()))}" if p.is_sweep_override() else p.input_line
             for p in parsed]
    variants = [first]
    for i, p in enumerate(parsed):
        if p.is_sweep_override():
            for value in list(p.sweep_string_iterator())[1:]:
                variants.append(first[:i] + [f"{p.get_key_element()}={value}"] + first[i + 1 :])
    return variants


def check_overrides(overrides: list[str], conf_dir: str = CONF_DIR) -> None:
    """Compose every configuration a command line asks for (each value of a sweep) and validate it; a
    problem is one :class:`WsolError` line, before any work starts."""
    from hydra.errors import HydraException, OverrideParseException

    for arg in overrides:  # an unknown group choice names the closest ones
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key in GROUPS and value not in ("", "null"):
            choices = group_choices(key)
            for name in value.split(","):
                if name not in choices:
                    hint = close_matches(name, choices) or choices[:8]
                    raise WsolError(f"unknown {key} {name!r}; did you mean: {', '.join(hint)}")
    try:
        variants = _sweep_variants([o for o in overrides if o not in ("-m", "--multirun")])
    except OverrideParseException as e:
        raise WsolError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    for variant in variants:
        try:
            cfg = compose_config(variant, conf_dir)
        except (HydraException, ValueError) as error:
            for i in range(1, len(variant) + 1):  # the first override that fails, against the config before it
                try:
                    compose_config(variant[:i], conf_dir)
                except (HydraException, ValueError) as e:
                    raise WsolError(_one_line(e, variant[i - 1], compose_config(variant[: i - 1], conf_dir))) from None
            raise WsolError(str(error).splitlines()[0]) from None
        validate(cfg)


THRESHOLD_FROM = "from:"


def classifier_config(value) -> DictConfig:
    """``eval.classifier`` as a typed model config: a ``model=`` preset's name, or a mapping of model keys."""
    if isinstance(value, str):
        path = os.path.join(CONF_DIR, "model", f"{value}.yaml")
        if not os.path.isfile(path):
            hint = close_matches(value, group_choices("model"))
            raise WsolError(f"eval.classifier={value}: no model preset of that name"
                            + (f"; did you mean: {', '.join(hint)}" if hint else ""))
        value = OmegaConf.load(path)
    elif isinstance(value, DictConfig | dict):
        value = OmegaConf.create(OmegaConf.to_container(value) if isinstance(value, DictConfig) else value)
    else:
        raise WsolError(f"eval.classifier must be a model preset name or a mapping of model keys, got {value!r}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), value)
    except Exception as e:  # omegaconf's validation errors: the first line names the key
        raise WsolError(f"eval.classifier: {str(e).splitlines()[0]}") from None
    if OmegaConf.is_missing(merged, "name"):
        raise WsolError("eval.classifier needs a name (a model preset, or {name: ..., ...})")
    return merged


def threshold_from_run(run_dir: str) -> tuple[float, dict]:
    """``(loc_threshold, dataset config)`` of a finished run: the threshold that maximised its GT-known loc
    (δ = 50, largest region), or its fixed one."""
    path = os.path.join(os.path.expanduser(run_dir), "metrics.json")
    if not os.path.isfile(path):
        raise WsolError(f"localize.threshold=from:{run_dir}: no finished run there (no metrics.json)")
    with open(path) as f:
        summary = json.load(f)
    threshold = summary.get("metrics", {}).get("loc_threshold")
    if threshold is None:
        raise WsolError(f"localize.threshold=from:{run_dir}: its metrics.json has no loc_threshold (no box metrics)")
    config_path = os.path.join(os.path.expanduser(run_dir), "config.yaml")
    saved = OmegaConf.to_container(OmegaConf.load(config_path)) if os.path.isfile(config_path) else {}
    return float(threshold), saved.get("dataset", {})


def resolve_threshold(cfg: DictConfig) -> DictConfig:
    """``cfg`` with ``localize.threshold=from:DIR`` replaced by that run's threshold (a copy; others unchanged).
    Refuses a run on the same dataset split as ``cfg``: its threshold was chosen on the images reported."""
    value = cfg.localize.threshold
    if cfg.localize.mode != Mode.fixed or not (isinstance(value, str) and value.startswith(THRESHOLD_FROM)):
        return cfg
    source = value[len(THRESHOLD_FROM):]
    threshold, dataset = threshold_from_run(source)
    if dataset == to_dict(cfg)["dataset"]:
        raise WsolError(f"localize.threshold=from:{source}: that run evaluated this same dataset and split, so its "
                        "threshold was chosen on the images this run reports; take it from a val run")
    resolved = cfg.copy()
    resolved.localize.threshold = threshold
    return resolved


def to_dict(cfg) -> dict:
    """A config (typed or not) as plain containers, enums as their values."""
    container = OmegaConf.to_container(cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg),
                                       resolve=True, enum_to_str=True)
    return container


def validate(cfg: DictConfig) -> None:
    """The checks types cannot express; one :class:`WsolError` line each."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    missing = [k for k in missing if not k.startswith("localize.") or k.split(".")[1] in ("mode", "backend")]
    if missing:
        raise WsolError(f"{missing[0]} is not set (pass {missing[0]}=...)")
    if cfg.batch_size < 1:
        raise WsolError(f"batch_size must be at least 1, got {cfg.batch_size}")
    if cfg.limit is not None and cfg.limit < 1:
        raise WsolError(f"limit must be at least 1 or null, got {cfg.limit}")
    loc = cfg.localize
    if loc.mode == Mode.sweep and not (loc.interval is not None and 0 < loc.interval < 1):
        raise WsolError(f"localize.interval must be in (0, 1) for a sweep, got {loc.interval}")
    if loc.mode == Mode.fixed:
        if isinstance(loc.threshold, str) and loc.threshold.startswith(THRESHOLD_FROM):
            threshold_from_run(loc.threshold[len(THRESHOLD_FROM):])
        elif isinstance(loc.threshold, bool) or not (isinstance(loc.threshold, int | float) and 0 <= loc.threshold < 1):
            raise WsolError(f"localize.threshold must be in [0, 1) or from:VAL_RUN_DIR in fixed mode, got "
                            f"{loc.threshold!r}")
    deltas = list(cfg.eval.iou_thresholds)
    if 50 not in deltas or any(not 0 < d < 100 for d in deltas):
        raise WsolError(f"eval.iou_thresholds must be percentages in (0, 100) and include 50, got {deltas}")
    if cfg.eval.classifier is not None or cfg.eval.predictions is not None:
        if cfg.eval.classifier is not None and cfg.eval.predictions is not None:
            raise WsolError("set eval.classifier or eval.predictions, not both")
        if cfg.eval.target != Target.gt:
            raise WsolError("eval.classifier / eval.predictions give the classes of top-1 / top-5 loc; the maps must "
                            "be of the GT class (eval.target=gt)")
        if cfg.eval.classifier is not None:
            classifier_config(cfg.eval.classifier)
        elif not os.path.isfile(os.path.expanduser(cfg.eval.predictions)):
            raise WsolError(f"eval.predictions: no such file {cfg.eval.predictions}")
    if cfg.eval.faithfulness:
        from .faithfulness import METRICS

        unknown = [m for m in cfg.eval.faithfulness if m not in METRICS]
        if unknown:
            raise WsolError(f"eval.faithfulness: unknown metric {unknown[0]}; valid: {', '.join(METRICS)}")
        if cfg.method.name == "from_files":
            raise WsolError("eval.faithfulness needs the model that made the maps (not method=from_files)")
        if cfg.perturbation.steps < 1 or cfg.perturbation.chunk < 1:
            raise WsolError("perturbation.steps and perturbation.chunk must be at least 1")
        if not cfg.perturbation.road_percentiles or any(not 0 < p < 100 for p in cfg.perturbation.road_percentiles):
            raise WsolError(f"perturbation.road_percentiles must be percentages in (0, 100), got "
                            f"{list(cfg.perturbation.road_percentiles)}")
    if len(loc.empty_box) != 4:
        raise WsolError(f"localize.empty_box must be 4 numbers x0, y0, x1, y1, got {list(loc.empty_box)}")
    if cfg.eval.bootstrap < 0 or cfg.eval.bootstrap == 1:
        raise WsolError(f"eval.bootstrap must be 0 (off) or at least 2 resamples, got {cfg.eval.bootstrap}")
    if cfg.shard.count < 1 or not 0 <= cfg.shard.index < cfg.shard.count:
        raise WsolError(f"shard.index must be in [0, shard.count), got {cfg.shard.index} of {cfg.shard.count}")
    if cfg.num_workers != "auto" and not (isinstance(cfg.num_workers, int) and cfg.num_workers >= 0):
        raise WsolError(f"num_workers must be auto or a number ≥ 0, got {cfg.num_workers!r}")
    if cfg.progress not in ("auto", True, False):
        raise WsolError(f"progress must be auto, true or false, got {cfg.progress!r}")
    modes = (False, True, "default", "reduce-overhead", "max-autotune")
    if cfg.speed.compile not in modes:
        raise WsolError(f"speed.compile must be false, true or a torch.compile mode ({', '.join(modes[2:])}), got "
                        f"{cfg.speed.compile!r}")
    if cfg.speed.channels_last not in ("auto", True, False):
        raise WsolError(f"speed.channels_last must be auto, true or false, got {cfg.speed.channels_last!r}")
    if cfg.speed.box_threads is not None and cfg.speed.box_threads < 1:
        raise WsolError(f"speed.box_threads must be at least 1 or null, got {cfg.speed.box_threads}")
    model = cfg.model
    wsoleval_options = {
        "architecture": model.architecture != Architecture.cam,
        "large_feature_map": model.large_feature_map,
        "acol_drop_threshold": model.acol_drop_threshold != 0.7,
    }
    if not str(model.name).startswith("wsoleval_") and any(wsoleval_options.values()):
        key = next(k for k, changed in wsoleval_options.items() if changed)
        raise WsolError(f"model.{key} is an option of the wsoleval_* models, not of model={model.name}")
    external = model.source in (Source.timm, Source.custom)
    if model.source != Source.timm and not model.pretrained:
        raise WsolError(f"model.pretrained is timm's switch; model={model.name} takes model.weights=null for random "
                        f"weights")
    if model.source == Source.custom and not model.target:
        raise WsolError("model=custom needs model.target=package.module.builder (or path/to/file.py:builder)")
    if model.source != Source.custom and model.target:
        raise WsolError("model.target builds your own module: use model=custom model.target=...")
    if model.kwargs is not None and not isinstance(model.kwargs, DictConfig | dict):
        raise WsolError(f"model.kwargs must be a dict such as model.kwargs='{{depth: 18}}', got {model.kwargs!r}")
    if not external and (model.kwargs or model.output):
        key = "kwargs" if model.kwargs else "output"
        raise WsolError(f"model.{key} is an option of model=timm and model=custom, not of model={model.name}")
    for key in ("mean", "std"):
        values = getattr(model, key)
        if values is not None and (len(values) != 3 or (key == "std" and min(values) <= 0)):
            raise WsolError(f"model.{key} must be three numbers (R, G, B){', all > 0' if key == 'std' else ''}, "
                            f"got {list(values)}")
    grid = model.tokens.grid
    if grid is not None and (len(grid) != 2 or min(grid) < 1):
        raise WsolError(f"model.tokens.grid must be [h, w] with h, w ≥ 1, got {list(grid)}")
    if model.tokens.prefix is not None and model.tokens.prefix < 0:
        raise WsolError(f"model.tokens.prefix must be ≥ 0 or null, got {model.tokens.prefix}")
    if not 0 <= model.acol_drop_threshold <= 1:
        raise WsolError(f"model.acol_drop_threshold must be in [0, 1], got {model.acol_drop_threshold}")
    if model.num_classes is not None and model.num_classes < 1:
        raise WsolError(f"model.num_classes must be at least 1 or null, got {model.num_classes}")
    if cfg.save_maps and not cfg.maps_dir:
        raise WsolError("save_maps=true needs maps_dir=/path/to/folder")
    if cfg.figures.num_images < 0 or cfg.figures.extremes < 0 or not 0 <= cfg.figures.alpha <= 1:
        raise WsolError("figures.num_images and figures.extremes must be ≥ 0 and figures.alpha in [0, 1]")


def _lookup(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def protocol_label(config) -> tuple[str | None, dict[str, object]]:
    """The run's protocol name, and the settings it changed from the preset's ``table.requires``.

    A run whose settings differ from its preset's is labelled ``custom`` (a table never names a protocol
    whose settings the run did not use); the changes are reported beside it.
    """
    config = config if isinstance(config, dict) else to_dict(config)
    table = config.get("table") or {}
    name, requires = table.get("protocol"), table.get("requires") or {}
    changed = {key: _lookup(config, key) for key, value in requires.items() if _lookup(config, key) != value}
    return ("custom" if changed else name), changed
