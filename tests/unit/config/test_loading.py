"""The configuration model: shipped files, overrides and errors that name the key."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from flywheel.config import (
    STEPS,
    ConfigError,
    PipelineResources,
    RolloutChecks,
    RolloutSettings,
    Settings,
    StepResources,
    cpu_cores,
    load_settings,
    memory_bytes,
)

REPO = Path(__file__).resolve().parents[3]


def test_shipped_config_is_valid() -> None:
    # given the flywheel.yaml at the top of the repository
    # when it is loaded with no environment
    settings = load_settings(REPO / "flywheel.yaml", env={})
    # then it validates and names the model
    assert settings.model_name == "loan-default"
    assert settings.model.search.enabled


def test_defaults_round_trip_through_json() -> None:
    settings = Settings()
    assert Settings.from_json(settings.to_json()) == settings


def test_settings_are_frozen() -> None:
    # given the settings, when a field is assigned, then pydantic refuses it
    settings = Settings()
    with pytest.raises(ValidationError, match="Instance is frozen"):
        settings.model_name = "other"  # type: ignore[misc]


def test_environment_and_set_override_the_file_in_order(tmp_path: Path) -> None:
    # given a file, an environment variable and a --set for the same key
    path = tmp_path / "f.yaml"
    path.write_text("model:\n  params:\n    max_iter: 10\n")
    env = {"FLYWHEEL_MODEL__PARAMS__MAX_ITER": "20", "FLYWHEEL_CONFIG": "ignored.yaml"}
    # when all three are applied
    from_env = load_settings(path, env=env)
    from_set = load_settings(path, env=env, overrides=["model.params.max_iter=30"])
    # then the environment beats the file and --set beats both, with YAML typing
    assert from_env.model.params["max_iter"] == 20
    assert from_set.model.params["max_iter"] == 30


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "model:\n  search:\n    n_iter: 0\n",
            "model.search.n_iter (f.yaml:3): Input should be greater than or equal to 1",
        ),
        ("model:\n  estimatr: x\n", "model.estimatr (f.yaml:2): unknown key"),
        (
            "data:\n  window_days: '14'\n",
            "data.window_days (f.yaml:2): Input should be a valid integer",
        ),
        (
            "model:\n  estimator: os.system\n",
            "model.estimator (f.yaml:2): Value error, must be a dotted path inside sklearn",
        ),
        (
            "promotion:\n  slices:\n    - column: income\n      min_metric: 0.5\n",
            "is not a categorical feature",
        ),
        ("features:\n  numeric: [a, a]\n", "column 'a' is listed twice"),
        (
            "promotion:\n  importance:\n    unimportant_features: drop\n",
            "promotion.importance.unimportant_features (f.yaml:3): Input should be 'allow' or 'refuse'",
        ),
        (
            "promotion:\n  importance:\n    repeats: 1\n",
            "promotion.importance.repeats (f.yaml:3): Input should be greater than or equal to 2",
        ),
        ("storage: [1, 2]\n", "storage (f.yaml:1): Input should be an object"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("model: {params: [unclosed\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_key_path_and_reason(
    tmp_path: Path, text: str, expected: str
) -> None:
    # given a configuration file with one mistake
    path = tmp_path / "f.yaml"
    path.write_text(text)
    # when it is loaded, then the error names the key, the line and the reason
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert expected in str(error.value).replace(str(tmp_path) + "/", "")


def test_bad_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError, match=r"storage.secure \(from env FLYWHEEL_STORAGE__SECURE\)"):
        load_settings(None, env={"FLYWHEEL_STORAGE__SECURE": "perhaps"})


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "absent.yaml", env={})


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ((10, 50, 25, 100), r"traffic steps must increase, got \[10, 50, 25, 100\]"),
        ((10, 10, 100), "traffic steps must increase"),
        ((), "at least one traffic step is needed"),
    ],
)
def test_rollout_steps_must_increase(steps: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        RolloutSettings(steps=steps)


def test_the_default_rollout_policy_is_coherent() -> None:
    settings = RolloutSettings()
    assert list(settings.weights) == sorted(set(settings.weights)) and settings.weights[-1] == 100
    # no canary reaches production by default without one step that checked its accuracy
    assert "required" in {s.accuracy for s in settings.steps}
    assert RolloutChecks().max_p99_ratio >= 1


@pytest.mark.parametrize(
    "source",
    [
        {"env": {"FLYWHEEL_ROLLOUT__STEPS": "[10, {weight: 50, accuracy: required}, 100]"}},
        {"overrides": ["rollout.steps=[10, {weight: 50, accuracy: required}, 100]"]},
    ],
)
def test_steps_are_percentages_or_a_weight_with_an_accuracy_policy(
    source: dict[str, Any],
) -> None:
    # given the short form and the long form mixed, from the environment or --set
    settings = load_settings(None, **{"env": {}, **source})
    # then a plain number is a step whose accuracy check is optional
    assert settings.rollout.weights == (10, 50, 100)
    assert [s.accuracy for s in settings.rollout.steps] == ["optional", "required", "optional"]
    # and the serialised form, as components receive it, reads back the same
    assert Settings.from_json(settings.to_json()).rollout == settings.rollout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "[10, {weight: 50, accuracy: maybe}]",
            "rollout.steps.1.accuracy .*'required' or 'optional'",
        ),
        ("[10, fifty]", "rollout.steps.1 .*a step is a traffic percentage, or {weight: PERCENT"),
        ("[10, {accuracy: required}]", r"rollout.steps.1.weight .*Field required"),
        ("[50, {weight: 20, accuracy: required}]", r"traffic steps must increase, got \[50, 20\]"),
    ],
)
def test_a_malformed_step_is_named_by_its_path(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env={}, overrides=[f"rollout.steps={value}"])


def test_cli_rejects_a_malformed_config_with_exit_code_2(tmp_path: Path) -> None:
    # given a file with a typo, when any command reads it through the real entry point
    import subprocess
    import sys

    path = tmp_path / "bad.yaml"
    path.write_text("pipeline:\n  cachng: true\n")
    result = subprocess.run(
        [sys.executable, "-m", "flywheel.cli", "-c", str(path), "run"],
        capture_output=True,
        text=True,
        check=False,
    )
    # then it exits 2 and names the key, before any pipeline step runs
    assert result.returncode == 2
    assert "pipeline.cachng" in result.stderr
    assert "unknown key" in result.stderr


def test_a_monotonic_constraint_must_name_a_numeric_feature() -> None:
    with pytest.raises(
        ConfigError,
        match=r"features \(from --set features.monotonic.region\): Value error, monotonic: .region. is not a numeric feature",
    ):
        load_settings(None, env={}, overrides=["features.monotonic.region=increasing"])


def pipeline_resources(text: str, tmp_path: Path) -> PipelineResources:
    """pipeline.resources as read from a file holding `text` under that key."""
    path = tmp_path / "f.yaml"
    path.write_text("pipeline:\n  resources:\n" + textwrap.indent(text, "    "))
    return load_settings(path, env={}).pipeline.resources


def test_every_step_gets_the_default_resources_unless_it_overrides_a_key(tmp_path: Path) -> None:
    # given a default and an override of two keys for train
    resources = pipeline_resources(
        "default: {cpu_request: 500m, cpu_limit: 2, memory_request: 1Gi, memory_limit: 2Gi}\n"
        "steps:\n  train: {cpu_limit: '4', memory_limit: 8Gi}\n",
        tmp_path,
    )
    # then train has its two keys and the default's others; every other step the default
    assert resources.for_step("train") == StepResources(
        cpu_request="500m", cpu_limit="4", memory_request="1Gi", memory_limit="8Gi"
    )
    for step in STEPS:
        if step != "train":
            assert resources.for_step(step) == resources.default
    # a YAML number is read as the quantity it spells
    assert resources.default.cpu_limit == "2"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cpu_limit", "2"),
        ("cpu_limit", 2),
        ("cpu_limit", 0.5),
        ("cpu_limit", "1500m"),
        ("cpu_limit", ".5"),
        ("memory_limit", "2Gi"),
        ("memory_limit", "2G"),
        ("memory_limit", "2000Mi"),
        ("memory_limit", "3000000Ki"),
        ("memory_limit", 4294967296),
    ],
)
def test_quantities_kubernetes_and_kfp_both_accept(key: str, value: object) -> None:
    resources = PipelineResources.model_validate({"default": {key: value}})
    assert getattr(resources.default, key) == str(value)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "pipeline.resources.default.cpu_limit=2 cores",
            "pipeline.resources.default.cpu_limit (from --set pipeline.resources.default.cpu_limit): "
            "Value error, must be a number of cores, e.g. 2 or 0.5, or of millicores, e.g. 500m "
            "(got '2 cores')",
        ),
        ("pipeline.resources.default.cpu_limit=-1", "must be a number of cores"),
        ("pipeline.resources.default.cpu_request=1.5Gi", "must be a number of cores"),
        ("pipeline.resources.default.memory_limit=1.5Gi", "must be a whole number of bytes"),
        ("pipeline.resources.default.memory_limit=2gb", "must be a whole number of bytes"),
        ("pipeline.resources.default.memory_limit=1.5", "must be a whole number of bytes"),
        ("pipeline.resources.steps.train.memory_limit=2GB", "must be a whole number of bytes"),
        (
            "pipeline.resources.default.memory_limit=true",
            "pipeline.resources.default.memory_limit (from --set pipeline.resources.default."
            "memory_limit): Input should be a valid string (got True)",
        ),
        (
            "pipeline.resources.default.gpu_limit=1",
            "pipeline.resources.default.gpu_limit (from --set pipeline.resources.default."
            "gpu_limit): unknown key",
        ),
        (
            "pipeline.resources.default.memory_request=2Gi",
            "pipeline.resources.default (from --set pipeline.resources.default.memory_request): "
            "Value error, memory_request 2Gi is above memory_limit 1Gi; "
            "Kubernetes refuses a request above its limit",
        ),
        (
            "pipeline.resources.steps.gate.cpu_request=2",
            "pipeline.resources (from --set pipeline.resources.steps.gate.cpu_request): "
            "Value error, steps.gate (on top of default): cpu_request 2 is above cpu_limit 1; "
            "Kubernetes refuses a request above its limit",
        ),
    ],
)
def test_bad_resources_name_the_key_path_and_reason(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, env={}, overrides=[override])
    assert expected in str(error.value)
    # a check across a whole section does not echo the section back
    assert "(got {" not in str(error.value)


def test_an_unknown_step_is_named_with_its_key_path_and_line(tmp_path: Path) -> None:
    # given an override for a step that does not exist (a typo of train)
    with pytest.raises(ConfigError) as error:
        pipeline_resources("steps:\n  trian: {memory_limit: 4Gi}\n", tmp_path)
    # then the error names the key path, where it is, and the steps there are
    assert str(error.value).replace(str(tmp_path) + "/", "") == (
        "f.yaml is not valid:\n"
        "  pipeline.resources.steps.trian (f.yaml:4): not a valid key: Input should be "
        "'resolve', 'ingest', 'validate', 'train', 'evaluate', 'gate', 'infra-validate', "
        "'register' or 'deploy'"
    )


def test_the_steps_named_in_config_are_the_steps_that_run() -> None:
    from flywheel import tasks

    assert tasks.STEPS is STEPS
    with pytest.raises(ValueError, match=r"'trian' is not a pipeline step \(one of resolve, "):
        PipelineResources().for_step("trian")


def test_a_step_may_override_a_limit_below_the_default_request_only_with_its_own_request() -> None:
    # given a default request of 512Mi: a step limited to 256Mi must also ask for less
    with pytest.raises(
        ValidationError, match=r"steps\.gate \(on top of default\): memory_request 512Mi is above"
    ):
        PipelineResources.model_validate({"steps": {"gate": {"memory_limit": "256Mi"}}})
    small = {"memory_request": "128Mi", "memory_limit": "256Mi"}
    resources = PipelineResources.model_validate({"steps": {"gate": small}})
    assert resources.for_step("gate").memory_limit == "256Mi"


def test_quantities_convert_to_cores_and_bytes() -> None:
    assert [cpu_cores(q) for q in ("2", "0.5", "250m", ".5")] == [2.0, 0.5, 0.25, 0.5]
    assert [memory_bytes(q) for q in ("1Ki", "1K", "3", "2Gi")] == [1024, 1000, 3, 2 * 1024**3]
    with pytest.raises(ValueError, match="not a memory quantity"):
        memory_bytes("1.5Gi")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "triggers:\n  drift:\n    features: {incme: 0.2}\n",
            "triggers.drift.features.incme: 'incme' is not a feature",
        ),
        (
            "triggers:\n  drift:\n    features: {income: 0}\n",
            "triggers.drift.features (f.yaml:3): Value error, income: a PSI threshold must be above 0",
        ),
        (
            "triggers:\n  schedule:\n    cron: '0 3 * *'\n",
            "triggers.schedule.cron (f.yaml:3): Value error, '0 3 * *' has 4 field(s)",
        ),
        (
            "triggers:\n  schedule:\n    cron: '0 25 * * *'\n",
            "hour field '25': 25 is outside 0-23",
        ),
        (
            "triggers:\n  drift:\n    share: null\n",
            "triggers.drift (f.yaml:2): Value error, set share, or PSI thresholds under features",
        ),
        ("triggers:\n  drift:\n    share: 1.0\n", "share must be below 1"),
        (
            "triggers:\n  drift:\n    share: 1.5\n",
            "triggers.drift.share (f.yaml:3): Input should be",
        ),
        (
            "triggers:\n  performance:\n    max_drop: null\n",
            "triggers.performance (f.yaml:2): Value error, set floor or max_drop",
        ),
        ("triggers:\n  performance:\n    floor: 0\n", "floor must be above 0"),
        ("triggers:\n  daily_budget: 0\n", "triggers.daily_budget (f.yaml:2): Input should be"),
        (
            "monitoring:\n  windows: 1\ntriggers:\n  drift:\n    windows: 2\n",
            "triggers.drift.windows: 2 windows never fit in the 1 that monitoring.windows",
        ),
    ],
)
def test_a_trigger_that_cannot_fire_is_refused_at_load(
    tmp_path: Path, text: str, expected: str
) -> None:
    # given a trigger policy with one trigger that could never fire
    path = tmp_path / "f.yaml"
    path.write_text(text)
    # when it is loaded, then the error names the trigger's key and why
    with pytest.raises(ConfigError) as error:
        load_settings(path, env={})
    assert expected in str(error.value).replace(str(tmp_path) + "/", "")


def test_a_trigger_set_to_null_is_off_and_a_named_feature_is_accepted() -> None:
    settings = load_settings(
        None,
        env={},
        overrides=["triggers.schedule=null", "triggers.drift.features.income=0.2"],
    )
    assert settings.triggers.schedule is None
    assert settings.triggers.drift is not None and settings.triggers.drift.features == {
        "income": 0.2
    }


def test_the_contract_tags_columns_and_lists_their_sources() -> None:
    # given a contract that tags a person's identifier and a bureau's figure
    settings = load_settings(
        None,
        env={},
        overrides=[
            "contract.columns.ssn.pii=true",
            "contract.columns.ssn.source=crm",
            "contract.columns.income.sensitive=true",
            "contract.columns.income.source=bureau",
            "contract.allowed_sources=[bureau, crm]",
        ],
    )
    # then the tags load, and the pii columns are known by name
    assert settings.contract.columns["income"].sensitive
    assert settings.contract.pii_columns == ("ssn",)
    assert settings.contract.allowed_sources == ("bureau", "crm")
    # and by default nothing is tagged and pii is dropped, its salt read from FLYWHEEL_PII_SALT
    assert Settings().contract.pii == "drop" and not Settings().contract.columns
    assert load_settings(None, env={"FLYWHEEL_PII_SALT": "s"}) == Settings()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["contract.columns.ssn.private=true"], r"contract\.columns\.ssn\.private .*unknown key"),
        (["contract.columns.ssn.source=Sales Team"], r"contract\.columns\.ssn\.source .*pattern"),
        (
            ["contract.columns.income.pii=true"],
            r"contract\.columns\.income: a pii column is a feature; list it under "
            r"contract\.pii_features",
        ),
        (
            ["contract.columns.defaulted.pii=true"],
            r"contract\.columns\.defaulted: the label and the time column cannot be pii",
        ),
        (
            ["contract.pii_features=[ssn]"],
            r"pii_features: 'ssn' is not tagged pii under columns",
        ),
        (
            ["contract.columns.ssn.pii=true", "contract.pii_features=[ssn]"],
            r"pii_features: 'ssn' is dropped at ingest \(pii: drop\)",
        ),
        (
            [
                "contract.columns.income.pii=true",
                "contract.pii=hash",
                "contract.pii_features=[income]",
            ],
            r"contract\.pii_features: 'income' is not a categorical feature",
        ),
        (
            ["contract.pii_salt_env=FLYWHEEL_SALT"],
            r"pii_salt_env: FLYWHEEL_SALT would be read as a configuration key",
        ),
    ],
)
def test_a_contract_tag_or_pii_policy_that_cannot_hold_is_refused_at_load(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, env={}, overrides=overrides)


def test_a_pii_column_allowed_by_name_may_be_a_hashed_categorical_feature() -> None:
    settings = load_settings(
        None,
        env={},
        overrides=[
            "contract.columns.region.pii=true",
            "contract.pii=hash",
            "contract.pii_features=[region]",
        ],
    )
    assert settings.contract.pii_features == ("region",)


def test_the_shipped_policy_checks_baselines_and_fairness_by_region() -> None:
    promotion = load_settings(REPO / "flywheel.yaml", env={}).promotion
    assert promotion.baseline is not None and promotion.fairness is not None
    assert promotion.baseline.estimator == "sklearn.linear_model.LogisticRegression"
    assert promotion.baseline.majority_class and promotion.baseline.margin > 0
    assert promotion.fairness.attribute == "region"


def test_an_empty_baseline_is_a_regularised_logistic_regression_and_the_majority_class() -> None:
    baseline = load_settings(None, env={}, overrides=["promotion.baseline={}"]).promotion.baseline
    assert baseline is not None
    assert baseline.estimator == "sklearn.linear_model.LogisticRegression"
    assert baseline.params == {} and baseline.majority_class
    assert load_settings(None, env={}).promotion.baseline is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "promotion.baseline.estimator=sklearn.linear_model.LogisticRegresion",
            "promotion.baseline.estimator (from --set promotion.baseline.estimator): Value error, "
            "'sklearn.linear_model.LogisticRegresion' does not exist in the installed scikit-learn",
        ),
        (
            "promotion.baseline.estimator=sklearn.nowhere.Thing",
            "'sklearn.nowhere.Thing' does not exist in the installed scikit-learn",
        ),
        (
            "promotion.baseline.estimator=xgboost.XGBClassifier",
            "promotion.baseline.estimator (from --set promotion.baseline.estimator): "
            "Value error, must be a dotted path inside sklearn",
        ),
        (
            "promotion.fairness.attribute=income",
            "promotion.fairness.attribute: 'income' is not a categorical feature, so it has no "
            "groups to compare (categorical: region, channel, employment)",
        ),
        (
            "promotion.fairness.attribute=gender",
            "promotion.fairness.attribute: 'gender' is not a categorical feature",
        ),
    ],
)
def test_a_baseline_that_cannot_be_imported_or_a_fairness_attribute_that_is_no_column_is_refused(
    override: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(None, env={}, overrides=[override])
    assert expected in str(error.value)


def test_the_baseline_check_reads_scikit_learn_without_importing_it() -> None:
    import subprocess
    import sys

    # given a fresh interpreter, when a configuration with a baseline loads,
    # then scikit-learn was never imported (it costs seconds in every step)
    code = (
        "import sys; from flywheel.config import load_settings; "
        "load_settings(None, env={}, overrides=['promotion.baseline={}']); "
        "print('sklearn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
