"""Resume codes: a short code a participant can read aloud or write down
(``blue-otter-lantern-4271``) that carries their notebook to another device
(README "Participants' work").

A code is an adjective, two nouns and four digits, drawn with ``secrets``
from the lists in pool/resume_words (256 adjectives, 512 nouns):
256 x 512 x 512 x 10,000 codes, 39.3 bits. It is made the first time it is
shown, and works for TMPNB_RESUME_HOURS. The database finds a typed code by a
hash keyed with the secret key, so no comparison (the index's, the rate
limit's) ever runs on a code's own characters, and no log or cache holds one.
"""

import functools
import math
import re
import secrets
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from pool.models import Container, Event, Session, Snapshot, visitor_tag
from pool.services import snapshots
from pool.services.events import record_event

WORDS = Path(__file__).resolve().parent.parent / "resume_words"
DIGITS = 4
CODE = re.compile(rf"^[a-z]+-[a-z]+-[a-z]+-\d{{{DIGITS}}}$")
TYPED_MAX = 100  # characters: longer is no code, and is not looked at
DRAWS = 5  # codes drawn before giving up: two alike in 2^39 is for a broken random source


@functools.cache
def word_lists() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The adjectives and the nouns codes are made of."""
    return tuple((WORDS / "adjectives.txt").read_text().split()), tuple((WORDS / "nouns.txt").read_text().split())


def entropy_bits() -> float:
    adjectives, nouns = word_lists()
    return math.log2(len(adjectives) * len(nouns) ** 2 * 10**DIGITS)


def new_code() -> str:
    adjectives, nouns = word_lists()
    number = f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"
    return "-".join([secrets.choice(adjectives), secrets.choice(nouns), secrets.choice(nouns), number])


def normalized(typed: str) -> str | None:
    """A typed code in the form codes are made in: any case, the words apart by
    spaces, hyphens or anything else, the digits stuck to the last word or not;
    None if it cannot be a code."""
    if len(typed) > TYPED_MAX:
        return None
    code = "-".join(re.findall(r"[a-z]+|[0-9]+", typed.lower()))
    return code if CODE.match(code) else None


def code_key(code: str) -> str:
    """What a code is found by, and counted under by the rate limit."""
    return salted_hmac("tmpnb.resume-code", code).hexdigest()


def _oldest_valid(now: datetime) -> datetime:
    return now - timedelta(hours=settings.TMPNB_RESUME_HOURS)


def code_for(session: Session, *, now: datetime | None = None) -> str:
    """The resume code of ``session``, made when first asked for (and anew
    once expired). A conditional update makes it: of two requests at once,
    one code wins and both show it."""
    now = now or timezone.now()
    if session.resume_code and session.resume_made_at and session.resume_made_at > _oldest_valid(now):
        return session.resume_code
    for _ in range(DRAWS):
        code = new_code()
        try:
            with transaction.atomic():
                made = Session.objects.filter(pk=session.pk, resume_code=session.resume_code).update(
                    resume_code=code, resume_key=code_key(code), resume_made_at=now
                )
        except IntegrityError:  # another session has this one: draw again
            continue
        if not made:  # another request made one first
            session.refresh_from_db(fields=["resume_code", "resume_key", "resume_made_at"])
            return code_for(session, now=now)
        session.resume_code, session.resume_key, session.resume_made_at = code, code_key(code), now
        return code
    raise RuntimeError(f"no unused resume code in {DRAWS} draws")


def find(typed: str, *, now: datetime | None = None) -> Session | None:
    """The session whose code was typed, if it is one and has not expired."""
    code = normalized(typed)
    if code is None:
        return None
    valid = Session.objects.filter(resume_key=code_key(code), resume_made_at__gt=_oldest_valid(now or timezone.now()))
    return valid.select_related("container__pool").first()


def holders_session(visitor: str | None, *, now: datetime | None = None) -> Session | None:
    """The session whose code /resume/ shows ``visitor`` (made now if it has
    none): their live notebook's, else that of their last ended one whose
    saved work a code could still bring back."""
    if not visitor:
        return None
    theirs = Session.objects.filter(visitor=visitor).select_related("container")
    session = theirs.active().first() or theirs.order_by("-ended_at").first()
    if session is None or not (session.is_active or saved_work(session, now=now)[0] != GONE):
        return None
    code_for(session, now=now)
    return session


def ended_code(container: Container, visitor: str | None, *, now: datetime | None = None) -> str | None:
    """The code the ended page of ``container`` shows ``visitor``: only if
    they held it, and only while its saved work could come back with it."""
    session = visitor and Session.objects.filter(container=container, visitor=visitor).select_related("container").first()
    if not session or saved_work(session, now=now)[0] == GONE:
        return None
    return code_for(session, now=now)


def expires_at(session: Session) -> datetime | None:
    if session.resume_made_at is None:
        return None
    return session.resume_made_at + timedelta(hours=settings.TMPNB_RESUME_HOURS)


KEPT, SAVING, GONE = "kept", "saving", "gone"


def saved_work(session: Session, *, now: datetime | None = None) -> tuple[str, Snapshot | None]:
    """What a code of ended ``session`` can bring back: (KEPT, its snapshot)
    when its saved work is kept and was never put into another notebook
    (whose own code leads there then); SAVING while the copy runs; else GONE."""
    work = snapshots.ended_work(session.container, session.visitor, now)
    if work is not None and work[0] == "saving":
        return SAVING, None
    if work is None or work[0] != "kept" or work[1] is None or work[1].restore_asked_at is not None:
        return GONE, None
    return KEPT, work[1]


def carry_code(*, source: Session, target: Session) -> bool:
    """Move the code of ``source`` (an ended session) to ``target`` (the one
    its saved work went into), so that a participant keeps one code across
    a cull. Not when ``target`` has a code of its own."""
    with transaction.atomic():
        row = Session.objects.select_for_update().filter(pk=source.pk, resume_code__isnull=False).values("resume_code", "resume_key", "resume_made_at").first()
        if row is None or Session.objects.filter(pk=target.pk, resume_code__isnull=False).exists():
            return False
        Session.objects.filter(pk=source.pk).update(resume_code=None, resume_key=None, resume_made_at=None)
        Session.objects.filter(pk=target.pk).update(**row)
    return True


def record_resume(*, session: Session, visitor: str | None, into: Container | None = None) -> Event:
    """The event log's row for a code used: who used it (a visitor tag), never the code."""
    if into is None:
        message = f"{session.container.name} opened with its resume code"
    else:
        message = f"work of {session.container.name} resumed with its code into {into.name}"
    return record_event(Event.Kind.RESUME, message, container=into or session.container, session=session, actor=visitor_tag(visitor) if visitor else "")
