"""Tables and run outputs."""

from .tables import METRIC_COLUMNS, format_table, metrics_frame
from .writer import atomic_write_text, write_run

__all__ = ["METRIC_COLUMNS", "format_table", "metrics_frame", "atomic_write_text", "write_run"]
