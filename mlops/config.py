"""Pipeline configuration (what a run does) and Settings (where infrastructure lives).

The config file is validated by pydantic with unknown keys forbidden, so a typo names its key
instead of being silently ignored. Infrastructure comes only from the environment (STYLE.md rule 5).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mlops.errors import ConfigError
from mlops.files import read_regular_file
from mlops.text import printable

TaskType = Literal["classification", "regression"]
# promotion.primary_metric when the config names none (names from mlops.metrics, not imported here:
# reading a config must not import scikit-learn).
DEFAULT_PRIMARY_METRIC: dict[str, str] = {"classification": "roc_auc", "regression": "rmse"}

# Used with fullmatch only: `$` also matches before a final newline, and "x\n" passed as a
# second model beside "x" that split every table it was printed in.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")
_NAME_RULE = "must be 1-100 letters, digits, '.', '_' or '-'"


def _plain_name(value: str) -> str:
    """A name printed in tables, report lines and file names: matched whole, no spaces or line breaks."""
    if not _MODEL_NAME.fullmatch(value):
        raise ValueError(_NAME_RULE)
    return value


PlainName = Annotated[str, AfterValidator(_plain_name)]


# Keys that once named a secret or the endpoint that receives it. What names a secret is
# infrastructure (Settings, environment only): a config is also an editable deployment parameter,
# and one that chose the variable and the address could send any secret anywhere.
MOVED_KEYS: dict[str, dict[str, str]] = {
    "serving": {"api_key_env": "the API key is read from the environment variable MLOPS_API_KEY"},
    "rollback": {
        "service_url": "the watched service is the environment variable MLOPS_SERVING_URL "
        "(default: the local stack's serving app)"
    },
}


def _refuse_moved_keys(data: Any, section: str) -> Any:
    if isinstance(data, dict):
        for key, where in MOVED_KEYS[section].items():
            if key in data:
                raise PydanticCustomError(
                    "moved_key", "'{key}' is not a config key: {where}", {"key": f"{section}.{key}", "where": where}
                )
    return data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Where the training data lives and which columns play which role."""

    uri: str = Field(
        min_length=1,
        description="Local path or s3://bucket/key, .csv or .parquet; with feature_service, the entity frame "
        "(entity keys, timestamp, label)",
    )
    target: str = Field(min_length=1, description="Column to predict")
    timestamp: str | None = Field(
        default=None, description="Optional event-time column; enables the time-based split"
    )
    feature_service: PlainName | None = Field(
        default=None,
        description="Feast feature service joined point-in-time to the entity frame at dataset.uri; "
        "serving then also accepts entity keys (needs timestamp)",
    )
    feature_repo: str = Field(
        default="features", min_length=1, description="The Feast repository (feature_store.yaml) of feature_service"
    )

    @model_validator(mode="after")
    def _feature_service_needs_timestamp(self) -> DatasetConfig:
        # The point-in-time join needs each label's time; without it every row would see the future.
        if self.feature_service and not self.timestamp:
            raise ValueError("dataset.feature_service needs dataset.timestamp (each label's time for the join)")
        return self


