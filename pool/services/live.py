"""Join live: a helper works in a participant's JupyterLab with them, in
real time (jupyter-collaboration), once the participant says yes.

A helper asks from the room view; the participant's banner asks them
(Accept / Decline) and, once they accept, says who is there until the time
limit (TMPNB_LIVE_HELP_MINUTES), with a button to end it. The helper then
opens the notebook by a one-time link the service makes at that moment: a
fresh key whose hash the service puts into the participant's server through
its own channel (notebook_api, with the notebook's token), where the image's
identity provider (deploy/images/tmpnb_invitations.py) lets the key's holder
in once, with a cookie of their own, until the time limit or until the
invitation is deleted. The helper never holds the participant's token or
cookie. Only pools with live_help run JupyterLab with real-time
collaboration on, and only they offer it.

Every ask, answer, join and end is an event; an ask not answered within
ASK_SECONDS lapses; a session takes ASKS_PER_WINDOW asks per ASK_WINDOW
at most (declined ones count), so a participant is not pestered.
"""

import hashlib
import logging
import secrets
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.utils import timezone

from pool.models import Event, LiveInvitation, Session
from pool.services import notebook_api
from pool.services.events import record_event

log = logging.getLogger(__name__)

ASK_SECONDS = 120
ASKS_PER_WINDOW = 3
ASK_WINDOW = timedelta(minutes=10)
KEY_ARGUMENT = "tmpnb-invitation"  # deploy/images/tmpnb_invitations.py

State = LiveInvitation.State


class LiveError(ValueError):
    """What a helper or participant is told when live help cannot go on."""


def current(session: Session, *, now: datetime | None = None) -> LiveInvitation | None:
    """The session's open invitation (asked and not yet lapsed, or accepted
    and within its time limit); an ask or a stay past its time is closed
    here, with its event, as it is found."""
    now = now or timezone.now()
    invitation = LiveInvitation.objects.filter(session=session, state__in=[State.ASKED, State.ACCEPTED]).first()
    if invitation is None:
        return None
    if invitation.state == State.ASKED and invitation.asked_at + timedelta(seconds=ASK_SECONDS) <= now:
        _close(invitation, State.LAPSED, by="", now=now, what=f"{invitation.helper}'s ask to join live was not answered")
        return None
    if invitation.state == State.ACCEPTED and invitation.ends_at is not None and invitation.ends_at <= now:
        _close(invitation, State.ENDED, by="time limit", now=now, what=f"{invitation.helper}'s live help reached its time limit")
        return None
    return invitation


def open_ones(sessions: list[Session], *, now: datetime | None = None) -> dict[int, LiveInvitation]:
    """The open invitation of each of ``sessions`` that has one, in one query
    (for the room view; those past their time are closed by ``current``)."""
    now = now or timezone.now()
    found = LiveInvitation.objects.filter(session__in=sessions, state__in=[State.ASKED, State.ACCEPTED])
    return {invitation.session_id: invitation for invitation in found if _is_open(invitation, now)}


def _is_open(invitation: LiveInvitation, now: datetime) -> bool:
    if invitation.state == State.ASKED:
        return invitation.asked_at + timedelta(seconds=ASK_SECONDS) > now
    return invitation.state == State.ACCEPTED and invitation.ends_at is not None and invitation.ends_at > now


def ask(session: Session, *, helper: str, now: datetime | None = None) -> LiveInvitation:
    """``helper`` (an organiser's user name, which the participant sees)
    asks to join ``session`` live; LiveError if the pool does
    not offer it, someone is already asked or there, or too many asks."""
    now = now or timezone.now()
    if not session.container.pool.live_help:
        raise LiveError("This pool does not offer live help (turn on live_help in the pool).")
    open_one = current(session, now=now)
    if open_one is not None:
        raise LiveError(f"{open_one.helper} is already {'asking' if open_one.state == State.ASKED else 'with this participant'}.")
    # One participant at a time: without TMPNB_NOTEBOOK_DOMAIN every notebook
    # shares one origin, where a participant's script could use the helper's
    # cookie for another participant's server if both were open.
    elsewhere = [
        other
        for other in LiveInvitation.objects.filter(helper=helper, state__in=[State.ASKED, State.ACCEPTED]).select_related("session")
        if current(other.session, now=now)
    ]
    if elsewhere:
        raise LiveError(f"You are already asking or with {elsewhere[0].session.display_name or elsewhere[0].session.visitor_tag}: end that first.")
    if LiveInvitation.objects.filter(session=session, asked_at__gt=now - ASK_WINDOW).count() >= ASKS_PER_WINDOW:
        raise LiveError(f"This participant was asked {ASKS_PER_WINDOW} times in {ASK_WINDOW.seconds // 60} minutes; wait before asking again.")
    invitation = LiveInvitation.objects.create(session=session, helper=helper, asked_at=now)
    _record(invitation, f"{invitation.helper} asked to join live", actor=helper, step="asked")
    return invitation


