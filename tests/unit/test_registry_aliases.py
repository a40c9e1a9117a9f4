"""What the registry says about aliases is what a train run reports (a copied embedded store, no server)."""

from __future__ import annotations

import shutil

from mlops.registry import ALIAS_CHALLENGER, Registry


def test_aliases_of_reports_who_holds_an_alias_after_another_run_took_it(tmp_path, mlflow_template):
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = registry.client
    client.create_registered_model("m")
    first = client.create_model_version("m", source=(tmp_path / "a").as_uri()).version
    client.set_registered_model_alias("m", ALIAS_CHALLENGER, first)
    ref = registry.get_version("m", str(first))
    # A second train registers and takes `challenger` after the first set it.
    second = client.create_model_version("m", source=(tmp_path / "b").as_uri()).version
    client.set_registered_model_alias("m", ALIAS_CHALLENGER, second)
    assert ref.aliases == (ALIAS_CHALLENGER,)  # what the first run read when it set the alias
    assert registry.aliases_of("m", str(first)) == ()
    assert registry.aliases_of("m", str(second)) == (ALIAS_CHALLENGER,)
