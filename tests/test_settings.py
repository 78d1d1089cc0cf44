from __future__ import annotations

from pathlib import Path

import pytest

from settings import DEFAULT_CONFIG_FILE, ConfigError, ExecutionSettings, Settings, load_settings


def test_shipped_config_matches_the_seed() -> None:
    s = load_settings(DEFAULT_CONFIG_FILE)
    assert s.data.source == "parquet"
    assert s.data.mongodb.database == "stock_ai"
    assert s.data.mongodb.uri.get_secret_value() == "mongodb://localhost:27017"
    assert s.models.model_types == ("arima", "lstm", "transformer", "catboost")
    assert s.models.retraining.min_hours_between == 24
    assert s.optimization.n_trials == 50 and s.optimization.timeout == 1800
    assert s.evaluation.backtesting.initial_capital == 100_000
    assert s.evaluation.backtesting.commission == 0.001
    assert s.evaluation.cross_validation.cv_folds == 5
    assert (s.model_selection.weights.r2, s.model_selection.weights.sharpe,
            s.model_selection.weights.drawdown) == (0.3, 0.4, 0.3)
    assert s.scheduling.daily_retrain.time == "02:00"
    assert s.scheduling.weekly_evaluation.day == "sunday"
    assert s.data.prices_path.is_absolute() and s.data.prices_path.parts[-2:] == ("data", "prices")


def test_priority_is_overrides_then_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yml"
    config.write_text("data:\n  source: mongodb\n  features:\n    horizon: 2\n", encoding="utf-8")
    assert load_settings(config).data.source == "mongodb"
    monkeypatch.setenv("STOCK_AI_DATA__FEATURES__HORIZON", "5")
    s = load_settings(config)
    assert s.data.features.horizon == 5 and s.data.source == "mongodb"
    s = load_settings(config, {"data": {"source": "parquet"}})
    assert s.data.source == "parquet" and s.data.features.horizon == 5


