"""The contract's column tags and pii policy, checked at load."""

from __future__ import annotations

import pytest

from flywheel.config import ConfigError, Settings, load_settings


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


@pytest.mark.parametrize(
    ("value", "message"), [("0", "greater than 0"), ("0.6", "less than or equal to 0.5")]
)
def test_a_false_block_rate_that_would_never_or_too_often_block_is_refused(
    value: str, message: str
) -> None:
    # a rate of 0 would never block a batch; above 0.5 a healthy batch would be a coin toss
    with pytest.raises(ConfigError, match=rf"contract\.false_block_rate .*{message}"):
        load_settings(None, env={}, overrides=[f"contract.false_block_rate={value}"])
    assert Settings().contract.false_block_rate == 0.01
