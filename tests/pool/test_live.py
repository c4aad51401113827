"""Join live (pool/services/live.py): a helper asks from the room view, the
participant accepts or declines from their banner, the helper opens their
JupyterLab by a one-time key put into the notebook server, and either side
(or the time limit) ends it. The notebook servers are fakes here that keep
what they are told; tests/integration/test_live_help.py runs the real one."""

import hashlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from pool.command import DEFAULT_COMMAND, LIVE_HELP_OPTION, render_command
from pool.models import Event, LiveInvitation
from pool.services import live, room
from tests.factories import PoolFactory, from_the_banner

pytestmark = pytest.mark.django_db


@pytest.fixture
def pool():
    return PoolFactory(capacity=10, live_help=True)


@pytest.fixture
def held(pool, servers):
    return servers.holding(pool)


def steps(session):
    return [event.details["step"] for event in Event.objects.filter(kind=Event.Kind.LIVE, session=session).order_by("pk")]


def test_a_participant_accepts_a_helper_who_joins_by_a_key_put_into_their_server_then_ends_it(held, servers, settings, fake_proxy):
    settings.TMPNB_LIVE_HELP_MINUTES = 20
    room.set_display_name(held, "Ada")
    live.ask(held, helper="<b>helen</b>")
    said = from_the_banner("GET", held, "time-left", settings=settings).json()["live"]
    assert said == {"state": "asked", "helper": "<b>helen</b>", "message": "<b>helen</b> asks to join your notebook live, to see and edit it with you."}
    assert servers.changes == []  # nothing reaches the server before the participant says yes

    accepted = from_the_banner("POST", held, "live", {"answer": "accept"}, settings=settings)
    assert accepted.status_code == 200 and accepted.json()["live"]["state"] == "here"
    assert "for 20 more minutes" in accepted.json()["live"]["message"]
    [row] = room.room(held.container.pool)
    assert (row.live_state, row.live_helper) == ("accepted", "<b>helen</b>")

    invitation = live.current(held)
    key = live.join(invitation, helper="<b>helen</b>")
    [(method, what, body)] = servers.changes
    assert (method, what) == ("PUT", f"tmpnb/invitations/{invitation.pk}")
    assert body == {
        "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
        "name": "<b>helen</b>",
        "expires_at": invitation.ends_at.timestamp(),
        "participant": "Ada",
    }
    assert key not in str(body) and held.container.token not in str(body)
    assert live.join_path(invitation, key) == f"{held.container.base_path}lab?tmpnb-invitation={key}"

    ended = from_the_banner("POST", held, "live", {"answer": "end"}, settings=settings)
    assert ended.status_code == 200 and ended.json()["live"] is None
    assert servers.changes[-1][:2] == ("DELETE", f"tmpnb/invitations/{invitation.pk}")
    invitation.refresh_from_db()
    assert (invitation.state, invitation.ended_by) == (LiveInvitation.State.ENDED, held.visitor_tag)
    assert steps(held) == ["asked", "accepted", "joined", "ended"]
    assert Event.objects.filter(kind=Event.Kind.LIVE, details__step="ended").get().details["server_confirmed"] is True


def test_only_the_accepted_helper_joins_and_only_once_accepted(held, servers):
    invitation = live.ask(held, helper="helen")
    with pytest.raises(live.LiveError, match="not accepted"):
        live.join(invitation, helper="helen")
    live.answer(held, True)
    invitation.refresh_from_db()
    with pytest.raises(live.LiveError, match="not accepted"):
        live.join(invitation, helper="someone-else")
    assert servers.changes == []


def test_a_server_that_does_not_take_the_invitation_is_said(held, servers):
    invitation = live.ask(held, helper="helen")
    live.answer(held, True)
    servers.change_status["PUT"] = 404  # a server without tmpnb_invitations (another image)
    with pytest.raises(live.LiveError, match="HTTP 404"):
        live.join(live.current(held), helper="helen")
    assert "joined" not in steps(held) and invitation.pk


def test_a_declined_or_unanswered_ask_closes_and_asks_are_limited(held, servers):
    now = timezone.now()
    live.ask(held, helper="helen", now=now)
    with pytest.raises(live.LiveError, match="helen is already asking"):
        live.ask(held, helper="hugo", now=now)
    live.answer(held, False, now=now)
    assert live.current(held, now=now) is None
    live.ask(held, helper="helen", now=now)
    assert live.current(held, now=now + timedelta(seconds=live.ASK_SECONDS)) is None  # lapsed
    live.ask(held, helper="helen", now=now)
    live.end(held, by="helen", now=now)  # withdrawn
    with pytest.raises(live.LiveError, match="3 times in 10 minutes"):
        live.ask(held, helper="helen", now=now)
    live.ask(held, helper="helen", now=now + live.ASK_WINDOW)
    assert steps(held) == ["asked", "declined", "asked", "lapsed", "asked", "ended", "asked"]
    assert servers.changes == []  # none was accepted: the server never held one


