"""The Dockerfile passes a real linter (npm `dockerfile-utils`, the VS Code Docker extension's) and,
parsed by BuildKit's own parser (PyPI `dockerfile`), follows the image rules: pinned multi-stage
base, non-root numeric user, the project tree kept with its pyproject.toml, a small build context.
No Docker engine runs here: the image itself is built by users/CI (docs/deploy.md)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import dockerfile
import pytest

from orchestration_platform.settings import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERFILE_UTILS = "dockerfile-utils@0.16.3"


@pytest.fixture(scope="session")
def dockerfile_lint() -> Path:
    """The `dockerfile-utils` linter from the npm registry, installed once into .local (git-ignored)."""
    prefix = REPO_ROOT / ".local" / "dockerfile-utils"
    binary = prefix / "node_modules" / ".bin" / "dockerfile-utils"
    if not binary.exists():
        assert shutil.which("npm"), "npm is missing: apt-get install -y npm"
        result = subprocess.run(
            [
                "npm",
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(prefix),
                DOCKERFILE_UTILS,
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"npm install {DOCKERFILE_UTILS} failed:\n{result.stderr}"
    return binary


def _lint(binary: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "lint", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_dockerfile_lints_clean(dockerfile_lint: Path) -> None:
    result = _lint(dockerfile_lint, DOCKERFILE)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_linter_reports_a_broken_dockerfile(dockerfile_lint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER"))
    result = _lint(dockerfile_lint, broken)
    assert result.returncode != 0 and "USER" in result.stdout, result.stdout


@pytest.fixture(scope="module")
def instructions() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def _args(instructions: list[dockerfile.Command]) -> dict[str, str]:
    return dict(i.value[0].split("=", 1) for i in instructions if i.cmd == "ARG" and "=" in i.value[0])


def _stages(instructions: list[dockerfile.Command]) -> list[list[dockerfile.Command]]:
    stages: list[list[dockerfile.Command]] = []
    for instruction in instructions:
        if instruction.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_base_image_is_pinned_and_multi_stage(instructions: list[dockerfile.Command]) -> None:
    args = _args(instructions)
    froms = [i.value[0] for i in instructions if i.cmd == "FROM"]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the runtime image"
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert ":" in resolved or "@sha256:" in resolved, f"FROM {image} has no tag"
        assert not resolved.endswith(":latest"), f"FROM {image} uses latest"
        assert re.search(r":\d+\.\d+\.\d+", resolved) or "@sha256:" in resolved, (
            f"FROM {image}: pin a full version"
        )
    assert all(i.cmd != "ADD" or not i.value[0].startswith("http") for i in instructions), "no remote ADD"


def test_runtime_runs_as_a_numeric_non_root_user(instructions: list[dockerfile.Command]) -> None:
    runtime = _stages(instructions)[-1]
    users = [i.value[0] for i in runtime if i.cmd == "USER"]
    assert users, "the runtime stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, (
        f"USER {users[-1]}: use a numeric non-root uid (runAsNonRoot checks it)"
    )
    assert uid == "10001", "the chart's podSecurityContext.runAsUser and lib/ml/training_pod.py use 10001"


def test_the_project_tree_keeps_pyproject_next_to_the_package(instructions: list[dockerfile.Command]) -> None:
    """load_from_defs_folder finds the defs through pyproject.toml's [tool.dg], in a parent of the package."""
    build, runtime = _stages(instructions)[0], _stages(instructions)[-1]
    workdir = [i.value[0] for i in build if i.cmd == "WORKDIR"][-1]
    copied = " ".join(" ".join(i.value) for i in build if i.cmd == "COPY")
    assert "pyproject.toml" in copied and "orchestration_platform" in copied
    assert any("pip install -e ." in i.value[0] for i in build if i.cmd == "RUN"), (
        "editable install keeps the tree"
    )
    assert any(i.cmd == "COPY" and workdir in i.value and "--from=build" in i.flags for i in runtime)
    assert [i.value[0] for i in runtime if i.cmd == "WORKDIR"][-1] == workdir


def test_health_is_left_to_the_chart_probes_and_the_default_is_the_code_server(
    instructions: list[dockerfile.Command],
) -> None:
    runtime = _stages(instructions)[-1]
    assert [i.value for i in runtime if i.cmd == "HEALTHCHECK"] == [("NONE",)]
    [cmd] = [i for i in runtime if i.cmd == "CMD"]
    assert cmd.json and list(cmd.value[:3]) == ["dagster", "api", "grpc"]
    env = {k: v for i in runtime if i.cmd == "ENV" for k, v in zip(i.value[::2], i.value[1::2], strict=True)}
    assert env["DAGSTER_DEPLOYMENT"] == "prod" and env["HOME"] == "/tmp"  # HOME on the writable emptyDir


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what the image needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"setup.py", "pyproject.toml", "orchestration_platform"}