class SearchConfig(_Strict):
    """Hyperparameter search: every grid point is cross-validated on the training split."""

    param_grid: dict[str, list[Any]] = Field(
        min_length=1, description="Estimator parameter -> values to try; candidates are the grid's points"
    )
    cv: int = Field(default=3, ge=2, le=20, description="Cross-validation folds per candidate")
    scoring: str | None = Field(
        default=None, description="scikit-learn scorer name; None = roc_auc (classification) or neg_root_mean_squared_error"
    )

    @field_validator("param_grid")
    @classmethod
    def _non_empty_values(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [name for name, values in value.items() if not values]
        if empty:
            raise ValueError(f"no values to try for {', '.join(empty)}")
        return value


class ModelConfig(_Strict):
    """Which estimator to train and under which registered name."""

    name: str = Field(description="Registered model name in MLflow")
    task: TaskType = "classification"
    estimator: str = Field(
        default="sklearn.ensemble.HistGradientBoostingClassifier",
        description="Import path of a scikit-learn estimator class",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Estimator keyword arguments")
    # scikit-learn and numpy's legacy RandomState take seeds below 2**32 only.
    seed: int = Field(default=42, ge=0, le=2**32 - 1, description="Seed for the estimator and the split")
    max_classes: int = Field(
        default=100, ge=2, le=10_000,
        description="Classification: most distinct target values trained on; more is refused before the fit",
    )
    search: SearchConfig | None = Field(
        default=None, description="Hyperparameter search; the best candidate's params override `params`"
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _plain_name(value)

    @field_validator("estimator")
    @classmethod
    def _dotted_path(cls, value: str) -> str:
        if "." not in value or not all(part.isidentifier() for part in value.split(".")):
            raise ValueError("must be a dotted import path such as sklearn.linear_model.Ridge")
        return value


class SplitConfig(_Strict):
    """How the holdout is cut: random (stratified for classification) or by time."""

    method: Literal["random", "time"] = "random"
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)


class ColumnRule(_Strict):
    """A rule the config declares for one column, on top of the inferred contract."""

    column: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    allowed: list[str | int | float | bool] | None = None
    max_null_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    unique: bool = False

    @model_validator(mode="after")
    def _range_ordered(self) -> ColumnRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ContractTolerance(_Strict):
    """How far new data may stray from the contract before validation fails."""

    range_margin: float = Field(
        default=0.25, ge=0.0, description="Numeric ranges widen by this share of the observed span"
    )
    null_rate_margin: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Allowed rise of a column's null fraction"
    )
    mostly: float = Field(
        default=0.99, gt=0.0, le=1.0, description="Share of rows that must meet range/category checks"
    )


class ValidationConfig(_Strict):
    """Data validation: declared rules plus the contract inferred from reference data."""

    min_rows: int = Field(default=50, ge=1)
    rules: list[ColumnRule] = Field(default_factory=list)
    contract: ContractTolerance = Field(default_factory=ContractTolerance)


class GatesConfig(_Strict):
    """Quality gate: the model is registered only if every bound holds on the holdout."""

    min_metrics: dict[str, float] = Field(default_factory=dict)
    max_metrics: dict[str, float] = Field(default_factory=dict)
    min_slice_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> bound every judged slice (evaluation.segments) must meet: a floor, or a "
        "ceiling for error metrics (rmse, log_loss...)",
    )
    max_slice_gap: dict[str, float] = Field(
        default_factory=dict,
        description="Metric -> largest allowed gap between the best and the worst judged slice",
    )


class EvaluationConfig(_Strict):
    """Slices of the holdout the model is also judged on, one per value of each segment column."""

    segments: list[str] = Field(
        default_factory=list, description="Columns to slice the holdout by (e.g. contract, region)"
    )
    min_slice_rows: int = Field(
        default=30, ge=1, description="Slices with fewer holdout rows are reported, not judged by the slice gates"
    )
    bootstrap_samples: int = Field(
        default=200, ge=20, le=10_000, description="Resamples behind every confidence interval of the card"
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1.0, description="Confidence level of the intervals")


class CardConfig(_Strict):
    """What the model card says about the model that the data cannot: why it exists and who owns it."""

    purpose: str = Field(default="not stated", description="What the model predicts and why")
    owner: str = Field(default="not stated", description="Who answers for the model (team or person)")
    intended_use: str = Field(default="not stated", description="Where its predictions may be used")
    limitations: list[str] = Field(
        default_factory=list, description="Known limits, listed on the card with the ones the data shows"
    )


