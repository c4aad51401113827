"""Admin logins are locked for a while after too many failures of one user
name from one address (django-axes, settings in tmpnb_site/settings.py): a
stranger's wrong passwords lock neither the organiser's own address nor
anyone else's name. Each lockout is in the event log."""

import pytest
from django.test import Client

from pool.models import Event

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def three_failures(settings):
    settings.AXES_FAILURE_LIMIT = 3


def log_in(username, password, address="203.0.113.30"):
    return Client().post("/admin/login/?next=/admin/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_the_right_password_logs_in(admin_user):
    assert log_in(admin_user.username, "password").status_code == 302


def test_a_user_is_locked_at_that_address_after_n_failures_even_with_the_right_password(admin_user):
    for _ in range(2):
        assert log_in(admin_user.username, "wrong").status_code == 200  # the form again
    locked = log_in(admin_user.username, "wrong")
    assert locked.status_code == 429 and "Too many failed logins" in locked.content.decode()
    assert log_in(admin_user.username, "password").status_code == 429


def test_failures_from_elsewhere_do_not_lock_the_organiser_out(admin_user):
    for _ in range(5):
        log_in(admin_user.username, "guess", address="198.51.100.30")
    assert log_in(admin_user.username, "password", address="198.51.100.30").status_code == 429
    assert log_in(admin_user.username, "password", address="198.51.100.31").status_code == 302


def test_failures_for_other_user_names_do_not_lock_the_address(admin_user):
    for name in ("root", "organiser", "tmpnb"):
        log_in(name, "guess")
    assert log_in(admin_user.username, "password").status_code == 302


def test_each_lockout_is_in_the_event_log_once(admin_user):
    for _ in range(6):
        log_in(admin_user.username, "wrong")
    events = Event.objects.filter(kind=Event.Kind.LOCKOUT)
    assert events.count() == 1  # not one per attempt while locked
    event = events.get()
    assert event.details == {"username": admin_user.username, "address": "203.0.113.30"}
    assert "wrong" not in event.message and "after 3 failures" in event.message


def test_the_address_is_the_client_the_proxy_names(admin_user):
    for _ in range(3):
        Client().post("/admin/login/", {"username": "x", "password": "y"}, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.32")
    # Another client behind the same proxy is not locked out.
    response = Client().post(
        "/admin/login/?next=/admin/",
        {"username": admin_user.username, "password": "password"},
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.33",
    )
    assert response.status_code == 302
