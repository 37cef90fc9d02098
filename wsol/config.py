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
import functools
import inspect
import json
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from .errors import WsolError
from .registry import close_matches
from .schema import PROTOCOL, Range, conforms, describe

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
    "protocol_caption",
    "protocol_label",
    "register_configs",
    "classifier_config",
    "resolve_threshold",
    "spec_of",
    "threshold_from_run",
    "to_dict",
    "validate",
]

CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
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
    product = "product"


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


def setting(default: Any = MISSING, *, kind: Any = None, range: Range | None = None, nonempty: bool = False,
            factory: Any = None, protocol: bool = False) -> Any:
    """A schema field with what OmegaConf's type cannot say: its real ``kind`` (a union such as a name or a list of
    names; the field itself is then typed ``Any``), the ``range`` of its numbers, whether a string or list may be
    empty. :func:`check_leaves` checks them all. ``protocol``: the setting can change a number a protocol preset
    reports, so a run labelled with the preset's name has the preset's value of it (:func:`protocol_label`)."""
    metadata = {"kind": kind, "range": range, "nonempty": nonempty, "protocol": protocol}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TokensConfig:
    # tokens before the patch grid (class, distillation, registers); null: the model's
    prefix: int | None = setting(None, range=Range(0))
    # [h, w] of the patch tokens; null: from their count and the input's aspect
    grid: list[int] | None = setting(None, range=Range(1))


@dataclass
class ModelConfig:
    name: str = MISSING  # a torchvision classifier, efficientnet_lite0, wsoleval_* or (model=timm) a timm model
    source: Source = Source.builtin  # set by the model=timm and model=custom presets
    weights: str | None = "DEFAULT"  # torchvision weights enum name; null: random init
    checkpoint: str | None = None  # a local state_dict (fine-tuned, or saved by wsolevaluation's training)
    num_classes: int | None = setting(None, range=Range(1))  # the classifier's width; wsoleval_*: from the checkpoint
    # a dotted module name, or a list of them (fused); null: found by structure
    layer: Any = setting(None, kind=str | list[str] | None, nonempty=True)
    fusion: Fusion = Fusion.mean  # several layers: mean | max of min-max maps, layercam (tanh(2M/max M)), product
    mean: list[float] | None = None  # input normalisation; null: the weights' own (ImageNet's)
    std: list[float] | None = setting(None, range=Range(0, low_open=True))
    layout: LayoutKind = LayoutKind.auto  # how the target layer's output holds its map
    tokens: TokensConfig = field(default_factory=TokensConfig)  # layout tokens: prefix count and grid
    # wsoleval_* models only (the reference's options that shape the network at evaluation):
    architecture: Architecture = Architecture.cam  # --wsol_method's architecture type
    large_feature_map: bool = False  # --large_feature_map: 28×28 maps instead of 14×14
    # --acol_threshold: acol erases where the first head's attention ≥ it
    acol_drop_threshold: float = setting(0.7, range=Range(0, 1))
    # model=timm and model=custom:
    pretrained: bool = True  # timm: its pretrained weights (from its hub)
    target: str | None = None  # custom: pkg.module.builder or path/to/file.py:builder (Hydra's _target_)
    # a dict: custom: the builder's arguments; timm: create_model's (model.kwargs='{k: v}')
    kwargs: Any = setting(None, kind=dict | None)
    output: str | None = None  # the logits' key, index or attribute when the forward returns a dict/tuple/object


