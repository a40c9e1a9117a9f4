"""The dependency audit's report (.ci/audit_report.py) against a PyPI stand-in on loopback."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("audit_report", REPO / ".ci" / "audit_report.py")
audit_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(audit_report)

PROJECTS = {
    # newest release 2.0 with one live and one withdrawn advisory
    "pkg-vuln": {"info": {"version": "2.0"}, "vulnerabilities": [
        {"id": "PYSEC-1", "fixed_in": ["2.1"], "withdrawn": None},
        {"id": "PYSEC-2", "fixed_in": [], "withdrawn": "2026-01-01T00:00:00"},
    ]},
    "pkg-clean": {"info": {"version": "1.5"}, "vulnerabilities": []},
    "pkg-newer": {"info": {"version": "9.0"}, "vulnerabilities": []},
}


class _PyPI(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        name = self.path.strip("/").split("/")[0]
        if name not in PROJECTS or not self.path.endswith("/json"):
            self.send_error(404)
            return
        body = json.dumps(PROJECTS[name]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args):
        pass


@pytest.fixture(scope="module")
def pypi() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PyPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


SKIP = "Dependency not found on PyPI and could not be audited"
# As `uv export` writes them; pip-audit's skipped entries name the package but carry no version.
REQUIREMENTS = """\
pkg-vuln==2.0 \\
    --hash=sha256:00
pkg-clean==1.5 ; python_version >= "3.11"
Pkg_Newer==1.0
pkg-missing==1.0
"""
PINS = audit_report.pinned_versions(REQUIREMENTS)


def test_pins_are_read_from_the_exported_requirements():
    assert PINS == {"pkg-vuln": "2.0", "pkg-clean": "1.5", "pkg-newer": "1.0", "pkg-missing": "1.0"}


def test_pins_of_the_newest_release_get_a_verdict_older_ones_stay_unchecked(pypi):
    deps = [
        {"name": "audited", "version": "1.0", "vulns": [{"id": "GHSA-x", "fix_versions": ["1.1"]}]},
        {"name": "pkg-vuln", "skip_reason": SKIP},
        {"name": "pkg-clean", "skip_reason": SKIP},
        {"name": "pkg-newer", "skip_reason": SKIP},
        {"name": "pkg-missing", "skip_reason": SKIP},
    ]
    lines, found = audit_report.summarize(deps, PINS, pypi)
    assert found == 2  # the withdrawn advisory does not count
    assert "audit: audited 1.0: GHSA-x (fixed in 1.1)" in lines
    assert "audit: pkg-vuln 2.0: PYSEC-1 (fixed in 2.1)" in lines
    assert ("audit: 5 pinned packages: 1 checked by pip-audit, 2 by PyPI's newest-release data, "
            "2 not checked; 2 known vulnerabilities") in lines
    assert lines[-1].endswith("pkg-newer 1.0, pkg-missing 1.0")


def test_no_answer_from_any_source_is_no_verdict_not_a_pass(pypi):
    deps = [{"name": "pkg-newer", "skip_reason": SKIP}]
    lines, found = audit_report.summarize(deps, PINS, pypi)
    assert found == 0
    assert lines[-1] == "audit: no advisory source answered: no verdict (this is not a pass)"


def test_strict_mode_fails_on_a_finding_and_only_then(pypi, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_STRICT", "1")
    monkeypatch.setattr(audit_report, "PYPI", pypi)
    stderr, requirements = tmp_path / "stderr", tmp_path / "requirements.txt"
    stderr.write_text("")
    requirements.write_text(REQUIREMENTS)
    for deps, code in (([{"name": "pkg-clean", "skip_reason": SKIP}], 0),
                       ([{"name": "pkg-vuln", "skip_reason": SKIP}], 1)):
        report = tmp_path / "audit.json"
        report.write_text(json.dumps({"dependencies": deps}))
        assert audit_report.main(["audit_report.py", str(report), "0", str(stderr), str(requirements)]) == code
    assert "PYSEC-1" in capsys.readouterr().out
