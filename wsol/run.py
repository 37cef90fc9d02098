"""``python -m wsol.run``: the Hydra entry point. A thin wrapper around :func:`wsol.pipeline.evaluate`.

Before Hydra starts, every configuration the command line asks for (each value of a sweep) is composed
against the typed schemas and validated (:func:`wsol.config.check_overrides`): a mistyped key, a value of
the wrong type or out of range is one ``error:`` line, before any work.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import sys
import threading

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .allocator import keep_freed_memory
from .callbacks import register_resolvers
from .config import CONF_DIR, check_overrides, protocol_caption, protocol_label, resolve_threshold, to_dict
from .errors import WsolError
from .extras import EXTRAS, require
from .io import atomic_write_text
from .keys import run_fingerprint
from .metrics.extra import TABLE_KEYS
from .models import model_label
from .pipeline import EvalResult, evaluate
from .report import write_run
from .report.compare import paper_tables
from .report.visualize import write_run_report
from .scoring import auto_on_cpu, resolve_device

__all__ = ["main", "process_settings", "run", "write_outputs"]

log = logging.getLogger("wsol")
register_resolvers()


def write_outputs(run_dir: str, config: dict, result: EvalResult, overrides: list[str] | None = None) -> dict:
    """Write the run folder (tables, per-image rows, curves, metrics.json last); return the summary."""
    table = config.get("table") or {}
    columns = list(table["columns"]) if table.get("columns") else None
    if columns is not None:  # opt-in metrics join the protocol's columns
        columns += [k for k in config["eval"].get("faithfulness") or [] if k not in columns]
        columns += [k for name in config["eval"].get("extra") or [] for k in TABLE_KEYS[name] if k not in columns]
    protocol, changed = protocol_label(config)
    summary = {
        "protocol": protocol,
        "protocol_changes": {"preset": table.get("protocol"), **changed} if changed else None,
        "columns": columns,
        "method": config["method"]["name"],
        "model": None if result.info["target"] == "files" else model_label(config["model"]),
        "layer": result.info["layer"],
        "dataset": config["dataset"]["name"],
        "seed": config.get("seed", 0),
        "overrides": list(overrides or []),
        "fingerprint": run_fingerprint(config),
        "metrics": result.metrics,
        **{k: v for k, v in result.info.items() if k != "layer"},
    }
    caption = f"{summary['dataset']}, {result.info['images']} images, protocol {protocol_caption(config)}, "
    caption += f"target={result.info['target']}"
    tables = paper_tables([summary], columns, caption, ci_style=str(table.get("ci", "pm")))
    write_run(
        run_dir,
        config_yaml=OmegaConf.to_yaml(OmegaConf.create(config)),
        summary=summary,
        images=result.images if config["eval"]["records"] else [],
        curves=result.curves,
        tables=tables,
        samples=result.samples,
    )
    print(tables["md"], flush=True)
    return summary


def _finished(run_dir: str, config: dict) -> dict | None:
    """The summary of a run folder that already finished this exact configuration, if any."""
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    return summary if summary.get("fingerprint") == run_fingerprint(config) else None


def run(cfg: DictConfig, run_dir: str, overrides: list[str] | None = None) -> dict | None:
    """Evaluate ``cfg`` into ``run_dir``, resuming from its ``partials/`` if a previous attempt was killed.

    A folder that already holds this configuration's ``metrics.json`` is left as it is. A shard
    (``shard.count > 1``) keeps only its partial results, for :mod:`wsol.merge`.
    """
    cfg = resolve_threshold(cfg)  # from:VAL_RUN_DIR → that run's threshold, recorded as the number
    config = to_dict(cfg)
    done = _finished(run_dir, config)
    if done is not None:
        log.info("%s already holds this run's metrics.json; nothing to evaluate", run_dir)
        if cfg.report:
            log.info("report: %s", write_run_report(run_dir, config))
        return done
    atomic_write_text(os.path.join(run_dir, "config.yaml"), OmegaConf.to_yaml(OmegaConf.create(config)))
    result = evaluate(cfg, run_dir)
    if cfg.shard.count > 1:
        log.info(
            "shard %s of %s finished (%d images); merge the shards with: python -m wsol.merge --out DIR SHARD_DIRS...",
            cfg.shard.index, cfg.shard.count, result.info["images"],
        )
        return None
    summary = write_outputs(run_dir, config, result, overrides)
    if cfg.report:
        log.info("report: %s", write_run_report(run_dir, config))
    skipped = sum(result.info["skipped"].values())
    headline = ", ".join(f"{k} {result.metrics[k]:.2f}" for k in ("maxboxacc_v2", "pxap") if k in result.metrics)
    log.info(
        "%s on %s (%s): %s, %d images (%s img/s, %.1f s), %d skipped, %d size mismatches, written to %s",
        summary["method"], summary["model"], summary["layer"], headline, result.info["images"],
        result.info.get("images_per_second"), result.info["seconds"], skipped, result.info["size_mismatch"], run_dir,
    )
    return summary


def process_settings(cfg: DictConfig) -> dict[str, bool]:
    """The process-wide settings the CLI makes for a run, and whether each took effect: only here, in the entry
    point, never in the library (``wsol.pipeline``, ``wsol.evaluate``). ``speed.keep_freed_memory`` raises glibc's
    malloc thresholds (:mod:`wsol.allocator`; a CPU run, ``auto``), worth 17 % of a CPU forward in docs/speed.md."""
    keep = auto_on_cpu(cfg.speed.keep_freed_memory, resolve_device(str(cfg.device)))
    return {"keep_freed_memory": keep_freed_memory() if keep else False}


class Terminated(KeyboardInterrupt):
    """SIGTERM (SLURM's pre-emption, ``kill``) raised in the main thread, to stop as Ctrl-C does."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def _stopped(error: KeyboardInterrupt, run_dir: str | None = None, resume: str | None = None) -> None:
    """One line on how the run stopped and how to resume it; exit 130 (SIGINT) or 143 (SIGTERM), as a shell does."""
    signal_name = "SIGTERM" if isinstance(error, Terminated) else "SIGINT (Ctrl-C)"
    message = f"stopped by {signal_name}"
    if run_dir:
        partials = os.path.join(run_dir, "partials")
        done = len([n for n in os.listdir(partials) if n.startswith("batch_")]) if os.path.isdir(partials) else 0
        message += f": {done} finished batches saved in {partials}; the same command with {resume} resumes it"
    print(message, file=sys.stderr, flush=True)
    sys.exit(143 if isinstance(error, Terminated) else 130)


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        process_settings(cfg)
        run(cfg, run_dir, list(hydra_cfg.overrides.task))
    except KeyboardInterrupt as stop:
        multirun = hydra_cfg.mode == RunMode.MULTIRUN
        _stopped(stop, run_dir, f"hydra.sweep.dir={hydra_cfg.sweep.dir}" if multirun else f"hydra.run.dir={run_dir}")
    except WsolError as e:
        message = f"error: {e}"
        print(message, file=sys.stderr, flush=True)
        atomic_write_text(os.path.join(run_dir, "error.txt"), message + "\n")
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(2)  # a multirun goes on with its other jobs; aggregate lists the failure


def hydra_flags(args: list[str]):
    """The command line as Hydra's own parser reads it (``-c job``, ``-cn``, ``-cp``, ``-cd``, ``-i``, ``-m``,
    ``--help``…; ``.overrides``: the rest), or ``None`` where Hydra will refuse it (it says why)."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return get_args_parser().parse_intermixed_args(args)
    except SystemExit:
        return None


def main() -> None:
    """The CLI: pre-check the command line, then run it under Hydra. SIGTERM stops it as Ctrl-C does (the CLI's
    handler only: importing wsol changes no signal handling)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    flags = hydra_flags(sys.argv[1:])
    if flags is not None and not (flags.shell_completion or flags.experimental_rerun):
        conf_dir = CONF_DIR
        if flags.config_path:  # relative to this file's folder, as Hydra reads config_path
            conf_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), flags.config_path)
        try:
            for override in flags.overrides:  # a launcher is an extra: one line rather than Hydra's traceback
                key, _, value = override.partition("=")
                if key.lstrip("+~") == "hydra/launcher" and value in ("local", "slurm"):
                    require(EXTRAS[value][0], value, f"hydra/launcher={value}")
            check_overrides(flags.overrides, conf_dir, flags.config_name or "config",
                            (flags.config_dir,) if flags.config_dir else ())
        except WsolError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as stop:
            _stopped(stop)
    try:
        _hydra_main()
    except KeyboardInterrupt as stop:  # before or after a job (composing, a sweep's callbacks)
        _stopped(stop)


if __name__ == "__main__":
    main()
