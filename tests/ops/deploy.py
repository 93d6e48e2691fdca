"""Paths and loaders shared by the deployment checks (tests/ops)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DOCS_OPS = ROOT / "docs" / "ops.md"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binary(name: str, package: str, *extra_dirs: str) -> str:
    """Path of ``name``; skip if it is missing, but fail under CI=true (CI installs it)."""
    path = shutil.which(name)
    if path is None:
        for directory in extra_dirs:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
        message = f"{name} is not installed (apt-get install -y {package})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def optional_binary(name: str, hint: str) -> str:
    """Path of an optional checker; skip (even in CI) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed ({hint})")
    return path


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def load_documents(path: Path) -> list[Any]:
    """Every YAML document of a file (``---`` separated), empty ones dropped."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def kubernetes_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, object) for every Kubernetes object under deploy/kubernetes."""
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_documents(path):
            assert isinstance(doc, dict), f"{path.name}: a manifest must be a mapping"
            yield path, doc


def kubernetes_objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in kubernetes_manifests() if doc.get("kind") == kind]


def only(kind: str) -> dict[str, Any]:
    objects = kubernetes_objects(kind)
    assert len(objects) == 1, f"expected one {kind}, found {len(objects)}"
    return objects[0]
