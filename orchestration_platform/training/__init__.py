"""The training job: `python -m orchestration_platform.training`, run through Dagster Pipes.

The same command runs as a local subprocess (`PipesSubprocessClient`) and as a Kubernetes Job
(`PipesK8sClient`, image and pod spec from `lib/ml/training_pod.py`).
"""
