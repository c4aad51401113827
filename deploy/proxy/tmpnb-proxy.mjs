#!/usr/bin/env node
// tmpnb's configurable-http-proxy: its ConfigurableProxy (routing table, REST
// API with a token, last_activity, error pages) as npm installs it, started
// with the listeners and the per-origin rules of the README's "Safety":
//
// - every notebook is served on an origin that no page of the service has:
//   with --notebook-domain, <id>.<domain> (routes keyed by host, as
//   configurable-http-proxy's --host-routing does); without it, the port
//   --notebook-port, shared by the notebooks (routes keyed "@notebooks");
// - a request to a notebook's origin never carries the service's cookies
//   (every name that starts with tmpnb_, __Host-tmpnb_ or __Secure-tmpnb_),
//   whatever the route: a participant controls everything in their container;
// - a notebook's answer cannot set one of those cookies, nor any cookie with
//   a Domain (which would reach the service or other notebooks), nor register
//   a service worker (which would outlive the notebook on a shared origin);
// - with --ssl-cert and --ssl-key every listener speaks HTTPS, and a plain
//   HTTP request to it (or to --redirect-port) is redirected to HTTPS;
// - JupyterLab's files of each image build are served from TMPNB_VAR_DIR's
//   lab_static folder by the proxy itself, on the notebooks' origins only
//   (lab-static.mjs).
//
// Options as configurable-http-proxy's own (--ip, --port, --api-ip,
// --api-port, --default-target, --log-level; the token in
// CONFIGPROXY_AUTH_TOKEN), each defaulting to the service's variable of the
// same meaning (TMPNB_PUBLIC_PORT, ..., see main).

import fs from "node:fs";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { ConfigurableProxy } from "configurable-http-proxy";
import { defaultLogger } from "configurable-http-proxy/lib/log.js";

import { PREFIX as LAB_STATIC, serveLabStatic } from "./lab-static.mjs";

const NOTEBOOK_LISTENER = "@notebooks";
const SERVICE_COOKIE = /^(__Host-|__Secure-)?tmpnb_/;
const KEEP_ALIVE = { keepAlive: true, keepAliveTimeout: 5000 };
const TLS_HANDSHAKE = 0x16; // the first byte a TLS client sends
// The proxy keeps its connections to gunicorn and the notebooks open between
// requests (configurable-http-proxy's keepAlive agents), and closes one left
// idle this long. An app server closes an idle connection too (gunicorn after
// its --keep-alive: 2 s by default, 5 s as the service runs it): a request
// sent on a connection at the moment the server closes it failed with "socket
// hang up", answered 503 (6 to 9 times in 25 for a client asking every 2.0 s,
// as the waiting room does). Closing ours first, well before any server's, ends that.
const UPSTREAM_IDLE_MS = 1000;

function hostName(req) {
  // The Host header without its port, as a browser sent it (lower case);
  // "@" never names a host, so no request can claim the notebook listener's key.
  const host = (req.headers.host || "").toLowerCase().replace(/@/g, "");
  return host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.split(":")[0];
}

function requestPath(url) {
  // As the patched configurable-http-proxy reads it: "//x" is a path, not a host.
  const parsed = url.startsWith("/") ? new URL("http://example.com" + url) : new URL(url, "http://example.com");
  return decodeURIComponent(parsed.pathname);
}

function withoutServiceCookies(header) {
  const kept = header
    .split(";")
    .map((pair) => pair.trim())
    .filter((pair) => pair && !SERVICE_COOKIE.test(pair.split("=")[0].trim()));
  return kept.join("; ");
}

function allowedSetCookie(line) {
  // A notebook may set cookies for its own host only, and none of the service's names.
  const [pair, ...attributes] = line.split(";");
  if (SERVICE_COOKIE.test(pair.split("=")[0].trim())) return false;
  return !attributes.some((attribute) => attribute.split("=")[0].trim().toLowerCase() === "domain");
}

function closingIdleSockets(Agent) {
  // Node's http.Agent: keepSocketAlive runs as a socket becomes free, and the
  // agent destroys a free socket whose timeout fires; reuseSocket runs as a
  // free socket is handed to a request, which (a long poll, a websocket) has
  // no idle limit of ours.
  return class extends Agent {
    keepSocketAlive(socket) {
      if (!super.keepSocketAlive(socket)) return false;
      // The agent may have set a shorter one from the server's Keep-Alive header.
      socket.setTimeout(Math.min(UPSTREAM_IDLE_MS, socket.timeout || Infinity));
      return true;
    }

    reuseSocket(socket, req) {
      socket.setTimeout(0);
      super.reuseSocket(socket, req);
    }
  };
}

