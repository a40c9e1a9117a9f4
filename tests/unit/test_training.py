"""Unit tests for mlops.training: estimator loading, pipeline building, fitting, skops allow-list."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.pipeline import Pipeline

from mlops import training
from mlops.config import ModelConfig
from mlops.contract import DataContract, infer_contract
from mlops.errors import ConfigError, DataError
from mlops.local.simulate import simulate_churn
from mlops.training import (
    build_pipeline,
    feature_frame,
    fit_pipeline,
    load_estimator_class,
    skops_trusted_types,
)

HGB = "sklearn.ensemble.HistGradientBoostingClassifier"

# A stand-in for a third-party estimator package, written to a temporary directory per test.
THIRD_PARTY = textwrap.dedent(
    """
    from numbers import Real

    import numpy as np
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.utils._param_validation import Interval, validate_parameter_constraints


    class PickyClassifier(ClassifierMixin, BaseEstimator):
        def __init__(self, alpha=1.0):
            if alpha == "boom":
                raise TypeError("alpha must be a number")
            self.alpha = alpha

        def fit(self, X, y):
            validate_parameter_constraints(
                {"alpha": [Interval(Real, 0, None, closed="left")]}, self.get_params(), "PickyClassifier"
            )
            self.classes_ = np.unique(y)
            return self

        def predict(self, X):
            return np.full(len(X), self.classes_[0])


    class BuggyClassifier(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            raise ValueError("a bug in the estimator, not in the config")


    class NeedsArgsClassifier(ClassifierMixin, BaseEstimator):
        def __init__(self, base):
            self.base = base

        def fit(self, X, y):
            return self
    """
)


# HistGradientBoosting's OpenMP threads spin-wait for each other on a loaded machine (conftest).
pytestmark = pytest.mark.usefixtures("one_openmp_thread")


@pytest.fixture()
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Module name of a throwaway estimator package importable for this test only."""
    (tmp_path / "thirdparty_estimators.py").write_text(THIRD_PARTY)
    (tmp_path / "broken_estimators.py").write_text("import package_that_is_not_installed_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("MLOPS_ESTIMATOR_MODULES", "thirdparty_estimators, broken_estimators")
    return "thirdparty_estimators"


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return simulate_churn(3000, seed=7)


@pytest.fixture(scope="module")
def contract(churn: pd.DataFrame) -> DataContract:
    return infer_contract(churn, "churned", "event_time", "classification")


def hgb_model(**params: object) -> ModelConfig:
    return ModelConfig(name="churn", estimator=HGB, params={"max_iter": 30, **params}, seed=3)


@pytest.fixture(scope="module")
def fitted(churn: pd.DataFrame, contract: DataContract) -> Pipeline:
    return fit_pipeline(churn, contract, hgb_model())


# --- load_estimator_class -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "task", "expected"),
    [
        (HGB, "classification", HistGradientBoostingClassifier),
        ("sklearn.linear_model.Ridge", "regression", Ridge),
    ],
)
def test_load_estimator_class_returns_the_class(path: str, task: str, expected: type) -> None:
    assert load_estimator_class(path, task) is expected


@pytest.mark.parametrize(
    ("path", "task", "message"),
    [
        ("sklearn.no_such_module.Model", "classification", "module 'sklearn.no_such_module' not found"),
        ("no_such_package_xyz.Model", "classification", "outside the allowed estimator packages (sklearn)"),
        ("sklearnx.Model", "classification", "outside the allowed estimator packages"),
        (
            "sklearn.ensemble.NoSuchForest",
            "classification",
            "module 'sklearn.ensemble' has no attribute 'NoSuchForest'",
        ),
        ("sklearn.set_config", "classification", "'sklearn.set_config' is not a class"),
        ("sklearn.ensemble", "classification", "'sklearn.ensemble' is a module, not a class"),
        (
            "sklearn.experimental.enable_halving_search_cv",
            "classification",
            "is a module, not a class",
        ),
        ("collections.OrderedDict", "classification", "outside the allowed estimator packages"),
        ("sklearn.utils.Bunch", "classification", "is not a scikit-learn estimator"),
        ("sklearn.preprocessing.StandardScaler", "classification", "is not a classifier"),
        (
            "sklearn.linear_model.Ridge",
            "classification",
            "is not a classifier, but model.task is 'classification'",
        ),
        (HGB, "regression", "is not a regressor, but model.task is 'regression'"),
    ],
)
def test_load_estimator_class_refuses(path: str, task: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_estimator_class(path, task)
    text = str(caught.value)
    assert text.startswith("model.estimator: ")
    assert message in text
    assert "\n" not in text


def test_load_estimator_class_tells_missing_dependency_from_typo(third_party: str) -> None:
    with pytest.raises(
        ConfigError, match="cannot be imported: No module named 'package_that_is_not_installed_xyz'"
    ):
        load_estimator_class("broken_estimators.Model", "classification")


def test_load_estimator_class_accepts_constructor_with_required_args(third_party: str) -> None:
    cls = load_estimator_class(f"{third_party}.NeedsArgsClassifier", "classification")
    assert cls.__name__ == "NeedsArgsClassifier"
    with pytest.raises(ConfigError, match="is not a regressor"):
        load_estimator_class(f"{third_party}.NeedsArgsClassifier", "regression")


def test_an_estimator_outside_the_allow_list_is_refused_before_its_module_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "side_effect_estimators.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass X: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("MLOPS_ESTIMATOR_MODULES", raising=False)
    for path in ("side_effect_estimators.X", "this.X", "antigravity.X"):
        with pytest.raises(ConfigError, match=r"^model\.estimator: .* outside the allowed estimator packages"):
            load_estimator_class(path, "classification")
    assert not marker.exists()
    # The operator, not the config, extends the list.
    monkeypatch.setenv("MLOPS_ESTIMATOR_MODULES", "side_effect_estimators")
    with pytest.raises(ConfigError, match="is not a scikit-learn estimator"):
        load_estimator_class("side_effect_estimators.X", "classification")
    assert marker.exists()


def test_load_estimator_class_refuses_unknown_task() -> None:
    with pytest.raises(ConfigError, match="model.task: unknown task 'clustering'"):
        load_estimator_class(HGB, "clustering")


# --- build_pipeline ---------------------------------------------------------------------------


def test_build_pipeline_names_steps_and_routes_columns(contract: DataContract) -> None:
    pipeline = build_pipeline(contract, hgb_model())
    assert list(pipeline.named_steps) == ["preprocess", "estimator"]
    routes = {name: cols for name, _, cols in pipeline.named_steps["preprocess"].transformers}
    assert routes["numeric"] == [
        "age",
        "tenure_months",
        "monthly_charges",
        "total_charges",
        "support_calls",
        "num_products",
    ]
    assert routes["categorical"] == ["contract", "plan", "payment_method", "region"]
    assert pipeline.named_steps["estimator"].max_iter == 30


def test_build_pipeline_seeds_random_state_unless_set(contract: DataContract) -> None:
    assert build_pipeline(contract, hgb_model()).named_steps["estimator"].random_state == 3
    assert (
        build_pipeline(contract, hgb_model(random_state=11)).named_steps["estimator"].random_state
        == 11
    )
    reg_contract = infer_contract(simulate_churn(50), "monthly_charges", "event_time", "regression")
    plain = ModelConfig(
        name="m", task="regression", estimator="sklearn.linear_model.LinearRegression"
    )
    estimator = build_pipeline(reg_contract, plain).named_steps["estimator"]
    assert isinstance(estimator, LinearRegression)
    assert "random_state" not in estimator.get_params()


def test_build_pipeline_unknown_param_names_key_and_suggests(contract: DataContract) -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(contract, hgb_model(max_iters=10))
    assert str(caught.value) == (
        "model.params.max_iters: unknown parameter for HistGradientBoostingClassifier (did you mean 'max_iter'?)"
    )


def test_build_pipeline_unknown_param_without_close_match_lists_known(
    contract: DataContract,
) -> None:
    with pytest.raises(
        ConfigError, match=r"model.params.zzz: unknown parameter .*\(known: .*learning_rate"
    ):
        build_pipeline(contract, hgb_model(zzz=1))


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"max_iter": -1}, "'max_iter'"),
        ({"learning_rate": "fast"}, "'learning_rate'"),
        ({"loss": "hinge"}, "'loss'"),
    ],
)
def test_build_pipeline_invalid_param_value_fails_before_fit(
    contract: DataContract, params: dict[str, object], names: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_pipeline(contract, hgb_model(**params))
    assert str(caught.value).startswith(
        "model.params: invalid parameters for HistGradientBoostingClassifier"
    )
    assert names in str(caught.value)


def test_build_pipeline_constructor_error_is_config_error(
    contract: DataContract, third_party: str
) -> None:
    model = ModelConfig(
        name="m", estimator=f"{third_party}.PickyClassifier", params={"alpha": "boom"}
    )
    with pytest.raises(
        ConfigError,
        match="model.params: invalid parameters for PickyClassifier: alpha must be a number",
    ):
        build_pipeline(contract, model)


def test_fit_pipeline_param_validation_at_fit_is_config_error(
    churn: pd.DataFrame, contract: DataContract, third_party: str
) -> None:
    model = ModelConfig(
        name="m", estimator=f"{third_party}.PickyClassifier", params={"alpha": -2.0}
    )
    with pytest.raises(ConfigError, match=r"model.params: .*'alpha' parameter of PickyClassifier"):
        fit_pipeline(churn, contract, model)


@pytest.mark.parametrize(
    ("estimator", "params", "words"),
    [
        (
            "sklearn.linear_model.LogisticRegression",
            {"solver": "liblinear", "penalty": "elasticnet", "l1_ratio": 0.5},
            "Only 'saga' solver supports elasticnet penalty",
        ),
        (HGB, {"monotonic_cst": [1, 0]}, "monotonic_cst has shape (2,)"),
    ],
)
def test_parameters_refused_inside_fit_are_config_errors(
    churn: pd.DataFrame, contract: DataContract, estimator: str, params: dict, words: str
) -> None:
    model = ModelConfig(name="m", estimator=estimator, params={"max_iter": 30, **params} if estimator == HGB else params)
    with pytest.raises(ConfigError) as caught:
        fit_pipeline(churn.head(400), contract, model)
    text = str(caught.value)
    assert text.startswith(f"model.params: invalid parameters for {estimator}: ") and words in text
    assert "\n" not in text and caught.value.exit_code == 2


def test_an_estimator_bug_with_no_parameters_keeps_its_traceback(
    churn: pd.DataFrame, contract: DataContract, third_party: str
) -> None:
    model = ModelConfig(name="m", estimator=f"{third_party}.BuggyClassifier")
    with pytest.raises(ValueError, match="a bug in the estimator") as caught:
        fit_pipeline(churn.head(200), contract, model)
    assert not isinstance(caught.value, ConfigError)


def test_a_target_the_model_cannot_learn_is_refused_before_the_fit(churn: pd.DataFrame) -> None:
    text_target = churn.assign(level=np.where(churn["churned"] == 1, "high", "low")).drop(columns=["churned"])
    regression = ModelConfig(name="m", task="regression", estimator="sklearn.linear_model.Ridge")
    contract = infer_contract(text_target, "level", "event_time", "regression")
    with pytest.raises(DataError, match="target column 'level' holds object values, but model.task 'regression' needs numbers"):
        fit_pipeline(text_target, contract, regression)

    only_target = churn[["churned", "event_time"]]
    contract = infer_contract(only_target, "churned", "event_time", "classification")
    with pytest.raises(DataError, match="no feature columns to learn from: the data holds only the target 'churned' and event_time"):
        fit_pipeline(only_target, contract, hgb_model())

    many = churn.assign(churned=np.arange(len(churn)) % 120)
    contract = infer_contract(many, "churned", "event_time", "classification")
    with pytest.raises(ConfigError) as caught:
        training.check_target(many, contract, hgb_model())
    assert str(caught.value) == (
        "model.max_classes: target column 'churned' has 120 distinct values, more than model.max_classes (100)"
    )
    training.check_target(many, contract, hgb_model().model_copy(update={"max_classes": 120}))


def test_build_pipeline_refuses_task_mismatch(contract: DataContract) -> None:
    model = ModelConfig(name="m", task="regression", estimator="sklearn.linear_model.Ridge")
    with pytest.raises(
        ConfigError, match="model.task: 'regression' does not match the data contract's task"
    ):
        build_pipeline(contract, model)


# --- feature_frame ----------------------------------------------------------------------------


def test_feature_frame_orders_columns_like_the_contract(
    churn: pd.DataFrame, contract: DataContract
) -> None:
    shuffled = churn[list(reversed(churn.columns))]
    features = feature_frame(shuffled, contract)
    assert list(features.columns) == contract.feature_names
    assert "churned" not in features.columns and "event_time" not in features.columns


def test_feature_frame_names_missing_columns(churn: pd.DataFrame, contract: DataContract) -> None:
    with pytest.raises(DataError, match="feature columns missing from the data: plan, region"):
        feature_frame(churn.drop(columns=["region", "plan"]), contract)


def test_feature_frame_turns_pandas_missing_markers_into_nan(
    churn: pd.DataFrame, contract: DataContract
) -> None:
    frame = churn.head(3).copy()
    frame["plan"] = pd.array(["basic", pd.NA, "premium"], dtype="string")
    frame["region"] = ["north", None, "east"]
    features = feature_frame(frame, contract)
    assert features["plan"].dtype == object and features["region"].dtype == object
    for name in ("plan", "region"):
        missing = features[name].iloc[1]
        assert isinstance(missing, float) and np.isnan(missing)
    assert features["plan"].iloc[0] == "basic"


# --- fit_pipeline -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        (HGB, {"max_iter": 30}),
        ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 15, "n_jobs": 2}),
    ],
)
def test_fit_pipeline_is_deterministic(
    churn: pd.DataFrame, contract: DataContract, estimator: str, params: dict[str, object]
) -> None:
    model = ModelConfig(name="churn", estimator=estimator, params=params, seed=5)
    first = fit_pipeline(churn, contract, model)
    second = fit_pipeline(churn, contract, model)
    features = feature_frame(churn, contract)
    assert np.array_equal(first.predict_proba(features), second.predict_proba(features))


