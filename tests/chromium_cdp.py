"""Drive headless Chromium over the DevTools protocol: load a page, record console errors and
every request it makes, take a full-page screenshot and print it to PDF.

Test helper for tests/test_reports_browser.py (not part of pgdrill).  Chromium listens on
an ephemeral port (``--remote-debugging-port=0``) and reports it in ``DevToolsActivePort``
in its fresh profile directory, so parallel runs never collide.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--hide-scrollbars", "--mute-audio",
]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    evaluated: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None
    pdf: Path | None = None


class _Session:
    def __init__(self, ws_url: str):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.events.append(json.loads(self.ws.recv()))

    def drain(self, seconds: float) -> None:
        """Collect late events (a lazy request, a console error after load)."""
        self.ws.settimeout(0.1)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                self.events.append(json.loads(self.ws.recv()))
            except Exception:  # websocket timeout: nothing pending
                continue
        self.ws.settimeout(30)

    def close(self) -> None:
        self.ws.close()


def visit(chromium: str, page: Path, profile: Path, screenshot: Path, pdf: Path | None = None,
          width: int = 1150, expressions: dict[str, str] | None = None, log: Path | None = None) -> PageVisit:
    profile.mkdir(parents=True, exist_ok=True)
    log_handle = (log or profile / "chromium.log").open("wb")
    proc = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--enable-logging=stderr", "--v=0", f"--window-size={width},900", "about:blank"],
        stdout=log_handle, stderr=subprocess.STDOUT)
    result = PageVisit()
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit {proc.poll()}); see {log_handle.name}")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        session = _Session(ws_url)
        try:
            for domain in ("Page", "Runtime", "Log", "Network"):
                session.call(f"{domain}.enable")
            session.call("Page.navigate", url=page.resolve().as_uri())
            session.wait_for("Page.loadEventFired")
            session.drain(1.0)
            for name, expression in (expressions or {}).items():
                value = session.call("Runtime.evaluate", expression=expression, returnByValue=True)
                result.evaluated[name] = value.get("result", {}).get("value")
            metrics = session.call("Page.getLayoutMetrics")
            height = int(metrics["cssContentSize"]["height"]) + 1
            session.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                         deviceScaleFactor=1, mobile=False)
            shot = session.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result.screenshot = screenshot
            if pdf is not None:
                session.call("Emulation.clearDeviceMetricsOverride")
                printed = session.call("Page.printToPDF", printBackground=True, preferCSSPageSize=True)
                pdf.write_bytes(base64.b64decode(printed["data"]))
                result.pdf = pdf
            session.drain(0.3)
        finally:
            session.close()
        page_url = page.resolve().as_uri()
        for event in session.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                url = params.get("request", {}).get("url", "")
                if url != page_url and not url.startswith("data:"):
                    result.requests.append(url)
            elif method == "Network.loadingFailed":
                result.failed_requests.append(f"{params.get('errorText')} {params.get('blockedReason', '')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                result.console_errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                                      for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                result.console_errors.append(str(params.get("exceptionDetails", {}).get("text")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
                entry = params["entry"]
                result.console_errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}")
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_handle.close()
