"""A model card's HTML as a real browser renders it: headless Chromium loads the file with no network
and every section, table and embedded plot is in the DOM it builds."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlops.cards import SECTIONS, build_card, render_html
from mlops.config import parse_config
from mlops.contract import infer_contract
from mlops.evaluation import compute_slices, evaluate_model, split_frame
from mlops.local.simulate import simulate_churn
from mlops.metrics import predict
from mlops.training import feature_frame, fit_pipeline

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="chromium is not installed (.ci/run installs it)")


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture(scope="module")
def card_file(tmp_path_factory) -> Path:
    frame = simulate_churn(800, seed=4)
    config = parse_config({
        "dataset": {"uri": "data/churn.parquet", "target": "churned", "timestamp": "event_time"},
        "model": {"name": "churn-classifier", "params": {"max_iter": 20}},
        "split": {"method": "time"},
        "evaluation": {"segments": ["contract"], "bootstrap_samples": 50},
        "card": {"purpose": "Flag customers likely to cancel <soon>", "owner": "retention team"},
    })
    contract = infer_contract(frame, "churned", "event_time", "classification")
    train, holdout = split_frame(frame, contract, config.split, 0)
    pipeline = fit_pipeline(train, contract, config.model)
    result = evaluate_model(pipeline, holdout, contract, 0, importance_rows=200)
    predictions = predict(pipeline, feature_frame(holdout, contract), "classification")
    slices = compute_slices(holdout, holdout["churned"].to_numpy(), predictions, "classification",
                            config.evaluation, ["roc_auc"], 0)
    card = build_card(config=config, version="1", run_id="run-1", pipeline=pipeline, train=train, holdout=holdout,
                      contract=contract, evaluation=result, slices=slices, fingerprint="f00d",
                      tags={"git_commit": "deadbeef"})
    path = tmp_path_factory.mktemp("card") / "model_card.html"
    path.write_text(render_html(card), encoding="utf-8")
    return path


def test_chromium_renders_every_section_of_the_card(card_file, tmp_path):
    done = _chromium("--dump-dom", card_file.as_uri(), profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    headings = re.findall(r"<h2>([^<]*)</h2>", dom)
    assert headings == list(SECTIONS)
    assert "<h1>Model card: churn-classifier v1</h1>" in dom
    # Text from the config is escaped, not markup.
    assert "Flag customers likely to cancel &lt;soon&gt;" in dom
    assert dom.count('src="data:image/png;base64,') >= 4
    assert re.search(r"<td>contract</td><td>month-to-month</td>", dom)


def test_chromium_draws_the_card_to_a_screenshot(card_file, tmp_path):
    shot = tmp_path / "card.png"
    done = _chromium(f"--screenshot={shot}", "--window-size=1200,2000", card_file.as_uri(), profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


# Every host but loopback resolves to nothing: the page must render from what the app serves.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def test_the_serving_apps_api_docs_render_with_no_network(tmp_path):
    # FastAPI's /docs loads Swagger UI from a CDN: offline it was a white page.
    from mlops.config import Settings
    from mlops.serving.app import create_app
    from mlops.serving.server import server_config
    from tests.loopback import serving_in_thread
    from tests.unit.test_serving_app import config
    from tests.unit.test_serving_models import FakeRegistry

    settings = Settings(MLOPS_HOME=str(tmp_path / "home"))
    registry = FakeRegistry(aliases={"champion": "1"})
    app = create_app(config(tmp_path), "unused://", registry_factory=lambda: registry, settings=settings)
    server_settings = server_config(app, "127.0.0.1", 0, settings)
    server_settings.log_level = "warning"
    with serving_in_thread(server_settings) as port:
        url = f"http://127.0.0.1:{port}/docs"
        done = _chromium(OFFLINE, "--virtual-time-budget=15000", "--dump-dom", url, profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    # Swagger UI's script ran and drew the document: its title and the predict operation are in the DOM.
    assert 'class="swagger-ui"' in dom
    assert re.search(r'<h2 class="title">mlops serving', dom), dom[-3000:]
    assert 'data-path="/predict"' in dom


MERMAID = Path(__file__).resolve().parents[2] / "docs" / "javascripts" / "mermaid.min.js"


@pytest.mark.skipif(not MERMAID.exists(), reason="make docs-assets (run by make test) fetches Mermaid from npm")
def test_the_docs_sites_diagram_renders_with_no_network(tmp_path):
    # Material loads Mermaid from a CDN unless the page already has it: offline the diagram was source text.
    import os
    import sys

    repo = MERMAID.parents[2]
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--config-file", str(repo / "mkdocs.yml"),
         "--site-dir", str(site)],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr[-2000:]
    done = _chromium(OFFLINE, "--virtual-time-budget=15000", "--dump-dom", (site / "index.html").as_uri(),
                     profile=tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    # Material swaps the fenced source for a drawn diagram only once Mermaid has run.
    assert '<div class="mermaid">' in done.stdout
    assert "flowchart TB" not in done.stdout
