"""The Kubernetes manifests (deploy/k8s/, applied with `kubectl apply -k`), checked
offline: every resource against Kubernetes' own OpenAPI schemas (kubernetes-validate
ships them, strict: an unknown field fails), then what the shop needs of them."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

from tests.test_deploy_files import compose, env_example

BASE_DIR = Path(__file__).resolve().parent.parent
K8S_DIR = BASE_DIR / "deploy" / "k8s"
# The oldest Kubernetes the manifests are for, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
WORKLOADS = {"kamidrop-web": "web", "kamidrop-worker": "worker", "kamidrop-sweeper": "sweeper"}


def manifests() -> dict[str, list[dict]]:
    """File name → its resources, the kustomization and the example Secret included."""
    return {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
            for path in sorted(K8S_DIR.glob("*.yaml"))}


def resources() -> dict[tuple[str, str], dict]:
    """(kind, name) → resource, of the files kustomization.yaml applies."""
    applied = manifests()["kustomization.yaml"][0]["resources"]
    return {(doc["kind"], doc["metadata"]["name"]): doc for name in applied for doc in manifests()[name]}


def pod_spec(name: str) -> dict:
    kind = "Job" if name == "kamidrop-migrate" else "Deployment"
    return resources()[(kind, name)]["spec"]["template"]["spec"]


def container(name: str) -> dict:
    (only,) = pod_spec(name)["containers"]
    return only


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version):
    checked = []
    for name, docs in manifests().items():
        if name == "kustomization.yaml":  # kustomize's, not the cluster's
            continue
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)
            checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert sorted(checked) == sorted([
        "ConfigMap/kamidrop-config", "Deployment/kamidrop-sweeper", "Deployment/kamidrop-web",
        "Deployment/kamidrop-worker", "Job/kamidrop-migrate", "Namespace/kamidrop",
        "PersistentVolumeClaim/kamidrop-media", "PodDisruptionBudget/kamidrop-web", "Secret/kamidrop-secrets",
        "Service/kamidrop-web",
    ])


def test_the_validator_refuses_a_misspelt_field():
    # given: the web Deployment with its readiness probe misspelt
    web = resources()[("Deployment", "kamidrop-web")]
    web["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = (
        web["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe"))
    # when / then
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomization_applies_every_manifest_but_the_example_secret():
    kustomization = manifests()["kustomization.yaml"][0]
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "kamidrop"
    assert set(kustomization["resources"]) == set(manifests()) - {"kustomization.yaml", "secret.example.yaml"}
    assert [image["name"] for image in kustomization["images"]] == ["kamidrop"]
    images = {c["image"] for name in [*WORKLOADS, "kamidrop-migrate"]
              for c in pod_spec(name)["containers"] + pod_spec(name).get("initContainers", [])}
    assert images == {"kamidrop"}


def test_web_is_a_deployment_behind_a_service_probed_on_healthz_for_a_replica():
    web = container("kamidrop-web")
    configmap = resources()[("ConfigMap", "kamidrop-config")]["data"]
    for probe in ("startupProbe", "readinessProbe"):
        get = web[probe]["httpGet"]
        assert get["path"] == "/healthz?scope=replica", probe
        assert get["port"] == "http"
        # Django answers 400 to a Host not in ALLOWED_HOSTS: the probe would never pass
        (host,) = [h["value"] for h in get["httpHeaders"] if h["name"] == "Host"]
        assert host in configmap["ALLOWED_HOSTS"].split(","), probe
    # a pod is restarted for its own fault, not for the database's
    assert web["livenessProbe"] == {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 3,
                                    "failureThreshold": 6}
    assert "command" not in web  # the image's gunicorn
    assert web["ports"] == [{"name": "http", "containerPort": 8000}]
    service = resources()[("Service", "kamidrop-web")]["spec"]
    assert service["selector"] == resources()[("Deployment", "kamidrop-web")]["spec"]["selector"]["matchLabels"]
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    assert resources()[("Deployment", "kamidrop-web")]["spec"]["replicas"] >= 2
    # a stopping pod is taken out of the Service before gunicorn stops listening
    assert web["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", "5"]}}
    assert pod_spec("kamidrop-web")["terminationGracePeriodSeconds"] >= 5 + 30
    assert resources()[("PodDisruptionBudget", "kamidrop-web")]["spec"]["maxUnavailable"] == 1


def test_worker_and_sweeper_run_what_compose_runs_and_one_sweeper_at_a_time():
    services = compose()["services"]
    assert container("kamidrop-worker")["command"] == services["worker"]["command"]
    assert container("kamidrop-sweeper")["command"] == services["sweeper"]["command"]
    sweeper = resources()[("Deployment", "kamidrop-sweeper")]["spec"]
    assert sweeper["replicas"] == 1
    assert sweeper["strategy"] == {"type": "Recreate"}  # an update never runs two
    assert pod_spec("kamidrop-worker")["terminationGracePeriodSeconds"] >= 60 + 10  # a job in hand finishes


def test_cpu_requests_weigh_web_and_worker_as_compose_does():
    # Kubernetes turns CPU requests into the containers' CPU weights, as compose's cpu_shares
    def millicores(value: str) -> int:
        return int(value[:-1]) if value.endswith("m") else int(float(value) * 1000)

    web = millicores(container("kamidrop-web")["resources"]["requests"]["cpu"])
    worker = millicores(container("kamidrop-worker")["resources"]["requests"]["cpu"])
    assert worker / web == pytest.approx(compose()["services"]["worker"]["cpu_shares"] / 1024, rel=0.05)


def test_every_container_has_requests_and_a_memory_limit_and_no_privilege_escalation():
    for name in [*WORKLOADS, "kamidrop-migrate"]:
        spec = pod_spec(name)
        # the image's own user (Dockerfile: UID/GID 10001), owning the media volume
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                           "fsGroup": 10001}, name
        for c in spec["containers"] + spec.get("initContainers", []):
            assert set(c["resources"]["requests"]) == {"cpu", "memory"}, (name, c["name"])
            assert set(c["resources"]["limits"]) == {"memory"}, (name, c["name"])
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
            assert c["envFrom"] == [{"configMapRef": {"name": "kamidrop-config"}},
                                    {"secretRef": {"name": "kamidrop-secrets"}}], (name, c["name"])


def test_migrations_run_as_a_job_straight_to_postgres_and_the_pods_wait_for_them():
    job = resources()[("Job", "kamidrop-migrate")]["spec"]
    migrate = container("kamidrop-migrate")
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert job["template"]["spec"]["restartPolicy"] == "Never"
    env = {e["name"]: e for e in migrate["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "kamidrop-secrets",
                                                               "key": "DATABASE_DIRECT_URL"}
    assert env["DB_POOLER"]["value"] == ""
    for name in WORKLOADS:
        (wait,) = pod_spec(name)["initContainers"]
        assert wait["command"] == ["sh", "-c", "until python manage.py migrate --check >/dev/null; do sleep 5; done"]


def test_configmap_and_secret_hold_known_variables_and_pass_the_system_check(tmp_path):
    # given: the ConfigMap and the example Secret, its placeholders generated
    # the way it says, as the pods' environment
    configmap = resources()[("ConfigMap", "kamidrop-config")]["data"]
    (secret,) = manifests()["secret.example.yaml"]
    known = set(env_example())
    assert set(configmap) <= known
    assert set(secret["stringData"]) - {"DATABASE_DIRECT_URL"} <= known
    assert configmap["DB_POOLER"] == "transaction"
    env = {k: v for k, v in os.environ.items() if k not in known}
    env.update(configmap)
    env.update(secret["stringData"])
    env.update(SECRET_KEY=secrets.token_urlsafe(50), KEY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
               KEY_FINGERPRINT_PEPPER=secrets.token_urlsafe(32), DJANGO_SETTINGS_MODULE="shop.project.settings",
               KAMIDROP_DATA_DIR=str(tmp_path / "data"))
    # when: the settings the pods start with (check connects to no server)
    result = subprocess.run([sys.executable, "manage.py", "check"], check=False, cwd=BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=120)
    # then
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "data").exists()
