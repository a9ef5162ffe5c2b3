"""The root of the configuration: every section, and the checks that span sections."""

from __future__ import annotations

import json
import math

from pydantic import model_validator

from flywheel.config.base import Name, Strict
from flywheel.config.contract import ContractSettings
from flywheel.config.data import DataSettings, FeatureSettings, StorageSettings
from flywheel.config.model import ModelSettings, PromotionSettings
from flywheel.config.monitoring import MonitoringSettings, TriggerSettings
from flywheel.config.pipeline import PipelineSettings
from flywheel.config.serving import RolloutSettings, ServingSettings


class Settings(Strict):
    """Everything one Flywheel deployment needs to know."""

    model_name: Name = "loan-default"
    data: DataSettings = DataSettings()
    features: FeatureSettings = FeatureSettings()
    contract: ContractSettings = ContractSettings()
    model: ModelSettings = ModelSettings()
    promotion: PromotionSettings = PromotionSettings()
    storage: StorageSettings = StorageSettings()
    pipeline: PipelineSettings = PipelineSettings()
    serving: ServingSettings = ServingSettings()
    rollout: RolloutSettings = RolloutSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    triggers: TriggerSettings = TriggerSettings()

    @model_validator(mode="after")
    def _slices_are_features(self) -> Settings:
        for i, check in enumerate(self.promotion.slices):
            if check.column not in self.features.categorical:
                raise ValueError(
                    f"promotion.slices.{i}.column: {check.column!r} is not a categorical feature"
                )
        return self

    @model_validator(mode="after")
    def _metric_fits_the_task(self) -> Settings:
        task = self.model.task
        if task is not None:
            self.promotion.threshold(task)
            self.triggers.check_task(task)
        return self

    @model_validator(mode="after")
    def _pii_is_no_feature(self) -> Settings:
        # A person's identifier in the model would leak through its splits and categories.
        contract = self.contract
        for name in contract.pii_columns:
            if name in (self.features.label, self.features.time_column):
                raise ValueError(
                    f"contract.columns.{name}: the label and the time column cannot be pii "
                    "(they are dropped or hashed at ingest)"
                )
            if name in self.features.columns and name not in contract.pii_features:
                raise ValueError(
                    f"contract.columns.{name}: a pii column is a feature; list it under "
                    "contract.pii_features to allow it, or remove it from features"
                )
        for name in contract.pii_features:
            if name not in self.features.categorical:
                raise ValueError(
                    f"contract.pii_features: {name!r} is not a categorical feature (hashed "
                    "values are strings)"
                )
        return self

    @model_validator(mode="after")
    def _fairness_attribute_is_a_feature(self) -> Settings:
        fairness = self.promotion.fairness
        if fairness is not None and fairness.attribute not in self.features.categorical:
            raise ValueError(
                f"promotion.fairness.attribute: {fairness.attribute!r} is not a categorical "
                f"feature, so it has no groups to compare "
                f"(categorical: {', '.join(self.features.categorical) or 'none'})"
            )
        return self

    @model_validator(mode="after")
    def _triggers_can_fire(self) -> Settings:
        drift = self.triggers.drift
        for name in drift.features if drift else ():
            if name not in self.features.columns:
                raise ValueError(
                    f"triggers.drift.features.{name}: {name!r} is not a feature, so its PSI "
                    f"never exists (features: {', '.join(self.features.columns)})"
                )
        for key in ("drift", "estimated_performance"):
            trigger = getattr(self.triggers, key)
            if trigger is not None and trigger.windows > self.monitoring.windows:
                raise ValueError(
                    f"triggers.{key}.windows: {trigger.windows} windows never fit in the "
                    f"{self.monitoring.windows} that monitoring.windows looks back"
                )
        monitoring = self.monitoring
        # In whole days, the delay's unit, as retention_days counts them.
        looked_back = math.ceil(monitoring.windows * (1 if monitoring.window == "day" else 1 / 24))
        if self.triggers.performance is not None and monitoring.label_delay_days > looked_back:
            raise ValueError(
                f"triggers.performance: monitoring.label_delay_days lets labels arrive up to "
                f"{monitoring.label_delay_days} day(s) after a window, but monitoring.windows "
                f"looks back {looked_back} day(s) ({monitoring.windows} {monitoring.window} "
                "window(s)): labels that late are never judged; look back further, "
                "shorten the delay, or set triggers.performance: null"
            )
        return self

    def to_json(self) -> str:
        """The canonical serialised form, as passed to pipeline components."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Parse the form written by `to_json`."""
        return cls.model_validate_json(text)
