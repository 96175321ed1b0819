"""`edn cluster submit|status|logs|stop`: edn's RayJobs on a KubeRay cluster, through the
Kubernetes API (the `kubernetes` client), from a kubeconfig or from inside a pod. A RayJob whose
Ray cluster would run without token authentication is refused. `edn cluster` itself needs no Ray
token: KubeRay gives each job's cluster and submitter pod theirs (docs/cluster-security.md)."""
from __future__ import annotations

import copy
import dataclasses
import json
import os

import yaml

from edn.errors import EdnError

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayjobs"


class ClusterError(EdnError, ValueError):
    """A RayJob file or a cluster answer that edn cannot act on, said in one sentence."""


@dataclasses.dataclass
class Connection:
    kubeconfig: str = ""   # default: $KUBECONFIG, else ~/.kube/config, else the pod's own account
    context: str = ""      # default: the kubeconfig's current context


@dataclasses.dataclass
class Overrides:
    name: str = ""
    namespace: str = ""
    image: str = ""        # every container of the job's cluster and submitter
    entrypoint: str = ""
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # added to runtimeEnvYAML env_vars


def api_client(conn: Connection):
    """An ApiClient of its own (the kubernetes module's global configuration is left alone)."""
    from kubernetes import client, config
    path = conn.kubeconfig or os.environ.get("KUBECONFIG", "") or os.path.expanduser("~/.kube/config")
    if os.path.exists(path.split(os.pathsep)[0]):
        return config.new_client_from_config(config_file=path, context=conn.context or None)
    if conn.kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise ClusterError(f"no kubeconfig at {path} (give --kubeconfig or set KUBECONFIG), "
                           "and not running in a Kubernetes pod")
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def default_namespace(conn: Connection) -> str:
    """The kubeconfig context's namespace, else the pod's own, else "default"."""
    from kubernetes import config
    try:
        contexts, active = config.list_kube_config_contexts(config_file=conn.kubeconfig or None)
    except config.ConfigException:
        pod_namespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
        return open(pod_namespace).read().strip() if os.path.exists(pod_namespace) else "default"
    context = next((c for c in contexts if c["name"] == conn.context), {}) if conn.context else active
    return context.get("context", {}).get("namespace") or "default"


def load_rayjob(url: str) -> dict:
    """The one RayJob in the YAML file at `url` (a path or any fsspec URL)."""
    from edn.storage import read_bytes
    try:
        docs = [d for d in yaml.safe_load_all(read_bytes(url)) if d is not None]
    except yaml.YAMLError as e:
        raise ClusterError(f"{url}: not YAML: {e}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ClusterError(f"{url}: expected one RayJob document, found {len(docs)} documents")
    job = docs[0]
    if (job.get("apiVersion"), job.get("kind")) != (f"{GROUP}/{VERSION}", "RayJob"):
        raise ClusterError(f"{url}: not a RayJob: apiVersion {job.get('apiVersion')!r}, kind {job.get('kind')!r} "
                           f"(expected {GROUP}/{VERSION}, RayJob)")
    if not job.get("metadata", {}).get("name"):
        raise ClusterError(f"{url}: the RayJob has no metadata.name (or give --name)")
    cluster = (job.get("spec") or {}).get("rayClusterSpec")
    if cluster is not None and (cluster.get("authOptions") or {}).get("mode") != "token":
        # Its pods run with the workload identity's bucket rights: anyone reaching the head could use them.
        raise ClusterError(f"{url}: the RayJob's Ray cluster has no token authentication: set "
                           "spec.rayClusterSpec.authOptions.mode: token (docs/cluster-security.md)")
    return job


def _pod_templates(spec: dict) -> list[dict]:
    cluster = spec.get("rayClusterSpec") or {}
    templates = [cluster.get("headGroupSpec", {}).get("template")]
    templates += [g.get("template") for g in cluster.get("workerGroupSpecs", [])]
    templates.append(spec.get("submitterPodTemplate"))
    return [t for t in templates if t]


def apply_overrides(job: dict, o: Overrides) -> dict:
    job = copy.deepcopy(job)
    meta, spec = job.setdefault("metadata", {}), job["spec"]
    if o.name:
        meta["name"] = o.name
    if o.namespace:
        meta["namespace"] = o.namespace
    if o.entrypoint:
        spec["entrypoint"] = o.entrypoint
    if o.image:
        for template in _pod_templates(spec):
            for container in template.get("spec", {}).get("containers", []):
                container["image"] = o.image
    if o.env:
        runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **o.env}
        spec["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=False)
    return job


def _api_error(e, what: str) -> ClusterError:
    """The API server's refusal in one sentence. A 404 that names no object (a plain "404 page not
    found") means the API server does not serve RayJobs at all: no KubeRay CRDs."""
    try:
        body = json.loads(e.body or "")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if e.status == 404:
            return ClusterError(f"{what}: the API server does not serve {PLURAL}.{GROUP}/{VERSION}: "
                                "is the KubeRay operator (its CRDs) installed?")
        return ClusterError(f"{what}: {e.status} {e.reason}")
    details = body.get("details") or {}
    if e.status == 404 and details.get("kind") == "namespaces":
        return ClusterError(f"{what}: namespace {details.get('name')} does not exist")
    if e.status == 404 and details.get("kind") == PLURAL:
        return ClusterError(f"{what}: no such RayJob")
    return ClusterError(f"{what}: {e.status} {body.get('message') or e.reason}")


def submit(api, job: dict) -> dict:
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    try:
        created = CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, job)
    except ApiException as e:
        if e.status == 409:
            raise ClusterError(f"RayJob {name} already exists in namespace {namespace}: "
                               "give another --name, or `edn cluster stop` it first") from None
        raise _api_error(e, f"submitting RayJob {name} to namespace {namespace}") from None
    return {"name": name, "namespace": namespace, "uid": created["metadata"]["uid"],
            "entrypoint": created["spec"].get("entrypoint", "")}


