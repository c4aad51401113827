"""A small client for configurable-http-proxy's REST API.

This package is the only code that talks to the proxy: the rest of tmpnb asks
it for routes and gets :class:`Route` values back.
"""

from proxyapi.client import ProxyClient, ProxyError, Route, get_proxy

__all__ = ["ProxyClient", "ProxyError", "Route", "get_proxy"]