@dataclass
class LocalizeConfig:
    """How maps become boxes; every key but ``engine`` (two engines, identical results) is a protocol setting."""

    mode: Mode = setting(protocol=True)
    # sweep: np.arange(0, 1, interval); also the PxAP bin width
    interval: float | None = setting(range=Range(0, 1, low_open=True, high_open=True), protocol=True)
    # fixed: the one threshold, a fraction of the map's max, or from:VAL_RUN_DIR (the threshold that run chose:
    # its loc_threshold, read from its metrics.json)
    threshold: Any = setting(kind=float | str | None, range=Range(0, 1, high_open=True), protocol=True)
    backend: Rule = setting(protocol=True)
    resize: Resize = setting(Resize.bicubic, protocol=True)  # map upsampling to the eval size
    normalize: Normalize = setting(Normalize.after_resize, protocol=True)
    engine: Engine = Engine.fast
    # clip a box's far corner (x + w, y + h) to (W - 1, H - 1): wsolevaluation; TS-CAM: false
    clip_boxes: bool = setting(True, protocol=True)
    # the box of an empty foreground; TS-CAM's get_bboxes gives [0, 0, 1, 1]
    empty_box: list[int] = setting(factory=lambda: [0, 0, 0, 0], protocol=True)


@dataclass
class EvalConfig:
    target: Target = setting(Target.gt, protocol=True)
    iou_thresholds: list[int] = setting(factory=lambda: [30, 50, 70], range=Range(0, 100, True, True), nonempty=True,
                                        protocol=True)
    records: bool = True  # per-image IoU and box in per_image.csv
    pointing_tolerance: float = setting(15.0, range=Range(0), protocol=True)  # pixels at the eval size (TorchRay's)
    # top-1 / top-5 loc count IoU > δ, not ≥ δ (TS-CAM's cls_loc_err)
    strict_class_loc: bool = setting(False, protocol=True)
    clip_gt_boxes: bool = setting(False, protocol=True)  # clip GT corners to S - 1 at the eval size (TS-CAM)
    # top-1 / top-5 classes from another model: a model= preset (densenet161) or its keys
    # ({source: timm, name: tf_efficientnet_b7}, {name: resnet50, checkpoint: PATH, num_classes: 200})
    classifier: Any = setting(None, kind=str | dict | None)
    predictions: str | None = None  # or from a file: image id → top-5 classes (CSV id,c1,…,c5 or JSON {id: [c1, …]})
    faithfulness: list[str] = field(default_factory=list)  # opt-in: average_drop, increase_in_confidence, deletion,
    # insertion, road, average_gain, complexity, coherency, adcc, arcc (perturbation.* says how)
    # opt-in metrics of later papers' code, beside the protocol's: top1_maxboxacc (with top-5 and the V2 parts),
    # loc_errors (TS-CAM's top-1 error decomposition), piou (pixel IoU from PxAP's histograms); docs/protocols.md
    extra: list[str] = field(default_factory=list)
    # resamples of the images for 95 % intervals (0: none); seconds even at ImageNet size
    bootstrap: int = setting(1000, range=Range(0))
    # the resamples' seed: runs on the same images draw the same resamples (paired)
    bootstrap_seed: int = setting(0, range=Range(0))


EXTRA_METRICS = ("top1_maxboxacc", "loc_errors", "piou")  # eval.extra's names (wsol.metrics.extra computes them)


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
    # deletion / insertion: points ceil(P / steps) pixels apart (torchcam's rule)
    steps: int = setting(20, range=Range(1))
    baseline: Baseline = Baseline.zero
    multiply: Multiply = Multiply.normalized  # average drop / increase in confidence: how the map masks
    relative: bool = True  # average drop divided by the original score (the paper, torchcam); false: pytorch-grad-cam
    chunk: int = setting(64, range=Range(1))  # perturbed images per forward (the memory budget)
    road_percentiles: list[int] = setting(factory=lambda: [10, 20, 30, 40, 50, 60, 70, 80, 90],
                                          range=Range(0, 100, True, True), nonempty=True)
    # ROAD: the imputed pixels' noise (standard deviation, in normalised input units)
    road_noise: float = setting(0.01, range=Range(0))