class PromotionConfig(_Strict):
    """How the deploy flow decides whether a challenger replaces the champion."""

    primary_metric: str = Field(
        default="roc_auc",
        description="Metric both models are compared on; default roc_auc (classification) or rmse (regression)",
    )
    tolerance: float = Field(
        default=0.0, ge=0.0, description="The challenger may be worse by at most this (absolute)"
    )
    significance: Literal["none", "bootstrap", "mcnemar"] = Field(
        default="none", description="Paired test the challenger must also pass to be promoted"
    )
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000)
    holdout_uri: str | None = Field(
        default=None,
        description="Fresh labelled data both models are scored on; default: the latest "
        "split.test_size share of dataset.uri",
    )
    compare_worst_slice: bool = Field(
        default=False,
        description="Also refuse a challenger whose worst slice (evaluation.segments) on primary_metric is "
        "worse than the champion's worst slice beyond tolerance",
    )
    smoke_sample_rows: int = Field(default=200, ge=1)
    smoke_max_latency_ms: float = Field(
        default=500.0, gt=0.0, description="Smoke test: slowest allowed single-row prediction"
    )


def _home_default(name: str) -> str:
    """A default location under the stack's home, absolute: two homes never share state, and a
    process started from another directory (a worker, the serving app) finds the same files."""
    from mlops.settings import Settings

    return str((Settings().home / name).resolve())


class ServingConfig(_Strict):
    """The prediction service: routing, limits, logging."""

    mode: Literal["champion", "canary", "shadow"] = "champion"
    canary_share: float = Field(default=0.1, ge=0.0, le=1.0)
    canary_alias: str = Field(default="challenger", description="Alias the canary/shadow scores with")
    sticky_header: str = Field(default="X-Request-Key", description="Header that pins a caller to a route")
    prediction_log_uri: str = Field(
        default_factory=lambda: _home_default("predictions"),
        description="Directory or s3://bucket/prefix of the prediction log (default: $MLOPS_HOME/predictions)",
    )
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_rows: int = Field(default=1000, ge=1)
    batch_max_rows: int = Field(default=256, ge=1, description="Micro-batch: most rows per predict call")
    batch_wait_ms: float = Field(default=2.0, ge=0.0, description="Micro-batch: longest wait to fill a batch")
    refresh_seconds: float = Field(default=5.0, gt=0.0, description="How often aliases are re-read")
    max_loaded_models: int = Field(
        default=16, ge=1,
        description="Most catalogue models one serving app keeps loaded; beyond it the least recently "
        "used idle one is unloaded and reloads on its next request. App-wide: the default model's value applies",
    )
    default: bool = Field(
        default=False,
        description="This model answers the unnamed routes (/predict, /labels) of an app serving several; "
        "at most one catalogue model sets it (MLOPS_DEFAULT_MODEL overrides it)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_moved_keys(cls, data: Any) -> Any:
        return _refuse_moved_keys(data, "serving")


class RollbackConfig(_Strict):
    """The post-deployment check that moves `champion` back on a breach."""

    enabled: bool = True
    window_seconds: float = Field(default=300.0, ge=0.0)
    poll_seconds: float = Field(default=10.0, gt=0.0)
    min_requests: int = Field(default=20, ge=1, description="Fewer requests in the window: no verdict on rates")
    max_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    max_p99_ms: float = Field(default=250.0, gt=0.0)

    @model_validator(mode="before")
    @classmethod
    def _no_moved_keys(cls, data: Any) -> Any:
        return _refuse_moved_keys(data, "rollback")


SHADOW = "shadow"


class RolloutConfig(_Strict):
    """Progressive delivery after the offline gate: the challenger earns traffic step by step on live evidence."""

    enabled: bool = Field(default=False, description="False: promotion moves all traffic at once (the watch may roll back)")
    steps: list[Literal["shadow"] | float] = Field(
        default_factory=lambda: [SHADOW, 0.05, 0.25, 0.5],
        min_length=1,
        description="'shadow' (challenger answers beside the champion, unseen) or the challenger's traffic share "
        "(rising, at most 1); passing the last share below 1 promotes (a final 1 is that promotion)",
    )
    min_requests: int = Field(default=200, ge=1, description="Challenger requests a step needs before it may pass")
    min_labelled_rows: int = Field(
        default=100, ge=0, description="Labelled challenger rows answered during a traffic step before it may pass (0: none)"
    )
    max_minutes_per_step: float = Field(
        default=60.0, gt=0.0, description="A step without enough evidence by then aborts the rollout"
    )
    max_error_rate: float = Field(default=0.02, ge=0.0, le=1.0, description="Challenger's share of failed requests")
    max_p99_ratio: float = Field(
        default=1.5, gt=0.0, description="Challenger's p99 latency may be at most this times the champion's"
    )
    min_agreement: float = Field(
        default=0.9, ge=0.0, le=1.0, description="Shadow: share of rows where both versions predict the same class"
    )
    max_score_distance: float = Field(
        default=0.1, ge=0.0, description="Shadow: largest allowed Kolmogorov-Smirnov distance between the versions' scores"
    )
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="Sequential test's error rate, however often it looks")
    sequential_tau: float = Field(
        default=0.05, gt=0.0, description="Sequential test's mixture scale: the difference it finds fastest"
    )
    poll_seconds: float = Field(default=30.0, gt=0.0, description="How often a step's live evidence is looked at")

    @field_validator("steps")
    @classmethod
    def _rising_shares(cls, steps: list[Any]) -> list[Any]:
        return check_rollout_steps(steps)


