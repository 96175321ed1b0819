"""Where a command's CPU goes, by process kind: `python -m tests.suite_cpu OUT.json -- CMD ...`.

Runs CMD (e.g. `bash .ci/run`) and, until it ends, reads every process's CPU time (user + system,
/proc/PID/stat) every 0.5 s; a process's last reading before it exits is its CPU time, so a process
that lives less than 0.5 s is missed (the machine's busy total from /proc/stat is written beside, to
show how much). Processes are grouped by kind: Ray titles its actors' and tasks' processes
`ray::Name`; others by program and script (`edn train`, `mlflow server`, `python -m uvicorn`,
`pytest worker` for pytest-xdist's workers). Writes {kind: CPU s}, {kind: processes seen}, the
wall, the busy total and this sampler's own CPU to OUT.json and prints the largest kinds. Used
for docs/testing.md#time."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


NO_COMMAND = "(no command line)"  # a process exiting (a zombie) or a kernel thread


def kind(argv: list[str]) -> str:
    """What a process is, from its command line."""
    if not argv:
        return NO_COMMAND
    if len(argv) == 1:  # a process that retitled itself (setproctitle) has its title as one string
        argv = argv[0].split()
    if argv[0].startswith("ray::"):
        return argv[0].split()[0]
    program, rest = os.path.basename(argv[0]), argv[1:]
    if not program.startswith("python"):
        return " ".join([program, *rest[:1]]) if program in ("edn", "mlflow", "ray") else program
    if "-c" in rest[:2]:  # pytest-xdist starts its workers with `python -u -c ...exec(eval(sys.stdin...`
        return "pytest worker" if "exec(eval(sys.stdin" in " ".join(rest) else "python -c"
    args = [a for a in rest if a != "-u"]
    if args[:1] == ["-m"]:
        return " ".join(["python -m", *args[1:2]])
    script = os.path.basename(args[0]) if args else ""
    if script in ("edn", "mlflow", "ray", "gcp-storage-emulator"):
        return " ".join([script, *args[1:2]])  # a console script and its verb
    return f"python {script}"


def readings() -> dict[tuple[int, int], tuple[float, str]]:
    """{(pid, start time): (CPU s, kind)} for every process now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:  # exited between listing and reading
            continue
        # after the command's ")": state is field 3, utime 14, stime 15, starttime 22 (man 5 proc)
        cpu = (int(fields[11]) + int(fields[12])) / TICK
        out[(int(pid), int(fields[19]))] = (cpu, kind(argv))
    return out


def remember(last: dict, now: dict) -> None:
    """Takes readings `now` into `last`: a process's last reading before it exits is its CPU time,
    under the kind it had while its command line could still be read."""
    for key, (cpu, name) in now.items():
        last[key] = (cpu, name if name != NO_COMMAND else last.get(key, (0.0, name))[1])


def busy_seconds() -> float:
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / TICK


def main(out: str, command: list[str]) -> int:
    before, last = readings(), {}
    busy0, started = busy_seconds(), time.time()
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        remember(last, readings())
        time.sleep(0.5)
    by_kind: dict[str, float] = {}
    processes: dict[str, int] = {}
    for key, (cpu, name) in last.items():
        by_kind[name] = by_kind.get(name, 0.0) + cpu - before.get(key, (0.0, ""))[0]
        processes[name] = processes.get(name, 0) + 1
    own = resource.getrusage(resource.RUSAGE_SELF)
    kinds = [k for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v >= 0.5]
    result = {"command": command, "returncode": proc.returncode, "wall_s": round(time.time() - started, 1),
              "busy_cpu_s": round(busy_seconds() - busy0, 1), "sampled_cpu_s": round(sum(by_kind.values()), 1),
              "sampler_cpu_s": round(own.ru_utime + own.ru_stime, 1),
              "by_kind": {k: round(by_kind[k], 1) for k in kinds},
              "processes_by_kind": {k: processes[k] for k in kinds}}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wall {result['wall_s']} s, busy {result['busy_cpu_s']} CPU s, sampled {result['sampled_cpu_s']}:")
    for name, cpu in list(result["by_kind"].items())[:25]:
        print(f"  {cpu:8.1f} CPU s  {result['processes_by_kind'][name]:4d} processes  {name}")
    return proc.returncode


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: python -m tests.suite_cpu OUT.json -- CMD ...")
    sys.exit(main(sys.argv[1], sys.argv[3:]))
