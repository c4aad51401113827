"""The service's own channel to a participant's notebook server: Jupyter
Server's REST API with the notebook's token, asked from the web process or
the worker, never through anyone's browser. A participant controls their
server, so every answer is read as untrusted: within a cap on its size and a
deadline, and as JSON only (a JSONDecodeError is a ValueError)."""

import json
import threading
import time
from typing import Any
from urllib.parse import quote

import requests

from pool.models import Container

TIMEOUT = (1.0, 2.0)  # connect, then each read, in seconds
CHUNK_BYTES = 16 * 1024


def server_url(container: Container) -> str:
    """The root of a container's notebook server, as the service reaches it."""
    return f"{container.target}{container.base_path}"


def contents_url(container: Container, path: str) -> str:
    """The contents API's URL of ``path``, a path the caller checked with clean_path."""
    return f"{server_url(container)}api/contents/{quote(path, safe='/')}"


def clean_path(path: str) -> str:
    """A path inside the notebook server's folder, without leading or
    trailing slashes; ValueError for one that could leave the contents API
    (dot segments, backslashes, control characters)."""
    stripped = path.strip("/")
    if len(stripped) > 1024 or "\\" in stripped or any(ord(c) < 32 or ord(c) == 127 for c in stripped):
        raise ValueError("not a path in the notebook")
    if stripped and any(part in ("", ".", "..") for part in stripped.split("/")):
        raise ValueError("not a path in the notebook")
    return stripped


def get_json(url: str, token: str, *, deadline: float, max_bytes: int, params: dict[str, str] | None = None) -> Any:
    """The JSON a notebook server answers at ``url``, read ``max_bytes`` at
    most and before ``deadline`` (time.monotonic()); ValueError for any other
    answer, TimeoutError past the deadline, requests' errors as they come.

    The read timeout bounds each wait for a byte, not the body: a server
    that sends one byte a second would hold a read of 16 kB for hours. At the
    deadline a timer shuts the socket, which ends the read."""
    with requests.Session() as http:
        http.trust_env = False  # a container's address is never for a forward proxy (see spawning._container_get)
        headers = {"Authorization": f"token {token}", "Accept": "application/json"} if token else {}
        with http.get(url, params=params, headers=headers, timeout=TIMEOUT, stream=True, allow_redirects=False) as response:
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), response.raw.shutdown)
            timer.start()
            try:
                body = _read(response, deadline, max_bytes)
            except (requests.RequestException, OSError) as error:
                if time.monotonic() > deadline:  # the timer shut it
                    raise TimeoutError("no complete answer in time") from error
                raise
            finally:
                timer.cancel()
    return json.loads(body)


def _read(response: requests.Response, deadline: float, max_bytes: int) -> bytearray:
    body = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        body += chunk
        if len(body) > max_bytes:
            raise ValueError(f"an answer over {max_bytes} bytes")
        if time.monotonic() > deadline:
            raise TimeoutError("no complete answer in time")
    if time.monotonic() > deadline:  # the timer shut it: what was read is cut short
        raise TimeoutError("no complete answer in time")
    return body