def check_rollout_steps(steps: list[Any]) -> list[Any]:
    """The steps of a rollout: 'shadow' first if at all, then rising shares in (0, 1]; ValueError otherwise.

    Shared by the config and the registry's traffic split, so a tag cannot hold steps no config could.
    """
    shares = [s for s in steps if s != SHADOW]
    if SHADOW in steps and steps.index(SHADOW) != 0:
        raise ValueError("'shadow' can only be the first step")
    if steps.count(SHADOW) > 1:
        raise ValueError("'shadow' appears more than once")
    # Written so that NaN fails too (every comparison with NaN is false).
    if any(not 0.0 < s <= 1.0 for s in shares):
        raise ValueError("traffic shares must be above 0 and at most 1")
    if shares != sorted(set(shares)):
        raise ValueError("traffic shares must rise from step to step")
    return steps


class ApprovalConfig(_Strict):
    """A person approves or rejects a promotion the offline gate allowed, in the Prefect UI or by `mlops approve`."""

    required: bool = Field(default=False, description="Pause deploy for a person's approval before the champion moves")
    timeout_minutes: float = Field(
        default=60.0, gt=0.0, description="No answer by then refuses the promotion (audited)"
    )
    at: Literal["before-rollout", "before-full"] = Field(
        default="before-rollout",
        description="When to ask: before the challenger gets any traffic, or before it gets all of it; "
        "without a rollout both mean before the champion moves",
    )


class ExecutionConfig(_Strict):
    """Where fan-out work (search candidates, batch-scoring chunks) runs: in the flow or on Dask."""

    task_runner: Literal["sequential", "dask"] = "sequential"
    dask_address: str | None = Field(
        default=None, description="An existing Dask scheduler (tcp://host:8786); None = a local cluster"
    )
    n_workers: int = Field(default=2, ge=1, description="Local cluster: worker processes")
    threads_per_worker: int = Field(default=1, ge=1, description="Local cluster: threads per worker")


DriftMethod = Literal[
    "wasserstein", "jensenshannon", "psi", "ks", "chisquare", "z", "kl_div", "hellinger", "anderson"
]


class MonitoringSchedule(_Strict):
    """When this model's drift check runs: a cron line or a fixed interval (`make up` applies it)."""

    cron: str | None = Field(default="0 * * * *", description="Cron line (5 fields); ignored when interval_minutes is set")
    interval_minutes: float | None = Field(default=None, ge=1.0, description="Run every this many minutes instead of cron")
    timezone: str = Field(default="UTC", description="Time zone the cron line is read in")
    active: bool = Field(default=True, description="False: the schedule exists but is paused")

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError("must be a cron line of 5 fields, such as '*/15 * * * *'")
        return value

    @model_validator(mode="after")
    def _one_cadence(self) -> MonitoringSchedule:
        if self.cron is None and self.interval_minutes is None:
            raise ValueError("needs cron or interval_minutes")
        return self


