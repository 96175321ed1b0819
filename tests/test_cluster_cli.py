"""`edn cluster submit|status|logs|stop` against a real Kubernetes API server on loopback
(tests/k8s/apiserver.py: etcd + kube-apiserver 1.20 with KubeRay's published RayJob and RayCluster
CRDs installed, tests/k8s/kuberay_crds.py), as the job submitter of infra/k8s/rbac.yaml; the test
plays KubeRay's part (status) and the kubelet's (logs). Then `ray job submit` with the Ray token the
submitter reads from its Secret, against a token-auth Ray head (tests/ray_head.py)."""
from __future__ import annotations

import base64
import json
import os

import pytest
import yaml

from edn import cluster
from edn.cli import main
from k8s import apiserver, kuberay_crds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "cluster", "rayjob-train.yaml")
RAY_TOKEN_SECRET = "edn-ray-auth"


# --- without a server: the file and the overrides ------------------------------------------------

def test_a_file_that_is_not_a_rayjob_is_named_in_the_error(tmp_path):
    raycluster = os.path.join(ROOT, "cluster", "raycluster.yaml")
    with pytest.raises(cluster.ClusterError,
                       match=r"raycluster.yaml: not a RayJob: apiVersion 'ray.io/v1', kind 'RayCluster'"):
        cluster.load_rayjob(raycluster)
    two = tmp_path / "two.yaml"
    two.write_text(open(TRAIN).read() + "\n---\n" + open(TRAIN).read())
    with pytest.raises(cluster.ClusterError, match="two.yaml: expected one RayJob document, found 2"):
        cluster.load_rayjob(str(two))


def test_a_rayjob_whose_cluster_has_no_token_authentication_is_refused(tmp_path):
    job = yaml.safe_load(open(TRAIN))
    for auth in (None, {"mode": "disabled"}):
        job["spec"]["rayClusterSpec"]["authOptions"] = auth
        path = tmp_path / "open.yaml"
        path.write_text(yaml.safe_dump(job))
        with pytest.raises(cluster.ClusterError, match=r"open.yaml: the RayJob's Ray cluster has no token "
                                                       r"authentication: set spec.rayClusterSpec.authOptions.mode"):
            cluster.load_rayjob(str(path))


def test_overrides_reach_every_pod_and_the_runtime_env():
    job = cluster.load_rayjob(TRAIN)
    out = cluster.apply_overrides(job, cluster.Overrides(name="edn-train-bob", namespace="team-b",
                                                         image="example/edn:1",
                                                         entrypoint="python -m ray_jobs.train --target bob",
                                                         env={"MLFLOW_EXPERIMENT_NAME": "bob"}))
    assert out["metadata"]["name"] == "edn-train-bob" and out["metadata"]["namespace"] == "team-b"
    assert out["spec"]["entrypoint"] == "python -m ray_jobs.train --target bob"
    spec = out["spec"]["rayClusterSpec"]
    templates = [spec["headGroupSpec"]["template"], *[g["template"] for g in spec["workerGroupSpecs"]],
                 out["spec"]["submitterPodTemplate"]]
    assert [c["image"] for t in templates for c in t["spec"]["containers"]] == ["example/edn:1"] * 3
    assert yaml.safe_load(out["spec"]["runtimeEnvYAML"])["env_vars"] == {
        "PYTHONUNBUFFERED": "1", "NCCL_DEBUG": "WARN", "MLFLOW_EXPERIMENT_NAME": "bob"}
    assert job["metadata"]["name"] == "edn-train-alice"  # the loaded file is left as it was


def test_no_kubeconfig_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["cluster", "status", "x"]) == 2
    assert f"no kubeconfig at {tmp_path}/.kube/config" in capsys.readouterr().err


