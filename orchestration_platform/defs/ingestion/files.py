"""The `ingestion_files` resource: where raw files are kept and which folder is the landing zone."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from orchestration_platform.settings import get_settings


class IngestionFilesResource(dg.ConfigurableResource):
    """Folders of the CSV datasets. Unset fields mean PLATFORM_DATA_DIR and INGESTION_LANDING_ZONE, read when a
    run or a sensor tick uses them (defaults: `<repo>/.local/data` and `<data dir>/landing`)."""

    data_dir: str | None = Field(default=None, description="PLATFORM_DATA_DIR: raw files go to "
                                 "<data_dir>/ingestion/raw/<dataset>/<partition>.csv")
    landing_zone: str | None = Field(default=None, description="INGESTION_LANDING_ZONE: the folder watched "
                                     "for dropped CSV files")

    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser() if self.data_dir else get_settings().data_dir

    def landing_path(self) -> Path:
        return Path(self.landing_zone).expanduser() if self.landing_zone else get_settings().landing_zone

    def raw_file(self, dataset: str, partition: str) -> Path:
        """Where the raw bytes of one partition are kept."""
        return self.data_path() / "ingestion" / "raw" / dataset / f"{partition.replace(':', '')}.csv"
