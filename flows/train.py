"""The `train` flow: validated data in, evaluated and registered challenger model out."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from mlops import lineage, promotion, search
from mlops.catalogue import ConfigOverrides
from mlops.config import PipelineConfig, Settings
from mlops.errors import DataValidationFailed
from mlops.evaluation import (
    enforce_behaviour,
    enforce_gates,
    enforce_slice_gates,
    validate_behaviour,
    validate_gates,
)
from mlops.registry import open_registry
from mlops.results import BehaviourSummary, GateSummary, TrainResult
from mlops.training import check_target, load_estimator_class
from tasks.card import build_model_card, check_slice_gates, compute_slices, publish_model_card
from tasks.catalogue import load_model_config
from tasks.data import load_training_data
from tasks.evaluation import check_quality_gates, evaluate_model, run_behaviour_tests
from tasks.search import search_hyperparameters
from tasks.tracking import (
    close_tracking_run,
    log_behaviour,
    log_evaluation,
    log_reference_data,
    log_search,
    log_validation,
    open_tracking_run,
    publish_summary,
    read_aliases,
    register_model,
)
from tasks.training import fit_model, split_dataset
from tasks.validation import infer_contract, stored_contract, validate_dataset


@flow(name="train", log_prints=True)
def train(
    config: PipelineConfig, data_uri: str | None = None, config_source: dict[str, str] | None = None
) -> TrainResult:
    """Validate the dataset, train and evaluate a model, and register it as `challenger`.

    Ends Failed, with nothing registered, when the data breaks its contract or rules
    (DataValidationFailed), the model misses a quality gate, on the whole holdout or on a slice of
    `evaluation.segments` (QualityGateFailed), or it fails a behavioural test of `behaviour.tests`
    on the holdout (BehaviourTestFailed, a gate failure too). Every registered version gets a model
    card (run artifacts `card/model_card.md` and `.html`, and a Prefect artifact).
    With `dataset.feature_service`, `dataset.uri` is an entity frame joined point in time to the
    service's features; the service and its views' versions are kept with the run and the version.

    Args:
        config: The pipeline config (configs/churn.yaml): data, model, split, validation, gates.
        data_uri: Dataset to train on instead of `dataset.uri` (local path or s3://).
        config_source: Which config file (and its sha256) the config came from, for the lineage tags.
    """
    logger = get_run_logger()
    config = config.with_data_uri(data_uri)
    # Config mistakes fail before any data is read or any run is opened.
    validate_gates(config.gates, config.model.task)
    # A policy deploy would refuse is refused before a version is registered that nothing can deploy.
    promotion.validate_policy(config.promotion, config.model.task)
    load_estimator_class(config.model.estimator, config.model.task)
    if config.model.search is not None:
        search.validate_search(config.model.search, config.model)
    registry = open_registry()

    training = load_training_data(config.dataset, Settings().home)
    frame, fingerprint = training.frame, training.fingerprint
    # A behavioural test naming a column the data does not have is a config mistake: refused
    # before any run is opened or anything is trained.
    roles = {config.dataset.target, config.dataset.timestamp}
    validate_behaviour(config.behaviour, frame, [c for c in frame.columns if c not in roles], config.model.task)
    reference, contract_source = stored_contract(registry, config.model.name)
    own_contract = None
    if reference is None:
        # First version: the data is checked against the rules and the contract it implies.
        reference = own_contract = infer_contract(frame, config)
        contract_source = "inferred (first version)"
    run_tags = lineage.lineage_tags(
        data_uri=config.dataset.uri,
        data_fingerprint=fingerprint,
        config_hash=config.fingerprint(),
        contract_source=contract_source,
        flow_run_id=flow_run.get_id(),
        config_source=config_source,
        features=training.lineage,
    )
    run_id = open_tracking_run(registry, config, run_tags)
    succeeded = False
    try:
        report = validate_dataset(frame, reference, config)
        log_validation(registry, run_id, report)
        if not report.success:
            raise DataValidationFailed(report.summary(), report)
        logger.info(report.summary())

        # The model is built from, and stored with, the contract of the data it learns from.
        own_contract = own_contract or infer_contract(frame, config)
        check_target(frame, own_contract, config.model)
        train_frame, holdout = split_dataset(frame, own_contract, config)
        if config.model.search is not None:
            # Candidates are judged by cross-validation on the training split; the holdout stays
            # unseen until the winner is evaluated on it below.
            found = search_hyperparameters(train_frame, own_contract, config)
            log_search(registry, run_id, found)
            logger.info(f"search: best of {len(found.candidates)} candidates {found.best.params} ({found.scoring} {found.best.mean_score:.4f})")
            config = config.model_copy(update={"model": search.candidate_model(config.model, found.best.params)})
        pipeline = fit_model(train_frame, own_contract, config)
        result = evaluate_model(pipeline, holdout, own_contract, config)
        slices = compute_slices(pipeline, holdout, own_contract, config)
        log_evaluation(registry, run_id, result, {"train": len(train_frame), "holdout": len(holdout)}, slices)
        gates = check_quality_gates(result.metrics, config)
        behaviour = run_behaviour_tests(pipeline, holdout, own_contract, config)
        log_behaviour(registry, run_id, behaviour)
        enforce_gates(gates)
        # A model good on average but bad for one segment is refused before it is registered.
        enforce_slice_gates(check_slice_gates(slices, config))
        enforce_behaviour(behaviour)

        # Computed before registration: a card that cannot be built leaves no version behind.
        card = build_model_card(run_id, config, pipeline, train_frame, holdout, own_contract, result, slices, fingerprint)
        log_reference_data(registry, run_id, train_frame, config, pipeline, own_contract)
        ref = register_model(
            registry, run_id, config, pipeline, own_contract, holdout.head(5),
            {**run_tags, "validation": report.short_summary(), "metrics": result.metrics},
        )
        # The card is stored with the version's run, so it is written before the run is closed.
        publish_model_card(registry, ref, card)
        succeeded = True
    finally:
        close_tracking_run(registry, run_id, succeeded)

    summary = TrainResult(
        status="registered",
        model_name=ref.name,
        model_version=ref.version,
        run_id=run_id,
        metrics=result.metrics,
        data_fingerprint=fingerprint,
        data_uri=config.dataset.uri,
        contract_source=contract_source,
        validation=report.short_summary(),
        gates=[GateSummary(g.metric, g.bound, g.threshold, g.value, g.passed) for g in gates],
        behaviour=[BehaviourSummary(t.name, t.kind, t.passed, t.detail) for t in behaviour.tests],
        # Re-read, not ref.aliases: two trains at once both set `challenger`, one holds it.
        aliases=read_aliases(registry, ref),
        run_url=registry.run_url(run_id),
        model_url=registry.version_url(ref),
        flow_run_id=str(flow_run.get_id()) if flow_run.get_id() else None,
    )
    publish_summary(summary)
    return summary


@flow(name="train", log_prints=True)
def train_model(model: str, overrides: ConfigOverrides | None = None, data_uri: str | None = None) -> TrainResult:
    """Train a catalogue model from its config file (read at run time), and register it as `challenger`.

    The same run as `train`: only where the config comes from differs. Which file and content hash
    were used is kept with the run (artifact `config-<model>`) and on the MLflow run (lineage tags).

    Args:
        model: The model to train: one of the catalogue's (configs/*.yaml) model names.
        overrides: Config keys to change for this run only; keys left empty keep the file's value.
        data_uri: Dataset to train on instead of `dataset.uri` (local path or s3://).
    """
    resolved = load_model_config(model, overrides)
    return train.fn(config=resolved.config, data_uri=data_uri, config_source=resolved.record())
