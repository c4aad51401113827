// JupyterLab's files of each image build, served by the proxy itself at
// /lab-static/<recipe>/<path> on the notebooks' origins (README "Notebook
// images"). The first spawn of a build copies its folder out of the image
// into <root>/<recipe>/ (pool/services/lab_static.py), with a brotli and a
// gzip copy of each file worth compressing made at image build; a recipe
// names one build, so a file never changes under its URL.
//
// Served here rather than by gunicorn, which spent a Python thread on each of
// the 40 files of every participant's start-up (docs/performance.md, "The room").

import fs from "node:fs";
import path from "node:path";

export const PREFIX = "/lab-static/";
const RECIPE = /^[0-9a-f]{16}$/; // build-jupyter's: the first 16 hex digits of a sha256
// Best first, as the image build made them.
const ENCODINGS = [
  ["br", ".br"],
  ["gzip", ".gz"],
];
// The extensions a JupyterLab build holds, typed as Python's mimetypes did
// when the app served them.
const CONTENT_TYPES = {
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".html": "text/html; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".gif": "image/gif",
  ".jpg": "image/jpeg",
  ".ico": "image/vnd.microsoft.icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".otf": "font/otf",
  ".eot": "application/vnd.ms-fontobject",
  ".wasm": "application/wasm",
};
// With the headers the app's middleware gave them (README "Safety").
const COMMON_HEADERS = {
  "Cache-Control": "public, max-age=31536000, immutable",
  Vary: "Accept-Encoding",
  "X-Content-Type-Options": "nosniff",
  "Content-Security-Policy": "frame-ancestors 'none'",
  "X-Frame-Options": "DENY",
};

class Refusal extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function relativePath(url) {
  // "<recipe>/<path>" of a URL under PREFIX, its segments decoded one by one:
  // an encoded "/" or "\" would join two segments into one name, so it is
  // refused, as are "..", ".", empty segments and NUL.
  const rawPath = url.split("?")[0].slice(PREFIX.length);
  const segments = rawPath.split("/").map((segment) => {
    let decoded;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw new Refusal(400, "malformed escape");
    }
    if (decoded === "" || decoded === "." || decoded === ".." || /[/\\\0]/.test(decoded)) throw new Refusal(400, "not a file's path");
    return decoded;
  });
  if (segments.length < 2 || !RECIPE.test(segments[0])) throw new Refusal(404, "no such build");
  return segments;
}

async function inside(folder, file) {
  // ``file``'s real path when it is a regular file under ``folder`` (a real
  // path), else null: a link may not lead out of the build's folder.
  try {
    const real = await fs.promises.realpath(file);
    if (!real.startsWith(folder + path.sep)) return null;
    const stat = await fs.promises.stat(real);
    return stat.isFile() ? { path: real, stat } : null;
  } catch {
    return null;
  }
}

function acceptedEncodings(header) {
  const accepted = new Set();
  for (const token of (header || "").split(",")) {
    const [name, ...parameters] = token.split(";").map((part) => part.trim().toLowerCase());
    const q = parameters.find((parameter) => parameter.startsWith("q="));
    if (name && !(q && parseFloat(q.slice(2)) === 0)) accepted.add(name);
  }
  return accepted;
}

async function find(root, segments, acceptEncoding) {
  let folder;
  try {
    folder = await fs.promises.realpath(path.join(root, segments[0]));
  } catch {
    return null;
  }
  const original = path.join(folder, ...segments.slice(1));
  const accepted = acceptedEncodings(acceptEncoding);
  for (const [encoding, suffix] of ENCODINGS) {
    if (!accepted.has(encoding)) continue;
    const compressed = await inside(folder, original + suffix);
    if (compressed) return { ...compressed, encoding, contentName: original };
  }
  const plain = await inside(folder, original);
  return plain && { ...plain, encoding: null, contentName: original };
}

function etag(found) {
  // The encoding in it too: a cache must not take one encoding's bytes for another's.
  const { size, mtimeMs } = found.stat;
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}-${found.encoding || "identity"}"`;
}

function matches(ifNoneMatch, tag) {
  return ifNoneMatch.split(",").some((candidate) => {
    const trimmed = candidate.trim();
    return trimmed === "*" || trimmed.replace(/^W\//, "") === tag;
  });
}

function answer(res, status, text, headers = {}) {
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

// Answers a request under PREFIX from ``root``; ``onNotebookOrigin``: the
// files came out of a notebook's image, so they are served on notebooks'
// origins only, as the app did (pool/origins.py).
export async function serveLabStatic(root, req, res, onNotebookOrigin) {
  if (!onNotebookOrigin) return answer(res, 404, "Not found");
  if (req.method !== "GET" && req.method !== "HEAD") return answer(res, 405, "Only GET and HEAD", { Allow: "GET, HEAD" });
  let found;
  try {
    found = await find(root, relativePath(req.url), req.headers["accept-encoding"]);
  } catch (e) {
    if (e instanceof Refusal) return answer(res, e.status, e.message);
    throw e;
  }
  if (!found) return answer(res, 404, "no such file");
  const tag = etag(found);
  const headers = { ...COMMON_HEADERS, ETag: tag };
  if (req.headers["if-none-match"] && matches(req.headers["if-none-match"], tag)) {
    res.writeHead(304, headers);
    return res.end();
  }
  headers["Content-Type"] = CONTENT_TYPES[path.extname(found.contentName).toLowerCase()] || "application/octet-stream";
  headers["Content-Length"] = found.stat.size;
  if (found.encoding) headers["Content-Encoding"] = found.encoding;
  res.writeHead(200, headers);
  if (req.method === "HEAD") return res.end();
  const stream = fs.createReadStream(found.path);
  stream.on("error", () => res.destroy());
  res.on("close", () => stream.destroy());
  stream.pipe(res);
}
