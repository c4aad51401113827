"""Who may take a notebook from a landing page (pool/visitors.py), through
Django's test client: rows only. The same rules against the real stack, with
curl-like clients and Chromium, are in tests/integration/test_drain.py."""

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from pool import visitors
from pool.models import Container, Event, Session
from pool.visitors import COOKIE_CHECK, LINK_PREVIEW_AGENTS, VISITOR_COOKIE
from tests.factories import ContainerFactory, PoolFactory, continue_url, on_notebook_origin, unused_address

pytestmark = pytest.mark.django_db

# Real user agents of link expanders, as they announce themselves.
PREVIEW_AGENTS = [
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Slack-ImgProxy (+https://api.slack.com/robots)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/100.0 Safari/537.36 Edg/100.0 MicrosoftPreview/2.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) BingPreview/1.0b",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.12026; Pro)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "WhatsApp/2.23.20.0 A",
    "TelegramBot (like TwitterBot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mattermost-Bot/1.1",
    "Mozilla/5.0 (compatible; Zoombot/1.0)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; Google-InspectionTool/1.0)",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
    "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
    "Mozilla/5.0 (compatible; Pinterestbot/1.0; +http://www.pinterest.com/bot.html)",
    "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
    "Iframely/1.3.1 (+https://iframely.com/docs/about)",
]
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


@pytest.fixture
def pool():
    pool = PoolFactory(capacity=3)
    ContainerFactory.create_batch(3, pool=pool)
    return pool


def assert_nothing_taken():
    assert Session.objects.count() == 0
    assert Container.objects.ready().count() == 3


def test_a_request_without_the_cookie_gets_it_and_a_page_that_continues_to_the_same_url(pool):
    response = Client().get("/spawn/notebooks/intro.ipynb?x=1")
    assert response.status_code == 200
    html = response.content.decode()
    next_url = continue_url(response)
    location = urlsplit(next_url)
    assert location.path == "/spawn/notebooks/intro.ipynb"
    assert parse_qs(location.query)["x"] == ["1"] and COOKIE_CHECK in parse_qs(location.query)
    # With JavaScript, and without it.
    assert 'window.location.replace("/spawn/notebooks/intro.ipynb?x\\u003D1\\u0026tmpnb_cookie_check\\u003D' in html
    assert '<noscript><meta http-equiv="refresh" content="0;url=' in html
    assert VISITOR_COOKIE in response.cookies
    # Only that cookie: the page has no form (no CSRF token), it goes on at once.
    assert set(response.cookies) == {VISITOR_COOKIE}
    assert_nothing_taken()


def test_the_cookie_steps_page_is_kept_per_url_and_language_and_each_visitor_gets_a_cookie_of_its_own(pool, monkeypatch):
    monkeypatch.setattr(visitors.time, "time", lambda: 1_800_000_000.0)  # a burst: every visitor in the same second
    first, second = Client().get("/spawn/"), Client().get("/spawn/")
    assert first.content == second.content
    assert first.cookies[VISITOR_COOKIE].value != second.cookies[VISITOR_COOKIE].value
    assert urlsplit(continue_url(Client().get("/spawn/notebooks/a.ipynb"))).path == "/spawn/notebooks/a.ipynb"
    french = Client().get("/spawn/", headers={"Accept-Language": "fr"}).content.decode()
    assert "Ouverture de votre notebook" in french and continue_url(french) == continue_url(first)
    assert "Opening your notebook" in Client().get("/spawn/").content.decode()
    assert_nothing_taken()


def test_a_browser_that_comes_back_with_the_cookie_lands_in_its_notebook():
    pool = PoolFactory(capacity=1)
    container = ContainerFactory(pool=pool)
    browser = Client()
    back = browser.get(continue_url(browser.get("/spawn/notebooks/intro.ipynb")))
    assert back.status_code == 302
    assert back["Location"] == on_notebook_origin(container.url_for("notebooks/intro.ipynb"))
    assert Session.objects.get().container == container


def test_a_client_that_comes_back_without_the_cookie_is_told_and_takes_nothing(pool):
    page = Client().get(continue_url(Client().get("/")))
    assert page.status_code == 200 and "did not keep our cookie" in page.content.decode()
    assert_nothing_taken()


def test_a_json_client_without_the_cookie_gets_it_and_is_asked_to_come_back_with_it(pool):
    api_client = Client()
    answer = api_client.get("/", headers={"Accept": "application/json"})
    assert answer.status_code == 403 and answer.json()["status"] == "cookies-required"
    assert VISITOR_COOKIE in answer.cookies
    assert_nothing_taken()
    assert api_client.get("/", headers={"Accept": "application/json"}).status_code == 302  # with the cookie
    assert Session.objects.count() == 1


def test_a_cookie_check_from_an_old_link_starts_the_cookie_step_again(pool):
    copied = f"/?{COOKIE_CHECK}={int(time.time()) - 3600}"
    assert "Opening your notebook" in Client().get(copied).content.decode()


def test_cookieless_requests_take_nothing(pool):
    for n in range(25):  # a thousand, against the real stack: tests/integration/test_drain.py
        for url in ("/", "/spawn/", f"/spawn/notebooks/{n}.ipynb", f"/p/{pool.name}/"):
            # Following the page's link without a cookie jar.
            assert "did not keep our cookie" in Client().get(continue_url(Client().get(url))).content.decode()
    assert_nothing_taken()


@pytest.mark.parametrize("url", ["/", "/spawn/", "/spawn/notebooks/intro.ipynb"])
def test_head_never_takes_a_notebook(client, pool, url):
    response = client.head(url)
    assert response.status_code == 200
    assert Client().head(url).status_code == 200
    assert_nothing_taken()


@pytest.mark.parametrize("agent", PREVIEW_AGENTS)
def test_link_previews_get_opengraph_tags_and_take_nothing(client, pool, agent):
    for browser in (client, Client()):  # with and without the visitor cookie
        response = browser.get("/spawn/notebooks/intro.ipynb", headers={"User-Agent": agent}, follow=True)
        html = response.content.decode()
        assert response.status_code == 200
        assert '<meta property="og:title" content="Jupyter notebooks">' in html
        assert '<meta property="og:url" content="http://testserver/spawn/notebooks/intro.ipynb">' in html
        assert 'property="og:description"' in html
    assert_nothing_taken()


def test_every_listed_agent_is_tested():
    tested = " ".join(PREVIEW_AGENTS).lower()
    untested = [agent for agent in LINK_PREVIEW_AGENTS if agent.lower() not in tested]
    assert set(untested) <= {"ms-office", "Google-PageRenderer", "meta-externalagent", "vkShare", "Viber", "SnapchatPreview", "bitlybot"}


def test_a_named_pools_preview_carries_its_name(client):
    pool = PoolFactory(name="pydata")
    html = client.get("/p/pydata/", headers={"User-Agent": "Slackbot-LinkExpanding 1.0"}).content.decode()
    assert '<meta property="og:title" content="pydata · Jupyter notebooks">' in html
    assert not pool.containers.exists()


def test_more_preview_agents_can_be_configured(client, pool, settings):
    settings.TMPNB_PREVIEW_AGENTS = ["ChatThing"]
    assert "og:title" in client.get("/", headers={"User-Agent": "ChatThing/3.0"}).content.decode()
    assert_nothing_taken()
    assert client.get("/", headers={"User-Agent": CHROME}).status_code == 302
    assert Session.objects.count() == 1


# --- the access code -----------------------------------------------------------


@pytest.fixture
def coded_pool(pool):
    pool.access_code = "tulip-42"
    pool.save()
    return pool


def test_a_pool_with_a_code_asks_for_it_and_takes_nothing(client, coded_pool):
    response = client.get("/spawn/notebooks/intro.ipynb")
    assert response.status_code == 200
    assert 'name="code"' in response.content.decode() and 'name="csrfmiddlewaretoken"' in response.content.decode()
    assert client.get("/", headers={"Accept": "application/json"}).status_code == 401
    assert_nothing_taken()


def test_the_right_code_lands_and_a_reload_does_not_ask_again(client, coded_pool):
    response = client.post("/spawn/notebooks/intro.ipynb", {"code": " tulip-42 "})
    assert response.status_code == 303 and response["Location"] == "/spawn/notebooks/intro.ipynb"
    landed = client.get(response["Location"])
    assert landed.status_code == 302 and landed["Location"].startswith(on_notebook_origin("/user/"))
    assert client.get("/").status_code == 302  # a reload: the same notebook, no form
    assert Session.objects.count() == 1
    cookie = next(value for name, value in client.cookies.items() if name.startswith("tmpnb_code"))
    assert "tulip-42" not in cookie.value


def test_a_wrong_code_is_refused_with_a_message(client, coded_pool):
    response = client.post("/", {"code": "tulip-41"})
    assert response.status_code == 403
    assert "That code is not right" in response.content.decode()
    assert client.get("/").status_code == 200  # still asked
    assert_nothing_taken()


def test_the_code_form_checks_csrf(coded_pool):
    browser = Client(enforce_csrf_checks=True)
    browser.get("/")  # the cookie step
    assert browser.post("/", {"code": "tulip-42"}).status_code == 403
    assert_nothing_taken()


def test_a_new_code_asks_everyone_again(client, coded_pool):
    client.post("/", {"code": "tulip-42"})
    coded_pool.access_code = "rose-7"
    coded_pool.save()
    assert 'name="code"' in client.get("/").content.decode()


def test_guesses_at_the_code_are_rate_limited(client, coded_pool, settings):
    settings.CACHES = {"default": {"BACKEND": "tests.fakes.CountingCache"}}
    settings.TMPNB_ACCESS_CODE_RATE = "3/m"
    address, other = unused_address(), unused_address()
    for _ in range(3):
        assert client.post("/", {"code": "nope"}, REMOTE_ADDR=address).status_code == 403
    limited = client.post("/", {"code": "tulip-42"}, REMOTE_ADDR=address)
    assert limited.status_code == 429 and "Too many attempts" in limited.content.decode()
    assert client.post("/", {"code": "tulip-42"}, REMOTE_ADDR=other).status_code == 303


def test_the_code_never_reaches_the_event_log(client, coded_pool):
    client.post("/", {"code": "tulip-41"})
    client.post("/", {"code": "tulip-42"})
    client.get("/")
    assert Event.objects.exists()
    for event in Event.objects.all():
        assert "tulip" not in f"{event.message} {event.details} {event.actor}"


def test_the_api_keeps_its_token_without_the_code(client, coded_pool, settings):
    settings.TMPNB_API_TOKEN = "api-secret"
    response = Client().post("/api/spawn", headers={"Authorization": "token api-secret"})
    assert response.status_code == 201
