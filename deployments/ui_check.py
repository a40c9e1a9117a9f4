"""Check the Prefect UI's run form of a catalogue deployment in headless Chromium, and keep a screenshot.

    .venv/bin/python deployments/ui_check.py [--deployment train/manual] [--out docs/img/run-form.png]

Needs the stack running (`make up`) and Debian's chromium. It opens the deployment's Run form as a
user would, checks that the `model` field offers exactly the catalogue's models (a choice, not free
text) and that the overrides open as typed, described fields, picks the first model, opens the
overrides and writes a screenshot. Exit 0 when the form is as described, 1 with the reason if not.
Chromium is driven over the DevTools protocol (`websockets`, already installed with Prefect), so
nothing else is needed.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect

from mlops.catalogue import load_catalogue
from mlops.config import Settings
from mlops.local.stack import free_port

# The flags a headless Chromium needs on a machine without network beyond loopback.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Page:
    """One tab, driven by DevTools protocol commands."""

    def __init__(self, ws_url: str) -> None:
        self.ws = connect(ws_url, max_size=None)
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def js(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.3)
        raise TimeoutError(f"the page never showed {what}")


def _chromium(port: int, profile: str) -> subprocess.Popen:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("error: chromium not found (Debian: apt-get install chromium)")
    return subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
                             "--window-size=1400,2200", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _tab(port: int) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            tabs = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            pages = [t for t in tabs if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("error: chromium did not open its DevTools port")


def check_run_form(page: Page, url: str, names: list[str]) -> list[str]:
    """Problems with the form (empty when it is as described)."""
    page.send("Page.navigate", url=url)
    page.wait("document.body && document.body.innerText.includes('Parameters')", "the run form")
    problems = []
    # The model field is a select whose options are the catalogue's names.
    options = page.wait("""(() => {
        const label = [...document.querySelectorAll('*')].find(e => e.childElementCount === 0 && e.textContent.trim() === 'model');
        if (!label) return null;
        const field = label.closest('.schema-form-property');
        const select = field.querySelector('select');
        return select ? [...select.options].map(o => o.value).filter(v => v) : ['<no select>'];
    })()""", "the model field")
    if sorted(options) != sorted(names):
        problems.append(f"model offers {options}, the catalogue has {names}")
    # Pick the first model, as a user would.
    page.js(f"""(() => {{
        const select = document.querySelector('.schema-form-property select');
        select.value = {json.dumps(names[0])};
        select.dispatchEvent(new Event('change', {{bubbles: true}}));
        select.dispatchEvent(new Event('input', {{bubbles: true}}));
    }})()""")
    # Open the overrides: the switch between "ConfigOverrides" and "None".
    opened = page.js("""(() => {
        const button = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'ConfigOverrides');
        if (!button) return false;
        button.click();
        return true;
    })()""")
    if not opened:
        problems.append("no ConfigOverrides switch on the overrides field")
        return problems
    text = page.wait("document.body.innerText.includes('Estimator keyword arguments') && document.body.innerText",
                     "the override fields")
    for expected in ("Dataset", "Column to predict", "Seed for the estimator and the split", "Monitoring",
                     "When the scheduled drift check of this model runs"):
        if expected not in text:
            problems.append(f"the overrides form does not show {expected!r}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployment", default="train/manual")
    parser.add_argument("--out", default="docs/img/run-form.png")
    args = parser.parse_args()
    settings = Settings()
    names = load_catalogue(settings.catalogue_dir).names
    api = settings.local_prefect_url
    deployment = httpx.get(f"{api}/deployments/name/{args.deployment}", timeout=10).json()
    url = f"{api.removesuffix('/api')}/deployments/deployment/{deployment['id']}/run"

    port = free_port()
    # Chromium's helper processes may still write their profile as it closes.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = _chromium(port, profile)
        try:
            page = Page(_tab(port))
            problems = check_run_form(page, url, names)
            # The top of the form: the model choice and the first override sections.
            shot = page.send("Page.captureScreenshot", format="png",
                             clip={"x": 0, "y": 0, "width": 1400, "height": 1500, "scale": 0.75})
            Path(args.out).write_bytes(base64.b64decode(shot["data"]))
        finally:
            os.killpg(browser.pid, signal.SIGTERM)  # the browser and its helper processes
            browser.wait(10)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"run form of {args.deployment}: model is a choice of {', '.join(names)}; overrides are typed, "
          f"described fields; screenshot {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