# --- against the API server ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = apiserver.missing()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the API server tests: {why}")
        pytest.skip(why)
    from kubernetes import config, utils
    srv = apiserver.LocalApiServer(str(tmp_path_factory.mktemp("apiserver"))).start()
    admin = config.new_client_from_config(config_file=srv.kubeconfig(apiserver.ADMIN_TOKEN))
    for kind in ("RayJob", "RayCluster"):
        _install_crd(admin, kind)
    # infra/k8s as a cluster admin would apply it (the ConfigMap is kustomize's, not in a file),
    # then cluster/'s NetworkPolicies and the Ray token Secret (made by hand: docs/cluster-security.md)
    for path in ("infra/k8s/namespaces.yaml", "infra/k8s/serviceaccounts.yaml", "infra/k8s/rbac.yaml",
                 "infra/k8s/mlflow-postgres.yaml", "infra/k8s/mlflow.yaml", "cluster/networkpolicy.yaml"):
        for doc in yaml.safe_load_all(open(os.path.join(ROOT, path))):
            utils.create_from_dict(admin, doc)
    kubelet = apiserver.FakeKubelet(srv.certs, {})
    srv.admin, srv.kubelet = admin, kubelet
    yield srv
    kubelet.close()
    srv.stop()


def _install_crd(admin, kind: str) -> None:
    from kubernetes import client
    extensions = client.ApiextensionsV1Api(admin)
    name = extensions.create_custom_resource_definition(kuberay_crds.api_server_crd(kind)).metadata.name
    _wait(lambda: any(c.type == "Established" and c.status == "True"
                      for c in extensions.read_custom_resource_definition(name).status.conditions or []))


def _defaults_added(sent, stored, path: str = "") -> dict:
    """{dotted path: value} of what `stored` has and `sent` had not (the CRD's defaults, filled in
    by the API server); fails when anything sent was dropped (pruned) or changed."""
    if isinstance(sent, dict):
        assert isinstance(stored, dict) and not sent.keys() - stored.keys(), \
            f"pruned: {path}.{sorted(sent.keys() - stored.keys())}"
        added = {f"{path}.{k}".lstrip("."): stored[k] for k in stored.keys() - sent.keys()}
        for k in sent:
            added |= _defaults_added(sent[k], stored[k], f"{path}.{k}")
        return added
    if isinstance(sent, list):
        assert isinstance(stored, list) and len(stored) == len(sent), path
        added = {}
        for i, (a, b) in enumerate(zip(sent, stored)):
            added |= _defaults_added(a, b, f"{path}.{i}")
        return added
    assert sent == stored, path
    return {}