@dataclass
class SpeedConfig:
    precision: Precision = Precision.fp32  # bf16: autocast the forward and backward; maps stay float32
    # model and inputs channels-last; auto: on a CPU device (oneDNN is faster so)
    channels_last: Any = setting("auto", kind=bool | Literal["auto"])
    fold_batchnorm: bool = True  # eval batch norms folded into the convolutions feeding them (wsol/models/fold.py)
    # glibc keeps freed blocks for the next batch (wsol/allocator.py); auto: on a CPU
    keep_freed_memory: Any = setting("auto", kind=bool | Literal["auto"])
    # true, or a torch.compile mode (reduce-overhead, max-autotune): all but the target layer
    compile: Any = setting(False, kind=bool | Literal["default", "reduce-overhead", "max-autotune"])
    overlap: bool = True  # localize and accumulate batch i on a CPU thread while batch i+1 is scored
    # threads of the box engine (numba); null: half the cores when the loop overlaps on a CPU device (scoring keeps
    # torch's threads), else every core
    box_threads: int | None = setting(None, range=Range(1))


@dataclass
class ShardConfig:
    index: int = setting(0, range=Range(0))  # evaluate contiguous shard index of count, then python -m wsol.merge
    count: int = setting(1, range=Range(1))


@dataclass
class FiguresConfig:
    num_images: int = setting(8, range=Range(0))  # sample shown per run: evenly spaced over the evaluated images
    extremes: int = setting(4, range=Range(0))  # best and worst localized images shown
    colormap: str = "jet"  # any Matplotlib colormap
    alpha: float = setting(0.5, range=Range(0, 1))  # map opacity over the image


@dataclass
class TableConfig:
    protocol: str | None = None  # set by the protocol preset: its name (conf/protocol/<name>.yaml)
    # the protocol settings the preset leaves to the run (TS-CAM's threshold is per dataset or chosen on val); every
    # other protocol setting must equal the preset's for the run to carry its name
    free: list[str] = field(default_factory=list)
    columns: list[str] | None = None  # metrics.json keys to show; null = all
    ci: CiStyle = CiStyle.pm  # the bootstrap interval in tables: pm (value ± half-width), interval ([lo, hi]), none


@dataclass
class WsolConfig:
    dataset: Any = MISSING  # a dataset format's schema (derived from its builder)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: Any = MISSING  # a CAM method's schema (derived from its options)
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_size: int = setting(32, range=Range(1))
    # DataLoader workers: auto = the cores this process may use, less one
    num_workers: Any = setting("auto", kind=int | Literal["auto"], range=Range(0))
    limit: int | None = setting(None, range=Range(1))  # evaluate only the first N images of the split
    seed: int = setting(0, range=Range(0))  # seed of the stochastic methods; sweeps over seeds aggregate as mean ± std
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
    # auto: a bar on a terminal, a line every 30 s otherwise; false: none
    progress: Any = setting("auto", kind=bool | Literal["auto"])
    table: TableConfig = field(default_factory=TableConfig)


def schema_from_signature(name: str, functions: list, exclude: tuple[str, ...] = ()) -> Any:
    """A dataclass with ``name`` and the keyword-only parameters of ``functions`` (types and defaults from
    their signatures; no default → required)."""
    fields: dict[str, tuple] = {}
    for function in functions:
        hints = typing.get_type_hints(function, include_extras=True)
        for p in inspect.signature(function).parameters.values():
            if p.kind is not p.KEYWORD_ONLY or p.name in exclude or p.name in fields:
                continue
            default = MISSING if p.default is p.empty else p.default
            hint, extras = hints.get(p.name, Any), ()
            if typing.get_origin(hint) is typing.Annotated:  # Annotated[int, Range(1)]
                hint, *extras = typing.get_args(hint)
            if typing.get_origin(hint) is Literal:  # Literal["a", "b"]: an enum OmegaConf checks
                hint = enum.StrEnum(f"{name.title()}{p.name.title()}".replace("_", ""), {v: v for v in typing.get_args(
                    hint)})
            bounds = next((e for e in extras if isinstance(e, Range)), None)
            fields[p.name] = (p.name, hint, setting(default, range=bounds, protocol=PROTOCOL in extras))
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


