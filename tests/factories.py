import html
import json
import os
import re
import secrets

import factory
from django.conf import settings
from django.core import signing
from django.forms import model_to_dict
from django.test import Client
from django.utils import timezone

from pool.command import CLASSIC_IMAGE, DEFAULT_IMAGE
from pool.models import Container, Event, Pool, QueueEntry, Session
from pool.visitors import VISITOR_COOKIE
from tests.stack import TINY_COMMAND, TINY_IMAGE

# JupyterLab 4 on jupyter-server 2; TMPNB_TEST_JUPYTER_IMAGE names another
# build of it (deploy/test builds that tag), so a branch that changes the
# image tests its own without replacing the one other runs use.
JUPYTER_IMAGE = os.environ.get("TMPNB_TEST_JUPYTER_IMAGE") or DEFAULT_IMAGE
CLASSIC_JUPYTER_IMAGE = CLASSIC_IMAGE  # Debian's Notebook 6


def new_visitor(client):
    """Make Django's test ``client`` a new browser past the cookie step: no
    cookies but a fresh visitor cookie, as after the landing page's first
    redirect (pool/visitors.py)."""
    client.cookies.clear()
    client.cookies[VISITOR_COOKIE] = signing.get_cookie_signer(salt=VISITOR_COOKIE + VISITOR_COOKIE).sign(secrets.token_hex(16))
    return client


def on_notebook_origin(path):
    """``path`` on the notebooks' origin as Django's test client reaches the
    service (host testserver): the proxy's notebook port (pool/origins.py)."""
    return f"http://testserver:{settings.TMPNB_NOTEBOOK_PORT}{path}"


def unused_address():
    """A client address no other test used (198.18.0.0/15, set aside for tests):
    for counts kept in a Redis that outlives one test."""
    return f"198.{18 + secrets.randbelow(2)}.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def continue_url(page):
    """Where the cookie step's page (a response's text or content) continues by itself."""
    text = page if isinstance(page, str) else page.content.decode()
    return html.unescape(re.search(r'id="continue" class="button" href="([^"]+)"', text).group(1))


class PoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pool
        django_get_or_create = ["name"]

    name = "default"
    image = TINY_IMAGE
    command = TINY_COMMAND
    capacity = 2
    mem_limit = "64m"
    redirect_uri = "/tree"


class ContainerFactory(factory.django.DjangoModelFactory):
    """A row only: no Docker container behind it (for tests of the rules)."""

    class Meta:
        model = Container

    pool = factory.SubFactory(PoolFactory)
    path_id = factory.LazyFunction(lambda: secrets.token_hex(6))
    name = factory.LazyAttribute(lambda c: f"tmpnb-{settings.TMPNB_INSTALLATION}-{c.pool.name}-{c.path_id}")
    token = factory.LazyFunction(lambda: secrets.token_urlsafe(24))
    host_ip = "127.0.0.1"
    host_port = factory.Sequence(lambda n: 40000 + n)
    state = Container.State.READY
    ready_at = factory.LazyFunction(timezone.now)


class SessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Session

    visitor = factory.LazyFunction(lambda: secrets.token_hex(16))
    container = factory.SubFactory(ContainerFactory, state=Container.State.ASSIGNED)


def past_visitors(pool, n, *, at=None):
    """n visitors the pool has served (history, as TMPNB_HISTORY_DAYS keeps
    it): each a gone container, an ended session, a served place in the queue
    and two events, all at ``at`` (now unless given). Rows only, made in a few
    statements."""
    now = at or timezone.now()
    gone = Container.objects.bulk_create(
        Container(
            pool=pool,
            name=f"{pool.name}-gone-{i}",
            path_id=f"{pool.name}-g{i}",
            state=Container.State.GONE,
            created_at=now,
            ready_at=now,
            assigned_at=now,
            ended_at=now,
        )
        for i in range(n)
    )
    Session.objects.bulk_create(
        Session(visitor=f"{pool.name}-past-{i}", container=c, started_at=now, last_activity=now, ended_at=now, end_reason=Session.EndReason.CULLED_IDLE)
        for i, c in enumerate(gone)
    )
    QueueEntry.objects.bulk_create(QueueEntry(pool=pool, visitor=f"{pool.name}-past-{i}", joined_at=now, served_at=now) for i in range(n))
    Event.objects.bulk_create(Event(kind=kind, pool=pool, message="past", time=now) for kind in (Event.Kind.SPAWN, Event.Kind.ASSIGNMENT) for _ in range(n))
    return pool


def pool_admin_form(pool, **fields):
    """The POST of a pool's admin change form, with no schedule rows unless given."""
    form = {k: v for k, v in model_to_dict(pool).items() if v is not None and v is not False}
    form.update({"schedules-TOTAL_FORMS": 0, "schedules-INITIAL_FORMS": 0})
    return form | fields


def from_the_banner(method, session, what, body=None, *, token=None, settings, **headers):
    """A request of the banner inside ``session``'s JupyterLab: on the notebook's origin, with its token."""
    token = session.container.token if token is None else token
    return Client().generic(
        method,
        f"/api/notebooks/{session.container.path_id}/{what}",
        json.dumps(body) if body is not None else "",
        content_type="application/json",
        HTTP_HOST=f"testserver:{settings.TMPNB_NOTEBOOK_PORT}",
        HTTP_AUTHORIZATION=f"token {token}",
        **headers,
    )


def notebook_folder(folder, name, source):
    """``folder`` holding notebook ``name`` of one code cell of ``source``,
    owned by the JupyterLab image's user, to mount into a notebook."""
    cell = {"cell_type": "code", "execution_count": None, "id": "cell", "metadata": {}, "outputs": [], "source": source}
    kernelspec = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    folder.mkdir()
    (folder / name).write_text(json.dumps({"cells": [cell], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}))
    for path in (folder, folder / name):
        os.chown(path, 1000, 1000)  # the image's jovyan
    return folder