const UpstreamHttpAgent = closingIdleSockets(http.Agent);
const UpstreamHttpsAgent = closingIdleSockets(https.Agent);

class TmpnbProxy extends ConfigurableProxy {
  constructor(options, { notebookPort, notebookDomain, labStatic }) {
    super(options);
    // In place of the agents configurable-http-proxy made (lib/configproxy.js),
    // which it hands every proxied request.
    this.httpAgent = http.globalAgent = new UpstreamHttpAgent({ keepAlive: true });
    this.httpsAgent = https.globalAgent = new UpstreamHttpsAgent({ keepAlive: true });
    this.notebookPort = notebookPort;
    this.notebookSuffix = notebookDomain ? "." + notebookDomain.toLowerCase() : null;
    this.labStatic = labStatic;
    this.proxy.on("proxyRes", (proxyRes, req) => this.filterAnswer(req, proxyRes));
    // http-proxy-3 hands a client's websocket errors (EPIPE, ECONNRESET: the
    // client reset it while data flowed) to this event, and throws them when
    // nobody listens: one participant could end the proxy for everyone.
    this.proxy.on("error", (e, req, socket) => {
      this.log.debug("a client's connection broke: %s", e.message);
      if (socket && typeof socket.destroy === "function") socket.destroy();
    });
    this.proxy.on("proxyReqWs", (proxyReq, req) => {
      proxyReq.on("upgrade", (proxyRes) => this.filterAnswer(req, proxyRes));
      proxyReq.on("response", (proxyRes) => this.filterAnswer(req, proxyRes));
    });
  }

  onNotebookListener(req) {
    return this.notebookPort !== undefined && req.socket.localPort === this.notebookPort;
  }

  isNotebookOrigin(req) {
    return this.onNotebookListener(req) || (this.notebookSuffix !== null && hostName(req).endsWith(this.notebookSuffix));
  }

  async targetForReq(req) {
    const host = this.onNotebookListener(req) ? NOTEBOOK_LISTENER : hostName(req);
    const route = await this._routes.getTarget("/" + host + requestPath(req.url));
    if (route) return { prefix: route.prefix, target: route.data.target };
  }

  prepare(req) {
    // Only the proxy says how the request arrived: the client's own
    // X-Forwarded-Proto would make Django believe in HTTPS.
    for (const name of ["x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"]) delete req.headers[name];
    if (!this.isNotebookOrigin(req)) return true;
    req.notebookOrigin = true;
    if (req.headers.cookie) {
      const kept = withoutServiceCookies(req.headers.cookie);
      if (kept) req.headers.cookie = kept;
      else delete req.headers.cookie;
    }
    return req.headers["service-worker"] === undefined;
  }

  filterAnswer(req, proxyRes) {
    if (!req.notebookOrigin) return;
    const cookies = proxyRes.headers["set-cookie"];
    if (cookies) proxyRes.headers["set-cookie"] = cookies.filter(allowedSetCookie);
    delete proxyRes.headers["service-worker-allowed"];
  }

  handleProxyWeb(req, res) {
    const allowed = this.prepare(req);
    // No route is ever under /lab-static/ (pool/origins.py's route_path).
    if (allowed && req.url.startsWith(LAB_STATIC)) return serveLabStatic(this.labStatic, req, res, req.notebookOrigin === true);
    if (allowed) return super.handleProxyWeb(req, res);
    res.writeHead(403, { "Content-Type": "text/plain" });
    res.end("Service workers are not allowed on a notebook's origin.");
  }

  handleProxyWs(req, socket, head) {
    if (this.prepare(req)) return super.handleProxyWs(req, socket, head);
    socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
  }
}

function redirectToHttps(port) {
  return (req, res) => {
    const host = hostName(req);
    if (!host) {
      res.writeHead(400, { "Content-Type": "text/plain" });
      res.end("This service speaks HTTPS only.");
      return;
    }
    const location = `https://${host}${port === 443 ? "" : ":" + port}${req.url}`;
    res.writeHead(301, { Location: location, "Content-Type": "text/plain" });
    res.end(`Moved to ${location}`);
  };
}