def _crd_defaults(cluster_spec: dict, prefix: str = "") -> dict:
    """What KubeRay's CRD defaults in edn's cluster specs: each head port's protocol, each worker
    group's numOfHosts and priority."""
    ports = cluster_spec["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    out = {f"{prefix}headGroupSpec.template.spec.containers.0.ports.{i}.protocol": "TCP" for i in range(len(ports))}
    for i in range(len(cluster_spec["workerGroupSpecs"])):
        out |= {f"{prefix}workerGroupSpecs.{i}.numOfHosts": 1, f"{prefix}workerGroupSpecs.{i}.priority": 0}
    return out


def _wait(check, timeout=30.0):
    import time
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def _edn(server, capsys, *argv, token=apiserver.SUBMITTER_TOKEN) -> tuple[int, dict | None, str, str]:
    code = main(["cluster", *argv, "--kubeconfig", server.kubeconfig(token, namespace="edn")])
    out, err = capsys.readouterr()
    result = json.loads(out[out.rfind("\n{") + 1:]) if code == 0 else None  # the JSON summary comes last
    return code, result, out, err


def test_submit_status_logs_stop_as_the_job_submitter(server, capsys):
    from kubernetes import client
    custom, core = client.CustomObjectsApi(server.admin), client.CoreV1Api(server.admin)

    code, result, _, err = _edn(server, capsys, "submit", TRAIN, "--name", "edn-train-t1",
                                "--image", "example/edn:test",
                                "--env", "MLFLOW_EXPERIMENT_NAME=t1")
    assert code == 0, err
    assert result["name"] == "edn-train-t1" and result["namespace"] == "edn" and result["uid"]
    stored = custom.get_namespaced_custom_object("ray.io", "v1", "edn", "rayjobs", "edn-train-t1")
    sent = cluster.apply_overrides(cluster.load_rayjob(TRAIN), cluster.Overrides(
        "edn-train-t1", "edn", "example/edn:test", "", {"MLFLOW_EXPERIMENT_NAME": "t1"}))
    # nothing pruned: every field is one KubeRay's CRD knows; the API server adds only its defaults
    assert _defaults_added(sent["spec"], stored["spec"]) == _crd_defaults(sent["spec"]["rayClusterSpec"],
                                                                          "rayClusterSpec.")
    worker = stored["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["containers"][0]["image"] == "example/edn:test"

    code, result, _, _ = _edn(server, capsys, "status", "edn-train-t1")
    assert code == 0 and result["jobStatus"] == "" and result["jobDeploymentStatus"] == ""

    # KubeRay's part: the operator reports through the status subresource
    custom.patch_namespaced_custom_object_status("ray.io", "v1", "edn", "rayjobs", "edn-train-t1", {"status": {
        "jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "rayClusterName": "edn-train-t1-x7k2p",
        "jobId": "edn-train-t1-abcde", "startTime": "2025-06-01T10:00:00Z"}})
    code, result, _, _ = _edn(server, capsys, "status", "edn-train-t1")
    assert code == 0
    assert (result["jobStatus"], result["jobDeploymentStatus"], result["rayClusterName"], result["jobId"]) == \
        ("RUNNING", "Running", "edn-train-t1-x7k2p", "edn-train-t1-abcde")

    code, _, _, err = _edn(server, capsys, "logs", "edn-train-t1")
    assert code == 2 and "has no submitter or head pod yet (jobDeploymentStatus Running)" in err

    # The Job controller's and kubelet's part: the submitter pod, on a node whose kubelet is fake
    core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="node-1")))
    core.patch_node_status("node-1", {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": server.kubelet.port}}}})
    def pod(name, labels):
        core.create_namespaced_pod("edn", client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(node_name="node-1",
                                  containers=[client.V1Container(name="ray-job-submitter", image="x")])))
        server.kubelet.logs[name] = f"log of {name}\nTailing logs until the job exits\nstep 100 G_gan 0.71\n"

    # no submitter pod yet (HTTPMode has none): the head pod of the cluster named in the status
    pod("edn-train-t1-x7k2p-head-abc", {"ray.io/cluster": "edn-train-t1-x7k2p", "ray.io/node-type": "head"})
    pod("edn-train-other-head-def", {"ray.io/cluster": "edn-train-other", "ray.io/node-type": "head"})
    code, result, out, err = _edn(server, capsys, "logs", "edn-train-t1")
    assert code == 0, err
    assert result["pod"] == "edn-train-t1-x7k2p-head-abc" and out.startswith("log of edn-train-t1-x7k2p-head-abc\n")

    pod("edn-train-t1-q8z4w", {"job-name": "edn-train-t1"})
    pod("other-job-zz", {"job-name": "edn-train-other"})
    code, result, out, err = _edn(server, capsys, "logs", "edn-train-t1", "--tail", "2")
    assert code == 0, err
    assert result["pod"] == "edn-train-t1-q8z4w"
    assert out.startswith("log of edn-train-t1-q8z4w\n")
    assert server.kubelet.requests[-1].startswith("/containerLogs/edn/edn-train-t1-q8z4w/ray-job-submitter?")
    assert "tailLines=2" in server.kubelet.requests[-1]

    code, result, _, _ = _edn(server, capsys, "stop", "edn-train-t1")
    assert code == 0 and result == {"name": "edn-train-t1", "namespace": "edn", "deleted": True}
    code, _, _, err = _edn(server, capsys, "status", "edn-train-t1")
    assert code == 2 and "RayJob edn-train-t1 in namespace edn: no such RayJob" in err


def test_submitting_the_same_name_twice_says_so(server, capsys):
    assert _edn(server, capsys, "submit", TRAIN, "--name", "edn-train-t2")[0] == 0
    code, _, _, err = _edn(server, capsys, "submit", TRAIN, "--name", "edn-train-t2")
    assert code == 2 and "RayJob edn-train-t2 already exists in namespace edn" in err
    assert _edn(server, capsys, "stop", "edn-train-t2")[0] == 0


def test_the_submitter_role_is_enough_and_no_more(server, capsys):
    """infra/k8s/rbac.yaml, evaluated by the API server's own RBAC authorizer."""
    from kubernetes import client, config
    submitter = config.new_client_from_config(config_file=server.kubeconfig(apiserver.SUBMITTER_TOKEN))
    auth = client.AuthorizationV1Api(submitter)

    def allowed(verb, resource, group="", namespace="edn", subresource="", name=""):
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource, group=group,
                                                            namespace=namespace, subresource=subresource,
                                                            name=name)))
        return auth.create_self_subject_access_review(review).status.allowed

    for verb in ("create", "get", "list", "watch", "delete"):
        assert allowed(verb, "rayjobs", "ray.io")
    assert allowed("get", "pods", subresource="log") and allowed("list", "pods")
    assert not allowed("create", "rayclusters", "ray.io")
    assert not allowed("patch", "rayjobs", "ray.io", subresource="status")  # only the operator reports status
    # `ray job submit` to the RayCluster edn: its token's Secret, by name, and a port-forward to its head
    assert allowed("get", "secrets", name=RAY_TOKEN_SECRET)
    assert allowed("get", "services", name="edn-head-svc") and allowed("create", "pods", subresource="portforward")
    assert not allowed("get", "secrets", name="edn-train-bob-x7k2p")  # a RayJob cluster's token: KubeRay's
    assert not allowed("get", "secrets") and not allowed("list", "secrets") and not allowed("watch", "secrets")
    assert not allowed("get", "secrets", namespace="edn-mlflow", name="mlflow-db")
    assert not allowed("update", "secrets", name=RAY_TOKEN_SECRET)
    assert not allowed("create", "networkpolicies", "networking.k8s.io")
    assert not allowed("delete", "networkpolicies", "networking.k8s.io", name="edn-ray-nodes")
    assert not allowed("create", "pods", subresource="exec")
    assert not allowed("create", "rayjobs", "ray.io", namespace="default")
    # and edn cluster, run as the submitter in another namespace, gets the API server's refusal
    code, _, _, err = _edn(server, capsys, "submit", TRAIN, "--name", "x", "-n", "default")
    assert code == 2 and "403" in err and "forbidden" in err