def test_fit_pipeline_seed_changes_a_seeded_model(
    churn: pd.DataFrame, contract: DataContract
) -> None:
    # Guards the determinism test: it must be the seed that makes the forest repeatable.
    def forest(seed: int) -> Pipeline:
        model = ModelConfig(
            name="c",
            estimator="sklearn.ensemble.RandomForestClassifier",
            params={"n_estimators": 5},
            seed=seed,
        )
        return fit_pipeline(churn, contract, model)

    features = feature_frame(churn, contract)
    assert isinstance(forest(1).named_steps["estimator"], RandomForestClassifier)
    assert not np.array_equal(forest(1).predict_proba(features), forest(2).predict_proba(features))


def test_pipeline_predicts_with_nan_none_and_unseen_categories(
    fitted: Pipeline, contract: DataContract
) -> None:
    rows = pd.DataFrame(
        [
            {
                "age": np.nan,
                "tenure_months": np.nan,
                "monthly_charges": np.nan,
                "total_charges": np.nan,
                "support_calls": np.nan,
                "num_products": np.nan,
                "contract": np.nan,
                "plan": None,
                "payment_method": np.nan,
                "region": None,
            },
            {
                "age": 30,
                "tenure_months": 3,
                "monthly_charges": 99.0,
                "total_charges": 297.0,
                "support_calls": 4,
                "num_products": 1,
                "contract": "lifetime",
                "plan": "platinum",
                "payment_method": "crypto",
                "region": "mars",
            },
        ]
    )
    proba = fitted.predict_proba(feature_frame(rows, contract))
    assert proba.shape == (2, 2)
    assert np.isfinite(proba).all()
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_fit_pipeline_refuses_missing_target_values(
    churn: pd.DataFrame, contract: DataContract
) -> None:
    frame = churn.copy()
    frame["churned"] = frame["churned"].astype("float64")
    frame.loc[[0, 5], "churned"] = np.nan
    with pytest.raises(DataError, match="target column 'churned' has 2 missing values"):
        fit_pipeline(frame, contract, hgb_model())


