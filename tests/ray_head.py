"""A real Ray head started the way a user starts one (`ray start --head`), on loopback, with
token authentication on, for tests that talk to a cluster from outside with `ray job`."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

BIN = os.path.dirname(sys.executable)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports() -> list:
    """`ray start` flags giving a node free ports rather than Ray's fixed defaults: other Ray
    clusters may run on this machine."""
    return [x for flag in ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                           "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
            for x in (flag, free_port())]


@dataclass
class RayHead:
    dashboard_url: str     # for `ray job ...`: --address
    client_env: dict       # what a client needs besides the address: the token, the venv on PATH
    token: str             # the cluster's token
    empty_home: str        # a HOME without ~/.ray/auth_token, for a client that has no token at all

    def ray(self, *args: str, check: bool = True, timeout: float = 300, token: bool | str = True
            ) -> subprocess.CompletedProcess:
        """`ray <args>` as a user runs it: with the cluster's token (True, from its file), with the
        token given (a str, in RAY_AUTH_TOKEN, as KubeRay gives it to its pods and as a submitter
        reading a Secret sets it), or with none (False)."""
        env = {k: v for k, v in self.client_env.items() if not k.startswith("RAY_AUTH")}
        if token is True:
            env = self.client_env
        elif token:
            env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}  # a client sends no token without the mode
        else:
            env["HOME"] = self.empty_home  # else Ray's client would send ~/.ray/auth_token, if there is one
        return subprocess.run([os.path.join(BIN, "ray"), *args], env=env, capture_output=True,
                              text=True, check=check, timeout=timeout)

    def submit(self, submission_id: str, entrypoint: list[str], env_vars: dict | None = None,
               wait: bool = True) -> str:
        """`ray job submit --working-dir <repo>` as the README shows it, waiting for the job (unless
        not `wait`); returns its output (the job's logs, streamed)."""
        runtime_env = ["--runtime-env-json", json.dumps({"env_vars": env_vars})] if env_vars else []
        t0 = time.time()
        done = self.ray("job", "submit", "--address", self.dashboard_url, "--submission-id", submission_id,
                        "--working-dir", REPO, *runtime_env, *([] if wait else ["--no-wait"]), "--", *entrypoint,
                        check=False)
        print(f"job {submission_id}: {time.time() - t0:.1f} s")
        assert done.returncode == 0, f"job {submission_id} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        return done.stdout

    def status_and_logs(self, submission_id: str) -> tuple[str, str]:
        """What `ray job status` says (the CLI logs it to stderr) and `ray job logs`."""
        status = self.ray("job", "status", "--address", self.dashboard_url, submission_id)
        return status.stdout + status.stderr, self.ray("job", "logs", "--address", self.dashboard_url,
                                                       submission_id).stdout


def start_head(num_cpus: int = 4, env: dict | None = None):
    """Start a head (a generator: yields a RayHead, stops the head after). `env`: extra variables
    for the cluster's processes, as a node's environment would hold them.

    Token auth as Ray's docs say for clusters not started by ray.init(): the token exists before
    the cluster starts, and every node and client is given it (RAY_AUTH_MODE=token with
    RAY_AUTH_TOKEN_PATH here; ~/.ray/auth_token is the default path)."""
    root = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's unix sockets live under it
    token_file, token = os.path.join(root, "auth_token"), secrets.token_hex(32)
    with open(token_file, "w") as f:
        f.write(token)
    os.makedirs(os.path.join(root, "home"))
    client_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "token",
                  "RAY_AUTH_TOKEN_PATH": token_file, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    client_env.pop("RAY_ADDRESS", None)
    port, dashboard = free_port(), free_port()
    ports = ["--port", port, "--dashboard-port", dashboard, "--ray-client-server-port", free_port(), *node_ports()]
    log = open(os.path.join(root, "head.log"), "w")
    proc = subprocess.Popen(
        [os.path.join(BIN, "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--dashboard-host", "127.0.0.1", "--temp-dir", os.path.join(root, "t"), "--num-cpus", str(num_cpus),
         "--disable-usage-stats", "--include-dashboard", "true", *map(str, ports)],
        env={**client_env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
    head = RayHead(f"http://127.0.0.1:{dashboard}", client_env, token, os.path.join(root, "home"))
    try:
        _wait_for_jobs_api(head, proc, os.path.join(root, "head.log"))
        yield head
    finally:
        stop_head(proc)


def stop_head(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM to `ray start --block`, which stops the processes it started: about 4 s for a head
    that ran no job, but ~30 s after `ray job submit` jobs (measured: test_job_submit's teardown
    32.7 s, on the suite's critical path at its end). After `grace_s` what is left of the head's
    process tree is killed."""
    import ray  # noqa: F401, I001 - Ray vendors psutil and puts it on sys.path: first
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    for p in [*tree, proc]:
        try:
            p.kill()
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    proc.wait()


def _wait_for_jobs_api(head: RayHead, proc: subprocess.Popen, log: str) -> None:
    """Until the jobs API answers a client with the token; one without it must be refused."""
    url = f"{head.dashboard_url}/api/jobs/"
    bearer = {"Authorization": f"Bearer {head.token}"}
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(url, headers=bearer), timeout=2)
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as e:
                assert e.code == 401, f"{url} without a token: HTTP {e.code}, not 401"
                return
            raise AssertionError(f"{url} answered without a token: token authentication is off")
        except (urllib.error.HTTPError, urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"ray start --head did not come up: {open(log).read()[-3000:]}")
        time.sleep(1)