class MonitoringConfig(_Strict):
    """Drift checks of the live window against the champion's reference data."""

    schedule: MonitoringSchedule = Field(
        default_factory=MonitoringSchedule, description="When the scheduled drift check of this model runs"
    )

    num_method: DriftMethod | None = Field(
        default=None, description="Numeric columns; None = Evidently's default by sample size"
    )
    cat_method: DriftMethod | None = Field(
        default=None, description="Categorical columns; None = Evidently's default by sample size"
    )
    per_column_method: dict[str, DriftMethod] = Field(default_factory=dict)
    threshold: float | None = Field(
        default=None, gt=0.0, description="Statistic (or p-value) threshold; None = the method's default"
    )
    per_column_threshold: dict[str, PositiveFloat] = Field(default_factory=dict)
    drift_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Dataset drift when at least this share of columns drift"
    )
    window_hours: float = Field(default=24.0, gt=0.0, description="Prediction-log window one check reads")
    min_rows: int = Field(default=100, ge=1, description="Fewer rows in the window: no verdict")
    max_performance_drop: float = Field(
        default=0.05, ge=0.0,
        description="Live primary metric may be this much worse than the champion's, in the metric's unit "
        "(below it for roc_auc, above it for rmse)",
    )
    report_sample_rows: int = Field(
        default=50_000, ge=100, description="Rows of each side in the human HTML report (seeded sample)"
    )
    reference_rows: int = Field(
        default=100_000, ge=100, description="Training rows stored with the model as the drift reference"
    )
    seed: int = Field(default=0, ge=0)


class RetrainConfig(_Strict):
    """What an event-triggered retrain does, and how often it may happen."""

    cooldown_minutes: float = Field(
        default=60.0, ge=0.0,
        description="After a finished retrain, further triggers within this many minutes are skipped",
    )
    include_recent_labels: bool = Field(
        default=True, description="Add labelled prediction-log rows to the training data"
    )
    # A drift-triggered retrain is judged on the data it answers: the newest labelled traffic.
    recent_holdout_share: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="Share of the labelled traffic (its newest rows) held out to judge both models; "
                    "the older rest is trained on",
    )
    min_labelled_rows: int = Field(
        default=200, ge=2, description="Fewer labelled rows than this: retrain on the dataset alone"
    )
    # The labelled history a retrain reads is bounded: old traffic says little about today's
    # population, and a log that only grows must not make every retrain slower and larger.
    labelled_window_days: float = Field(
        default=30.0, gt=0.0, description="Labelled predictions older than this many days are not trained on"
    )
    max_labelled_rows: int = Field(
        default=500_000, ge=2, description="At most this many labelled rows (the newest) join the training data"
    )


class _BehaviourTest(_Strict):
    name: PlainName = Field(description="Names the test in the report and in the refusal line")
    column: str = Field(min_length=1, description="Feature column the test changes")


class InvarianceTest(_BehaviourTest):
    """Changing a field that must not matter (set to one value, or permuted) flips few predictions."""

    kind: Literal["invariance"]
    value: str | int | float | bool | None = Field(
        default=None, description="Set every row's column to this value (or permute: true)"
    )
    permute: bool = Field(default=False, description="Shuffle the column across rows (seeded) instead")
    max_flip_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Largest share of rows whose prediction may change"
    )
    tolerance: float | None = Field(
        default=None, gt=0.0,
        description="Regression (required there): a prediction moving more than this counts as changed",
    )

    @model_validator(mode="after")
    def _one_change(self) -> InvarianceTest:
        if self.permute == (self.value is not None):
            raise ValueError("give exactly one of value or permute: true")
        return self


class DirectionalTest(_BehaviourTest):
    """Raising a numeric field by `delta` moves the output the expected way on average."""

    kind: Literal["directional"]
    delta: float = Field(description="Added to every row's column (non-zero)")
    direction: Literal["increase", "decrease"] = Field(
        default="increase",
        description="How the positive-class probability (or regression output) must move, on average",
    )
    tolerance: float = Field(default=0.0, ge=0.0, description="Average move the wrong way that is still accepted")
    positive_class: str | int | float | bool | None = Field(
        default=None, description="Classification: whose probability is followed; default the last class"
    )

    @field_validator("delta")
    @classmethod
    def _non_zero(cls, value: float) -> float:
        if value == 0 or value != value or abs(value) == float("inf"):
            raise ValueError("must be a finite non-zero number")
        return value


