#!/usr/bin/python3
"""cdp.py: drives headless Chromium through its DevTools protocol for the
browser tests (tests/test_gallery.lua, tests/test_webchat.lua).

    /usr/bin/python3 tests/cdp.py STEPS.json [--timeout S]

It starts the browser (chromium-headless-shell, else chromium) with a fresh
profile and --remote-debugging-port=0, reads the port from the profile's
DevToolsActivePort file, and runs the steps in order; each prints one JSON
line on stdout ({"step": n, "ok": true, "value": ...}), flushed, so a test
reading the output as it comes can act between steps (the "mark" step).

Steps (a JSON list of objects):
  {"open": "NAME", "url": URL}        a new tab called NAME, loaded
  {"eval": JS, "page": "NAME"}        the value of JS (a promise is awaited)
  {"wait": JS, "page": "NAME", "timeout": S}
                                      JS evaluated every 0.1 s until truthy;
                                      its value, or a failure after S s
  {"mark": TEXT}                      prints {"mark": TEXT}: the test's cue
  {"close": "NAME"}                   closes that tab

The first step that fails prints {"step": n, "ok": false, "error": ...} and
ends the run with status 1. Status 77 with "skip: reason" on stderr: no
browser or no python3-websockets here, or the browser would not start. The
whole run is bounded by --timeout (default 90 s); the browser is killed
however it ends.

Written on Python's asyncio and Debian's python3-websockets: an
implementation of WebSocket independent of netlua's, so a fault in netlua
cannot hide itself in the test that checks it.
"""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

SKIP = 77
BROWSERS = ["chromium-headless-shell", "/usr/lib/chromium/chromium-headless-shell",
            "chromium", "/usr/lib/chromium/chromium"]


def skip(why):
    sys.stderr.write("skip: %s\n" % why)
    sys.exit(SKIP)


def find_browser():
    for name in BROWSERS:
        path = name if os.path.isabs(name) else shutil.which(name)
        if path and os.access(path, os.X_OK):
            return path
    return None


class StepFailed(Exception):
    pass


class Skip(Exception):
    """The browser is not usable here: the run is skipped, not failed."""


class Browser:
    """The browser process and one DevTools connection to it; each tab is
    attached as a flat session (Target.attachToTarget flatten=true)."""

    def __init__(self, path):
        self.profile = tempfile.mkdtemp(prefix="netlua-cdp.")
        # its chatter goes to a file: a pipe nobody reads would fill and
        # stop the browser
        self.log = os.path.join(self.profile, "stderr.log")
        log = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [path, "--headless", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking",
             "--disable-dev-shm-usage", "--user-data-dir=" + self.profile,
             "--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=log, start_new_session=True)
        log.close()
        self.ws = None
        self.next_id = 0
        self.pending = {}
        self.pages = {}
        self.reader = None

    async def start(self):
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(300):
            if self.proc.poll() is not None:
                with open(self.log, errors="replace") as f:
                    err = f.read()
                raise Skip("the browser exited at start (status %s): %s"
                           % (self.proc.returncode, err.strip()[-400:]))
            try:
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[1]:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise Skip("the browser wrote no DevToolsActivePort within 30 s")
        import websockets
        url = "ws://127.0.0.1:%s%s" % (lines[0].strip(), lines[1].strip())
        self.ws = await websockets.connect(url, max_size=None, ping_interval=None)
        self.reader = asyncio.ensure_future(self.read())

    async def read(self):
        async for text in self.ws:
            msg = json.loads(text)
            fut = self.pending.pop(msg.get("id"), None)
            if fut and not fut.done():
                fut.set_result(msg)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(StepFailed("the DevTools connection closed"))

    async def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await self.ws.send(json.dumps(msg))
        reply = await fut
        if "error" in reply:
            raise StepFailed("%s: %s" % (method, reply["error"].get("message")))
        return reply.get("result", {})

    def session(self, name):
        if name not in self.pages:
            raise StepFailed("no page called %r (open it first)" % name)
        return self.pages[name][1]

    async def evaluate(self, name, js):
        r = await self.call("Runtime.evaluate", {
            "expression": js, "returnByValue": True, "awaitPromise": True},
            self.session(name))
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            text = d.get("exception", {}).get("description") or d.get("text")
            raise StepFailed("JavaScript error: %s" % text)
        return r.get("result", {}).get("value")

    async def open(self, name, url):
        t = await self.call("Target.createTarget", {"url": "about:blank"})
        s = await self.call("Target.attachToTarget",
                            {"targetId": t["targetId"], "flatten": True})
        self.pages[name] = (t["targetId"], s["sessionId"])
        r = await self.call("Page.navigate", {"url": url}, s["sessionId"])
        if r.get("errorText"):
            raise StepFailed("cannot load %s: %s" % (url, r["errorText"]))
        await self.wait(name, "document.readyState === 'complete'", 20)

    async def wait(self, name, js, timeout):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        value = None
        while loop.time() < deadline:
            value = await self.evaluate(name, js)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise StepFailed("waited %s s for %s; last value %r" % (timeout, js, value))

    async def close_page(self, name):
        target = self.pages.pop(name)[0]
        await self.call("Target.closeTarget", {"targetId": target})

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


async def run_step(b, step):
    if "open" in step:
        await b.open(step["open"], step["url"])
        return None
    if "eval" in step:
        return await b.evaluate(step["page"], step["eval"])
    if "wait" in step:
        return await b.wait(step["page"], step["wait"], step.get("timeout", 20))
    if "close" in step:
        await b.close_page(step["close"])
        return None
    raise StepFailed("unknown step %r" % step)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(steps, b):
    await b.start()
    for n, step in enumerate(steps, 1):
        if "mark" in step:
            emit({"mark": step["mark"]})
            continue
        try:
            value = await run_step(b, step)
        except StepFailed as e:
            emit({"step": n, "ok": False, "error": str(e)})
            return 1
        emit({"step": n, "ok": True, "value": value})
    return 0


def main():
    args = sys.argv[1:]
    timeout = 90.0
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 1:
        sys.stderr.write("usage: cdp.py STEPS.json [--timeout S]\n")
        return 2
    with open(args[0]) as f:
        steps = json.load(f)
    try:
        import websockets  # noqa: F401
    except ImportError:
        skip("needs python3-websockets (apt-get install python3-websockets)")
    path = find_browser()
    if not path:
        skip("no headless Chromium (apt-get install chromium-headless-shell)")
    b = Browser(path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return asyncio.run(asyncio.wait_for(run(steps, b), timeout))
    except Skip as e:
        skip(str(e))
    except asyncio.TimeoutError:
        emit({"ok": False, "error": "the whole run took longer than %s s" % timeout})
        return 1
    finally:
        b.kill()


if __name__ == "__main__":
    sys.exit(main())
