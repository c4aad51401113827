"""The participant's pages in their language: from the browser's
Accept-Language, the switcher's choice, or the organiser's TMPNB_LANGUAGE."""

import re

import pytest
from django.test import Client

from pool.models import Container
from tests.factories import ContainerFactory, PoolFactory, continue_url, new_visitor

pytestmark = pytest.mark.django_db

# The headings of the waiting page and of the ended page, as each catalogue
# in locale/ has them: a missing or uncompiled catalogue shows English instead.
HEADINGS = {
    "en": ("Your notebook is on its way", "This notebook server has ended"),
    "fr": ("Votre notebook arrive", "Ce serveur de notebook est terminé"),
    "de": ("Ihr Notebook ist unterwegs", "Dieser Notebook-Server wurde beendet"),
    "es": ("Su notebook está en camino", "Este servidor de notebook ha terminado"),
    "pt": ("O seu notebook vem a caminho", "Este servidor de notebook terminou"),
    "it": ("Il tuo notebook sta arrivando", "Questo server notebook è terminato"),
    "ja": ("ノートブックを準備しています", "このノートブックサーバーは終了しました"),
    "zh-hans": ("你的笔记本正在准备中", "此笔记本服务器已结束"),
}


@pytest.fixture
def pool():
    return PoolFactory(capacity=1)


def lang_and_heading(response):
    html = response.content.decode()
    lang = re.search(r'<html lang="([^"]+)"', html).group(1)
    heading = re.search(r"<h1>(?:<span[^>]*></span> )?([^<]+)</h1>", html).group(1)
    return lang, heading


def waiting_page(client, accept_language=None):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = client.get("/", headers=headers)
    assert response.status_code == 200 and b'id="position"' in response.content
    return response


def ended_page(client, pool, accept_language=None):
    ended = ContainerFactory(pool=pool, state=Container.State.GONE)
    headers = {"Accept-Language": accept_language} if accept_language else {}
    response = client.get(f"/user/{ended.path_id}/tree", headers=headers)
    assert response.status_code == 410
    return response


@pytest.mark.parametrize("language", sorted(HEADINGS))
def test_the_waiting_and_ended_pages_come_in_the_browsers_language(client, pool, language):
    waiting, ended = HEADINGS[language]
    accept = {"zh-hans": "zh-CN,zh;q=0.9", "pt": "pt-BR,pt;q=0.9"}.get(language, f"{language};q=1, en;q=0.5")
    assert lang_and_heading(waiting_page(client, accept)) == (language, waiting)
    assert lang_and_heading(ended_page(client, pool, accept)) == (language, ended)


def test_an_unknown_language_falls_back_to_the_default(client, pool):
    assert lang_and_heading(waiting_page(client, "tlh, ru;q=0.8")) == ("en", HEADINGS["en"][0])
    assert lang_and_heading(ended_page(client, pool, "tlh")) == ("en", HEADINGS["en"][1])


def test_the_organisers_language_is_the_default(client, pool, settings):
    settings.LANGUAGE_CODE = "de"  # TMPNB_LANGUAGE=de
    assert lang_and_heading(waiting_page(client)) == ("de", HEADINGS["de"][0])
    assert lang_and_heading(ended_page(client, pool, "tlh")) == ("de", HEADINGS["de"][1])
    assert lang_and_heading(waiting_page(client, "fr")) == ("fr", HEADINGS["fr"][0])  # the browser's own still wins


