"""A participant's own server, run in place of Jupyter by a participant who
controls their container: it prints every request it receives (with its
cookies) to the container's log, answers with cookies meant for the service
and for every host of the domain, and serves a page whose script tries to
reach beyond its origin. tests/integration/test_origins.py runs it in the
JupyterLab image (which has Python) from a read-only host folder."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, BASE = int(sys.argv[1]), sys.argv[2]

# Each attempt is recorded as "read ..." (it got through) or "blocked: ..." (the browser refused).
ATTACK = """<!doctype html><title>attack</title><body><script>
const params = new URLSearchParams(location.search);
const service = params.get("service"), other = params.get("other");
const results = {};
async function attempt(name, run) {
  try { results[name] = "read " + await run(); } catch (error) { results[name] = "blocked: " + error.name; }
}
async function body(response) {
  if (!response.ok) throw new Error("HTTP " + response.status);
  return response.url + " " + (await response.text()).slice(0, 200);
}
(async () => {
  await attempt("admin", async () => body(await fetch(service + "/admin/", {credentials: "include"})));
  await attempt("admin_window", async () => {
    const opened = window.open(service + "/admin/");
    await new Promise((resolve) => setTimeout(resolve, 1500));
    return opened.document.body.innerHTML.slice(0, 200);
  });
  await attempt("landing", async () => body(await fetch(service + "/spawn/", {credentials: "include"})));
  await attempt("landing_here", async () => body(await fetch("/spawn/", {credentials: "include"})));
  await attempt("other_notebook", async () => body(await fetch(other, {credentials: "include"})));
  document.body.textContent = JSON.stringify(results);
  document.title = "done";
})();
</script>"""


class Recorder(BaseHTTPRequestHandler):
    def do_GET(self):
        print(json.dumps({"path": self.path, "headers": dict(self.headers)}), flush=True)
        page = ATTACK if self.path.startswith(f"{BASE}attack") else f"tree {BASE}"
        body = page.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        for cookie in ("tmpnb_visitor=forged; Path=/", "tmpnb_session=forged; Path=/", "tossed=forged; Domain=nb.test; Path=/", "own=kept; Path=/"):
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("0.0.0.0", PORT), Recorder).serve_forever()
