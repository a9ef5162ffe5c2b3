"""The one configuration model, fed by flywheel.yaml, environment variables and --set flags.

`base` holds the strict base model and shared types; one module per group of sections
(`data`, `contract`, `model`, `pipeline` with `resources` and `quantities`, `serving`,
`monitoring`); `settings` the root; `loading` reads files, variables and flags into it.
Callers import every public name from here.
"""

from __future__ import annotations

from flywheel.config.base import (
    ENV_PREFIX as ENV_PREFIX,
)
from flywheel.config.base import (
    OTHER_VARIABLES as OTHER_VARIABLES,
)
from flywheel.config.base import (
    Column as Column,
)
from flywheel.config.base import (
    Fraction as Fraction,
)
from flywheel.config.base import (
    Name as Name,
)
from flywheel.config.base import (
    Scalar as Scalar,
)
from flywheel.config.base import (
    Strict as Strict,
)
from flywheel.config.contract import (
    ColumnTags as ColumnTags,
)
from flywheel.config.contract import (
    ContractSettings as ContractSettings,
)
from flywheel.config.contract import (
    DriftSettings as DriftSettings,
)
from flywheel.config.data import (
    DataSettings as DataSettings,
)
from flywheel.config.data import (
    FeatureSettings as FeatureSettings,
)
from flywheel.config.data import (
    GeneratorSettings as GeneratorSettings,
)
from flywheel.config.data import (
    Scenario as Scenario,
)
from flywheel.config.data import (
    StorageSettings as StorageSettings,
)
from flywheel.config.data import (
    StoreUri as StoreUri,
)
from flywheel.config.loading import (
    DEFAULT_CONFIG as DEFAULT_CONFIG,
)
from flywheel.config.loading import (
    ConfigError as ConfigError,
)
from flywheel.config.loading import (
    json_schema as json_schema,
)
from flywheel.config.loading import (
    load_settings as load_settings,
)
from flywheel.config.model import (
    DEFAULT_ESTIMATOR as DEFAULT_ESTIMATOR,
)
from flywheel.config.model import (
    LOWER_IS_BETTER as LOWER_IS_BETTER,
)
from flywheel.config.model import (
    METRIC_TASKS as METRIC_TASKS,
)
from flywheel.config.model import (
    TASKS as TASKS,
)
from flywheel.config.model import (
    BaselineSettings as BaselineSettings,
)
from flywheel.config.model import (
    FairnessSettings as FairnessSettings,
)
from flywheel.config.model import (
    ImportanceSettings as ImportanceSettings,
)
from flywheel.config.model import (
    Metric as Metric,
)
from flywheel.config.model import (
    ModelSettings as ModelSettings,
)
from flywheel.config.model import (
    PromotionSettings as PromotionSettings,
)
from flywheel.config.model import (
    SearchSettings as SearchSettings,
)
from flywheel.config.model import (
    SliceCheck as SliceCheck,
)
from flywheel.config.model import (
    Task as Task,
)
from flywheel.config.model import (
    better as better,
)
from flywheel.config.model import (
    check_metric as check_metric,
)
from flywheel.config.monitoring import (
    DEFAULT_MONITORED as DEFAULT_MONITORED,
)
from flywheel.config.monitoring import (
    ESTIMATED_METRICS as ESTIMATED_METRICS,
)
from flywheel.config.monitoring import (
    MONITORED_METRICS as MONITORED_METRICS,
)
from flywheel.config.monitoring import (
    CodeChangeTrigger as CodeChangeTrigger,
)
from flywheel.config.monitoring import (
    CronText as CronText,
)
from flywheel.config.monitoring import (
    DriftTrigger as DriftTrigger,
)
from flywheel.config.monitoring import (
    EstimatedPerformanceTrigger as EstimatedPerformanceTrigger,
)
from flywheel.config.monitoring import (
    MonitoredMetric as MonitoredMetric,
)
from flywheel.config.monitoring import (
    MonitoringSettings as MonitoringSettings,
)
from flywheel.config.monitoring import (
    NewDataTrigger as NewDataTrigger,
)
from flywheel.config.monitoring import (
    PerformanceTrigger as PerformanceTrigger,
)
from flywheel.config.monitoring import (
    ScheduleTrigger as ScheduleTrigger,
)
from flywheel.config.monitoring import (
    Severity as Severity,
)
from flywheel.config.monitoring import (
    TriggerSettings as TriggerSettings,
)
from flywheel.config.pipeline import (
    STEPS as STEPS,
)
from flywheel.config.pipeline import (
    PipelineResources as PipelineResources,
)
from flywheel.config.pipeline import (
    PipelineSettings as PipelineSettings,
)
from flywheel.config.pipeline import (
    Step as Step,
)
from flywheel.config.quantities import (
    CpuQuantity as CpuQuantity,
)
from flywheel.config.quantities import (
    MemoryQuantity as MemoryQuantity,
)
from flywheel.config.quantities import (
    cpu_cores as cpu_cores,
)
from flywheel.config.quantities import (
    memory_bytes as memory_bytes,
)
from flywheel.config.resources import (
    ResourceSettings as ResourceSettings,
)
from flywheel.config.resources import (
    StepResourceOverrides as StepResourceOverrides,
)
from flywheel.config.resources import (
    StepResources as StepResources,
)
from flywheel.config.serving import (
    LOG_MAX_BYTES as LOG_MAX_BYTES,
)
from flywheel.config.serving import (
    AccuracyPolicy as AccuracyPolicy,
)
from flywheel.config.serving import (
    RolloutChecks as RolloutChecks,
)
from flywheel.config.serving import (
    RolloutSettings as RolloutSettings,
)
from flywheel.config.serving import (
    ServingSettings as ServingSettings,
)
from flywheel.config.serving import (
    TrafficStep as TrafficStep,
)
from flywheel.config.settings import (
    Settings as Settings,
)
