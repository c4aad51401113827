import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings

log = logging.getLogger(__name__)

# Short timeouts: a stuck proxy must not hold a web or Celery worker.
TIMEOUT = (1.0, 5.0)
RETRIES = 2
RETRY_STATUSES = {429, 500, 502, 503, 504}
# Every route we add carries this key; listing skips routes without it, so
# routes that others put into the same proxy are never touched.
MARKER = "tmpnb"


class ProxyError(Exception):
    """The proxy refused a request or could not be reached."""


@dataclass(frozen=True, kw_only=True)
class Route:
    path: str
    target: str
    last_activity: datetime | None
    data: dict[str, Any] = field(default_factory=dict)  # what the route was added with, but its target


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ProxyClient:
    """Routes of one installation in one configurable-http-proxy."""

    def __init__(self, endpoint: str, *, token: str, installation: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.installation = installation
        self._session = requests.Session()
        # The proxy's API is the installation's own: a machine-wide
        # HTTP_PROXY must not send it (and the token) to a forward proxy.
        self._session.trust_env = False
        self._session.headers["Authorization"] = f"token {token}"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.endpoint}/api/routes{quote(path)}"
        for attempt in range(RETRIES + 1):
            try:
                response = self._session.request(method, url, timeout=TIMEOUT, **kwargs)
            except requests.RequestException as error:
                problem = f"{method} {url}: {error}"
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                problem = f"{method} {url}: HTTP {response.status_code}"
            if attempt < RETRIES:
                time.sleep(0.1 * 2**attempt)
        raise ProxyError(problem)

    def answers(self) -> bool:
        """Whether the proxy answers at all. Its routes live only in its
        memory: a proxy that has stopped took them with it."""
        try:
            self._request("GET", "")
        except ProxyError:
            return False
        return True

    def add_route(self, path: str, target: str, **data: Any) -> None:
        response = self._request("POST", path, json={"target": target, MARKER: self.installation, **data})
        if response.status_code != 201:
            raise ProxyError(f"adding route {path}: HTTP {response.status_code} {response.text[:200]}")

    def delete_route(self, path: str) -> None:
        response = self._request("DELETE", path)
        if response.status_code == 404:
            log.warning("route %s was already gone from the proxy", path)
        elif response.status_code != 204:
            raise ProxyError(f"deleting route {path}: HTTP {response.status_code} {response.text[:200]}")

    def list_routes(self, inactive_since: datetime | None = None) -> dict[str, Route]:
        """Our routes by path. ``inactive_since`` keeps only routes idle since then."""
        params = {"inactive_since": inactive_since.isoformat()} if inactive_since else None
        response = self._request("GET", "", params=params)
        if response.status_code != 200:
            raise ProxyError(f"listing routes: HTTP {response.status_code} {response.text[:200]}")
        entries = _json_object(response, "listing routes")
        return {path: _route(path, entry) for path, entry in entries.items() if self._ours(entry)}

    def get_route(self, path: str) -> Route | None:
        """Our route at ``path``, or None."""
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ProxyError(f"reading route {path}: HTTP {response.status_code} {response.text[:200]}")
        entry = _json_object(response, f"reading route {path}")
        return _route(path, entry) if self._ours(entry) else None

    def _ours(self, entry: Any) -> bool:
        return isinstance(entry, dict) and entry.get(MARKER) == self.installation


def _json_object(response: requests.Response, doing: str) -> dict[str, Any]:
    """The JSON object the proxy answered with. Anything else (the page of
    whatever else answers at a wrong CONFIGPROXY_ENDPOINT) is a ProxyError,
    which the callers handle, not a JSONDecodeError, which they do not."""
    try:
        answer = response.json()
    except requests.JSONDecodeError:
        raise ProxyError(f"{doing}: the answer is not JSON: {response.text[:200]!r}") from None
    if not isinstance(answer, dict):
        raise ProxyError(f"{doing}: the answer is not a JSON object: {response.text[:200]!r}")
    return answer


def _route(path: str, entry: dict[str, Any]) -> Route:
    """One of our routes; an entry of ours of another shape is a ProxyError."""
    # "host" is the proxy's own note of a host-routed route's first segment.
    data = {k: v for k, v in entry.items() if k not in ("target", "last_activity", "host", MARKER)}
    target, last_activity = entry.get("target"), entry.get("last_activity")
    unexpected = ProxyError(f"route {path}: unexpected entry {str(entry)[:200]}")
    if not isinstance(target, str) or not isinstance(last_activity, str | None):
        raise unexpected
    try:
        return Route(path=path, target=target, last_activity=_parse_time(last_activity), data=data)
    except ValueError:
        raise unexpected from None


@functools.lru_cache(maxsize=4)
def _client(endpoint: str, token: str, installation: str) -> ProxyClient:
    return ProxyClient(endpoint, token=token, installation=installation)


def get_proxy() -> ProxyClient:
    """The client for the configured proxy; settings are read at each call, the
    connection pool is kept."""
    return _client(settings.CONFIGPROXY_ENDPOINT, settings.CONFIGPROXY_AUTH_TOKEN, settings.TMPNB_INSTALLATION)
