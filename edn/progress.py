"""Progress of a long step with its rate and ETA, as tqdm computes them: a live bar on a terminal;
elsewhere (a log file, `ray job submit`, CI) one plain log line per `interval` seconds and one at
the end, so that a log reads as lines, not as carriage returns."""
from __future__ import annotations

import logging
import os
import sys
import time

from tqdm import tqdm

log = logging.getLogger("edn.progress")

INTERVAL_S = float(os.environ.get("EDN_PROGRESS_INTERVAL_S", "30"))  # between plain lines
LINE_FORMAT = "{desc}: {n_fmt}/{total_fmt}{unit} ({percentage:.0f}%), {rate_noinv_fmt}, ETA {remaining}, " \
              "elapsed {elapsed}{postfix}"


class Progress:
    """`update(n, **postfix)` as work is done; postfix values (losses, row counts) are shown
    after the rate. `initial`: the part done before this run (a resumed training, staged chunks),
    left out of the rate."""

    def __init__(self, desc: str, total: int, unit: str = "it", initial: int = 0,
                 interval: float = INTERVAL_S, stream=None):
        stream = stream or sys.stderr
        self.desc, self.total, self.unit, self.interval = desc, total, unit, interval
        self.n = self.initial = initial
        self.started = self.last_line = time.monotonic()
        self.shown = None  # what the last plain line showed: (count, postfix)
        self.postfix = ""
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=f" {unit}", file=stream,
                        dynamic_ncols=True) if stream.isatty() else None

    def update(self, n: int = 1, **postfix) -> None:
        self.set(self.n + n, **postfix)

    def set(self, done: int, **postfix) -> None:
        if postfix:
            self.postfix = ", ".join(f"{k} {_short(v)}" for k, v in postfix.items())
        delta, self.n = done - self.n, done
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix, refresh=False)
            self.bar.update(delta)
        elif time.monotonic() - self.last_line >= self.interval:
            self._line()

    def line(self) -> str:
        """The progress so far as one line: done/total, rate, ETA, elapsed, postfix."""
        line = tqdm.format_meter(self.n, self.total, time.monotonic() - self.started, prefix=self.desc,
                                 unit=f" {self.unit}", initial=self.initial, postfix=self.postfix or None,
                                 bar_format=LINE_FORMAT)
        return " ".join(line.split())  # tqdm pads the rate

    def _line(self) -> None:
        self.last_line, self.shown = time.monotonic(), (self.n, self.postfix)
        log.info("%s", self.line())

    def close(self) -> None:
        """The last state: the bar closed, or one last line (unless the last line showed it)."""
        if self.bar is not None:
            self.bar.close()
        elif self.shown != (self.n, self.postfix):
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
