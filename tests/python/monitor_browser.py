"""Loads hitgate's live monitor in headless Chromium, as an operator's browser would, and reports what
the page rendered: the numbers it shows, the last kept frame's image as the browser decoded it, the
powder pattern's points. Then it retunes the trigger through the page's own form and keeps a
screenshot. Speaks the DevTools protocol over its WebSocket; prints one JSON object.

usage: monitor_browser.py --chromium PATH --url URL --retune KEY=VALUE --screenshot OUT.png
"""

import argparse
import base64
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


class Page:
    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, what, seconds=30):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the page never showed {what}")


def start_chromium(binary, profile):
    args = [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
        "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
        "--window-size=1500,1700", "about:blank",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    for line in proc.stderr:
        found = re.search(r"DevTools listening on ws://([^/]+)/", line)
        if found:
            return proc, found.group(1)
        if time.time() > deadline:
            break
    proc.kill()
    raise RuntimeError("chromium did not open its DevTools port")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--retune", required=True, help="KEY=VALUE, as /retune takes it")
    ap.add_argument("--screenshot", required=True)
    args = ap.parse_args()
    profile = tempfile.mkdtemp(prefix="hitgate-chromium-")
    proc, devtools = start_chromium(args.chromium, profile)
    try:
        with urllib.request.urlopen(f"http://{devtools}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        page = Page(pages[0]["webSocketDebuggerUrl"])
        page.call("Page.enable")
        page.call("Page.navigate", url=args.url)
        page.wait_for("document.body && document.body.dataset.refreshed !== undefined", "a first refresh")
        page.wait_for(
            "(() => { const i = document.getElementById('last-hit');"
            " return i.complete && i.naturalWidth > 0; })()",
            "the last kept frame's image",
        )
        # One more refresh, so every panel has drawn from the same state.
        stamp = page.evaluate("document.body.dataset.refreshed")
        page.wait_for(f"document.body.dataset.refreshed !== '{stamp}'", "a second refresh")
        shown = page.evaluate(
            """(() => {
                const text = (id) => document.getElementById(id).textContent;
                const img = document.getElementById('last-hit');
                const powder = document.getElementById('powder');
                const modules = document.getElementById('modules');
                return {
                    frames_done: text('frames-done'), frames_accepted: text('frames-accepted'),
                    frames_dropped: text('frames-dropped'), cut: text('cut'), pool_free: text('pool-free'),
                    connection: text('connection'),
                    image: { width: img.naturalWidth, height: img.naturalHeight, frame: img.dataset.frame },
                    powder_points: Number(powder.dataset.points), powder_width: powder.width,
                    modules: Number(modules.dataset.modules || 0),
                    losses_rows: document.querySelectorAll('#losses tbody tr').length,
                };
            })()"""
        )
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(args.screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        key, value = args.retune.split("=", 1)
        page.evaluate(
            f"""(() => {{
                document.getElementById('retune-key').value = {json.dumps(key)};
                document.getElementById('retune-value').value = {json.dumps(value)};
                document.getElementById('retune-apply').click();
            }})()"""
        )
        page.wait_for("document.getElementById('retune-result').textContent !== ''", "the retune's answer")
        shown["retune_result"] = page.evaluate("document.getElementById('retune-result').textContent")
        page.wait_for(
            f"document.getElementById('cut').textContent === {json.dumps(value)}"
            f" || document.getElementById('target-rate').textContent === {json.dumps(value)}"
            f" || document.getElementById('audit-every').textContent === {json.dumps(value)}",
            "the new cut",
        )
        shown["cut_after"] = page.evaluate("document.getElementById('cut').textContent")
        print(json.dumps(shown))
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