def test_fit_pipeline_regression(churn: pd.DataFrame) -> None:
    frame = churn.drop(columns=["churned"])
    reg_contract = infer_contract(frame, "monthly_charges", "event_time", "regression")
    model = ModelConfig(name="charges", task="regression", estimator="sklearn.linear_model.Ridge")
    pipeline = fit_pipeline(frame, reg_contract, model)
    predicted = pipeline.predict(feature_frame(frame, reg_contract))
    assert predicted.shape == (len(frame),)
    # total_charges ~ monthly * tenure, so even a linear model explains some of the charge.
    assert np.corrcoef(predicted, frame["monthly_charges"])[0, 1] > 0.3


def test_fit_pipeline_multiclass(churn: pd.DataFrame) -> None:
    mc_contract = infer_contract(churn, "plan", "event_time", "classification")
    pipeline = fit_pipeline(churn, mc_contract, ModelConfig(name="plan", params={"max_iter": 10}))
    assert list(pipeline.classes_) == ["basic", "premium", "standard"]
    assert pipeline.predict_proba(feature_frame(churn.head(5), mc_contract)).shape == (5, 3)


# --- skops_trusted_types ----------------------------------------------------------------------


def test_skops_trusted_types_round_trip(
    fitted: Pipeline, churn: pd.DataFrame, contract: DataContract
) -> None:
    types = skops_trusted_types(fitted)
    assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in types
    assert all(t.startswith(training.TRUSTED_TYPE_PREFIXES) or t in training.TRUSTED_TYPES for t in types)
    data = sio.dumps(fitted)
    loaded = sio.loads(data, trusted=types)
    features = feature_frame(churn, contract)
    assert np.array_equal(loaded.predict_proba(features), fitted.predict_proba(features))
    # The list is needed: skops refuses the same bytes without it.
    with pytest.raises(Exception, match="TreePredictor"):
        sio.loads(data, trusted=[])


