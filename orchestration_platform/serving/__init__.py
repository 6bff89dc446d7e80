"""Model serving: the FastAPI app in `orchestration_platform.serving.app`."""
