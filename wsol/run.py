"""``python -m wsol.run``: the Hydra entry point. A thin wrapper around :func:`wsol.pipeline.evaluate`."""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .errors import WsolError
from .pipeline import evaluate
from .registry import close_matches
from .report import format_table, metrics_frame, write_run

__all__ = ["main", "run", "check_group_choices", "CONF_DIR"]

log = logging.getLogger("wsol")
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
GROUPS = ("dataset", "model", "method", "localize", "protocol")


def check_group_choices(overrides: list[str], conf_dir: str = CONF_DIR) -> None:
    """Fail fast, in one line, on ``group=name`` overrides naming no config (Hydra would print a long list)."""
    for arg in overrides:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS or value in ("", "null"):
            continue
        choices = sorted(f[:-5] for f in os.listdir(os.path.join(conf_dir, key)) if f.endswith(".yaml"))
        for name in value.split(","):
            if name not in choices:
                hint = close_matches(name, choices) or choices[:8]
                raise WsolError(f"unknown {key} {name!r}; did you mean: {', '.join(hint)} (see conf/{key}/)")


def run(cfg: DictConfig, run_dir: str) -> dict:
    """Evaluate ``cfg`` and write the run folder; returns the summary written to ``metrics.json``."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    result = evaluate(plain)
    columns = list(cfg.table.columns) if cfg.table.get("columns") else None
    summary = {
        "protocol": cfg.table.get("protocol"),
        "columns": columns,
        "method": cfg.method.name,
        "model": cfg.model.name,
        "layer": result.info["layer"],
        "dataset": cfg.dataset.name,
        "metrics": result.metrics,
        **{k: v for k, v in result.info.items() if k != "layer"},
    }
    frame = metrics_frame([summary], columns)
    caption = (
        f"{cfg.dataset.name}, {result.info['images']} images, protocol {cfg.table.get('protocol')}, "
        f"target={result.info['target']}"
    )
    tables = {fmt: format_table(frame, fmt, caption=caption if fmt != "csv" else "") for fmt in ("md", "tex", "csv")}
    write_run(
        run_dir,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        summary=summary,
        images=result.images,
        curves=result.curves,
        tables=tables,
    )
    print(tables["md"], flush=True)
    skipped = sum(result.info["skipped"].values())
    headline = ", ".join(f"{k} {result.metrics[k]:.2f}" for k in ("maxboxacc_v2", "pxap") if k in result.metrics)
    log.info(
        "%s on %s: %s, %d images, %d skipped, written to %s",
        cfg.method.name, cfg.model.name, headline, result.info["images"], skipped, run_dir,
    )
    return summary


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    try:
        run(cfg, run_dir)
    except WsolError as e:
        message = f"error: {e}"
        print(message, file=sys.stderr, flush=True)
        from .report import atomic_write_text

        atomic_write_text(os.path.join(run_dir, "error.txt"), message + "\n")
        if hydra_cfg.mode != RunMode.MULTIRUN:
            sys.exit(2)  # a multirun goes on with its other jobs; aggregate lists the failure


def main() -> None:
    try:
        check_group_choices(sys.argv[1:])
    except WsolError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