def test_a_helper_is_with_one_participant_at_a_time(pool, servers):
    first, second = servers.holding(pool), servers.holding(pool)
    live.ask(first, helper="helen")
    with pytest.raises(live.LiveError, match="already asking or with"):
        live.ask(second, helper="helen")
    live.end(first, by="helen")
    live.ask(second, helper="helen")


def test_the_time_limit_ends_it_and_takes_the_invitation_back(held, servers, settings):
    settings.TMPNB_LIVE_HELP_MINUTES = 5
    now = timezone.now()
    live.ask(held, helper="helen", now=now)
    invitation = live.answer(held, True, now=now)
    assert invitation.ends_at == now + timedelta(minutes=5)
    assert live.current(held, now=now + timedelta(minutes=5)) is None
    invitation.refresh_from_db()
    assert (invitation.state, invitation.ended_by) == (LiveInvitation.State.ENDED, "time limit")
    assert servers.changes == [("DELETE", f"tmpnb/invitations/{invitation.pk}", None)]


def test_a_pool_without_live_help_offers_none_and_runs_without_collaboration(servers):
    session = servers.holding(PoolFactory(name="plain"))
    with pytest.raises(live.LiveError, match="does not offer live help"):
        live.ask(session, helper="helen")
    command = dict(base_path="/user/a/", port=8888, ip="0.0.0.0", token="t")
    assert LIVE_HELP_OPTION not in render_command(DEFAULT_COMMAND, **command)
    assert render_command(DEFAULT_COMMAND, **command, live_help=True).endswith(" --YDocExtension.disable_rtc=False")
    with pytest.raises(ValidationError, match="jupyter-server 2"):
        PoolFactory(name="tiny", live_help=True).full_clean()


@pytest.mark.parametrize("body, error", [({"answer": "yes"}, '"accept", "decline" or "end"'), ({"answer": "accept"}, "Nobody is asking")])
def test_bad_answers_from_the_banner_get_a_clear_error(held, settings, body, error):
    answer = from_the_banner("POST", held, "live", body, settings=settings)
    assert answer.status_code == 400 and error in answer.json()["error"]


def test_only_the_notebooks_own_page_answers(held, settings):
    live.ask(held, helper="helen")
    assert from_the_banner("POST", held, "live", {"answer": "accept"}, token="guessed", settings=settings).status_code == 404
    url = f"/api/notebooks/{held.container.path_id}/live"
    assert Client().post(url, '{"answer": "accept"}', content_type="application/json", HTTP_AUTHORIZATION=f"token {held.container.token}").status_code == 404
    assert live.current(held).state == LiveInvitation.State.ASKED


def test_from_the_room_view_a_helper_asks_then_opens_the_notebook_on_its_own_origin(held, servers, admin_client, admin_user, settings):
    url = f"/admin/room/{held.container.pool_id}/live/"
    assert admin_client.post(url, {"session": held.pk, "action": "ask"}).status_code == 302
    assert live.current(held).helper == admin_user.get_username()
    assert admin_client.get(f"/admin/room/{held.container.pool_id}/rows").json()["participants"][0]["live_state"] == "asked"
    from_the_banner("POST", held, "live", {"answer": "accept"}, settings=settings)

    opened = admin_client.post(url, {"session": held.pk, "action": "join"})
    link = urlsplit(opened["Location"])
    assert opened.status_code == 302 and link.port == settings.TMPNB_NOTEBOOK_PORT
    assert link.path == f"{held.container.base_path}lab"
    [key] = parse_qs(link.query)["tmpnb-invitation"]
    assert servers.changes[0][2]["key_sha256"] == hashlib.sha256(key.encode()).hexdigest()

    assert admin_client.post(url, {"session": held.pk, "action": "end"}).status_code == 302
    assert live.current(held) is None and servers.changes[-1][0] == "DELETE"
    assert Client().post(url, {"session": held.pk, "action": "ask"})["Location"].startswith("/admin/login/")


def test_the_banner_asks_in_the_participants_language(held, settings, fake_proxy):
    live.ask(held, helper="helen")
    answer = from_the_banner("GET", held, "time-left", settings=settings, HTTP_ACCEPT_LANGUAGE="de").json()
    assert answer["live"]["message"].startswith("helen möchte live in Ihr Notebook kommen")
    assert (answer["words"]["accept"], answer["words"]["decline"], answer["words"]["end"]) == ("Annehmen", "Ablehnen", "Beenden")