def group_choices(group: str, conf_dirs: tuple[str, ...] = (CONF_DIR,)) -> list[str]:
    """The choices of a config group: its ConfigStore entries and its YAML files in ``conf_dirs``."""
    stored = ConfigStore.instance().repo.get(group, {})
    files = [n for d in conf_dirs if os.path.isdir(os.path.join(d, group)) for n in os.listdir(os.path.join(d, group))]
    return sorted({name.removesuffix(".yaml") for name in [*stored, *files] if name.endswith(".yaml")})


def _leaf_fields(schema: Any, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """``(dotted key, field, resolved type)`` of every leaf of a schema dataclass, nested schemas walked."""
    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        kind = hints.get(f.name, f.type)
        if dataclasses.is_dataclass(kind):
            out += _leaf_fields(kind, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", f, kind))
    return out


def schema_leaves(cfg: DictConfig | None = None) -> list[tuple[str, dataclasses.Field, Any]]:
    """Every leaf a user can set: of :class:`WsolConfig` and of the dataset and method schemas ``cfg`` chose
    (with no ``cfg``: the top-level schema's only)."""
    leaves = [(k, f, t) for k, f, t in _leaf_fields(WsolConfig) if k not in ("dataset", "method")]
    for group in ("dataset", "method"):
        schema = OmegaConf.get_type(cfg, group) if cfg is not None and group in cfg else None
        if dataclasses.is_dataclass(schema):
            leaves += [(f"{group}.{k}", f, t) for k, f, t in _leaf_fields(schema) if k != "name"]
    return leaves


def check_leaves(cfg: DictConfig) -> None:
    """Every set leaf against its declared kind (the schema field's ``kind``, else its type), range and
    emptiness: one :class:`WsolError` line naming the key, the value and what it expects."""
    for key, f, kind in schema_leaves(cfg):
        if OmegaConf.is_missing(cfg, key):
            continue
        value = OmegaConf.select(cfg, key)
        meta = f.metadata or {}
        declared = meta.get("kind") or kind
        shown = OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value
        if not conforms(value, declared):
            hint = " (quote a number that names a module: model.layer='3')" if key == "model.layer" else ""
            raise WsolError(f"{key}={shown!r}: expected {describe(declared)}{hint}")
        if meta.get("nonempty") and isinstance(value, str | ListConfig | list) and len(value) == 0:
            raise WsolError(f"{key}={shown!r}: expected {describe(declared)}, not empty")
        bounds = meta.get("range")
        if bounds is not None:
            numbers = list(value) if isinstance(value, ListConfig | list) else [value]
            outside = [v for v in numbers if v not in bounds]
            if outside:
                each = "each number " if isinstance(value, ListConfig | list) else ""
                raise WsolError(f"{key}={shown!r}: {each}must be {bounds.describe()}")


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


def compose_config(overrides: list[str] = (), conf_dir: str = CONF_DIR, config_name: str = "config",
                   search_dirs: tuple[str, ...] = ()) -> DictConfig:
    """The composed (untyped-view) config of ``overrides``, as ``python -m wsol.run`` composes it (``config_name``,
    ``search_dirs``: its ``--config-name`` and ``--config-dir``)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    paths = ",".join("file://" + os.path.abspath(d) for d in search_dirs)
    extra = [f"hydra.searchpath=[{paths}]"] if search_dirs else []
    outer = get_gh_backup()  # a Hydra app of the caller's (wsol called from a Hydra job): restored after
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=os.path.abspath(conf_dir), version_base="1.3"):
            return compose(config_name, overrides=[*extra, *overrides])
    finally:
        restore_gh_from_backup(outer)


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


def check_overrides(overrides: list[str], conf_dir: str = CONF_DIR, config_name: str = "config",
                    search_dirs: tuple[str, ...] = ()) -> None:
    """Compose every configuration a command line asks for (each value of a sweep) and validate it; a
    problem is one :class:`WsolError` line, before any work starts (``conf_dir``, ``config_name``,
    ``search_dirs``: Hydra's ``--config-path``, ``--config-name``, ``--config-dir``)."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    for arg in overrides:  # an unknown group choice names the closest ones
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key in GROUPS and value not in ("", "null"):
            choices = group_choices(key, (conf_dir, *search_dirs))
            for name in value.split(","):
                if name not in choices:
                    hint = close_matches(name, choices) or choices[:8]
                    raise WsolError(f"unknown {key} {name!r}; did you mean: {', '.join(hint)}")
    try:
        variants = _sweep_variants([o for o in overrides if o not in ("-m", "--multirun")])
    except OverrideParseException as e:
        raise WsolError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    results: dict[tuple[str, ...], DictConfig | Exception] = {}

    def composed(variant: list[str]) -> DictConfig | Exception:
        """The composition of ``variant``, or the error it raised (each prefix composed once)."""
        if tuple(variant) not in results:
            try:
                results[tuple(variant)] = compose_config(variant, conf_dir, config_name, search_dirs)
            except MissingConfigException as e:  # no such primary config (--config-name, --config-path)
                raise WsolError(str(e).splitlines()[0]) from None
            except (HydraException, ValueError) as e:
                results[tuple(variant)] = e
        return results[tuple(variant)]

    for variant in variants:
        cfg = composed(variant)
        if isinstance(cfg, Exception):
            low, high = 0, len(variant)  # variant[:low] composes, variant[:high] fails: the first failing override
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (low, middle) if isinstance(composed(variant[:middle]), Exception) else (middle, high)
            before = composed(variant[:low])
            if isinstance(before, Exception):
                raise WsolError(str(cfg).splitlines()[0]) from None
            raise WsolError(_one_line(composed(variant[:high]), variant[high - 1], before)) from None
        validate(cfg)


THRESHOLD_FROM = "from:"
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


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
    if same_images(dataset, to_dict(cfg)["dataset"]):
        raise WsolError(f"localize.threshold=from:{source}: that run evaluated this same dataset and split, so its "
                        "threshold was chosen on the images this run reports; take it from a val run")
    resolved = cfg.copy()
    resolved.localize.threshold = threshold
    return resolved


def same_images(stored: dict, current: dict) -> bool:
    """Whether two dataset configs name the same images: every key both have agrees, the geometry of the
    evaluation aside (``image_size``, ``box_rescale``), so a run written before a key existed still compares."""
    shared = (stored.keys() & current.keys()) - {"image_size", "box_rescale"}
    return bool(shared) and all(stored[key] == current[key] for key in shared)


def spec_of(kind: type, node):
    """The frozen dataclass ``kind`` (a stage's spec: :class:`wsol.models.ModelSpec`,
    :class:`wsol.faithfulness.FaithfulnessOptions`…) from the config node's fields of the same names, as plain
    values (enums as their values, lists as tuples, mappings as dicts)."""
    values = to_dict(node)
    names = [f.name for f in dataclasses.fields(kind)]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return kind(**fields)


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
    check_leaves(cfg)
    if not DEVICE.fullmatch(str(cfg.device)):
        raise WsolError(f"device={cfg.device!r}: expected auto, cpu, cuda, cuda:N or mps")
    loc = cfg.localize
    if loc.mode == Mode.sweep and loc.interval is None:
        raise WsolError("localize.interval must be in (0, 1) for a sweep, got null")
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
        if "average_gain" in cfg.eval.faithfulness and cfg.perturbation.score != Score.softmax:
            raise WsolError("eval.faithfulness: average_gain divides by 1 − the class probability; it needs "
                            "perturbation.score=softmax")
    if cfg.eval.extra:
        unknown = [m for m in cfg.eval.extra if m not in EXTRA_METRICS]
        if unknown:
            raise WsolError(f"eval.extra: unknown metric {unknown[0]}; valid: {', '.join(EXTRA_METRICS)}")
    if len(loc.empty_box) != 4:
        raise WsolError(f"localize.empty_box must be 4 numbers x0, y0, x1, y1, got {list(loc.empty_box)}")
    if cfg.eval.bootstrap < 0 or cfg.eval.bootstrap == 1:
        raise WsolError(f"eval.bootstrap must be 0 (off) or at least 2 resamples, got {cfg.eval.bootstrap}")
    if not cfg.shard.index < cfg.shard.count:
        raise WsolError(f"shard.index must be in [0, shard.count), got {cfg.shard.index} of {cfg.shard.count}")
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
    if not external and (model.kwargs or model.output):
        key = "kwargs" if model.kwargs else "output"
        raise WsolError(f"model.{key} is an option of model=timm and model=custom, not of model={model.name}")
    for key in ("mean", "std"):
        values = getattr(model, key)
        if values is not None and (len(values) != 3 or (key == "std" and min(values) <= 0)):
            raise WsolError(f"model.{key} must be three numbers (R, G, B){', all > 0' if key == 'std' else ''}, "
                            f"got {list(values)}")
    grid = model.tokens.grid
    if grid is not None and len(grid) != 2:
        raise WsolError(f"model.tokens.grid must be [h, w] with h, w ≥ 1, got {list(grid)}")
    if cfg.save_maps and not cfg.maps_dir:
        raise WsolError("save_maps=true needs maps_dir=/path/to/folder")


def _lookup(config: dict, dotted: str):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def protocol_settings(cfg: DictConfig) -> list[str]:
    """The keys of every setting that can change a number a protocol preset reports (the schema fields marked
    ``protocol``), for the dataset and method ``cfg`` chose."""
    return [key for key, f, _ in schema_leaves(cfg) if (f.metadata or {}).get("protocol")]


@functools.cache
def _preset_values(protocol: str, dataset: str) -> dict[str, object] | None:
    """The value of every protocol setting when ``protocol=<protocol>`` is composed with ``dataset=<dataset>`` and
    nothing else, less the preset's ``table.free``; ``None`` when there is no such preset."""
    try:
        cfg = compose_config([f"dataset={dataset}", f"protocol={protocol}"])
    except Exception:  # noqa: BLE001 - a preset in another config folder: nothing to compare with
        return None
    free = set(cfg.table.free)
    values = {}
    for key in protocol_settings(cfg):
        if key not in free and not OmegaConf.is_missing(cfg, key):
            value = OmegaConf.select(cfg, key)
            values[key] = OmegaConf.to_container(value, enum_to_str=True) if isinstance(value, ListConfig) else (
                value.value if isinstance(value, enum.Enum) else value)
    return values


def protocol_label(config) -> tuple[str | None, dict[str, object]]:
    """The run's protocol name, and the protocol settings in which it differs from its preset.

    The preset's values are derived, not listed: composing ``protocol=<name>`` alone (with the run's dataset
    format) gives its value of every setting the schema marks as a protocol setting (:func:`protocol_settings`).
    A run that differs in one of them, other than those the preset leaves free (``table.free``), is labelled
    ``custom`` and the differences are reported beside it: a table never names a protocol whose settings the
    run did not use.
    """
    config = config if isinstance(config, dict) else to_dict(config)
    name = (config.get("table") or {}).get("protocol")
    if not name or name == "custom":
        return "custom", {}
    preset = _preset_values(str(name), str((config.get("dataset") or {}).get("name")))
    if preset is None:
        return "custom", {"table.protocol": name}
    changed = {key: _lookup(config, key) for key, value in preset.items() if _lookup(config, key) != value}
    return ("custom" if changed else name), changed


def protocol_caption(config) -> str:
    """The protocol as a table's caption names it: the preset's name, or ``custom (<preset> with k=v, …)``."""
    config = config if isinstance(config, dict) else to_dict(config)
    name, changed = protocol_label(config)
    if not changed:
        return str(name)
    preset = (config.get("table") or {}).get("protocol")
    return f"custom ({preset} with {', '.join(f'{k}={v}' for k, v in changed.items())})"
