"""Every YAML file in cluster/ and infra/ is checked: Kubernetes kinds against Kubernetes' own
schemas (kubernetes-validate, strict: unknown fields fail), KubeRay kinds against KubeRay's published
CRDs (tests/k8s/kuberay_crds.py, closed too), kustomizations against the files they name,
TrainConfig files through edn's own loader; then what the specs must say for GKE GPU pools and
who may reach and use the Ray clusters (token authentication, NetworkPolicy, RBAC)."""
from __future__ import annotations

import copy
import os
import re
import shlex

import jsonschema
import kubernetes_validate
import pytest
import yaml

from k8s import kuberay_crds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = "us-central1-docker.pkg.dev/my-project/edn/edn"


def _yaml_files() -> list[str]:
    out = []
    for top in ("cluster", "infra"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            out += [os.path.relpath(os.path.join(folder, f), ROOT) for f in files if f.endswith((".yaml", ".yml"))]
    return sorted(out)


def _docs(path: str) -> list[dict]:
    with open(os.path.join(ROOT, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _all_docs() -> list[tuple[str, dict]]:
    return [(path, doc) for path in _yaml_files() for doc in _docs(path)]


def _is_train_config(path: str) -> bool:
    return path.startswith("cluster/configs/")


def _is_kustomization(path: str) -> bool:
    return os.path.basename(path) == "kustomization.yaml"


def _find(node, key: str):
    """Every value stored under `key` anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _find(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _find(item, key)


def validate(doc: dict) -> None:
    """Raises jsonschema.ValidationError (or ValueError) when `doc` is not a valid object."""
    if doc.get("apiVersion") == "ray.io/v1":
        if doc.get("kind") not in kuberay_crds.FILES:
            raise ValueError(f"unknown ray.io kind {doc.get('kind')!r}")
        kuberay_crds.validator(doc["kind"]).validate(doc)
    else:
        kubernetes_validate.validate(doc, kuberay_crds.KUBERNETES_VERSION, strict=True)


def test_the_manifests_are_all_found():
    files = _yaml_files()
    for expected in ("cluster/raycluster.yaml", "cluster/rayjob-train.yaml", "cluster/rayjob-render-catalog.yaml",
                     "infra/k8s/mlflow.yaml", "infra/k8s/rbac.yaml", "infra/k8s/kustomization.yaml"):
        assert expected in files
    kinds = {doc["kind"] for path, doc in _all_docs() if not _is_train_config(path)}
    assert {"RayCluster", "RayJob", "Namespace", "ServiceAccount", "Role", "RoleBinding", "StatefulSet",
            "Deployment", "Service", "Kustomization"} <= kinds


@pytest.mark.parametrize("path", [p for p in _yaml_files() if not _is_train_config(p) and not _is_kustomization(p)])
def test_manifest_is_valid(path):
    for doc in _docs(path):
        try:
            validate(doc)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
            pytest.fail(f"{path}: {doc.get('kind')} {doc.get('metadata', {}).get('name')}: "
                        f"{'.'.join(map(str, e.absolute_path))}: {e.message}")


def _set(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[leaf] = value
    return doc


TYPOS = [  # (file, dotted path of a misspelt or wrongly typed field, value)
    ("cluster/rayjob-train.yaml", "spec.shutdownAfterJobFinish", True),
    ("cluster/rayjob-train.yaml", "spec.ttlSecondsAfterFinished", "600"),
    ("cluster/rayjob-train.yaml", "spec.submissionMode", "K8sMode"),
    ("cluster/rayjob-train.yaml", "spec.rayClusterSpec.enableInTreeAutoScaling", True),
    ("cluster/raycluster.yaml", "spec.workerGroupSpecs.0.maxReplica", 4),
    ("cluster/raycluster.yaml", "spec.headGroupSpec.template.spec.containers.0.resource", {}),
    ("cluster/raycluster.yaml", "spec.workerGroupSpecs.1.template.spec.toleration", []),
    ("cluster/raycluster.yaml", "spec.workerGroupSpecs.0.template.spec.volumes.0.emptyDir.medum", "Memory"),
    ("cluster/raycluster.yaml", "spec.authOptions.secretname", "edn-ray-auth"),
    ("cluster/raycluster.yaml", "spec.authOptions.mode", "Token"),
    ("cluster/rayjob-train.yaml", "spec.submitterPodTemplate.spec.automountServiceAccountTokens", False),
    ("cluster/networkpolicy.yaml", "spec.ingress.0.form", []),
    ("infra/k8s/mlflow.yaml", "spec.template.spec.containers.0.readinesProbe", {}),
    ("infra/k8s/rbac.yaml", "rules.0.verb", ["get"]),
    ("infra/k8s/serviceaccounts.yaml", "metadata.annotation", {}),
]


@pytest.mark.parametrize("path,field,value", TYPOS, ids=[t[1] for t in TYPOS])
def test_a_typo_fails_validation(path, field, value):
    docs = _docs(path)
    doc = docs[1] if path == "infra/k8s/mlflow.yaml" else docs[0]  # mlflow.yaml: the Deployment
    validate(doc)
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)):
        validate(_set(doc, field, value))


@pytest.mark.parametrize("kind", sorted(kuberay_crds.FILES))
def test_the_crds_are_kuberays_published_files(kind):
    assert kuberay_crds.sha256(kind) == kuberay_crds.SHA256[kind]
    shared = os.path.join(ROOT, "..", "shared", "kuberay-crds", kuberay_crds.FILES[kind])
    if os.path.exists(shared):  # where the files were handed to this project
        assert open(shared, "rb").read() == kuberay_crds.published_yaml(kind)
    crd = kuberay_crds.crd(kind)
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == ("ray.io", kind)
    spec = kuberay_crds.openapi_schema(kind)["properties"]["spec"]["properties"]
    cluster = spec["rayClusterSpec"]["properties"] if kind == "RayJob" else spec
    assert cluster["authOptions"]["properties"]["mode"]["enum"] == ["disabled", "token"]


_SUBSCHEMA_KEYS = {"properties", "items", "additionalProperties", "anyOf", "allOf", "oneOf"}


@pytest.mark.parametrize("kind", sorted(kuberay_crds.FILES))
def test_the_api_servers_crd_is_kuberays_less_its_empty_defaults(kind):
    published, served = kuberay_crds.crd(kind), kuberay_crds.api_server_crd(kind)
    assert {k: v for k, v in published["spec"].items() if k != "versions"} == \
        {k: v for k, v in served["spec"].items() if k != "versions"}
    dropped = required = 0
    for p_version, s_version in zip(published["spec"]["versions"], served["spec"]["versions"], strict=True):
        p_nodes = list(kuberay_crds.schemas(p_version["schema"]["openAPIV3Schema"]))
        s_nodes = list(kuberay_crds.schemas(s_version["schema"]["openAPIV3Schema"]))
        assert len(p_nodes) == len(s_nodes)
        for p, s in zip(p_nodes, s_nodes):
            changed = {k for k in p.keys() | s.keys() if k not in _SUBSCHEMA_KEYS and p.get(k) != s.get(k)}
            assert changed <= {"default", "required"}, changed
            if "default" in changed:
                assert p["default"] == "" and "default" not in s
                dropped += 1
            if "required" in changed:
                assert set(s["required"]) - set(p.get("required", [])) == {"name"}  # imagePullSecrets' key
                required += 1
        assert {k: v for k, v in p_version.items() if k != "schema"} == {k: v for k, v in s_version.items()
                                                                        if k != "schema"}
    assert (dropped, required) == {"RayCluster": (146, 4), "RayJob": (212, 6)}[kind]


def test_no_manifest_sets_a_field_whose_cel_rules_go_unchecked():
    for path, doc in _ray_docs().items():
        assert kuberay_crds.cel_rules_in(doc) == [], path


# --- what the specs say ---------------------------------------------------------------------------

def _ray_docs() -> dict[str, dict]:
    return {path: doc for path, doc in _all_docs() if doc.get("apiVersion") == "ray.io/v1"}


def _cluster_specs() -> list[tuple[str, dict]]:
    out = []
    for path, doc in _ray_docs().items():
        out.append((path, doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]))
    return out


def _pod_specs() -> list[tuple[str, str, dict]]:
    out = []
    for path, spec in _cluster_specs():
        out.append((path, "head", spec["headGroupSpec"]["template"]["spec"]))
        out += [(path, g["groupName"], g["template"]["spec"]) for g in spec["workerGroupSpecs"]]
    return out


def test_rayjobs_bring_up_the_raycluster_groups_unchanged():
    cluster = _docs("cluster/raycluster.yaml")[0]["spec"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    used = {}
    for path, doc in _ray_docs().items():
        if doc["kind"] != "RayJob":
            continue
        spec = doc["spec"]["rayClusterSpec"]
        own = ("workerGroupSpecs", "authOptions")  # authOptions: test_every_ray_cluster_needs_a_token
        assert {k: v for k, v in spec.items() if k not in own} == \
            {k: v for k, v in cluster.items() if k not in own}, path
        for group in spec["workerGroupSpecs"]:
            assert group == groups[group["groupName"]], \
                f"{path}: group {group['groupName']} differs from raycluster.yaml"
            used[os.path.basename(path)] = group["groupName"]
    assert used == {"rayjob-train.yaml": "a100", "rayjob-render-catalog.yaml": "l4-spot"}


def test_head_is_cpu_only_and_schedules_no_tasks():
    for path, spec in _cluster_specs():
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["num-cpus"] == "0", path
        resources = head["template"]["spec"]["containers"][0]["resources"]
        assert "nvidia.com/gpu" not in resources["limits"] and "nvidia.com/gpu" not in resources["requests"]
        assert "nodeSelector" not in head["template"]["spec"]
        assert spec["enableInTreeAutoscaling"] is True


GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"


@pytest.mark.parametrize("group,accelerator,spot",
                         [("l4-spot", "nvidia-l4", True), ("a100", "nvidia-tesla-a100", False)])
def test_gpu_groups_select_their_gke_pool(group, accelerator, spot):
    specs = [pod for path, name, pod in _pod_specs() if name == group]
    assert specs
    for pod in specs:
        assert pod["nodeSelector"][GKE_ACCELERATOR] == accelerator
        assert (pod["nodeSelector"].get("cloud.google.com/gke-spot") == "true") is spot
        keys = {t["key"] for t in pod["tolerations"]}
        assert "nvidia.com/gpu" in keys
        assert ("cloud.google.com/gke-spot" in keys) is spot
        resources = pod["containers"][0]["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"


def test_gpu_groups_autoscale_from_zero():
    for path, spec in _cluster_specs():
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] == 0 and group["maxReplicas"] > 0, (path, group["groupName"])


def _quantity_gib(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Gi|Mi)", text).groups()
    return float(number) / (1024 if unit == "Mi" else 1)


def test_every_ray_pod_has_shared_memory_sized_for_the_object_store():
    for path, name, pod in _pod_specs():
        dshm = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
        assert len(dshm) == 1, (path, name)
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[dshm[0]["name"]] == "/dev/shm", (path, name)
        memory = _quantity_gib(pod["containers"][0]["resources"]["limits"]["memory"])
        shm = _quantity_gib(dshm[0]["emptyDir"]["sizeLimit"])
        assert 0.25 * memory <= shm <= 0.5 * memory, (path, name, shm, memory)  # counts against the pod's memory


def test_every_image_is_the_edn_image_kustomize_rewrites():
    for path, doc in _all_docs():
        for image in _find(doc, "image"):
            if not image.startswith("postgres:"):
                assert image.rsplit(":", 1)[0] == IMAGE, (path, image)
    for path in ("cluster/kustomization.yaml", "infra/k8s/kustomization.yaml"):
        assert [i["name"] for i in _docs(path)[0]["images"]] == [IMAGE]


def _entrypoint_commands(doc: dict) -> list[list[str]]:
    return [shlex.split(part) for part in doc["spec"]["entrypoint"].split("&&")]


def test_rayjobs_run_edn_job_modules_and_clean_up():
    modules = []
    for path, doc in _ray_docs().items():
        if doc["kind"] != "RayJob":
            continue
        spec = doc["spec"]
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0, path
        assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["PYTHONUNBUFFERED"] == "1"
        for argv in _entrypoint_commands(doc):
            assert argv[:2] == ["python", "-m"], (path, argv)
            modules.append(argv[2])
    assert sorted(set(modules)) == ["ray_jobs.render_catalog", "ray_jobs.train"]


@pytest.mark.parametrize("path", [p for p in _yaml_files() if os.path.basename(p).startswith("rayjob-")])
def test_entrypoints_are_edn_verbs_with_valid_arguments(path):
    """`python -m ray_jobs.X ARGS` is `edn X ARGS` (ray_jobs/*.py): edn's own parser must accept ARGS."""
    from edn.cli import parser
    for argv in _entrypoint_commands(_docs(path)[0]):
        module = argv[2].split(".")[1]
        assert os.path.exists(os.path.join(ROOT, "ray_jobs", f"{module}.py")), argv[2]
        args = parser().parse_args([module.replace("_", "-"), *argv[3:]])
        assert all(str(v).startswith("gs://") for k, v in vars(args).items() if k in ("config", "catalog", "out") and v)


def test_training_runs_body_then_face():
    from edn.cli import parser
    stages = [parser().parse_args(["train", *argv[3:]]).stage
              for argv in _entrypoint_commands(_docs("cluster/rayjob-train.yaml")[0])]
    assert stages == ["body", "face"]


def test_train_config_files_load_as_train_configs():
    from edn.config import load_config
    from edn.train.config import TrainConfig
    paths = [p for p in _yaml_files() if _is_train_config(p)]
    assert paths
    for path in paths:
        cfg = load_config(TrainConfig, os.path.join(ROOT, path))
        assert cfg.use_gpu and cfg.storage_path.startswith("gs://") and cfg.dataset_url.startswith("gs://")
        a100 = next(g for g in _docs("cluster/raycluster.yaml")[0]["spec"]["workerGroupSpecs"]
                    if g["groupName"] == "a100")
        assert cfg.num_workers <= a100["maxReplicas"]  # one GPU per Ray Train worker
        cpus = float(a100["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
        assert cfg.cpus_per_worker <= cpus


@pytest.mark.parametrize("path", [p for p in _yaml_files() if _is_kustomization(p)])
def test_kustomization_names_every_manifest_beside_it(path):
    folder = os.path.dirname(path)
    kustomization = _docs(path)[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "images", "configMapGenerator", "patches"}
    listed = kustomization["resources"]
    beside = sorted(f for f in os.listdir(os.path.join(ROOT, folder))
                    if f.endswith(".yaml") and f != "kustomization.yaml"
                    and all(d["kind"] != "RayJob" for d in _docs(os.path.join(folder, f))))
    assert sorted(listed) == beside
    objects = {(d["kind"], d["metadata"]["name"]): d for f in listed for d in _docs(os.path.join(folder, f))}
    for patch in kustomization.get("patches", []):
        target = objects[(patch["target"]["kind"], patch["target"]["name"])]
        for op in yaml.safe_load(patch["patch"]):
            node = target
            for key in op["path"].strip("/").split("/"):
                node = node[key.replace("~1", "/").replace("~0", "~")]  # the path must exist for "replace"
    for generator in kustomization.get("configMapGenerator", []):
        keys = {item.split("=", 1)[0] for item in generator["literals"]}
        refs = [ref["key"] for d in objects.values() for ref in _find(d, "configMapKeyRef")
                if ref["name"] == generator["name"]]
        assert refs and set(refs) <= keys


def test_workload_identity_and_no_keys_in_any_file():
    accounts = {(d["metadata"]["namespace"], d["metadata"]["name"]): d
                for path, d in _all_docs() if d.get("kind") == "ServiceAccount"}
    for account in (("edn", "edn-ray"), ("edn-mlflow", "mlflow")):
        assert accounts[account]["metadata"]["annotations"]["iam.gke.io/gcp-service-account"].endswith(
            ".iam.gserviceaccount.com")
    # every pod of edn runs as a workload-identity account
    for path, name, pod in _pod_specs():
        assert pod["serviceAccountName"] == "edn-ray", (path, name)
    for path, doc in _all_docs():
        assert doc.get("kind") != "Secret", f"{path}: secrets are created by hand, never kept in a file"
    for top in ("cluster", "infra"):
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                text = open(os.path.join(folder, f), errors="replace").read()
                assert "PRIVATE KEY" not in text and '"private_key"' not in text, os.path.join(folder, f)
                assert "google_service_account_key" not in text


def test_submitter_role_grants_only_what_edn_cluster_and_ray_job_submit_use():
    role = next(d for p, d in _all_docs() if d.get("kind") == "Role")
    rules = {(g, r): (sorted(rule["verbs"]), rule.get("resourceNames"))
             for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert rules == {("ray.io", "rayjobs"): (["create", "delete", "get", "list", "watch"], None),
                     ("", "pods"): (["get", "list"], None), ("", "pods/log"): (["get"], None),
                     ("", "secrets"): (["get"], [RAY_TOKEN_SECRET]),
                     ("", "services"): (["get"], ["edn-head-svc"]),  # KubeRay's name for cluster edn's head
                     ("", "pods/portforward"): (["create"], None)}


# --- who may reach and use a Ray cluster ----------------------------------------------------------

RAY_TOKEN_SECRET = "edn-ray-auth"


def test_every_ray_cluster_needs_a_token():
    """The long-lived cluster's token is the Secret the submitter may read (created by hand); each
    RayJob's cluster gets a token of its own from KubeRay, which no person reads."""
    for path, spec in _cluster_specs():
        expected = {"mode": "token", "secretName": RAY_TOKEN_SECRET} if path == "cluster/raycluster.yaml" \
            else {"mode": "token"}
        assert spec["authOptions"] == expected, path
        assert tuple(map(int, spec["rayVersion"].split("."))) >= (2, 52, 0)  # KubeRay's minimum for tokens
    for doc in _ray_docs().values():
        if doc["kind"] == "RayJob":
            submitter = doc["spec"]["submitterPodTemplate"]["spec"]
            assert submitter["automountServiceAccountToken"] is False and "serviceAccountName" not in submitter
            assert "command" not in submitter["containers"][0]  # KubeRay's `ray job submit`, with the token


def _selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a pod's labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value = labels.get(e["key"])
        if not {"In": value in e.get("values", []), "NotIn": value not in e.get("values", []),
                "Exists": value is not None, "DoesNotExist": value is None}[e["operator"]]:
            return False
    return True


def _admitted(policies: list[dict], target: tuple[str, dict], source: tuple[str, dict], port: int) -> bool:
    """NetworkPolicy's ingress rules as Kubernetes applies them to (namespace, labels) pods: a pod no
    policy selects takes anything; otherwise a connection needs a rule of one selecting policy."""
    selecting = [p for p in policies if p["metadata"]["namespace"] == target[0]
                 and "Ingress" in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], target[1])]
    if not selecting:
        return True

    def peer_matches(peer: dict, namespace: str) -> bool:
        assert "ipBlock" not in peer
        if "namespaceSelector" in peer:
            if not _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": source[0]}):
                return False
        elif source[0] != namespace:
            return False
        return "podSelector" not in peer or _selects(peer["podSelector"], source[1])

    return any((not rule.get("ports") or any(p["port"] == port for p in rule["ports"]))
               and (not rule.get("from") or any(peer_matches(peer, policy["metadata"]["namespace"])
                                                for peer in rule["from"]))
               for policy in selecting for rule in policy["spec"].get("ingress", []))


def test_network_policies_let_only_the_submitters_reach_the_jobs_api_and_only_ray_pods_the_rest():
    """Pods labelled as KubeRay labels the pods it makes from the manifests' templates."""
    cluster = _docs("cluster/raycluster.yaml")[0]["spec"]
    job = _docs("cluster/rayjob-train.yaml")[0]["spec"]
    kuberay = {"app.kubernetes.io/created-by": "kuberay-operator", "ray.io/is-ray-node": "yes"}
    pods = {
        "head": ("edn", {**cluster["headGroupSpec"]["template"]["metadata"]["labels"], **kuberay,
                         "ray.io/cluster": "edn", "ray.io/node-type": "head"}),
        "worker": ("edn", {**cluster["workerGroupSpecs"][0]["template"]["metadata"]["labels"], **kuberay,
                           "ray.io/cluster": "edn", "ray.io/node-type": "worker", "ray.io/group": "l4-spot"}),
        "job worker": ("edn", {**job["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"],
                               **kuberay, "ray.io/cluster": "edn-train-alice-x7k2p", "ray.io/node-type": "worker"}),
        "submitter": ("edn", {**job["submitterPodTemplate"]["metadata"]["labels"], "job-name": "edn-train-alice"}),
        "operator": ("kuberay-system", {"app.kubernetes.io/component": "kuberay-operator",
                                        "app.kubernetes.io/name": "kuberay-operator"}),
        "another pod of edn": ("edn", {"app": "notebook"}),
        "submitter look-alike elsewhere": ("default", job["submitterPodTemplate"]["metadata"]["labels"]),
        "operator look-alike in edn": ("edn", {"app.kubernetes.io/component": "kuberay-operator"}),
    }
    policies = [d for p, d in _all_docs() if d.get("kind") == "NetworkPolicy"]
    gcs, dashboard, client = 6379, 8265, 10001
    reach = {(target, port): sorted(name for name, source in pods.items()
                                    if _admitted(policies, pods[target], source, port))
             for target, port in [("head", gcs), ("head", dashboard), ("head", client), ("worker", 12345)]}
    assert reach == {
        ("head", gcs): ["head", "job worker", "worker"],
        ("head", dashboard): ["head", "job worker", "operator", "submitter", "worker"],
        ("head", client): ["head", "job worker", "submitter", "worker"],
        ("worker", 12345): ["head", "job worker", "worker"],
    }


# --- Terraform: parsed (no terraform binary here) and consistent with the manifests ---------------

def _unquote(text: str) -> str:
    return text.strip('"')


def test_terraform_parses_and_matches_the_kubernetes_side():
    import hcl2
    folder = os.path.join(ROOT, "infra", "terraform")
    main_tf = open(os.path.join(folder, "main.tf")).read()
    parsed = hcl2.loads(main_tf)
    variables = {_unquote(name): body for block in hcl2.load(open(os.path.join(folder, "variables.tf")))["variable"]
                 for name, body in block.items()}
    assert set(re.findall(r"\bvar\.(\w+)", main_tf)) == set(variables)  # every variable declared and used
    resources = {(_unquote(kind), _unquote(name)): body for block in parsed["resource"]
                 for kind, named in block.items() for name, body in named.items()}
    for kind, name in re.findall(r"\b(google_\w+)\.(\w+)\b", main_tf):
        assert (kind, name) in resources, f"main.tf refers to undeclared {kind}.{name}"
    assert not any(kind == "google_service_account_key" for kind, _ in resources)

    # the workload-identity members are the Kubernetes accounts of infra/k8s, and the Google
    # accounts are the ones their annotations name
    defaults = {name: _unquote(body.get("default", "")) for name, body in variables.items()}
    members = {}
    for (kind, _), body in resources.items():
        if kind == "google_service_account_iam_member":
            member = re.search(r"\[\$\{var\.(\w+)\}/([\w-]+)\]", body["member"])
            account = resources[("google_service_account", body["service_account_id"].split(".")[1])]
            members[(defaults[member.group(1)], member.group(2))] = _unquote(account["account_id"])
    annotations = {(d["metadata"]["namespace"], d["metadata"]["name"]):
                   d["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account", "").split("@")[0]
                   for p, d in _all_docs() if d.get("kind") == "ServiceAccount"}
    assert members == {k: v for k, v in annotations.items() if v}
    # the buckets the manifests use are the ones Terraform makes (prefix "my-project")
    suffixes = set(re.findall(r'"(\w+)"', parsed["locals"][0]["ray_buckets"])) | {"mlflow"}
    used = set()
    for path in _yaml_files():
        used |= set(re.findall(r"gs://my-project-edn-(\w+)", open(os.path.join(ROOT, path)).read()))
    assert used and used <= suffixes