def test_a_rayjob_with_a_misspelt_field_is_pruned_by_the_crd(server):
    """What the manifest tests guard against: the API server accepts a misspelt field silently and
    drops it (structural pruning), so the job would run without the setting."""
    from kubernetes import client
    job = cluster.apply_overrides(cluster.load_rayjob(TRAIN), cluster.Overrides(name="edn-train-typo"))
    job["spec"]["shutdownAfterJobFinish"] = True
    custom = client.CustomObjectsApi(server.admin)
    stored = custom.create_namespaced_custom_object("ray.io", "v1", "edn", "rayjobs", job)
    assert "shutdownAfterJobFinish" not in stored["spec"] and stored["spec"]["shutdownAfterJobFinishes"] is True
    custom.delete_namespaced_custom_object("ray.io", "v1", "edn", "rayjobs", "edn-train-typo")


def test_the_raycluster_and_network_policies_are_stored_as_written(server):
    """cluster/: the API server validates the NetworkPolicies (Kubernetes' own types) and stores the
    RayCluster against KubeRay's CRD with nothing pruned."""
    from kubernetes import client
    sent = yaml.safe_load(open(os.path.join(ROOT, "cluster", "raycluster.yaml")))
    custom = client.CustomObjectsApi(server.admin)
    stored = custom.create_namespaced_custom_object("ray.io", "v1", "edn", "rayclusters", sent)
    try:
        assert _defaults_added(sent["spec"], stored["spec"]) == _crd_defaults(sent["spec"])
    finally:
        custom.delete_namespaced_custom_object("ray.io", "v1", "edn", "rayclusters", "edn")
    policies = client.NetworkingV1Api(server.admin).list_namespaced_network_policy("edn").items
    assert sorted(p.metadata.name for p in policies) == ["edn-ray-head-submit", "edn-ray-nodes"]


