"""Invitations to join a participant's notebook server live, for a helper.

tmpnb's JupyterLab image runs this as a jupyter-server extension and as its
identity provider (jupyter_server_config.json). Besides the server's token,
which only the participant and the service hold, a request is let in by an
invitation the service pushed here through its own channel, with the token:

``PUT <base_url>tmpnb/invitations/<id>`` with ``{"key_sha256", "name", "expires_at"}``
    (and optionally ``"participant"``, the name the participant gave, which
    others then see them by instead of "Anonymous ...")
    adds (or replaces) invitation ``id``: whoever opens
    ``<base_url>lab?tmpnb-invitation=<key>`` once gets a login cookie of
    their own, shown to others as "Helper: <name>", until ``expires_at``
    (seconds since the epoch) or until the invitation is removed.
``DELETE <base_url>tmpnb/invitations/<id>``
    removes it: the helper's next request is refused and their open
    websockets (the shared documents, kernels, terminals) are closed.
``GET <base_url>tmpnb/invitations``
    lists the invitations and how many of each helper's websockets are open.

The key opens the server once: the cookie it gives names the invitation,
never the token, so a helper never holds the participant's credential, and
a cookie outlives neither its invitation nor its time limit. JupyterLab and
Notebook write the server's token into every page they render (for their
own API calls, which work as well by cookie): pages rendered for a helper
carry an empty one. Only the
token (the participant, the service) may change invitations; a helper may
not. Invitations live in this process only: a restarted server has none.
"""

import hashlib
import hmac
import json
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from jupyter_server.auth.identity import PasswordIdentityProvider, User
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from tornado import web, websocket
from tornado.ioloop import IOLoop

KEY_ARGUMENT = "tmpnb-invitation"
NAME_MAX = 60
HELPER_PREFIX = "tmpnb-helper-"


@dataclass
class Invitation:
    id: str
    key_sha256: str
    name: str
    expires_at: float
    used: bool = False
    sockets: "weakref.WeakSet[websocket.WebSocketHandler]" = field(default_factory=weakref.WeakSet)
    timer: Any = None

    def live(self) -> bool:
        return time.time() < self.expires_at


# One server, one participant: the invitations of this process, and the
# participant's name as the service last said it.
INVITATIONS: dict[str, Invitation] = {}
PARTICIPANT = {"name": ""}


def _sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def helper_user(invitation: Invitation) -> User:
    return User(
        username=f"{HELPER_PREFIX}{invitation.id}",
        name=invitation.name,
        display_name=f"Helper: {invitation.name}",
        initials="H",
        color="var(--jp-collaborator-color7)",
    )


def invitation_of(user: Any) -> Invitation | None:
    """The live invitation a helper's user stands on; None for anyone else."""
    username = getattr(user, "username", "")
    if not username.startswith(HELPER_PREFIX):
        return None
    invitation = INVITATIONS.get(username.removeprefix(HELPER_PREFIX))
    return invitation if invitation is not None and invitation.live() else None


def is_helper(user: Any) -> bool:
    return getattr(user, "username", "").startswith(HELPER_PREFIX)


def end_invitation(invitation_id: str) -> bool:
    """Remove an invitation and close its helper's websockets; False if there was none."""
    invitation = INVITATIONS.pop(invitation_id, None)
    if invitation is None:
        return False
    if invitation.timer is not None:
        IOLoop.current().remove_timeout(invitation.timer)
    for socket in list(invitation.sockets):
        socket.close(4403, "the invitation ended")
    return True


