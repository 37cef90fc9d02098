"""Tables and run outputs."""

from .tables import METRIC_COLUMNS, format_table, metrics_frame
from .writer import write_run

__all__ = ["METRIC_COLUMNS", "format_table", "metrics_frame", "write_run"]