class MinimumCase(_Strict):
    """One row (features not given take the holdout's typical value) and its expected output."""

    row: dict[str, Any] = Field(min_length=1, description="Feature values of the case")
    expected: str | int | float | bool = Field(description="Expected class, or regression output")


class MinimumTest(_Strict):
    """Minimum functionality: each case's prediction is the expected class (or within tolerance)."""

    name: PlainName = Field(description="Names the test in the report and in the refusal line")
    kind: Literal["minimum"]
    cases: list[MinimumCase] = Field(min_length=1)
    tolerance: float | None = Field(
        default=None, ge=0.0, description="Regression (required there): largest accepted |prediction - expected|"
    )


BehaviourTest = Annotated[InvarianceTest | DirectionalTest | MinimumTest, Field(discriminator="kind")]


class BehaviourConfig(_Strict):
    """Behavioural tests run on the holdout after training; a failure refuses the run like a gate."""

    tests: list[BehaviourTest] = Field(default_factory=list)
    max_rows: int = Field(
        default=5000, ge=10, description="Holdout rows (a seeded sample) the invariance and directional tests use"
    )

    @field_validator("tests")
    @classmethod
    def _unique_names(cls, tests: list[Any]) -> list[Any]:
        names = [t.name for t in tests]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"test names must be unique, repeated: {', '.join(repeated)}")
        return tests


