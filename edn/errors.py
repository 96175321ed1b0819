"""The errors a user can cause and fix, in one family, and finding them under Ray's wrappers.

`edn` prints an EdnError as `edn VERB: error: <message>` and exits 2, without a traceback: its
message says what was wrong and what to do. Anything else is a bug or an outage, reported with a
traceback (edn.cli). Each class keeps the built-in base it had before the family existed
(ValueError, FileNotFoundError, ...), so code that catches those still catches it.

An error raised in a Ray task, actor or Ray Train worker reaches the driver wrapped: `user_error`
finds the EdnError underneath, so it reads the same as one raised in the driver. This module
imports nothing heavy: the CLI imports it to build its parser.
"""
from __future__ import annotations

import importlib
import re
import signal
import threading


class EdnError(Exception):
    """An error the user can fix; its message says what and how."""


class ConfigError(EdnError, ValueError):
    """A setting, flag or configuration file edn cannot use."""


class DataError(EdnError, ValueError):
    """Input data (a dataset, a video's poses, a catalog) that cannot give what was asked of it."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A dataset, or a part of one, that is not where the user said."""


class WeightsError(EdnError):
    """Pretrained weights (VGG19, LPIPS' backbone, OpenPose) missing or unreadable."""


class ResourcesError(EdnError, RuntimeError):
    """The Ray cluster cannot give a job the CPUs, GPUs or resources it asks for."""


class Stopped(KeyboardInterrupt):
    """The verb stopped by a signal: SIGINT (Ctrl-C) or SIGTERM (`ray job stop`, a Kubernetes pod's
    deletion). A KeyboardInterrupt, so what ends work on Ctrl-C ends it on both (an MLflow run ends
    KILLED); `edn` prints one line, with `note` (what a rerun does), and exits 128 + the signal's
    number, as a shell reports it."""

    def __init__(self, signame: str, note: str = ""):
        super().__init__(signame)
        self.signame, self.note = signame, note

    @property
    def exit_code(self) -> int:
        return 128 + signal.Signals[self.signame].value


# set once SIGTERM came: Ray's ray.get re-raises a handler's Stopped as a plain KeyboardInterrupt
_sigterm_seen = threading.Event()


def raise_on_sigterm() -> None:
    """SIGTERM raised as Stopped where the verb runs (the main thread). Called again after
    ray.init, whose own handler exits without a word."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)


def _sigterm(signum, frame):
    _sigterm_seen.set()
    raise Stopped("SIGTERM")


def stopped(exc: BaseException, note: str = "") -> Stopped:
    """A KeyboardInterrupt (or Ray Train's exit once its Ctrl-C handler has aborted a run) as
    Stopped, named by the signal that raised it."""
    if isinstance(exc, Stopped):
        return Stopped(exc.signame, note or exc.note)
    return Stopped("SIGTERM" if _sigterm_seen.is_set() else "SIGINT", note)


def root_cause(exc: BaseException) -> BaseException:
    """The error under Ray's wrappers: a RayTaskError's cause, a Ray Train worker's failure (an
    EdnError's rank first, else the lowest rank's), a Ray Train controller's failure."""
    seen = []
    while (inner := _wrapped(exc)) is not None and all(inner is not s for s in seen):
        seen.append(exc)
        exc = inner
    return exc


def user_error(exc: BaseException) -> EdnError | None:
    """The EdnError `exc` is or wraps (through Ray's wrappers and `raise ... from`); None when
    there is none. Ray keeps no exception object for an actor whose constructor raised, nor for
    Ray Data's user-code errors: their EdnError is read from the traceback text Ray keeps (its
    last `edn.module.Class: message` line)."""
    chain = []
    while exc is not None and all(exc is not e for e in chain):
        chain.append(exc)
        exc = _wrapped(exc) or exc.__cause__
    for e in chain:
        if isinstance(e, EdnError) and _wrapped(e) is None:  # not a RayTaskError(EdnError) wrapper
            return e
    for e in chain:
        if type(e).__module__.startswith("ray."):
            found = _from_traceback_text(str(e))
            if found is not None:
                return found
    return None


def _wrapped(exc: BaseException) -> BaseException | None:
    failures = vars(exc).get("worker_failures")  # ray.train.WorkerGroupError: rank -> exception
    if isinstance(failures, dict) and failures:
        ranked = [failures[rank] for rank in sorted(failures)]
        return next((e for e in ranked if user_error(e) is not None), ranked[0])
    for name in ("controller_failure", "cause"):  # ray.train.ControllerError; ray.exceptions.RayTaskError
        inner = vars(exc).get(name)  # not getattr: RayTaskError(X) hands unknown names to its cause
        if isinstance(inner, BaseException) and inner is not exc:
            return inner
    return None


_EXCEPTION_LINE = re.compile(r"^(edn(?:\.\w+)+)\.(\w+): (.*)", re.MULTILINE)


def _from_traceback_text(text: str) -> EdnError | None:
    """The last EdnError a formatted traceback names, with its message (to the next blank line)."""
    for match in reversed(list(_EXCEPTION_LINE.finditer(text))):
        module, name = match.group(1), match.group(2)
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, EdnError):
            message = text[match.start(3):].split("\n\n")[0].strip()
            return EdnError(message)
    return None