def _get(api, name: str, namespace: str) -> dict:
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException
    try:
        return CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        raise _api_error(e, f"reading RayJob {name} in namespace {namespace}") from None


STATUS_FIELDS = ("jobStatus", "jobDeploymentStatus", "rayClusterName", "jobId", "dashboardURL",
                 "reason", "message", "startTime", "endTime")


def status(api, name: str, namespace: str) -> dict:
    """KubeRay's view of the job: jobStatus is Ray's (PENDING, RUNNING, SUCCEEDED, FAILED,
    STOPPED); jobDeploymentStatus is the operator's (Initializing, Running, Complete, Failed, ...)."""
    job_status = _get(api, name, namespace).get("status") or {}
    return {"name": name, "namespace": namespace, **{k: job_status.get(k, "") for k in STATUS_FIELDS}}


def log_pod(api, name: str, namespace: str) -> str:
    """The pod whose log is the job's: the newest submitter pod (KubeRay's K8sJobMode runs
    `ray job submit` in a Kubernetes Job named after the RayJob), else the job cluster's head."""
    from kubernetes.client import CoreV1Api
    core = CoreV1Api(api)
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    if not pods:
        state = status(api, name, namespace)
        if state["rayClusterName"]:
            pods = core.list_namespaced_pod(
                namespace, label_selector=f"ray.io/cluster={state['rayClusterName']},ray.io/node-type=head").items
        if not pods:
            raise ClusterError(f"RayJob {name} has no submitter or head pod yet "
                               f"(jobDeploymentStatus {state['jobDeploymentStatus'] or 'not set'})")
    return max(pods, key=lambda p: p.metadata.creation_timestamp).metadata.name


def logs(api, name: str, namespace: str, tail: int | None = None) -> tuple[str, str]:
    """(pod name, its log)."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException
    pod = log_pod(api, name, namespace)
    try:
        text = CoreV1Api(api).read_namespaced_pod_log(pod, namespace, tail_lines=tail)
    except ApiException as e:
        raise _api_error(e, f"reading the log of pod {pod} (RayJob {name})") from None
    return pod, text


def stop(api, name: str, namespace: str) -> dict:
    """Deletes the RayJob; KubeRay then deletes its cluster and submitter (owner references)."""
    from kubernetes.client import CustomObjectsApi, V1DeleteOptions
    from kubernetes.client.exceptions import ApiException
    try:
        CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, body=V1DeleteOptions(propagation_policy="Background"))
    except ApiException as e:
        raise _api_error(e, f"deleting RayJob {name} in namespace {namespace}") from None
    return {"name": name, "namespace": namespace, "deleted": True}
