"""Progress of long stages with images/s: a live bar on a terminal, a plain line every 30 s elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts images through a stage; ``mode``: ``auto`` (bar on a TTY, else periodic lines), ``bar``,
    ``lines`` or ``off`` (``false`` in the config)."""

    def __init__(
        self, total: int, desc: str, mode: str | bool = "auto", stream: TextIO | None = None, every: float = 30.0
    ) -> None:
        self.stream = stream or sys.stderr
        if mode is False or mode in ("off", "false", None):
            mode = "off"
        elif mode in (True, "auto", "true"):
            mode = "bar" if self.stream.isatty() else "lines"
        self.total, self.desc, self.mode, self.every = total, desc, mode, every
        self.done = 0
        self.start = self.last = time.perf_counter()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def text(self) -> str:
        rate = self.rate
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(24 * share)
        eta_text = f"{eta:.0f}s" if eta == eta else "?"
        return f"{self.desc} [{bar:<24}] {self.done}/{self.total} images  {rate:.1f} img/s  eta {eta_text}"

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.mode == "bar" and (now - self.last > 0.2 or self.done >= self.total):
            self.stream.write("\r" + self.text())
            self.stream.flush()
            self.last = now
        elif self.mode == "lines" and now - self.last >= self.every:
            self.stream.write(self.text() + "\n")
            self.stream.flush()
            self.last = now

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()
