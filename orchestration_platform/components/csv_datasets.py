"""CSV datasets as a Dagster Component: the YAML (`defs/ingestion/datasets/defs.yaml`) declares daily, hourly,
weekly or monthly CSV files; this class builds, per dataset, the assets `["ingestion", <name>, "raw"]` and
`["ingestion", <name>, "cleaned"]` (table `<name>`), their checks, a job and a schedule; one landing-zone
sensor serves every dataset of the instance (a dropped file goes to the one dataset whose pattern it fits).

```yaml
type: orchestration_platform.components.csv_datasets.CsvDatasets
attributes:
  datasets:
    - name: jh_daily
      source: {url_template: "https://host/daily/{date:%m-%d-%Y}.csv", landing_pattern: "jh_daily_{date}.csv"}
      partitions: {cadence: daily, start: "2026-01-01", publish_delay: 6h}
      columns:
        - {name: region, type: text, aliases: [Province_State, "Province/State"]}
        - {name: updated_at, type: timestamp, aliases: [Last_Update]}
      key: [region]
```
Every field is described in the README ("Add your own CSV dataset"). Invalid YAML fails the load naming
the dataset, the field, the value and the fix.
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotations at runtime.

from typing import Annotated, Any

import dagster as dg
from pydantic import Field

from orchestration_platform.components.templates import TEMPLATES_ONLY


class CsvDatasets(dg.Component, dg.Model, dg.Resolvable):
    """CSV files published per day (or hour, week, month), cleaned into the ingestion warehouse."""

    datasets: Annotated[list[dict[str, Any]], TEMPLATES_ONLY] = Field(
        default_factory=list,
        description="One entry per dataset: name, description, owners, tags, source, partitions, dialect, "
        "columns, key, duplicates, keep_last_by, allow_header_only, quality (see README).",
    )
    landing_zone_sensor: Annotated[str, TEMPLATES_ONLY] = Field(
        default="landing_zone_sensor",
        description="Name of the sensor that ingests files dropped into the landing zone for these datasets",
    )

    def specs(self):
        """The validated datasets (raises DatasetConfigError naming dataset, field, value and fix)."""
        from orchestration_platform.lib.ingestion.dataset import DatasetConfigError
        from orchestration_platform.lib.ingestion.dataset_config import (
            check_distinct_patterns,
            dataset_from_config,
        )

        for index, raw in enumerate(self.datasets):
            if not isinstance(raw, dict):
                raise DatasetConfigError(f"datasets[{index}]={raw!r} is not a mapping: give name, source, columns")
        specs = [dataset_from_config(raw) for raw in self.datasets]
        check_distinct_patterns(specs)
        return specs

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from orchestration_platform.defs.ingestion.dataset_assets import (
            build_cleaned_asset,
            build_raw_asset,
            partitions_for,
        )
        from orchestration_platform.defs.ingestion.dataset_checks import build_checks, build_job_and_schedule
        from orchestration_platform.defs.ingestion.landing_zone_sensor import build_landing_zone_sensor

        specs = self.specs()
        assets, checks, jobs, schedules, partitions = [], [], {}, [], {}
        for spec in specs:
            partitions[spec.name] = partitions_for(spec)
            assets += [build_raw_asset(spec, partitions[spec.name]), build_cleaned_asset(spec, partitions[spec.name])]
            checks.append(build_checks(spec))
            jobs[spec.name], schedule = build_job_and_schedule(spec, partitions[spec.name])
            schedules.append(schedule)
        sensors = [build_landing_zone_sensor(specs, jobs, partitions, self.landing_zone_sensor)] if specs else []
        return dg.Definitions(assets=assets, asset_checks=checks, jobs=list(jobs.values()), schedules=schedules,
                              sensors=sensors)
