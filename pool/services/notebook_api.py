"""The service's own channel to a participant's notebook server: Jupyter
Server's REST API with the notebook's token, asked from the web process or
the worker, never through anyone's browser. A participant controls their
server, so every answer is read as untrusted: within a cap on its size and a
deadline, and as JSON only (a JSONDecodeError is a ValueError)."""

import contextlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import quote

import requests

from pool.models import Container

TIMEOUT = (1.0, 2.0)  # connect, then each read, in seconds
CHUNK_BYTES = 16 * 1024
GRACE_SECONDS = 0.5  # for get_json to say why it stopped at its deadline


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
            timer = threading.Timer(max(0.0, deadline - time.monotonic()), _cut, [response])
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


def get_json_by(url: str, token: str, *, deadline: float, max_bytes: int) -> Any:
    """get_json, in a thread of its own that the caller stops waiting for at
    the deadline: the timer above cannot reach a server that drips its status
    line and headers (the socket is not ours until they are read), and that
    must hold only the thread, never the page that asked."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notebook-api")
    try:
        future = executor.submit(get_json, url, token, deadline=deadline, max_bytes=max_bytes)
        return future.result(timeout=max(0.0, deadline - time.monotonic()) + GRACE_SECONDS)
    except FutureTimeout:
        raise TimeoutError("no answer in time") from None
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def send(method: str, url: str, token: str, body: Any = None) -> int:
    """A PUT or DELETE to a notebook server with its token, ``body`` as
    JSON; the status it answers (its body is not read), requests' errors as
    they come."""
    with requests.Session() as http:
        http.trust_env = False  # as in get_json
        headers = {"Authorization": f"token {token}"}
        with http.request(method, url, json=body, headers=headers, timeout=TIMEOUT, stream=True, allow_redirects=False) as response:
            return response.status_code


def _cut(response: requests.Response) -> None:
    """Shut the socket under a read at its deadline; the read may have ended, and closed it, at that very moment."""
    with contextlib.suppress(OSError, ValueError):
        response.raw.shutdown()


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
