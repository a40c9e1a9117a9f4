"""Build and fit the scikit-learn Pipeline a config describes, and say which types it serializes.

The pipeline is one object (preprocessing + estimator) so the model that is logged, registered
and served applies exactly the preprocessing it was trained with.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from mlops.config import ModelConfig, Settings
from mlops.contract import DataContract
from mlops.errors import ConfigError, DataError

TASKS = ("classification", "regression")

# skops refuses to load any type not named in its `trusted` list. We name scikit-learn's own
# types by prefix and numpy/scipy containers one by one: a blanket "numpy." would also admit
# functions (numpy.f2py, numpy.testing) that a tampered artifact could smuggle in.
TRUSTED_TYPE_PREFIXES: tuple[str, ...] = ("sklearn.",)
# skops 0.16 trusts builtins itself (int, float, str, bool, list, set, tuple, map).
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "numpy.ndarray",
        "numpy.random._generator.Generator",
        "numpy.random._pcg64.PCG64",
        "numpy.random.mtrand.RandomState",
        "scipy.sparse._csr.csr_matrix",
        "scipy.sparse._csc.csc_matrix",
    }
)


def load_estimator_class(path: str, task: str, allowed_modules: Sequence[str] | None = None) -> type:
    """Import the estimator class at dotted `path` and check it fits `task`.

    `path` must lie in one of `allowed_modules` (default: Settings' estimator_module_prefixes(),
    scikit-learn plus MLOPS_ESTIMATOR_MODULES), checked before anything is imported: importing a
    module runs its code, so a config may only name packages the operator has allowed.
    """
    key = "model.estimator"
    if task not in TASKS:
        raise ConfigError(f"model.task: unknown task '{task}' (known: {', '.join(TASKS)})")
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(
            f"{key}: '{path}' is not a dotted import path such as sklearn.linear_model.Ridge"
        )
    allowed = tuple(allowed_modules) if allowed_modules is not None else Settings().estimator_module_prefixes()
    if not any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in allowed):
        raise ConfigError(
            f"{key}: '{path}' is outside the allowed estimator packages ({', '.join(allowed)}); "
            "MLOPS_ESTIMATOR_MODULES adds more"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        # Only a missing module on the configured path is a typo; a missing dependency of an
        # existing module is an environment problem and must say so.
        missing = err.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise ConfigError(f"{key}: module '{module_name}' not found (from '{path}')") from None
        raise ConfigError(f"{key}: module '{module_name}' cannot be imported: {err}") from None
    except Exception as err:  # any import-time failure is the configured path's problem
        raise ConfigError(
            f"{key}: module '{module_name}' cannot be imported: {type(err).__name__}: {err}"
        ) from None
    if not hasattr(module, attr):
        if _is_module(path):
            raise ConfigError(f"{key}: '{path}' is a module, not a class")
        raise ConfigError(f"{key}: module '{module_name}' has no attribute '{attr}'")
    cls = getattr(module, attr)
    if inspect.ismodule(cls):
        raise ConfigError(f"{key}: '{path}' is a module, not a class")
    if not inspect.isclass(cls):
        raise ConfigError(f"{key}: '{path}' is not a class (got {type(cls).__name__})")
    if not issubclass(cls, BaseEstimator) or not callable(getattr(cls, "fit", None)):
        raise ConfigError(
            f"{key}: '{path}' is not a scikit-learn estimator (must subclass sklearn.base.BaseEstimator and have fit)"
        )
    _check_kind(cls, task, path)
    return cls


def _is_module(path: str) -> bool:
    try:
        return importlib.util.find_spec(path) is not None
    except (ImportError, ValueError):
        return False


def _check_kind(cls: type, task: str, path: str) -> None:
    """Refuse a classifier for regression and vice versa."""
    try:
        # sklearn >= 1.6 reads the kind from tags, which need an instance.
        instance = cls()
        ok = is_classifier(instance) if task == "classification" else is_regressor(instance)
    except Exception:  # required constructor arguments: fall back to the mixins
        mixin = ClassifierMixin if task == "classification" else RegressorMixin
        ok = issubclass(cls, mixin)
    if not ok:
        wanted = "classifier" if task == "classification" else "regressor"
        raise ConfigError(
            f"model.estimator: '{path}' is not a {wanted}, but model.task is '{task}'"
        )


def make_estimator(cls: type, model: ModelConfig) -> BaseEstimator:
    """Construct the estimator from model.params, seeded, with every bad parameter a ConfigError."""
    name = cls.__name__
    params = dict(model.params)
    try:
        known = set(cls().get_params(deep=False))
    except Exception:  # required constructor arguments: let the constructor judge
        known = None
    if known is not None:
        for param in params:
            if param not in known:
                close = difflib.get_close_matches(param, sorted(known), n=1)
                hint = (
                    f" (did you mean '{close[0]}'?)"
                    if close
                    else f" (known: {', '.join(sorted(known))})"
                )
                raise ConfigError(f"model.params.{param}: unknown parameter for {name}{hint}")
        if "random_state" in known and "random_state" not in params:
            params["random_state"] = model.seed
    try:
        estimator = cls(**params)
        # Validate value types and ranges now: a typo should fail before an hour-long fit, not during it.
        if getattr(cls, "_parameter_constraints", None) is not None:
            estimator._validate_params()
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"model.params: invalid parameters for {name}: {_one_line(err)}"
        ) from None
    return estimator


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def build_pipeline(contract: DataContract, model: ModelConfig) -> Pipeline:
    """Unfitted Pipeline: impute/scale numerics, impute/one-hot categoricals, then the estimator."""
    if model.task != contract.task:
        raise ConfigError(
            f"model.task: '{model.task}' does not match the data contract's task '{contract.task}'"
        )
    cls = load_estimator_class(model.estimator, model.task)
    estimator = make_estimator(cls, model)
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    # Datetime features are dropped (remainder="drop"): raw timestamps do not generalise to the future.
    preprocess = ColumnTransformer(
        [
            ("numeric", numeric, contract.numeric_features),
            ("categorical", categorical, contract.categorical_features),
        ],
        remainder="drop",
    )
    return Pipeline([("preprocess", preprocess), ("estimator", estimator)])


def feature_frame(frame: pd.DataFrame, contract: DataContract) -> pd.DataFrame:
    """The contract's feature columns in contract order, with missing categories as NaN."""
    names = contract.feature_names
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise DataError(f"feature columns missing from the data: {', '.join(missing)}")
    features = frame[names].copy()
    for name in contract.categorical_features:
        col = features[name]
        # SimpleImputer sees only np.nan as missing; pd.NA (pandas "string" dtype) would crash it
        # and None would become a category of its own.
        features[name] = col.astype(object).where(col.notna(), np.nan)
    return features


