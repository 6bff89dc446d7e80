"""The model-serving HTTP app: `/predict`, `/healthz`, `/version` (and `/admin/reload`).

Run it with `uvicorn orchestration_platform.serving.app:app --host 0.0.0.0 --port 8080`
(Kubernetes) or `orchestration-platform serve --port N` (locally). Configuration, from the
environment:

| variable | meaning | default |
|---|---|---|
| POSTGRES_URL | PostgreSQL with the model registry and `ml.serving_state` (secret) | required |
| SERVING_MODEL_NAME | registered model name to serve | `fraud_detector` |
| MLFLOW_ARTIFACT_ROOT | where model files live (same as the training side) | `<PLATFORM_DATA_DIR>/mlflow-artifacts` |
| SERVING_MAX_BODY_BYTES | larger request bodies get 413 | `65536` |
| SERVING_MAX_BATCH | most transactions per `/predict` call | `1000` |
| SERVING_REFRESH_S | seconds between checks of `ml.serving_state` (0 = only on `/admin/reload`) | `10` |

The served version is whatever `ml.serving_state` names, loaded only if its files still hash to
the approved fingerprint. A failed load keeps the previous model serving and shows in `/version`
(`last_error`); `/healthz` is 503 until a model is loaded and the last reload succeeded.
`/admin/reload` takes no input and only re-reads that state, so it cannot be used to load
anything that was not approved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from orchestration_platform.lib.ml.payment_events import MAX_AMOUNT

log = logging.getLogger("orchestration_platform.serving")


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r} is not a whole number: set it to e.g. {default}")
    return int(raw)


class Transaction(BaseModel):
    """One transaction to score; the card context fields are optional (1 and the amount by default)."""

    model_config = ConfigDict(extra="forbid")
    occurred_at: AwareDatetime
    card_id: Annotated[str, Field(min_length=1, max_length=64)]
    merchant_category: Literal[
        "grocery", "fuel", "restaurants", "electronics", "travel", "gambling", "online_services"
    ]
    amount: Annotated[float, Field(gt=0, le=MAX_AMOUNT)]
    card_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    merchant_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
    channel: Literal["card_present", "contactless", "online"]
    card_tx_count_hour: Annotated[int | None, Field(ge=1)] = None
    card_median_amount_hour: Annotated[float | None, Field(gt=0)] = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transactions: Annotated[list[Transaction], Field(min_length=1)]


@dataclass(frozen=True)
class LoadedModel:
    version: str
    fingerprint: str
    model: Any


class ModelHolder:
    """The served model; replaced by one assignment, so a request uses one version from start to end."""

    def __init__(self, postgres_url: str, model_name: str, artifact_root: str) -> None:
        self.postgres_url, self.model_name, self.artifact_root = postgres_url, model_name, artifact_root
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def reload(self) -> None:
        """Load the version `ml.serving_state` names, if it is not the one loaded already."""
        import psycopg

        from orchestration_platform.lib.ml.model_registry import ModelRegistry
        from orchestration_platform.lib.ml.serving_switch import served_version

        with self._lock:
            try:
                with psycopg.connect(self.postgres_url, connect_timeout=5, autocommit=True) as conn:
                    wanted = served_version(conn, self.model_name)
                if wanted is None:
                    self.current, self.last_error = None, None
                    return
                if self.current and (self.current.version, self.current.fingerprint) == (
                    wanted.version,
                    wanted.fingerprint,
                ):
                    self.last_error = None
                    return
                registry = ModelRegistry(self.postgres_url, self.artifact_root, self.model_name)
                model = registry.load(wanted.version, wanted.fingerprint)
                self.current = LoadedModel(wanted.version, wanted.fingerprint, model)
                self.last_error = None
                log.info("serving %s version %s", self.model_name, wanted.version)
            except Exception as error:  # keep serving the loaded model; report the failure
                self.last_error = f"{error.__class__.__name__}: {error}"
                log.error("reload failed, still serving %s: %s", self.current and self.current.version, error)


def _settings() -> tuple[str, str, str]:
    from orchestration_platform.settings import get_settings

    settings = get_settings()
    artifact_root = os.environ.get("MLFLOW_ARTIFACT_ROOT", "").strip() or str(
        settings.data_dir / "mlflow-artifacts"
    )
    return settings.postgres_url, os.environ.get("SERVING_MODEL_NAME", "fraud_detector"), artifact_root


class BodySizeLimit:
    """413 for bodies over the limit, declared (Content-Length) or streamed (chunked)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(send)

    async def _too_large(self, send) -> None:
        response = JSONResponse(
            {"detail": f"request body over {self.max_bytes} bytes: send fewer transactions per call"}, 413
        )
        await response({"type": "http"}, None, send)


