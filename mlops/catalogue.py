"""The model catalogue: every `configs/*.yaml` is one model, found by its `model.name`.

Bringing a model is adding one file; everything that runs per model (deployments' parameter forms,
drift-check schedules, the retrain trigger, the serving app) reads the catalogue instead of naming
models itself. A file that cannot be used (it does not parse, fails validation, or repeats a name
another file already has) is a `CatalogueProblem` naming the file, and the other models go on.

A run names its model and optional `overrides`: a partial config with every key optional, typed
and described like the file's, deep-merged over the file (mappings merge key by key, lists and
values replace) and validated again as a whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlops.config import PipelineConfig, _read_yaml, _validated, parse_config
from mlops.errors import ConfigError

__all__ = [
    "Catalogue",
    "CatalogueEntry",
    "CatalogueProblem",
    "ConfigOverrides",
    "ResolvedConfig",
    "UnknownModel",
    "deep_merge",
    "file_config",
    "load_catalogue",
    "resolve_config",
]

CONFIG_SUFFIXES = (".yaml", ".yml")


class UnknownModel(ConfigError):
    """A run or request named a model that is not in the catalogue."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One usable model: its file, the validated config and the file's content hash."""

    name: str
    path: Path
    config: PipelineConfig
    raw: dict[str, Any]
    sha256: str


@dataclass(frozen=True)
class CatalogueProblem:
    """A file that is not (or not entirely) usable, with the one-line reason.

    `refused`: the file is not in the catalogue at all. A model whose local dataset is missing stays
    in it (its champion still serves and is monitored); only its training fails until the data exists.
    """

    path: Path
    message: str
    refused: bool = True

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Catalogue:
    """The models of one directory, by name, and the files that were refused."""

    directory: Path
    entries: dict[str, CatalogueEntry]
    problems: tuple[CatalogueProblem, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str) -> CatalogueEntry:
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(self.names) or "none"
            refused = [p.message for p in self.problems if p.refused and p.path.stem == name]
            hint = f"; {refused[0]}" if refused else ""
            raise UnknownModel(f"unknown model '{name}': the catalogue {self.directory} has {known}{hint}")
        return entry


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_catalogue(directory: str | Path) -> Catalogue:
    """Read every config file of `directory` (not recursive), in file-name order.

    The first file with a given `model.name` keeps it; a later one is refused naming both, so a
    copied config that forgot to rename its model cannot take over the running one.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"model catalogue not found: {directory} is not a directory")
    entries: dict[str, CatalogueEntry] = {}
    problems: list[CatalogueProblem] = []
    files = sorted(p for p in directory.iterdir() if p.suffix in CONFIG_SUFFIXES and not p.name.startswith("."))
    for path in files:
        try:
            raw = _read_yaml(path)
            config = parse_config(raw, source=str(path))
        except ConfigError as err:
            problems.append(CatalogueProblem(path, str(err)))
            continue
        name = config.model.name
        if name in entries:
            problems.append(CatalogueProblem(
                path, f"config {path}: model name '{name}' is already taken by {entries[name].path}; not loaded"
            ))
            continue
        entries[name] = CatalogueEntry(name=name, path=path, config=config, raw=raw, sha256=_sha256(path))
        missing = _missing_local_data(config)
        if missing:
            # A store-fed model's dataset.uri is its entity frame (its features come from the store).
            what = "entity frame" if config.dataset.feature_service else "dataset"
            problems.append(CatalogueProblem(
                path, f"config {path}: {what} {missing} not found; model '{name}' cannot be trained until it exists",
                refused=False,
            ))
    return Catalogue(directory=directory, entries=entries, problems=tuple(problems))


def _missing_local_data(config: PipelineConfig) -> str | None:
    """The dataset path (a store-fed model's entity frame) if it is local (relative to the working
    directory, as runs read it) and absent."""
    uri = config.dataset.uri
    if "://" in uri:
        return None  # s3:// and the like are checked when a run reads them
    return None if Path(uri).exists() else uri


# -- overrides: the config's own schema with every key optional -----------------------------------

# model.name picks the catalogue entry; an override renaming it would train one model's data under
# another's name.
_NOT_OVERRIDABLE = {("model", "name")}


def _model_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X` or `X | None`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):
        models = [a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1:
            return models[0]
    return None


def _partial(model: type[BaseModel], path: tuple[str, ...] = ()) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if (*path, name) in _NOT_OVERRIDABLE:
            continue
        nested = _model_class(info.annotation)
        if nested is not None:
            # A section is always there, empty by default, so the form shows its keys directly
            # instead of behind one more "None or not" switch per section.
            section = _partial(nested, (*path, name))
            fields[name] = (section, Field(default_factory=section, description=info.description or nested.__doc__))
            continue
        if info.metadata:  # bounds (ge, lt, min_length ...) hold for an override as for the file
            annotation = Annotated[(info.annotation, *info.metadata)]
        else:
            annotation = info.annotation
        fields[name] = (annotation | None, Field(default=None, description=info.description, title=info.title))
    title = "ConfigOverrides" if not path else f"{model.__name__}Overrides"
    partial = create_model(  # type: ignore[call-overload]
        title,
        __config__=ConfigDict(extra="forbid", frozen=True),
        __doc__=model.__doc__,
        **fields,
    )
    return partial


ConfigOverrides: type[BaseModel] = _partial(PipelineConfig)
ConfigOverrides.__doc__ = (
    "Keys of the model's config file to change for this run only; empty keys keep the file's value."
)


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` applied: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def override_values(overrides: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    """The keys an overrides value sets (unset and empty keys left out), checked against the schema."""
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        # Validated as a config file is: a bad key is one line naming it.
        overrides = _validated(ConfigOverrides, overrides, "overrides")
    return _without_empty(overrides.model_dump(mode="json", exclude_none=True))


def _without_empty(values: dict[str, Any]) -> dict[str, Any]:
    """Drop sections that set nothing, so only what a run changes is merged and recorded."""
    kept = {}
    for key, value in values.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            value = _without_empty(value)
        if value != {}:
            kept[key] = value
    return kept


@dataclass(frozen=True)
class ResolvedConfig:
    """The config a run uses and where it came from (recorded with the run)."""

    config: PipelineConfig
    source: str
    sha256: str
    overrides: dict[str, Any]

    def record(self) -> dict[str, str]:
        """What a run keeps of where its config came from (lineage tags `config_file`, ...)."""
        return {"file": self.source, "file_sha256": self.sha256, "overrides": ",".join(sorted(self.overrides)) or "none"}

    def describe(self) -> str:
        changed = f" with overrides of {', '.join(sorted(self.overrides))}" if self.overrides else ""
        return f"{self.source} (sha256 {self.sha256[:12]}){changed}"


def file_config(path: str | Path) -> ResolvedConfig:
    """A config file outside the catalogue (the CLI's --config), with its content hash."""
    path = Path(path)
    config = parse_config(_read_yaml(path), source=str(path))
    return ResolvedConfig(config, str(path), _sha256(path), {})


def resolve_config(
    catalogue: Catalogue, model: str, overrides: BaseModel | dict[str, Any] | None = None
) -> ResolvedConfig:
    """The catalogue's config for `model` with `overrides` applied, validated as a whole."""
    entry = catalogue.get(model)
    changes = override_values(overrides)
    if not changes:
        return ResolvedConfig(entry.config, str(entry.path), entry.sha256, {})
    config = parse_config(deep_merge(entry.raw, changes), source=f"{entry.path} with overrides")
    return ResolvedConfig(config, str(entry.path), entry.sha256, changes)