def test_env_selects_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yml"
    config.write_text("optimization:\n  n_trials: 3\n", encoding="utf-8")
    monkeypatch.setenv("STOCK_AI_CONFIG", str(config))
    assert load_settings().optimization.n_trials == 3


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"data": {"start_date": "2024-01-01", "end_date": "2023-01-01"}}, "start_date (2024-01-01) is after"),
        ({"model_selection": {"weights": {"sharpe": -0.1}}}, "model_selection.weights.sharpe"),
        ({"models": {"model_types": ["arima", "xgboost"]}}, "'xgboost'"),
        ({"data": {"split": {"train": 0.8}}}, "data.split: fractions train+val+test must sum to 1"),
        ({"data": {"symbols": ["../x"]}}, "invalid symbol '../x'"),
        ({"scheduling": {"daily_retrain": {"time": "25:00"}}}, "scheduling.daily_retrain.time"),
        ({"data": {"no_such_key": 1}}, "data.no_such_key"),
        ({"execution": {"io_retry_delays": [2, 10, 30]}},
         "execution: io_retry_delays [2, 10, 30] with io_retries=3 wait 2 + 10 + 30 = 42 s in all; at most 30 s"),
        ({"execution": {"io_retries": 5, "io_retry_delays": [2, 8]}}, "wait 2 + 8 + 8 + 8 + 8 = 34 s in all"),
        ({"execution": {"io_retry_delays": [-1]}}, "execution: io_retry_delays must not be negative"),
    ],
)
def test_invalid_values_name_the_key(overrides: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as info:
        load_settings(DEFAULT_CONFIG_FILE, overrides)
    assert expected in str(info.value)


def test_unknown_model_type_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"models\.model_types\.1"):
        load_settings(DEFAULT_CONFIG_FILE, {"models": {"model_types": ["arima", "xgboost"]}})


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError, match=f"config file not found: {missing}"):
        load_settings(missing)


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("data: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_secret_uri_never_printed() -> None:
    s = load_settings(DEFAULT_CONFIG_FILE, {"data": {"mongodb": {"uri": "mongodb://u:hunter2@db:27017"}}})
    assert "hunter2" not in repr(s) and "hunter2" not in s.model_dump_json()
    assert isinstance(s, Settings)


def test_markets_decide_lots_per_symbol_and_errors_name_the_key(tmp_path: Path) -> None:
    s = load_settings(DEFAULT_CONFIG_FILE, {"markets": {"symbols": {"GOOG": "XNYS"}}})
    assert (s.markets.of("VHM").lot_size, s.markets.of("VHM").timezone) == (100, "Asia/Ho_Chi_Minh")
    assert (s.markets.of("GOOG").lot_size, s.markets.of("GOOG").calendar) == (1, "XNYS")
    assert s.model_selection.significance_level == 0.05 and s.evaluation.backtesting.fractional is False
    with pytest.raises(ConfigError, match=r"markets: symbols\.GOOG: unknown exchange 'NASDAQ' \(known: HOSE, XNYS\)"):
        load_settings(DEFAULT_CONFIG_FILE, {"markets": {"symbols": {"GOOG": "NASDAQ"}}})
    with pytest.raises(ConfigError, match=r"markets\.exchanges\.HOSE\.timezone: .*unknown time zone 'Asia/Saigonn'"):
        load_settings(DEFAULT_CONFIG_FILE, {"markets": {"exchanges": {"HOSE": {"timezone": "Asia/Saigonn"}}}})
    old = tmp_path / "old.yml"
    old.write_text("evaluation:\n  backtesting:\n    lot_size: 100\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"evaluation\.backtesting\.lot_size is set per market"):
        load_settings(old)


def test_an_impossible_yaml_date_names_file_line_and_key(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("data:\n  symbols: [VCB]\n  start_date: 2020-02-30\n", encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert str(error.value).startswith(f"config file {config}, line 3: data.start_date: '2020-02-30' is not a "
                                       "valid date (day is out of range for month)")


def test_a_non_json_environment_value_names_the_variable_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_AI_DATA__SYMBOLS", "VCB,VIC")
    monkeypatch.setenv("STOCK_AI_DATA__MONGODB", "{uri: mongodb://user:hunter2@db}")

    with pytest.raises(ConfigError) as error:
        load_settings(DEFAULT_CONFIG_FILE)

    message = str(error.value)
    assert "STOCK_AI_DATA__SYMBOLS (key data.symbols): 'VCB,VIC' is not JSON" in message
    assert "STOCK_AI_DATA__MONGODB (key data.mongodb): is not JSON" in message
    assert "hunter2" not in message  # a section's value may hold a password


@pytest.mark.parametrize(("uri", "expected"), [
    ("mongodb://user:hunter2@localhost:99999", "port '99999' of host 'localhost' is not a number from 1 to 65535"),
    ("mongodb://h1:27017,h2:x/db", "port 'x' of host 'h2'"),
    ("http://user:hunter2@localhost", "expected mongodb://host"),
])
def test_a_bad_mongodb_uri_names_the_key_and_hides_the_password(uri: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(DEFAULT_CONFIG_FILE, {"data": {"mongodb": {"uri": uri}}})

    assert f"data.mongodb.uri: {expected}" in str(error.value) and "hunter2" not in str(error.value)


@pytest.mark.parametrize("uri", ["mongodb://localhost", "mongodb+srv://cluster0.example.net/db?retryWrites=true",
                                 "mongodb://u:p%40ss@[::1]:27017,h2:27018/db?replicaSet=rs0"])
def test_usual_mongodb_uris_load(uri: str) -> None:
    assert load_settings(DEFAULT_CONFIG_FILE, {"data": {"mongodb": {"uri": uri}}}).data.mongodb.uri


@pytest.mark.parametrize("token", ["", "   ", "abc\n", "tök"])
def test_an_unusable_deployment_token_is_refused_at_load(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_AI_DEPLOYMENT__TOKEN", token)

    with pytest.raises(ConfigError, match=r"deployment\.token: "):
        load_settings(DEFAULT_CONFIG_FILE)


def test_io_retries_wait_30_s_in_all_at_most() -> None:
    shipped, defaults = load_settings(DEFAULT_CONFIG_FILE).execution, ExecutionSettings()
    assert (shipped.io_retries, shipped.io_retry_delays) == (defaults.io_retries, defaults.io_retry_delays)
    assert (defaults.io_retries, sum(defaults.io_retry_delays)) == (3, 30)
    assert ExecutionSettings(io_retries=4, io_retry_delays=(2.0, 8.0, 10.0)).io_retries == 4  # 2 + 8 + 10 + 10 s
    assert ExecutionSettings(io_retries=0, io_retry_delays=(60.0,)).io_retries == 0  # no retry waits
    assert ExecutionSettings(io_retries=2, io_retry_delays=(10.0, 20.0, 60.0)).io_retries == 2  # the third is unused


URI_WITH_PASSWORD = "mongodb://user:hunter2@db.example:27017/"


def test_a_mistyped_key_names_the_key_and_the_near_miss_never_its_value(tmp_path: Path) -> None:
    config = tmp_path / "typo.yml"
    config.write_text(f"data:\n  mongodb:\n    url: {URI_WITH_PASSWORD}\n", encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert str(error.value) == "invalid configuration: data.mongodb.url: unknown key (did you mean `uri`?)"


def test_a_mistyped_environment_variable_is_named_and_its_value_never_repeated(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCK_AI_DATA__MONGODB__URL", URI_WITH_PASSWORD)

    with pytest.raises(ConfigError) as error:
        load_settings(DEFAULT_CONFIG_FILE)

    assert str(error.value) == ("invalid configuration: data.mongodb.url (from STOCK_AI_DATA__MONGODB__URL): "
                                "unknown key (did you mean `uri`?)")


def test_an_unknown_key_far_from_any_lists_the_keys_of_its_section() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(DEFAULT_CONFIG_FILE, {"data": {"split": {"zzz": [URI_WITH_PASSWORD]}}})

    assert str(error.value) == ("invalid configuration: data.split.zzz: unknown key "
                                "(known keys: embargo, min_rows, test, test_start, train, val, val_start)")


def test_credentials_in_any_invalid_value_are_hidden() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(DEFAULT_CONFIG_FILE, {"deployment": {"timeout_seconds": "mongodb://u:hunter2@db/"}})

    message = str(error.value)
    assert message == ("invalid configuration: deployment.timeout_seconds: Input should be a valid number, unable "
                       "to parse string as a number (got 'mongodb://<credentials hidden>@db/')")


def test_a_long_or_collection_value_is_not_repeated() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(DEFAULT_CONFIG_FILE, {"data": {"split": {"train": "9" * 500, "val": ["a"] * 100}}})

    message = str(error.value)
    assert "data.split.train" in message and "data.split.val" in message
    assert "9" * 61 not in message and "'a'" not in message and len(message) < 600


def test_several_invalid_keys_are_described_on_one_bounded_line() -> None:
    overrides = {"data": {f"unknown_{i}": i for i in range(40)}}

    with pytest.raises(ConfigError) as error:
        load_settings(DEFAULT_CONFIG_FILE, overrides)

    message = str(error.value)
    assert "\n" not in message and message.endswith("; and 30 more") and message.count("unknown key") == 10


BILLION_LAUGHS = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_aliases_are_refused_before_anything_expands(tmp_path: Path) -> None:
    config = tmp_path / "laughs.yml"
    config.write_text(BILLION_LAUGHS, encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert str(error.value) == (f"config file {config}, line 2: YAML aliases (*name) are not allowed in the "
                                "configuration: write the value out")


def test_an_oversized_config_file_is_not_read(tmp_path: Path) -> None:
    config = tmp_path / "big.yml"
    config.write_text("data:\n  symbols: [VCB]\n" + "# padding\n" * 200_000, encoding="utf-8")

    with pytest.raises(ConfigError, match=r"big\.yml is larger than 1024 KiB: not read$"):
        load_settings(config)


def test_a_deeply_nested_config_file_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "deep.yml"
    config.write_text("data: " + "[" * 50_000 + "]" * 50_000 + "\n", encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert "deep.yml" in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 300


def test_invalid_yaml_names_line_and_column_without_quoting_the_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.yml"
    config.write_text(f"data:\n  mongodb: {{uri: {URI_WITH_PASSWORD}\n", encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_settings(config)

    assert str(error.value).startswith(f"config file {config} is not valid YAML, line ")
    assert "hunter2" not in str(error.value) and "\n" not in str(error.value)