def test_skops_trusted_types_lists_tree_for_forests(
    churn: pd.DataFrame, contract: DataContract
) -> None:
    model = ModelConfig(
        name="c", estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 3}
    )
    assert "sklearn.tree._tree.Tree" in skops_trusted_types(fit_pipeline(churn, contract, model))


def test_skops_trusted_types_refuses_types_outside_allow_list(
    churn: pd.DataFrame, contract: DataContract, third_party: str
) -> None:
    model = ModelConfig(name="m", estimator=f"{third_party}.PickyClassifier")
    pipeline = fit_pipeline(churn, contract, model)
    with pytest.raises(
        ValueError,
        match=r"outside the skops allow-list: thirdparty_estimators\.PickyClassifier$",
    ):
        skops_trusted_types(pipeline)


def test_skops_trusted_types_follows_the_prefix_constant(
    fitted: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training, "TRUSTED_TYPE_PREFIXES", ("scipy.",))
    with pytest.raises(
        ValueError, match="sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    ):
        skops_trusted_types(fitted)
    monkeypatch.setattr(
        training,
        "TRUSTED_TYPES",
        training.TRUSTED_TYPES | {"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"},
    )
    assert (
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
        in skops_trusted_types(fitted)
    )


def test_vet_trusted_types_refuses_smuggled_functions() -> None:
    assert training.vet_trusted_types(["numpy.dtype", "sklearn.tree._tree.Tree"]) == [
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
    ]
    for smuggled in ("builtins.eval", "os.system", "numpy.f2py.compile", "subprocess.Popen"):
        with pytest.raises(ValueError, match=smuggled):
            training.vet_trusted_types(["numpy.dtype", smuggled])
