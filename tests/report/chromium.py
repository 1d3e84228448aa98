"""Load a page in real headless Chromium and ask the browser what it rendered (standard library only).

The browser is driven over the Chrome DevTools protocol on ``--remote-debugging-pipe`` (commands
on the child's fd 3, answers on fd 4, each JSON message ended by a NUL byte): open a tab, load the
page, wait for its load event, read every image's decoded size from the DOM, take a full-page
screenshot. Nothing is injected into the page itself; every read has a deadline.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

PROBE = """JSON.stringify({
  title: document.title,
  images: Array.from(document.images).map(i => ({w: i.naturalWidth, h: i.naturalHeight, complete: i.complete, alt: i.alt,
                                                  shown_w: i.getBoundingClientRect().width})),
  sections: Array.from(document.querySelectorAll('section')).map(s => ({id: s.id, text: s.innerText.length})),
  scripts: document.scripts.length,
  height: document.documentElement.scrollHeight,
})"""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def _message(self) -> dict:
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("chromium did not answer before the deadline")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            answer = self._message()
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"DevTools {method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def wait_event(self, method: str, session: str) -> dict:
        while True:
            found = next((e for e in self.events if e.get("method") == method and e.get("sessionId") == session), None)
            if found is not None:
                return found
            self.events.append(self._message())


def render(page: Path, screenshot: Path, width: int = 1280, timeout: float = 120.0) -> dict:
    """Load ``page`` in headless Chromium; write a full-page PNG screenshot to ``screenshot``.

    Returns what the browser saw: ``title``, ``images`` (decoded ``w``, ``h``, ``complete``,
    ``alt``, displayed width ``shown_w``), ``sections`` (id and length of visible text),
    ``scripts`` (count) and the page ``height`` in CSS pixels.
    """
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no chromium executable on PATH")
    to_child, from_parent = os.pipe()  # we write commands, chromium reads them on fd 3
    to_parent, from_child = os.pipe()  # chromium writes answers on fd 4, we read them

    def child_fds():  # runs in the child before exec: the protocol's fixed descriptors, inheritable
        # copies above 10 first: a pipe end may itself be fd 3 or 4 (dup2 onto itself would keep
        # its close-on-exec flag, and the second dup2 could overwrite the first)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, from_child)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)

    profile = tempfile.mkdtemp(prefix="sf-chromium-")
    args = [exe, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
            f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"]
    log = open(Path(profile) / "chromium.log", "wb")  # a file, not a pipe: a full pipe would stall the browser
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=child_fds, close_fds=False)
    os.close(to_child)
    os.close(from_child)
    pipe = _Pipe(from_parent, to_parent, time.monotonic() + timeout)
    try:
        return _load(pipe, page, screenshot, width)
    except (TimeoutError, ConnectionError, RuntimeError) as exc:
        tail = (Path(profile) / "chromium.log").read_bytes()[-2000:].decode(errors="replace")
        raise RuntimeError(f"{exc}; chromium's log ends with:\n{tail}") from None
    finally:
        os.close(from_parent)
        os.close(to_parent)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


def _load(pipe: _Pipe, page: Path, screenshot: Path, width: int) -> dict:
    target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    pipe.call("Page.enable", session=session)
    pipe.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
              session=session)
    pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    pipe.wait_event("Page.loadEventFired", session)
    seen = json.loads(pipe.call("Runtime.evaluate", {"expression": PROBE, "returnByValue": True}, session=session)["result"]["value"])
    size = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
    shot = pipe.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
                     session=session)
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    try:
        pipe.call("Browser.close")
    except (ConnectionError, TimeoutError):
        pass
    return seen
