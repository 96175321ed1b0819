"""Installs edn and its dev tools into the running venv (the Makefile's set-up step) with uv, in
about a third of pip's time: uv fetches and unpacks wheels in parallel where pip takes one at a
time (measured: docs/testing.md#set-up). uv reads no pip configuration, so the sources pip is
configured with (index, extra indexes, find-links, constraints, certificates: `pip config list`,
from files and PIP_* variables alike) are passed on, and uv picks the best version across them all
as pip does. Bytecode is compiled at install, as pip does: where PYTHONDONTWRITEBYTECODE is set,
nothing else ever writes it and every process would compile its imports again.

Exits non-zero if uv cannot be had or fails; the Makefile then installs with pip alone."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

# pip's setting -> uv's flag; each value of a setting may list several, space-separated
FLAGS = {"index-url": "--index-url", "extra-index-url": "--extra-index-url", "find-links": "--find-links",
         "constraint": "--constraint"}


def pip_settings() -> dict[str, list[str]]:
    """`pip config list` lines, e.g. global.find-links='/opt/wheels' or :env:.find-links='...'."""
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=True).stdout
    settings: dict[str, list[str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rpartition(".")[2]
        settings.setdefault(name, []).extend(shlex.split(value)[0].split() if value else [])
    return settings


def main() -> int:
    bin_dir = os.path.dirname(sys.executable)
    uv = os.path.join(bin_dir, "uv")
    if not os.path.exists(uv) and subprocess.run([sys.executable, "-m", "pip", "install", "-q", "uv"]).returncode:
        return 1
    settings = pip_settings()
    args = [uv, "pip", "install", "--python", sys.executable, "--index-strategy", "unsafe-best-match",
            "--compile-bytecode"]
    for name, flag in FLAGS.items():
        for value in dict.fromkeys(settings.get(name, [])):  # pip lists a variable's value and a file's alike
            args += [flag, value]
    env = dict(os.environ)
    if settings.get("cert"):
        env.setdefault("SSL_CERT_FILE", settings["cert"][-1])
    return subprocess.run([*args, "-e", ".[dev]"], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