class _TooLarge(Exception):
    pass


def _warm_up() -> None:
    """Import the model loader at start, so the first switch to a new version is quick."""
    import mlflow.sklearn  # noqa: F401


def create_app() -> FastAPI:
    max_batch = _int_env("SERVING_MAX_BATCH", 1000)
    refresh_s = _int_env("SERVING_REFRESH_S", 10)
    postgres_url, model_name, artifact_root = _settings()
    holder = ModelHolder(postgres_url, model_name, artifact_root)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_warm_up)
        await run_in_threadpool(holder.reload)

        async def refresh() -> None:
            while True:
                await asyncio.sleep(refresh_s)
                await run_in_threadpool(holder.reload)

        task = asyncio.create_task(refresh()) if refresh_s > 0 else None
        yield
        if task:
            task.cancel()

    app = FastAPI(title="fraud model serving", lifespan=lifespan)
    app.state.holder = holder

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        loaded = holder.current
        if loaded is None or holder.last_error:
            reason = holder.last_error or "no approved model has been deployed yet"
            return JSONResponse({"status": "unavailable", "reason": reason}, 503)
        return JSONResponse({"status": "ok", "version": loaded.version})

    @app.get("/version")
    def version() -> dict:
        loaded = holder.current
        return {
            "model_name": model_name,
            "version": loaded.version if loaded else None,
            "fingerprint": loaded.fingerprint if loaded else None,
            "last_error": holder.last_error,
        }

    @app.post("/admin/reload")
    async def reload() -> JSONResponse:
        await run_in_threadpool(holder.reload)
        loaded = holder.current
        body = {"version": loaded.version if loaded else None, "last_error": holder.last_error}
        return JSONResponse(body, 500 if holder.last_error else 200)

    @app.post("/predict")
    def predict(request: PredictRequest) -> JSONResponse:
        import pandas as pd

        from orchestration_platform.lib.ml.features import FEATURE_COLUMNS, compute_features

        if len(request.transactions) > max_batch:
            return JSONResponse(
                {"detail": f"{len(request.transactions)} transactions in one call; at most {max_batch}"}, 422
            )
        loaded = holder.current  # one version for the whole request
        if loaded is None:
            return JSONResponse({"detail": "no approved model is deployed yet"}, 503)
        frame = pd.DataFrame([t.model_dump() for t in request.transactions])
        features = compute_features(frame)[list(FEATURE_COLUMNS)]
        scores = loaded.model.predict_proba(features)[:, 1]
        return JSONResponse(
            {
                "model_name": model_name,
                "version": loaded.version,
                "predictions": [
                    {"fraud_probability": round(float(s), 6), "is_fraud": bool(s >= 0.5)} for s in scores
                ],
            }
        )

    return app


class _LazyApp:
    """`uvicorn orchestration_platform.serving.app:app` builds the app on first use (env read at start)."""

    _app: Any = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            type(self)._app = BodySizeLimit(create_app(), _int_env("SERVING_MAX_BODY_BYTES", 65_536))
        await self._app(scope, receive, send)


app = _LazyApp()
