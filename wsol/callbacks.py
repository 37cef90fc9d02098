"""Hydra callbacks."""

from __future__ import annotations

import logging

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

__all__ = ["AggregateOnMultirunEnd"]

log = logging.getLogger("wsol")


class AggregateOnMultirunEnd(Callback):
    """At the end of a multirun, write the sweep's table into its folder (see :mod:`wsol.aggregate`)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from .aggregate import aggregate

        sweep_dir = config.hydra.sweep.dir
        try:
            table = aggregate(sweep_dir)
        except SystemExit as e:  # no finished run
            log.error("%s", e)
            return
        print(table, flush=True)
        log.info("sweep table written to %s/table.{md,tex,html,csv}", sweep_dir)
        if config.get("report"):
            from .errors import WsolError
            from .visualize import write_sweep_report

            try:
                log.info("sweep report: %s", write_sweep_report(sweep_dir))
            except WsolError as e:
                log.error("no sweep report: %s", e)