class PipelineConfig(_Strict):
    """The whole pipeline config file."""

    dataset: DatasetConfig
    model: ModelConfig
    split: SplitConfig = Field(default_factory=SplitConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    card: CardConfig = Field(default_factory=CardConfig)
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    rollback: RollbackConfig = Field(default_factory=RollbackConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    approval: ApprovalConfig = Field(default_factory=ApprovalConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    experiment: str | None = Field(
        default=None, description="MLflow experiment name; defaults to the model name"
    )

    @field_validator("experiment")
    @classmethod
    def _plain_experiment_name(cls, value: str | None) -> str | None:
        # The name becomes a directory under the artifact root: '/' or '..' would leave it.
        if value is not None and not _MODEL_NAME.fullmatch(value):
            raise ValueError("must be 1-100 letters, digits, '.', '_' or '-' (a plain name, not a path)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _primary_metric_of_the_task(cls, data: Any) -> Any:
        # roc_auc, the field's default, does not exist for a regressor: without this a regression
        # config that leaves the key out trains, but no deploy can compare it and the monitor never
        # scores its live performance.
        if not isinstance(data, dict):
            return data
        model, promotion = data.get("model"), data.get("promotion", {})
        task = model.get("task") if isinstance(model, dict) else None
        # Only a task name can pick a default: anything else is left for the field to refuse, by name.
        if isinstance(task, str) and task in DEFAULT_PRIMARY_METRIC and isinstance(promotion, dict) \
                and "primary_metric" not in promotion:
            data = {**data, "promotion": {**promotion, "primary_metric": DEFAULT_PRIMARY_METRIC[task]}}
        return data

    @model_validator(mode="after")
    def _slice_judges_need_segments(self) -> PipelineConfig:
        # A slice gate or comparison with no slices would pass silently: refused, naming its key.
        if not self.evaluation.segments:
            for key, value in (("gates.min_slice_metrics", self.gates.min_slice_metrics),
                               ("gates.max_slice_gap", self.gates.max_slice_gap),
                               ("promotion.compare_worst_slice", self.promotion.compare_worst_slice)):
                if value:
                    raise ValueError(f"{key} needs evaluation.segments (the columns to slice the holdout by)")
        return self

    @model_validator(mode="after")
    def _time_split_needs_timestamp(self) -> PipelineConfig:
        if self.split.method == "time" and not self.dataset.timestamp:
            raise ValueError("split.method 'time' needs dataset.timestamp")
        return self

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.model.name

    def with_data_uri(self, uri: str | None) -> PipelineConfig:
        """Return a copy reading its data from `uri` (the CLI's --data override)."""
        if not uri:
            return self
        return self.model_copy(update={"dataset": self.dataset.model_copy(update={"uri": uri})})

    def fingerprint(self) -> str:
        """Stable hash of what the run does (lineage tag `config_hash`)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# pydantic puts the tag of a tagged union in an error's location (behaviour.tests.0.invariance.column);
# the file has no such key, so it is left out of the key the error names.
_UNION_TAGS = frozenset({"invariance", "directional", "minimum"})


def _first_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = first["loc"]
    parts = [p for i, p in enumerate(loc) if not (i and isinstance(loc[i - 1], int) and p in _UNION_TAGS)]
    key = ".".join(str(p) for p in parts) or "<root>"
    # Keys come from the file: a newline in one must not break the one-line error.
    key = printable(key)
    if first["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    if first["type"] == "moved_key":
        return first["msg"]
    if first["type"] == "missing":
        return f"missing required key '{key}'"
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid value for '{key}': {message}"


_M = TypeVar("_M", bound=BaseModel)


def parse_config(raw: Any, source: str = "<config>") -> PipelineConfig:
    """Validate an already-parsed mapping, raising ConfigError that names the offending key."""
    return _validated(PipelineConfig, raw, f"config {source}")


def _validated(model: type[_M], raw: Any, where: str) -> _M:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{where}: {_first_error(err)}") from None


# A config is a few kB. These bounds stop a hostile one before it costs memory or time: a 1.7 kB
# YAML "alias bomb" (aliases of aliases) expands to billions of nodes once walked, and a config
# past Prefect's 512 KiB parameter limit fails the flow run with a bare traceback. The expanded
# size counts every alias written out, about as JSON would (8 bytes a node plus its text).
MAX_CONFIG_BYTES = 256 * 1024
MAX_YAML_ALIASES = 100
_NODE_BYTES = 8


class _ConfigTooLarge(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases while composing and the expanded size before constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise _ConfigTooLarge(f"more than {MAX_YAML_ALIASES} YAML aliases")
        return super().compose_node(parent, index)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_CONFIG_BYTES:
            raise _ConfigTooLarge(f"more than {MAX_CONFIG_BYTES} bytes once its YAML aliases are expanded")
        return self.construct_document(node)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """The document's size with every alias written out; an alias is the same node object, so
    memoizing by identity keeps this linear in the file, and sizes are capped just past the bound."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = MAX_CONFIG_BYTES + 1  # a node that contains itself expands without end
    total = _NODE_BYTES
    if isinstance(node, yaml.ScalarNode):
        total += len(node.value)
    elif isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = total = min(total, MAX_CONFIG_BYTES + 1)
    return total


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    payload = read_regular_file(path, MAX_CONFIG_BYTES, ConfigError, label=f"config file {path}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _ConfigTooLarge as err:
        raise ConfigError(f"config file {path} is refused: {err}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is refused: nested too deeply") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    finally:
        loader.dispose()


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a YAML pipeline config file."""
    path = Path(path)
    return parse_config(_read_yaml(path), source=str(path))


def load_monitoring_config(path: str | Path) -> MonitoringConfig:
    """Drift settings from a pipeline config file (its `monitoring` section) or a file of just those."""
    path = Path(path)
    raw = _read_yaml(path)
    if isinstance(raw, dict) and "dataset" in raw:
        return parse_config(raw, source=str(path)).monitoring
    section = raw.get("monitoring", {}) if isinstance(raw, dict) and "monitoring" in raw else raw
    return _validated(MonitoringConfig, section, f"config {path}: monitoring")


def __getattr__(name: str) -> Any:
    # Settings lives in mlops.settings and is re-exported here for the many `from mlops.config
    # import Settings`: loaded on first use, so commands that touch no infrastructure (drift-check)
    # do not pay pydantic-settings' 0.1 s of import.
    if name == "Settings":
        from mlops.settings import Settings

        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

