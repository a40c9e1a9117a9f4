"""Summarize pip-audit's JSON report, with a second source for the packages it could not check.

pip-audit asks PyPI for each pinned version's advisories (`/pypi/<name>/<version>/json`). Where that
answer is missing (some mirrors and proxies serve only the project-level document), the project
document `/pypi/<name>/json` still lists the known vulnerabilities of the project's newest release:
when the lock pins exactly that release, that list is a verdict for our pin. An older pin gets no
verdict from it and is reported as not checked, never as clean.

    python .ci/audit_report.py AUDIT_JSON PIP_AUDIT_EXIT_STATUS PIP_AUDIT_STDERR REQUIREMENTS_TXT

Prints one line per vulnerability and a count line; exits 0 (report-only) unless AUDIT_STRICT=1
and something was found. AUDIT_PYPI_URL overrides https://pypi.org/pypi (tests use a local server).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

PYPI = os.environ.get("AUDIT_PYPI_URL", "https://pypi.org/pypi")


def newest_release_vulns(name: str, version: str, base: str) -> list[dict[str, Any]] | None:
    """The known vulnerabilities of `name` `version` if it is the newest release; None if unknown."""
    try:
        with urllib.request.urlopen(f"{base}/{name}/json", timeout=15) as response:
            project = json.load(response)
    except (urllib.error.URLError, TimeoutError, ValueError):
        return None
    if project.get("info", {}).get("version") != version:
        return None
    return [v for v in project.get("vulnerabilities") or [] if not v.get("withdrawn")]


def pinned_versions(requirements: str) -> dict[str, str]:
    """name -> version of every `name==version` line of an exported requirements file."""
    pins = {}
    for line in requirements.splitlines():
        spec = line.split(";")[0].split("\\")[0].strip()
        if "==" in spec and not spec.startswith(("#", "-")):
            name, version = spec.split("==", 1)
            pins[_normalized(name)] = version.strip()
    return pins


def _normalized(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def summarize(deps: list[dict[str, Any]], pins: dict[str, str], base: str | None = None) -> tuple[list[str], int]:
    """Report lines and the number of vulnerabilities found.

    pip-audit's skipped entries carry no version field: it comes from the pins.
    """
    base = base or PYPI
    audited = [d for d in deps if "skip_reason" not in d]
    skipped = [{**d, "version": pins.get(_normalized(d["name"]), "?")} for d in deps if "skip_reason" in d]
    found = [(d["name"], d["version"], v["id"], v.get("fix_versions", [])) for d in audited for v in d.get("vulns", [])]
    with ThreadPoolExecutor(8) as pool:
        second = list(pool.map(lambda d: newest_release_vulns(d["name"], d["version"], base), skipped))
    by_project = [(d, vulns) for d, vulns in zip(skipped, second, strict=True) if vulns is not None]
    unchecked = [d for d, vulns in zip(skipped, second, strict=True) if vulns is None]
    found += [(d["name"], d["version"], v["id"], v.get("fixed_in") or []) for d, vulns in by_project for v in vulns]

    lines = [f"audit: {name} {version}: {vid} (fixed in {', '.join(fixes) or 'no fixed version'})"
             for name, version, vid, fixes in found]
    lines.append(
        f"audit: {len(deps)} pinned packages: {len(audited)} checked by pip-audit, {len(by_project)} by PyPI's "
        f"newest-release data, {len(unchecked)} not checked; {len(found)} known vulnerabilities"
    )
    if unchecked:
        names = ", ".join(f"{d['name']} {d['version']}" for d in unchecked[:5])
        lines.append(f"audit: not checked (an older release than the newest, or no answer): {names}"
                     f"{', ...' if len(unchecked) > 5 else ''}")
        if not audited and not by_project:
            lines.append("audit: no advisory source answered: no verdict (this is not a pass)")
    return lines, len(found)


def main(argv: list[str]) -> int:
    report, status, stderr, requirements = Path(argv[1]), int(argv[2]), Path(argv[3]), Path(argv[4])
    if not report.exists() or not report.read_text().strip():
        last = (stderr.read_text().strip().splitlines() or ["no output"])[-1]
        print(f"audit: pip-audit did not produce a report (exit {status}): {last}")
        return 0
    pins = pinned_versions(requirements.read_text())
    lines, found = summarize(json.loads(report.read_text())["dependencies"], pins)
    print("\n".join(lines))
    return 1 if found and os.environ.get("AUDIT_STRICT") == "1" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