def answer(session: Session, accept: bool, *, now: datetime | None = None) -> LiveInvitation:
    """The participant's yes (the time limit starts) or no to the open ask."""
    now = now or timezone.now()
    invitation = current(session, now=now)
    if invitation is None or invitation.state != State.ASKED:
        raise LiveError("Nobody is asking to join.")
    if not accept:
        _close(invitation, State.DECLINED, by=session.visitor_tag, now=now, what=f"{invitation.helper}'s ask to join live was declined")
        return invitation
    invitation.state, invitation.answered_at = State.ACCEPTED, now
    invitation.ends_at = now + timedelta(minutes=settings.TMPNB_LIVE_HELP_MINUTES)
    invitation.save(update_fields=["state", "answered_at", "ends_at"])
    _record(invitation, f"{invitation.helper} may join live until {invitation.ends_at:%H:%M} UTC", actor=session.visitor_tag, step="accepted")
    return invitation


def minutes_left(invitation: LiveInvitation, *, now: datetime | None = None) -> int:
    """Whole minutes (at least 1) before an accepted invitation's time limit."""
    left = (invitation.ends_at or timezone.now()) - (now or timezone.now())
    return max(1, round(left.total_seconds() / 60))


def participant_says(session: Session, said: object) -> None:
    """What the participant's banner sends: "accept", "decline" or "end"."""
    if said == "end":
        end(session, by=session.visitor_tag)
    elif said in ("accept", "decline"):
        answer(session, said == "accept")
    else:
        raise LiveError('answer must be "accept", "decline" or "end"')


def join(invitation: LiveInvitation, *, helper: str, now: datetime | None = None) -> str:
    """A one-time key that lets ``helper`` into the participant's server
    until the time limit, put there now; LiveError if the invitation is not
    theirs and accepted, or the server did not take it."""
    now = now or timezone.now()
    if invitation.helper != helper or current(invitation.session, now=now) != invitation or invitation.state != State.ACCEPTED or invitation.ends_at is None:
        raise LiveError("The participant has not accepted this helper, or the time is over.")
    key = secrets.token_urlsafe(32)
    body = {
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "name": invitation.helper,
        "expires_at": invitation.ends_at.timestamp(),
        "participant": invitation.session.display_name,  # who the helper sees at work; empty: JupyterLab's "Anonymous ..."
    }
    try:
        status = notebook_api.send("PUT", _invitation_url(invitation), invitation.session.container.token, body)
    except requests.RequestException as error:
        raise LiveError(f"The notebook server did not answer: {error}") from None
    if status != 201:
        raise LiveError(f"The notebook server did not take the invitation (HTTP {status}); it may not run the JupyterLab image.")
    _record(invitation, f"{invitation.helper} joined live", actor=helper, step="joined")
    return key


def join_path(invitation: LiveInvitation, key: str) -> str:
    """Where the key opens the participant's JupyterLab, under its /user/<id>/ path."""
    return f"{invitation.session.container.base_path}lab?{KEY_ARGUMENT}={key}"


def end(session: Session, *, by: str, now: datetime | None = None) -> LiveInvitation:
    """End the open invitation (an unanswered ask is withdrawn): the
    participant's server drops the helper at once, websockets included."""
    now = now or timezone.now()
    invitation = current(session, now=now)
    if invitation is None:
        raise LiveError("Nobody is asking or here.")
    _close(invitation, State.ENDED, by=by, now=now, what=f"{invitation.helper}'s live help was ended by {by}")
    return invitation


def _close(invitation: LiveInvitation, state: str, *, by: str, now: datetime, what: str) -> None:
    was_accepted = invitation.state == State.ACCEPTED
    invitation.state, invitation.ended_at, invitation.ended_by = state, now, by
    invitation.save(update_fields=["state", "ended_at", "ended_by"])
    confirmed = None
    if was_accepted:  # the server may hold it: take it back (its own timer ends it at the limit anyway)
        confirmed = _withdraw(invitation)
    _record(invitation, what, actor=by, step=state, server_confirmed=confirmed)


def _withdraw(invitation: LiveInvitation) -> bool:
    """Whether the participant's server confirms the helper is out (204, or 404: never joined)."""
    try:
        status = notebook_api.send("DELETE", _invitation_url(invitation), invitation.session.container.token)
    except requests.RequestException as error:
        log.warning("live help %s: the notebook server did not answer the end: %s", invitation.pk, error)
        return False
    return status in (204, 404)


def _invitation_url(invitation: LiveInvitation) -> str:
    return f"{notebook_api.server_url(invitation.session.container)}tmpnb/invitations/{invitation.pk}"


def _record(invitation: LiveInvitation, message: str, *, actor: str, step: str, server_confirmed: bool | None = None) -> None:
    session = invitation.session
    record_event(
        Event.Kind.LIVE,
        message,
        container=session.container,
        session=session,
        actor=actor,
        invitation=invitation.pk,
        step=step,
        server_confirmed=server_confirmed,
    )
