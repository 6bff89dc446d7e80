"""A kubeconfig for the offline tests: the Kubernetes client needs one even when no cluster exists."""

from __future__ import annotations

from pathlib import Path

import yaml

NEVER_CONTACTED = "https://127.0.0.1:9"


def write_kubeconfig(path: Path, server: str = NEVER_CONTACTED) -> Path:
    """Write a one-context kubeconfig for `server` (by default an API that is never contacted)."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "offline",
                "clusters": [{"name": "offline", "cluster": {"server": server}}],
                "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
                "users": [{"name": "offline", "user": {"token": "offline"}}],
            }
        )
    )
    return path