def test_ray_job_submit_with_the_token_the_submitter_reads_from_its_secret(server, ray_head):
    """docs/cluster-security.md's `ray job submit` to the RayCluster edn, its head played by a `ray
    start` head with token authentication (tests/ray_head.py): the job submitter reads the token
    from the Secret through the API server (as `kubectl get secret` does) and is accepted; a client
    without a token, or with another, is refused."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    admin = client.CoreV1Api(server.admin)
    for name, token in ((RAY_TOKEN_SECRET, ray_head.token), ("edn-train-bob-x7k2p", "another cluster's token")):
        admin.create_namespaced_secret("edn", client.V1Secret(
            metadata=client.V1ObjectMeta(name=name), string_data={"auth_token": token}))
    submitter = client.CoreV1Api(config.new_client_from_config(
        config_file=server.kubeconfig(apiserver.SUBMITTER_TOKEN)))
    token = base64.b64decode(submitter.read_namespaced_secret(RAY_TOKEN_SECRET, "edn").data["auth_token"]).decode()
    for forbidden in (lambda: submitter.read_namespaced_secret("edn-train-bob-x7k2p", "edn"),
                      lambda: submitter.list_namespaced_secret("edn")):
        with pytest.raises(ApiException) as refused:
            forbidden()
        assert refused.value.status == 403

    def submit(submission_id: str, token):
        return ray_head.ray("job", "submit", "--address", ray_head.dashboard_url, "--submission-id", submission_id,
                            "--", "echo", f"{submission_id} ran", check=False, token=token)

    accepted = submit("with-the-secrets-token", token)
    assert accepted.returncode == 0 and "with-the-secrets-token ran" in accepted.stdout, accepted.stderr[-2000:]
    for submission_id, other, answer in (("without-a-token", False, "Unauthorized: Missing authentication token"),
                                         ("with-another-token", "0" * 64, "Forbidden: Invalid authentication token")):
        refused = submit(submission_id, other)
        assert refused.returncode != 0 and answer in refused.stderr, refused.stderr[-2000:]
    jobs = ray_head.ray("job", "list", "--address", ray_head.dashboard_url).stdout
    assert "with-the-secrets-token" in jobs and "without-a-token" not in jobs and "with-another-token" not in jobs


def test_missing_namespace_and_missing_crd_are_told_apart(server, capsys):
    from kubernetes import client
    token = apiserver.ADMIN_TOKEN
    code, _, _, err = _edn(server, capsys, "submit", TRAIN, "-n", "nowhere", token=token)
    assert code == 2 and "namespace nowhere does not exist" in err
    extensions = client.ApiextensionsV1Api(server.admin)
    extensions.delete_custom_resource_definition("rayjobs.ray.io")
    try:
        _wait(lambda: "rayjobs" not in [r.name for r in client.CustomObjectsApi(server.admin).get_api_resources(
            "ray.io", "v1").resources])
        code, _, _, err = _edn(server, capsys, "status", "edn-train-t1", token=token)
        assert code == 2 and "does not serve rayjobs.ray.io/v1: is the KubeRay operator (its CRDs) installed?" in err
    finally:
        _install_crd(server.admin, "RayJob")
