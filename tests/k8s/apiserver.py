"""A real Kubernetes API server on loopback for the tests: etcd plus kube-apiserver 1.20 (built by
tests/k8s/build_apiserver.sh), self-signed certificates, static bearer tokens, RBAC on. There is no
scheduler, controller, kubelet or network plugin (NetworkPolicies are stored, never enforced): a
test plays their parts (status patches, a fake kubelet)."""
from __future__ import annotations

import datetime
import http.server
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request

import yaml

BINARY = os.environ.get("EDN_KUBE_APISERVER", "/var/cache/edn/kube-apiserver")
ADMIN_TOKEN = "edn-test-admin-token"
SUBMITTER_TOKEN = "edn-test-submitter-token"
SUBMITTER_USER = "system:serviceaccount:edn:edn-submitter"  # RBAC matches a ServiceAccount subject by this name


def missing() -> str:
    """Why the API server cannot start here, or "" when it can."""
    if not os.access(BINARY, os.X_OK):
        return f"no kube-apiserver at {BINARY} (run tests/k8s/build_apiserver.sh)"
    if not shutil.which("etcd"):
        return "no etcd on PATH (apt-get install etcd-server; tests/k8s/build_apiserver.sh does)"
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_certificates(folder: str) -> dict[str, str]:
    """A CA, a serving certificate for 127.0.0.1 signed by it, and the service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def save(name: str, data: bytes) -> str:
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def pem_key(k) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, server_key, sa_key = key(), key(), key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edn-test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(2)
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    return {
        "ca": save("ca.crt", ca.public_bytes(serialization.Encoding.PEM)),
        "cert": save("server.crt", server.public_bytes(serialization.Encoding.PEM)),
        "key": save("server.key", pem_key(server_key)),
        "sa_key": save("sa.key", pem_key(sa_key)),
        "sa_pub": save("sa.pub", sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)),
    }


class FakeKubelet:
    """Answers the API server's container-log requests (GET /containerLogs/NS/POD/CONTAINER) over
    TLS on loopback, with the lines given per pod; records the paths asked for."""

    def __init__(self, certs: dict[str, str], logs: dict[str, str]):
        self.logs, self.requests = logs, []
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                kubelet.requests.append(self.path)
                parts = self.path.split("?")[0].strip("/").split("/")
                body = kubelet.logs.get(parts[2], "") if parts[0] == "containerLogs" and len(parts) >= 3 else None
                self.send_response(200 if body is not None else 404)
                self.end_headers()
                self.wfile.write((body or "").encode())

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certs["cert"], certs["key"])
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class LocalApiServer:
    def __init__(self, folder: str):
        self.folder = folder
        self.procs: list[subprocess.Popen] = []
        self.certs = _write_certificates(folder)
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"

    def start(self) -> "LocalApiServer":
        etcd_port, peer_port = _free_port(), _free_port()
        self._spawn("etcd", ["etcd", "--data-dir", os.path.join(self.folder, "etcd"), "--name", "edn-test",
                             "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
                             "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                             "--initial-cluster", f"edn-test=http://127.0.0.1:{peer_port}"])
        tokens = os.path.join(self.folder, "tokens.csv")
        with open(tokens, "w") as f:
            f.write(f'{ADMIN_TOKEN},edn-admin,1,"system:masters"\n'
                    f'{SUBMITTER_TOKEN},{SUBMITTER_USER},2,"system:serviceaccounts,system:serviceaccounts:edn"\n')
        c = self.certs
        self._spawn("kube-apiserver", [
            BINARY, "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port), "--insecure-port", "0",
            "--tls-cert-file", c["cert"], "--tls-private-key-file", c["key"],
            "--token-auth-file", tokens, "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-account-key-file", c["sa_pub"], "--service-account-signing-key-file", c["sa_key"],
            "--service-cluster-ip-range", "10.96.0.0/24",
            # No controller manager creates the namespaces' "default" accounts and their token
            # secrets, which the ServiceAccount admission plugin would wait for.
            "--disable-admission-plugins", "ServiceAccount",
            # The fake kubelet serves the same self-signed certificate (no kubelet CA given: the
            # API server does not verify it); the API server reaches it at the node's InternalIP.
            "--kubelet-client-certificate", c["cert"], "--kubelet-client-key", c["key"],
            "--kubelet-preferred-address-types", "InternalIP",
        ])
        self._wait_ready()
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(os.path.join(self.folder, f"{name}.log"), "w")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def _wait_ready(self, timeout: float = 90) -> None:
        context = ssl.create_default_context(cafile=self.certs["ca"])
        request = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(request, context=context, timeout=2).status == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.time() > deadline:
                self.stop()
                logs = {n: open(os.path.join(self.folder, f"{n}.log")).read()[-3000:]
                        for n in ("etcd", "kube-apiserver")}
                raise RuntimeError(f"the API server did not become ready: {logs}")
            time.sleep(0.5)

    def kubeconfig(self, token: str, namespace: str = "") -> str:
        """A kubeconfig file for `token`, as a user would have it."""
        path = os.path.join(self.folder, f"kubeconfig-{token}")
        context = {"cluster": "local", "user": "user", **({"namespace": namespace} if namespace else {})}
        with open(path, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "local",
                "clusters": [{"name": "local",
                              "cluster": {"server": self.url, "certificate-authority": self.certs["ca"]}}],
                "users": [{"name": "user", "user": {"token": token}}],
                "contexts": [{"name": "local", "context": context}],
            }, f)
        return path

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []
