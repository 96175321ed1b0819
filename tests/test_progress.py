"""Progress lines off a terminal: one per interval and one at the end, with the rate and ETA of
this run's work only (a resumed run's earlier part left out)."""
import io
import logging

import pytest

from edn import progress as progress_module
from edn.progress import Progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    return clock


def test_rate_and_eta_count_this_runs_work_only(clock, caplog):
    caplog.set_level(logging.INFO, logger="edn.progress")
    p = Progress("train alice body", 140, "steps", initial=40, interval=60, stream=io.StringIO())
    clock.now += 10
    p.set(60, G_l1=0.0421, **{"images/s": 12.5})
    assert not caplog.records  # 10 s in: under the interval, quiet
    line = p.line()  # 20 steps in 10 s: 2/s; 80 left: 40 s
    assert line.startswith("train alice body: 60/140 steps (43%)")
    assert "2.00 steps/s" in line and "ETA 00:40" in line and "elapsed 00:10" in line
    assert "G_l1 0.0421" in line and "images/s 12.5" in line
    clock.now += 60
    p.update(20)  # past the interval: a line, the postfix kept
    assert [r.getMessage() for r in caplog.records] == [p.line()]
    assert "80/140" in p.line() and "G_l1 0.0421" in p.line()
    p.close()  # the last line showed the end already: no second one
    assert len(caplog.records) == 1
    clock.now += 1
    p.update(60)
    p.close()  # always a line at the end
    assert len(caplog.records) == 2 and "140/140 steps (100%)" in caplog.records[-1].getMessage()
    p.update(0, rows="3 done")  # what came after the count's end (a catalog's last joins) is shown too
    p.close()
    assert len(caplog.records) == 3 and "rows 3 done" in caplog.records[-1].getMessage()


def test_a_slow_rate_reads_per_second_too(clock):
    p = Progress("evaluate alice: render held-out in bf16", 48, "frames", stream=io.StringIO())
    clock.now += 80
    p.set(48)
    assert "0.60 frames/s" in p.line() and "ETA 00:00" in p.line()  # not tqdm's inverse, 1.67s/frame


def test_a_terminal_gets_a_bar_and_no_log_lines(clock, caplog):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    caplog.set_level(logging.INFO, logger="edn.progress")
    out = Terminal()
    with Progress("catalog c.csv", 10, "frames", interval=0, stream=out) as p:
        p.update(4, rows="1 done, 0 failed, of 3")
    assert not caplog.records
    assert "catalog c.csv" in out.getvalue() and "4/10" in out.getvalue() and "1 done" in out.getvalue()