class InvitationIdentityProvider(PasswordIdentityProvider):
    """jupyter-server's token login, plus helpers let in by an invitation."""

    async def get_user_token(self, handler: web.RequestHandler) -> User | None:
        user = await super().get_user_token(handler)
        if user is not None:
            return user
        key = handler.get_argument(KEY_ARGUMENT, "")
        if not key:
            return None
        digest = _sha256(key)
        for invitation in INVITATIONS.values():
            if hmac.compare_digest(invitation.key_sha256, digest) and invitation.live() and not invitation.used:
                invitation.used = True  # the link opens once; the cookie it gives does the rest
                return helper_user(invitation)
        return None

    async def get_user(self, handler: web.RequestHandler) -> User | None:  # type: ignore[override]
        user = await super()._get_user(handler)
        if is_helper(user):
            invitation = invitation_of(user)
            if invitation is None:
                self.clear_login_cookie(handler)
                return None
            if isinstance(handler, websocket.WebSocketHandler):
                invitation.sockets.add(handler)
        elif user is not None and PARTICIPANT["name"]:
            name = PARTICIPANT["name"]
            return User(username=user.username, name=name, display_name=name, initials=name[:1].upper(), avatar_url=user.avatar_url, color=user.color)
        return user

    def user_to_cookie(self, user: User) -> str:
        return json.dumps({"helper": user.username.removeprefix(HELPER_PREFIX)}) if is_helper(user) else super().user_to_cookie(user)

    def user_from_cookie(self, cookie_value: str) -> User | None:
        value = json.loads(cookie_value)
        if "helper" in value:
            invitation = INVITATIONS.get(str(value["helper"]))
            return helper_user(invitation) if invitation is not None and invitation.live() else None
        return super().user_from_cookie(cookie_value)


class InvitationsHandler(APIHandler):
    """The invitations, changed by the token's holder only."""

    def _check_holder(self) -> None:
        if self.current_user is None or is_helper(self.current_user):
            raise web.HTTPError(403, "only the notebook's token may change invitations")

    @web.authenticated
    def get(self, invitation_id: str = "") -> None:
        self._check_holder()
        self.finish(
            json.dumps(
                [
                    {"id": i.id, "name": i.name, "expires_at": i.expires_at, "used": i.used, "open_sockets": len(i.sockets)}
                    for i in INVITATIONS.values()
                    if i.live()
                ]
            )
        )

    @web.authenticated
    def put(self, invitation_id: str = "") -> None:
        self._check_holder()
        if not invitation_id:
            raise web.HTTPError(404)
        try:
            body = json.loads(self.request.body or b"{}")
            key_sha256 = str(body["key_sha256"]).lower()
            name = str(body["name"]).strip()[:NAME_MAX]
            expires_at = float(body["expires_at"])
        except (ValueError, KeyError, TypeError) as error:
            raise web.HTTPError(400, f"expected key_sha256, name and expires_at: {error}") from None
        participant = str(body.get("participant") or "").strip()[:NAME_MAX]
        if len(key_sha256) != 64 or any(c not in "0123456789abcdef" for c in key_sha256) or not name:
            raise web.HTTPError(400, "key_sha256 must be 64 hex digits and name not empty")
        end_invitation(invitation_id)
        if participant:
            PARTICIPANT["name"] = participant
        invitation = Invitation(id=invitation_id, key_sha256=key_sha256, name=name, expires_at=expires_at)
        # At its time limit it ends as a DELETE would, open websockets included.
        invitation.timer = IOLoop.current().call_later(max(0.0, expires_at - time.time()), end_invitation, invitation_id)
        INVITATIONS[invitation_id] = invitation
        self.set_status(201)
        self.finish(json.dumps({"id": invitation_id}))

    @web.authenticated
    def delete(self, invitation_id: str = "") -> None:
        self._check_holder()
        if not end_invitation(invitation_id):
            raise web.HTTPError(404, "no such invitation")
        self.set_status(204)
        self.finish()


def _without_token_for_helpers(method: Any) -> Any:
    def scrubbed(self: JupyterHandler) -> dict[str, Any]:
        values = dict(method(self))
        if is_helper(self.current_user):
            values["token"] = ""
        return values

    return scrubbed


def _scrub_pages() -> None:
    """The token out of every page rendered for a helper: jupyter-server's
    template namespace, and the page config of JupyterLab and Notebook."""
    from jupyterlab_server.handlers import LabHandler
    from notebook.app import NotebookBaseHandler

    JupyterHandler.template_namespace = property(_without_token_for_helpers(JupyterHandler.template_namespace.fget))
    for handler in (LabHandler, NotebookBaseHandler):
        handler.get_page_config = _without_token_for_helpers(handler.get_page_config)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "tmpnb_invitations"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    _scrub_pages()
    base_url = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$",
        [(f"{base_url}tmpnb/invitations/?([A-Za-z0-9_-]{{0,64}})", InvitationsHandler)],
    )
