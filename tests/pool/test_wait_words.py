"""The waiting estimate as a person would say it, in the visitor's language."""

import pytest
from django.utils import translation

from pool.services.waiting import describe_wait


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (None, "unknown yet"),
        (0, "less than a minute"),
        (59, "less than a minute"),
        (60, "about a minute"),
        (89, "about a minute"),
        (130, "about 2 minutes"),
        (9 * 60 + 20, "about 9 minutes"),
        (23 * 60, "about 25 minutes"),  # rounded to five minutes past ten
        (41 * 60, "about 40 minutes"),
        (3555, "about an hour"),  # what the page used to show as "about 3555 s"
        (80 * 60, "about an hour"),
        (2 * 3600 + 600, "about 2 hours"),
        (5 * 3600 + 1000, "about 5 hours"),
    ],
)
def test_a_wait_reads_as_a_person_would_say_it(seconds, words):
    with translation.override("en"):
        assert describe_wait(seconds) == words


@pytest.mark.parametrize(
    ("language", "seconds", "words"),
    [
        ("fr", 130, "environ 2 minutes"),
        ("fr", 60, "environ une minute"),
        ("fr", 3555, "environ une heure"),
        ("de", 3 * 3600, "etwa 3 Stunden"),
        ("es", 20, "menos de un minuto"),
        ("pt", 130, "cerca de 2 minutos"),
        ("it", 3555, "circa un’ora"),
        ("ja", 130, "約 2 分"),
        ("zh-hans", 23 * 60, "大约 25 分钟"),
        ("fr", None, "inconnue pour l’instant"),
    ],
)
def test_a_wait_is_said_in_the_visitors_language(language, seconds, words):
    with translation.override(language):
        assert describe_wait(seconds) == words
