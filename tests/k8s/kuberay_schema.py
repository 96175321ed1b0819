"""Schemas of KubeRay's `ray.io/v1` RayCluster and RayJob, for checking edn's manifests.

Written here from KubeRay's API reference (ray-project/kuberay, docs/reference/api.md, section
ray.io/v1; the v1.4 API: Apache-2.0), field by field: KubeRay's published CRD files are generated
from the same Go types by controller-gen, but they are over 1 MB each (every pod template inlined)
and could not be fetched here. Kubernetes' own types inside them (pod templates, Service,
resource requirements, env) are Kubernetes' schemas from kubernetes-validate, not copies.

Two renderings of one description:
- `json_schemas()`: JSON Schema for `jsonschema`, every KubeRay object closed
  (additionalProperties: false) and the Kubernetes types in strict form, so a misspelt field
  anywhere in a manifest fails. (KubeRay's CRD is not closed: the API server prunes unknown
  fields silently, which is exactly the failure these tests exist to catch.)
- `crd(kind)`: an apiextensions.k8s.io/v1 CustomResourceDefinition with a structural schema,
  for a real API server (tests/test_cluster_cli.py); the embedded Kubernetes types are left open
  there (x-kubernetes-preserve-unknown-fields), the KubeRay fields are pruned if unknown.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Callable
from importlib import resources

KUBERAY_VERSION = "v1.4"
KUBERNETES_VERSION = "1.32"   # the Kubernetes schemas the manifests are checked against (GKE's)
DEFINITIONS_ID = "/api/_definitions.json"

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_INT = {"type": "integer", "format": "int32"}
_BOOL = {"type": "boolean"}
_STR = {"type": "string"}


def _obj(properties: dict, required: tuple[str, ...] = ()) -> dict:
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _array(items: dict) -> dict:
    return {"type": "array", "items": items}


def _ray_types(k8s: Callable[[str], dict]) -> dict[str, dict]:
    """{"RayCluster": schema, "RayJob": schema}; k8s("core.v1.PodTemplateSpec") is a Kubernetes type."""
    autoscaler = _obj({
        "resources": k8s("core.v1.ResourceRequirements"),
        "image": _STR,
        "imagePullPolicy": _STR,
        "securityContext": k8s("core.v1.SecurityContext"),
        "idleTimeoutSeconds": _INT,
        "upscalingMode": {"type": "string", "enum": ["Default", "Aggressive", "Conservative"]},
        "version": {"type": "string", "enum": ["v1", "v2"]},
        "env": _array(k8s("core.v1.EnvVar")),
        "envFrom": _array(k8s("core.v1.EnvFromSource")),
        "volumeMounts": _array(k8s("core.v1.VolumeMount")),
    })
    redis_credential = _obj({"valueFrom": k8s("core.v1.EnvVarSource"), "value": _STR})
    head = _obj({
        "template": k8s("core.v1.PodTemplateSpec"),
        "headService": k8s("core.v1.Service"),
        "enableIngress": _BOOL,
        "rayStartParams": _STR_MAP,
        "serviceType": _STR,
    }, required=("template",))
    worker = _obj({
        "suspend": _BOOL,
        "groupName": _STR,
        "replicas": _INT,
        "minReplicas": _INT,
        "maxReplicas": _INT,
        "idleTimeoutSeconds": _INT,
        "rayStartParams": _STR_MAP,
        "template": k8s("core.v1.PodTemplateSpec"),
        "scaleStrategy": _obj({"workersToDelete": _array(_STR)}),
        "numOfHosts": _INT,
    }, required=("groupName", "template"))
    cluster_spec = _obj({
        "suspend": _BOOL,
        "managedBy": _STR,
        "autoscalerOptions": autoscaler,
        "headServiceAnnotations": _STR_MAP,
        "enableInTreeAutoscaling": _BOOL,
        "gcsFaultToleranceOptions": _obj({
            "redisUsername": redis_credential,
            "redisPassword": redis_credential,
            "externalStorageNamespace": _STR,
            "redisAddress": _STR,
        }, required=("redisAddress",)),
        "headGroupSpec": head,
        "rayVersion": _STR,
        "workerGroupSpecs": _array(worker),
    }, required=("headGroupSpec",))
    deletion_policy = _obj({"policy": {"type": "string",
                                       "enum": ["DeleteCluster", "DeleteWorkers", "DeleteSelf", "DeleteNone"]}},
                           required=("policy",))
    job_spec = _obj({
        "activeDeadlineSeconds": _INT,
        "backoffLimit": _INT,
        "rayClusterSpec": cluster_spec,
        "submitterPodTemplate": k8s("core.v1.PodTemplateSpec"),
        "metadata": _STR_MAP,
        "clusterSelector": _STR_MAP,
        "submitterConfig": _obj({"backoffLimit": _INT}),
        "managedBy": _STR,
        "deletionStrategy": _obj({"onSuccess": deletion_policy, "onFailure": deletion_policy},
                                 required=("onSuccess", "onFailure")),
        "entrypoint": _STR,
        "runtimeEnvYAML": _STR,
        "jobId": _STR,
        # The operator rejects other modes (the CRD itself only says string).
        "submissionMode": {"type": "string", "enum": ["K8sJobMode", "HTTPMode", "InteractiveMode"]},
        "entrypointResources": _STR,
        "entrypointNumCpus": {"type": "number"},
        "entrypointNumGpus": {"type": "number"},
        "ttlSecondsAfterFinished": _INT,
        "shutdownAfterJobFinishes": _BOOL,
        "suspend": _BOOL,
    })
    time = {"type": "string", "format": "date-time"}
    job_status = _obj({
        "jobId": _STR,
        "rayClusterName": _STR,
        "dashboardURL": _STR,
        "jobStatus": _STR,
        "jobDeploymentStatus": _STR,
        "reason": _STR,
        "message": _STR,
        "startTime": time,
        "endTime": time,
        "succeeded": _INT,
        "failed": _INT,
        "observedGeneration": {"type": "integer", "format": "int64"},
        "rayJobInfo": _obj({"startTime": time, "endTime": time}),
        "rayClusterStatus": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    })

    def resource(kind: str, spec: dict, status: dict) -> dict:
        return _obj({
            "apiVersion": {"type": "string", "enum": ["ray.io/v1"]},
            "kind": {"type": "string", "enum": [kind]},
            "metadata": k8s("meta.v1.ObjectMeta"),
            "spec": spec,
            "status": status,
        }, required=("apiVersion", "kind", "metadata", "spec"))

    cluster_status = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {"RayCluster": resource("RayCluster", cluster_spec, cluster_status),
            "RayJob": resource("RayJob", job_spec, job_status)}


def _k8s_ref(name: str) -> dict:
    group = "apimachinery.pkg.apis." if name.startswith("meta.") else "api."
    return {"$ref": f"{DEFINITIONS_ID}#/$defs/io.k8s.{group}{name}"}


def kubernetes_definitions() -> dict:
    """kubernetes-validate's strict definitions for KUBERNETES_VERSION (its $id is DEFINITIONS_ID)."""
    path = (resources.files("kubernetes_validate") / "kubernetes-json-schema"
            / f"v{KUBERNETES_VERSION}.0-local-strict" / "_definitions.json")
    return json.loads(path.read_text())


def json_schemas() -> dict[str, dict]:
    return _ray_types(_k8s_ref)


def _structural(schema: dict) -> dict:
    """apiextensions v1 forbids additionalProperties beside properties (unknown fields are pruned)."""
    out = {}
    for key, value in schema.items():
        if key == "additionalProperties" and value is False:
            continue
        if isinstance(value, dict):
            value = _structural(value)
        out[key] = value
    return out


def crd(kind: str) -> dict:
    """The CustomResourceDefinition of `kind` ("RayJob" or "RayCluster"), status as a subresource."""
    open_object = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = _structural(_ray_types(lambda name: copy.deepcopy(open_object))[kind])
    schema["properties"]["metadata"] = {"type": "object"}  # the API server owns metadata's schema
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.ray.io"},
        "spec": {
            "group": "ray.io",
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
            "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": schema}}],
        },
    }
