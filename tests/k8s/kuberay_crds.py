"""KubeRay's published RayCluster and RayJob CRDs (tests/k8s/kuberay-crds/: KubeRay feeaf72,
v1.7.0-rc.0), for checking edn's `ray.io/v1` manifests and for a real API server.

- `validator(kind)`: JSON Schema from the CRD's openAPIV3Schema with every object closed: an object
  schema that is not a map (additionalProperties) and not marked x-kubernetes-preserve-unknown-fields
  (none in these CRDs is) takes no field it does not list, as the API server's strict field
  validation refuses it; without that the API server silently prunes a misspelt field. The root
  metadata, which a CRD leaves to the API server, is Kubernetes' own ObjectMeta (kubernetes-validate,
  strict). One rule KubeRay's operator applies beyond its CRD is added: `submissionMode`.
  The CRDs' CEL rules (x-kubernetes-validations) are not evaluated; `cel_rules_in(doc)` names any a
  manifest would be subject to.
- `api_server_crd(kind)`: the CRD as kube-apiserver 1.20 (tests/k8s/build_apiserver.sh) accepts it.
"""
from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import json
import os
from collections.abc import Iterator
from importlib import resources

import jsonschema
import referencing
import yaml

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kuberay-crds")
FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
SHA256 = {  # of the published YAML files (tests/k8s/kuberay-crds/README.md)
    "RayCluster": "c44704442eef0c6721ad40c1d66782c8bd3fdab9d3344306a5820910a679baa1",
    "RayJob": "01a5cf3b17c1769fda44af7e82debcd98722f0c27b9ab84d084681c6649121f5",
}
KUBERNETES_VERSION = "1.32"   # the Kubernetes schemas the other manifests are checked against (GKE's)
DEFINITIONS_ID = "/api/_definitions.json"
# KubeRay's RayJob controller acts on these modes; its CRD types the field as any string.
SUBMISSION_MODES = ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]


def published_yaml(kind: str) -> bytes:
    with gzip.open(os.path.join(FOLDER, FILES[kind] + ".gz")) as f:
        return f.read()


@functools.cache
def _crd(kind: str) -> dict:
    return yaml.load(published_yaml(kind), Loader=yaml.CSafeLoader)  # 2.3 MB: libyaml, not pure Python


def crd(kind: str) -> dict:
    """The published CustomResourceDefinition, a copy of its own."""
    return copy.deepcopy(_crd(kind))


def openapi_schema(kind: str, version: str = "v1") -> dict:
    return next(v for v in crd(kind)["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]


def schemas(schema: dict) -> Iterator[dict]:
    """Every schema in `schema`, itself first, depth first; a property's name is never read as a keyword."""
    yield schema
    for sub in schema.get("properties", {}).values():
        yield from schemas(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from schemas(schema[key])
    for key in ("anyOf", "allOf", "oneOf"):
        for sub in schema.get(key, []):
            yield from schemas(sub)


def kubernetes_definitions() -> dict:
    """kubernetes-validate's strict definitions for KUBERNETES_VERSION (its $id is DEFINITIONS_ID)."""
    path = (resources.files("kubernetes_validate") / "kubernetes-json-schema"
            / f"v{KUBERNETES_VERSION}.0-local-strict" / "_definitions.json")
    return json.loads(path.read_text())


def closed(schema: dict) -> dict:
    """`schema` (openAPIV3Schema) as JSON Schema in which an unknown field fails."""
    schema = copy.deepcopy(schema)
    for node in schemas(schema):
        if (node.get("type") == "object" and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            node["additionalProperties"] = False
        if node.pop("nullable", False):
            node["type"] = [node["type"], "null"]
    return schema


@functools.cache
def validator(kind: str) -> jsonschema.Validator:
    schema = closed(openapi_schema(kind))
    schema["properties"]["metadata"] = {
        "$ref": f"{DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    if kind == "RayJob":
        schema["properties"]["spec"]["properties"]["submissionMode"]["enum"] = SUBMISSION_MODES
    definitions = referencing.Resource.from_contents(kubernetes_definitions())
    registry = referencing.Registry().with_resource(DEFINITIONS_ID, definitions)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def cel_rules_in(doc: dict) -> list[str]:
    """The dotted paths of the fields set in `doc` whose schema carries CEL rules (not checked here)."""
    found = []

    def walk(value, schema: dict, path: str) -> None:
        if schema.get("x-kubernetes-validations"):
            found.append(path)
        if isinstance(value, dict):
            for key, sub in value.items():
                inner = schema.get("properties", {}).get(key) or schema.get("additionalProperties")
                if isinstance(inner, dict):
                    walk(sub, inner, f"{path}.{key}".strip("."))
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, sub in enumerate(value):
                walk(sub, schema["items"], f"{path}.{i}")

    walk(doc, openapi_schema(doc["kind"]), "")
    return found


def api_server_crd(kind: str) -> dict:
    """The published CRD with the one change kube-apiserver 1.20 needs: it refuses every
    `default: ""` (146 in RayCluster's, 212 in RayJob's: "Invalid value: "null": must be of type
    string"; later API servers accept them), so they are dropped; a list-map key that had one
    (imagePullSecrets' name) is made required instead, as 1.20 asks of a key without a default.
    Everything else, every field and type, is KubeRay's."""
    out = crd(kind)
    for version in out["spec"]["versions"]:
        for node in schemas(version["schema"]["openAPIV3Schema"]):
            item = node.get("items", {})
            for key in node.get("x-kubernetes-list-map-keys", []):
                if item.get("properties", {}).get(key, {}).get("default") == "":
                    item["required"] = sorted({*item.get("required", []), key})
            if node.get("default") == "":
                del node["default"]
    return out


def sha256(kind: str) -> str:
    return hashlib.sha256(published_yaml(kind)).hexdigest()
