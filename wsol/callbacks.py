"""Hydra hooks of a multirun: job folders named by what varies, and the sweep's table and report at its end."""

from __future__ import annotations

import hashlib
import logging
import os

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .errors import WsolError
from .io import read_json, write_json

__all__ = ["SweepCallbacks", "job_dirname", "register_resolvers"]

log = logging.getLogger("wsol")
SWEEP_FILE = "sweep.json"  # in the sweep folder: {"varying": [keys swept on the command line]}


def _safe(value: str) -> str:
    """A value as one folder-name part: a path becomes its last part and a short hash of the whole."""
    if "/" not in value:
        return value
    digest = hashlib.sha1(value.encode()).hexdigest()[:6]
    return f"{os.path.basename(value.rstrip('/')) or 'root'}~{digest}"


def job_dirname(task_overrides, sweep_dir: str) -> str:
    """A multirun job's folder: one level, ``key=value`` of the overrides that vary across the sweep (read from
    the sweep folder's ``sweep.json``), in command-line order; constants and paths stay in ``config.yaml``."""
    path = os.path.join(str(sweep_dir), SWEEP_FILE)
    varying = read_json(path)["varying"] if os.path.isfile(path) else None
    parts = []
    for override in task_overrides:
        key, _, value = str(override).lstrip("+~").partition("=")
        if varying is None or key in varying:
            parts.append(f"{key}={_safe(value)}")
    return ",".join(parts) or "job"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("wsol_job_dirname"):
        OmegaConf.register_new_resolver("wsol_job_dirname", job_dirname)


def varying_keys(overrides: list[str]) -> list[str]:
    """The keys a command line sweeps (``key=a,b``, ranges, ``glob``...), in order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [p.get_key_element() for p in parsed if p.is_sweep_override()]


class SweepCallbacks(Callback):
    """At the start of a multirun, record which keys vary (they name the job folders); at its end, write the
    sweep's table into its folder (see :mod:`wsol.aggregate`) and, with ``report=true``, its report."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        params = config.hydra.sweeper.get("params") or {}  # sweeps a config sets (+experiment=val_test)
        keys = varying_keys(list(config.hydra.overrides.task) + [f"{k}={v}" for k, v in params.items()])
        keys = list(dict.fromkeys(keys))
        write_json(os.path.join(config.hydra.sweep.dir, SWEEP_FILE), {"varying": keys})

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from .aggregate import aggregate

        sweep_dir = config.hydra.sweep.dir
        try:
            table = aggregate(sweep_dir, ci=str(config.table.ci))
        except WsolError as e:  # no finished run
            log.error("%s", e)
            return
        print(table, flush=True)
        log.info("sweep table written to %s/table.{md,tex,html,csv}", sweep_dir)
        if config.get("report"):
            from .report.visualize import write_sweep_report

            try:
                log.info("sweep report: %s", write_sweep_report(sweep_dir))
            except WsolError as e:
                log.error("no sweep report: %s", e)
