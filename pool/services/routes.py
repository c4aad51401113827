"""A container's route in the proxy: /user/<id> to the container, added once
it answers and deleted as it ends."""

import logging

from pool.models import Container
from proxyapi import ProxyError, get_proxy

log = logging.getLogger(__name__)


def route_container(container: Container) -> None:
    """Route /user/<id> to the container; the route names its container and
    pool, so that a reconcile of one pool knows which stray routes are its own."""
    get_proxy().add_route(container.route_path, container.target, container=container.name, pool=container.pool.name)


def unroute_container(container: Container) -> None:
    """Delete the container's route. A failure is logged, not raised: the
    reconciler deletes the routes left behind."""
    try:
        get_proxy().delete_route(container.route_path)
    except ProxyError as error:
        log.warning("could not delete the route of %s: %s", container.name, error)