def check_target(frame: pd.DataFrame, contract: DataContract, model: ModelConfig) -> None:
    """Refuse, before any fit, a target or feature set the model cannot learn from.

    Each of these used to fail deep inside fit (or in the confusion-matrix plot, out of memory)
    with a traceback; here each is one line naming the column or the key.
    """
    target = contract.target
    if target not in frame.columns:
        raise DataError(f"target column '{target}' is not in the data")
    if not contract.numeric_features and not contract.categorical_features:
        others = [c.name for c in contract.columns if c.name != target]
        raise DataError(
            f"no feature columns to learn from: the data holds only the target '{target}'"
            + (f" and {', '.join(others)} (timestamps are not features)" if others else "")
        )
    values = frame[target]
    nulls = int(values.isna().sum())
    if nulls:
        raise DataError(f"target column '{target}' has {nulls} missing values")
    if model.task == "regression":
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DataError(
                f"target column '{target}' holds {values.dtype} values, but model.task 'regression' needs numbers"
            )
    else:
        classes = int(values.nunique())
        if classes > model.max_classes:
            raise ConfigError(
                f"model.max_classes: target column '{target}' has {classes} distinct values, "
                f"more than model.max_classes ({model.max_classes})"
            )


def fit_pipeline(frame: pd.DataFrame, contract: DataContract, model: ModelConfig) -> Pipeline:
    """Build and fit the pipeline on `frame`; deterministic for the same data and config."""
    pipeline = build_pipeline(contract, model)
    features = feature_frame(frame, contract)
    check_target(frame, contract, model)
    target = frame[contract.target]
    try:
        # The steps are fitted one after the other, as Pipeline.fit does, so that an error of
        # the estimator's own fit can be told from one of the preprocessing.
        transformed = pipeline[:-1].fit_transform(features, target)
    except InvalidParameterError as err:
        raise _params_error(model, err) from None
    estimator = pipeline.steps[-1][1]
    try:
        estimator.fit(transformed, target)
    except (ValueError, TypeError) as err:
        # The data was checked above (contract, validation, check_target) and preprocessed to
        # numbers, so the estimator refusing it is a parameter combination it only checks in fit
        # (liblinear with elasticnet, monotonic_cst of the wrong length). With no parameters
        # configured nothing in the config caused it: that is a bug and keeps its traceback.
        if not model.params and not isinstance(err, InvalidParameterError):
            raise
        raise _params_error(model, err) from None
    return pipeline


def _params_error(model: ModelConfig, err: BaseException) -> ConfigError:
    # Nested or third-party parameters are only validated inside fit.
    return ConfigError(f"model.params: invalid parameters for {model.estimator}: {_one_line(err)}")


def skops_trusted_types(pipeline: Any) -> list[str]:
    """Types skops must be told to trust to load `pipeline`, each vetted against the allow-list."""
    import skops.io as sio  # lazily: only saving and loading models need it

    return vet_trusted_types(sio.get_untrusted_types(data=sio.dumps(pipeline)))


def vet_trusted_types(types: Iterable[str]) -> list[str]:
    """Return `types` sorted if every one is on the allow-list; else name the first offenders.

    Used when saving (what to tell MLflow) and when loading (what an artifact may contain).
    """
    found = sorted(set(types))
    refused = [t for t in found if not (t.startswith(TRUSTED_TYPE_PREFIXES) or t in TRUSTED_TYPES)]
    if refused:
        raise ValueError(f"types outside the skops allow-list: {', '.join(refused)}")
    return found