def test_the_switcher_keeps_the_chosen_language_over_the_browsers(client, pool):
    page = waiting_page(client, "fr").content.decode()
    assert '<form action="/i18n/setlang/" method="post">' in page
    assert '<option value="ja" lang="ja">日本語</option>' in page
    response = client.post("/i18n/setlang/", {"language": "ja", "next": "/"}, headers={"Accept-Language": "fr"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert lang_and_heading(waiting_page(client, "fr")) == ("ja", HEADINGS["ja"][0])


def test_the_waiting_status_words_the_estimate_and_phase_in_the_visitors_language(client, pool):
    waiting_page(client, "fr")
    status = client.get("/waiting/status", headers={"Accept-Language": "fr"}).json()
    assert status["phase"] == "starting" and status["phase_text"] == "Un serveur de notebook démarre pour vous."
    assert status["estimate_seconds"] == 5  # no container measured yet: the default spawn time
    assert status["estimate_text"] == "moins d’une minute"
    html = waiting_page(client, "fr").content.decode()
    assert '<strong id="estimate">moins d’une minute</strong>' in html  # the page says it in the same words


def test_a_refusal_is_worded_in_the_visitors_language(client, pool, settings):
    settings.TMPNB_MAX_PER_IP = 1
    ContainerFactory.create_batch(2, pool=PoolFactory(name="other", capacity=2))
    assert new_visitor(client).get("/p/other/", REMOTE_ADDR="203.0.113.5").status_code == 302
    refused = new_visitor(client).get("/p/other/", REMOTE_ADDR="203.0.113.5", headers={"Accept-Language": "de"})
    assert refused.status_code == 429
    html = refused.content.decode()
    assert '<html lang="de"' in html
    assert "Von Ihrer Netzwerkadresse aus ist bereits 1 Notebook offen oder wartend" in html
    assert "TMPNB_MAX_PER_IP" in html


FRENCH = {"Accept-Language": "fr-FR,fr;q=0.9"}


def test_the_cookie_step_and_the_cookies_needed_page_come_in_the_browsers_language(pool):
    browser = Client()  # no visitor cookie yet
    step = browser.get("/", headers=FRENCH)
    assert step.status_code == 200
    assert lang_and_heading(step) == ("fr", "Ouverture de votre notebook…")
    assert '<a id="continue" class="button" href="' in step.content.decode() and ">Continuer</a>" in step.content.decode()
    refused = Client().get(continue_url(step), headers=FRENCH)  # came back without the cookie
    assert lang_and_heading(refused) == ("fr", "Votre navigateur n’a pas gardé notre cookie")
    assert "Un notebook est attribué à un navigateur qui garde les cookies" in refused.content.decode()


def test_every_answer_names_its_language_and_varies_by_the_browsers(pool):
    """Caches keep one answer per Accept-Language, and the language is the
    browser's on every path: /spawn/ and /waiting/ read as language codes to
    Django's path check, which is skipped here (no URL has a language prefix)."""
    browser = Client()
    step = browser.get("/spawn/", headers=FRENCH)
    assert lang_and_heading(step) == ("fr", "Ouverture de votre notebook…")
    status = browser.get("/waiting/status", headers=FRENCH)
    not_found = browser.get("/ja/spawn/", headers=FRENCH)
    for response in (step, status, not_found):
        assert response["Content-Language"] == "fr"
        assert "Accept-Language" in response["Vary"]
    assert not_found.status_code == 404


def test_the_access_code_form_and_its_wrong_code_message_come_in_the_browsers_language(client, pool):
    pool.access_code = "tulip-42"
    pool.save()
    form = client.get("/", headers=FRENCH)
    assert form.status_code == 200 and lang_and_heading(form) == ("fr", "Saisissez le code d’accès de l’atelier")
    html = form.content.decode()
    assert "<p>Cet atelier demande son code d’accès. L’organisateur vous le donne ; vous ne le saisissez qu’une fois.</p>" in html
    assert '<label for="code">Code d’accès</label>' in html and '<button type="submit">Continuer</button>' in html
    wrong = client.post("/", {"code": "tulip-41"}, headers=FRENCH)
    assert wrong.status_code == 403 and lang_and_heading(wrong)[0] == "fr"
    assert (
        '<p id="code-message" role="alert"><strong>Ce code n’est pas le bon. '
        "Vérifiez-le auprès de l’organisateur et réessayez.</strong></p>" in wrong.content.decode()
    )


def test_a_link_preview_comes_in_the_language_the_previewer_asks_for(pool):
    preview = Client().get("/", headers={**FRENCH, "User-Agent": "Slackbot-LinkExpanding 1.0"})
    html = preview.content.decode()
    assert '<html lang="fr"' in html and '<meta property="og:title" content="Notebooks Jupyter">' in html
    assert (
        '<meta property="og:description" content="Ouvrez ce lien dans votre navigateur pour obtenir '
        'votre propre notebook Jupyter, sans rien installer.">' in html
    )