function listener(proxy, tls, port) {
  // One port; with TLS, a plain HTTP client on it is redirected to HTTPS.
  const logged = (promise) => promise && promise.catch((e) => proxy.log.error("Error handling a request: %s", e));
  const onRequest = (req, res) => logged(proxy.handleProxyWeb(req, res));
  const onUpgrade = (req, socket, head) => logged(proxy.handleProxyWs(req, socket, head));
  if (!tls) {
    const server = http.createServer(KEEP_ALIVE, onRequest);
    server.on("upgrade", onUpgrade);
    return server;
  }
  const secure = https.createServer({ ...tls, ...KEEP_ALIVE }, onRequest);
  secure.on("upgrade", onUpgrade);
  const plain = http.createServer(redirectToHttps(port));
  return net.createServer((socket) => {
    socket.once("data", (first) => {
      socket.pause();
      socket.unshift(first);
      (first[0] === TLS_HANDSHAKE ? secure : plain).emit("connection", socket);
      process.nextTick(() => socket.resume());
    });
    socket.on("error", () => socket.destroy());
  });
}

function readOrExit(path, name) {
  try {
    return fs.readFileSync(path);
  } catch (e) {
    console.error(`${name}: cannot read ${path}: ${e.message}`);
    process.exit(2);
  }
}

function main() {
  // The service's own variables (README "Configuration") are the defaults, so
  // the proxy and Django read one configuration; a flag overrides.
  const env = process.env;
  const { values: args } = parseArgs({
    options: {
      ip: { type: "string", default: env.TMPNB_PUBLIC_IP || "0.0.0.0" },
      port: { type: "string", default: env.TMPNB_PUBLIC_PORT || "8000" },
      "api-ip": { type: "string", default: "127.0.0.1" },
      "api-port": { type: "string", default: env.TMPNB_PROXY_API_PORT || "8001" },
      "default-target": { type: "string", default: `http://127.0.0.1:${env.TMPNB_PORT || 9999}` },
      "log-level": { type: "string", default: "info" },
      "notebook-port": { type: "string", default: env.TMPNB_NOTEBOOK_PORT || "8002" },
      "notebook-domain": { type: "string", default: env.TMPNB_NOTEBOOK_DOMAIN || "" },
      "ssl-cert": { type: "string", default: env.TMPNB_TLS_CERT || "" },
      "ssl-key": { type: "string", default: env.TMPNB_TLS_KEY || "" },
      "redirect-port": { type: "string", default: env.TMPNB_HTTP_REDIRECT_PORT || "" },
      // Where pool/services/lab_static.py copies them: Django's TMPNB_VAR_DIR, whose default is the checkout's var/.
      "lab-static": { type: "string", default: path.join(env.TMPNB_VAR_DIR || fileURLToPath(new URL("../../var", import.meta.url)), "lab_static") },
    },
  });
  const log = defaultLogger({ level: args["log-level"].toLowerCase() });
  const port = parseInt(args.port);
  const notebookPort = args["notebook-domain"] || !args["notebook-port"] ? undefined : parseInt(args["notebook-port"]);
  const tls = args["ssl-cert"] ? { cert: readOrExit(args["ssl-cert"], "TMPNB_TLS_CERT"), key: readOrExit(args["ssl-key"], "TMPNB_TLS_KEY") } : null;
  const proxy = new TmpnbProxy(
    {
      log,
      defaultTarget: args["default-target"],
      authToken: process.env.CONFIGPROXY_AUTH_TOKEN,
      hostRouting: true,
      xfwd: true,
    },
    { notebookPort, notebookDomain: args["notebook-domain"], labStatic: args["lab-static"] }
  );
  listener(proxy, tls, port).listen(port, args.ip);
  if (notebookPort !== undefined) listener(proxy, tls, notebookPort).listen(notebookPort, args.ip);
  if (tls && args["redirect-port"]) http.createServer(redirectToHttps(port)).listen(parseInt(args["redirect-port"]), args.ip);
  proxy.apiServer.listen(parseInt(args["api-port"]), args["api-ip"]);
  const scheme = tls ? "https" : "http";
  log.info("Proxying %s://%s:%s to %s", scheme, args.ip, port, args["default-target"] || "(no default)");
  if (notebookPort !== undefined) log.info("Notebooks at %s://%s:%s", scheme, args.ip, notebookPort);
  if (args["notebook-domain"]) log.info("Notebooks at %s://<id>.%s:%s", scheme, args["notebook-domain"], port);
}

main();
