"""The room view: one row per participant holding a notebook of a pool, for
the organisers (the admin's room page, which refreshes itself), and what a
participant tells them from inside their notebook: a raised hand with a help
text, and a display name (which they may also type while they wait).

Activity, the time before a cull and the work saved come from the rows (the
reconciler syncs the proxy's activity onto them; the disk check measures
every notebook in its one call, pool/services/disk.py). Kernels and open notebooks come from each
notebook server's own API with its token, read in one pass over the pool's
servers: PROBES_AT_ONCE at a time, each with a short timeout, the whole pass
within PASS_SECONDS, and kept in the cache for CACHE_SECONDS so that several
organisers' pages share it. A participant controls their server: its answers
are capped in size and read as untrusted, and only our own words (busy,
idle...) and counts come out of them; what participants type is kept as
plain text, and escaped wherever it is shown.
"""

import logging
import time
import unicodedata
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import requests
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from pool.models import Container, LiveInvitation, Pool, QueueEntry, Session
from pool.services import live, notebook_api
from pool.services.disk import saved_since_landing
from pool.services.upkeep import cull_due

log = logging.getLogger(__name__)

PROBES_AT_ONCE = 16  # notebook servers asked at a time
PASS_SECONDS = 4.0  # a pass gives up on the servers that have not answered by then
CACHE_SECONDS = 2
MAX_ANSWER_BYTES = 256 * 1024  # a real server's list of kernels or sessions is a few kB
HAND_TEXT_MAX = 300
NAME_MAX = 60

# What the room says of a server's kernels: our words, never the server's.
BUSY, STARTING, IDLE, NO_KERNEL, UNKNOWN = "busy", "starting", "idle", "none", "unknown"
_STARTING_STATES = {"starting", "restarting", "autorestarting"}


class InvalidText(ValueError):
    """Text a participant typed that cannot be kept (too long); says why."""


@dataclass(frozen=True)
class ServerState:
    kernel: str  # BUSY, STARTING, IDLE, NO_KERNEL or UNKNOWN
    notebooks: int | None  # notebooks open in it; None when unknown


NOT_ANSWERING = ServerState(kernel=UNKNOWN, notebooks=None)


@dataclass(frozen=True)
class Participant:
    """One row of the room view."""

    session_id: int
    label: str  # the visitor tag the admin and the event log show
    name: str
    landed_at: datetime
    last_activity: datetime
    kernel: str
    notebooks: int | None
    seconds_left: int  # before the first cull due
    work_bytes: int | None  # saved since they landed, at the last disk check (disk.saved_since_landing)
    hand_raised_at: datetime | None
    hand_text: str
    live_state: str  # "" (nobody), "asked" or "accepted" (pool/services/live.py)
    live_helper: str
    live_ends_at: datetime | None


def room(pool: Pool, *, now: datetime | None = None) -> list[Participant]:
    """Everyone holding a notebook of ``pool``: raised hands first, longest
    raised first, then in the order they landed."""
    now = now or timezone.now()
    sessions = list(Session.objects.active().filter(container__pool=pool, container__state=Container.State.ASSIGNED).select_related("container__pool"))
    servers = server_states(pool, [session.container for session in sessions])
    invitations = live.open_ones(sessions, now=now) if pool.live_help else {}
    rows = [_participant(session, servers.get(session.container.path_id, NOT_ANSWERING), invitations.get(session.pk), now) for session in sessions]
    return sorted(rows, key=lambda row: (row.hand_raised_at is None, row.hand_raised_at or row.landed_at, row.landed_at, row.session_id))


def _participant(session: Session, server: ServerState, invitation: LiveInvitation | None, now: datetime) -> Participant:
    age_due, idle_due = cull_due(session, session.last_activity)
    return Participant(
        session_id=session.pk,
        label=session.visitor_tag,
        name=session.display_name,
        landed_at=session.started_at,
        last_activity=session.last_activity,
        kernel=server.kernel,
        notebooks=server.notebooks,
        seconds_left=max(0, round((min(age_due, idle_due) - now).total_seconds())),
        work_bytes=saved_since_landing(session.container),
        hand_raised_at=session.hand_raised_at,
        hand_text=session.hand_text,
        live_state=invitation.state if invitation else "",
        live_helper=invitation.helper if invitation else "",
        live_ends_at=invitation.ends_at if invitation else None,
    )


def as_json(rows: Iterable[Participant]) -> list[dict[str, Any]]:
    return [{**asdict(row), **{key: _iso(getattr(row, key)) for key in ("landed_at", "last_activity", "hand_raised_at", "live_ends_at")}} for row in rows]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def server_states(pool: Pool, containers: list[Container]) -> dict[str, ServerState]:
    """The state of each container's server by path id, from the cache when
    a pass over the pool, not older than CACHE_SECONDS, saw every one of
    them. Of the organisers' pages that find none, one makes the pass while
    the others wait for it (within PASS_SECONDS), in every web process."""
    key = f"room:{pool.pk}"
    try:
        found = _cached(key, containers)
        if found is None and not cache.add(f"{key}:pass", 1, round(PASS_SECONDS) + 1):
            found = _wait_for_pass(key, containers)
    except Exception as error:  # the cache is down: one pass per page, as without it
        log.warning("room view not cached: %s", error)
        return probe_servers(containers)
    if found is not None:
        return found
    states = probe_servers(containers)
    try:
        cache.set(key, {path_id: (state.kernel, state.notebooks) for path_id, state in states.items()}, CACHE_SECONDS)
        cache.delete(f"{key}:pass")
    except Exception as error:
        log.warning("room view not cached: %s", error)
    return states


def _cached(key: str, containers: list[Container]) -> dict[str, ServerState] | None:
    cached: dict[str, tuple[str, int | None]] | None = cache.get(key)
    if cached is None or not all(container.path_id in cached for container in containers):
        return None
    return {path_id: ServerState(*state) for path_id, state in cached.items()}


def _wait_for_pass(key: str, containers: list[Container]) -> dict[str, ServerState] | None:
    """The pass another page is making, once it is cached; None if it is not
    within PASS_SECONDS (or did not see every container)."""
    deadline = time.monotonic() + PASS_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.1)
        found = _cached(key, containers)
        if found is not None:
            return found
    return None


def probe_servers(containers: list[Container]) -> dict[str, ServerState]:
    """One pass: each server asked for its kernels and sessions, PROBES_AT_ONCE
    at a time; those that have not answered within PASS_SECONDS are UNKNOWN
    (their threads end at their own timeouts, after the pass)."""
    if not containers:
        return {}
    deadline = time.monotonic() + PASS_SECONDS
    executor = ThreadPoolExecutor(max_workers=min(PROBES_AT_ONCE, len(containers)), thread_name_prefix="room")
    try:
        futures = {container.path_id: executor.submit(probe_server, notebook_api.server_url(container), container.token, deadline) for container in containers}
        wait(futures.values(), timeout=PASS_SECONDS)
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    return {path_id: _answer(path_id, future) for path_id, future in futures.items()}


def _answer(path_id: str, future: "Future[ServerState]") -> ServerState:
    if not future.done() or future.cancelled():
        return NOT_ANSWERING
    error = future.exception()
    if error is not None:  # an answer no check foresaw (JSON nested past Python's recursion limit...) fails one row, not the page
        log.warning("room view: notebook %s answered what could not be read: %r", path_id, error)
        return NOT_ANSWERING
    return future.result()


def probe_server(base_url: str, token: str, deadline: float) -> ServerState:
    """A notebook server's kernels and open notebooks, from its API; UNKNOWN
    for whatever it does not answer in time and in shape."""
    try:
        kernels = _get_list(f"{base_url}api/kernels", token, deadline)
        sessions = _get_list(f"{base_url}api/sessions", token, deadline)
    except (requests.RequestException, ValueError, TimeoutError) as error:
        log.info("room view: %s did not answer: %s", base_url, error)
        return NOT_ANSWERING
    return ServerState(kernel=kernel_summary(kernels), notebooks=open_notebooks(sessions))


def kernel_summary(kernels: list[Any]) -> str:
    states = {kernel.get("execution_state") for kernel in kernels if isinstance(kernel, dict) and isinstance(kernel.get("execution_state"), str)}
    if BUSY in states:
        return BUSY
    if states & _STARTING_STATES:
        return STARTING
    if IDLE in states:
        return IDLE
    return NO_KERNEL if not kernels else UNKNOWN


def open_notebooks(sessions: list[Any]) -> int:
    """Notebooks open (a session of type notebook each; consoles and terminals are not counted)."""
    return sum(1 for session in sessions if isinstance(session, dict) and session.get("type") == "notebook")


def _get_list(url: str, token: str, deadline: float) -> list[Any]:
    answer = notebook_api.get_json(url, token, deadline=deadline, max_bytes=MAX_ANSWER_BYTES)
    if not isinstance(answer, list):
        raise ValueError("not a list")
    return answer


def held_session(*, path_id: str, token: str) -> Session | None:
    """The live session of notebook ``path_id`` when ``token`` is its
    notebook's token (what its own page holds); None for anyone else."""
    session = Session.objects.active().select_related("container").filter(container__path_id=path_id).first()
    if session is None or not token or not constant_time_compare(token, session.container.token):
        return None
    return session


def plain_text(typed: object, *, limit: int, what: str) -> str:
    """What a participant typed as one plain line: control characters out,
    spaces joined, at most ``limit`` characters (InvalidText past it)."""
    if not isinstance(typed, str):
        raise InvalidText(f"{what} must be text")
    kept = "".join(" " if _breaks_a_line(c) else c for c in typed)
    text = " ".join(kept.split())
    if len(text) > limit:
        raise InvalidText(f"{what} is {len(text)} characters long; at most {limit} are kept")
    return text


def _breaks_a_line(character: str) -> bool:
    """Control characters, separators, and the controls that reorder text on
    screen (a name that shows reversed in the organiser's table)."""
    return unicodedata.category(character) in ("Cc", "Cs", "Co", "Cn", "Zs", "Zl", "Zp") or character in _BIDI_CONTROLS


_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def raise_hand(session: Session, text: object = "") -> None:
    """The participant asks for help; raising it again keeps its place and changes the text."""
    session.hand_text = plain_text(text, limit=HAND_TEXT_MAX, what="the help text")
    session.hand_raised_at = session.hand_raised_at or timezone.now()
    session.save(update_fields=["hand_text", "hand_raised_at"])


def lower_hand(session: Session) -> None:
    """Helped, or no longer stuck: lowered by the participant or an organiser."""
    Session.objects.filter(pk=session.pk).update(hand_raised_at=None, hand_text="")
    session.hand_raised_at, session.hand_text = None, ""


def set_display_name(session: Session, name: object) -> None:
    """The name the participant wants the organisers to see; empty clears it."""
    session.display_name = plain_text(name, limit=NAME_MAX, what="the name")
    session.save(update_fields=["display_name"])


def name_waiting_visitor(visitor: str, name: object) -> Pool | None:
    """The name a visitor types on the waiting page: kept with their place,
    and their session takes it when their turn comes (or has it at once, if
    it came meanwhile). The pool they wait for or landed in; None when they
    neither wait nor hold a notebook."""
    display_name = plain_text(name, limit=NAME_MAX, what="the name")
    with transaction.atomic():
        entry = QueueEntry.objects.waiting().filter(visitor=visitor).first()
        if entry is not None:
            # The queue is served under its pool's lock: holding it, the place
            # is either still waiting, or served with its session in place.
            Pool.objects.select_for_update().filter(pk=entry.pool_id).exists()
            if QueueEntry.objects.waiting().filter(pk=entry.pk).update(display_name=display_name):
                return entry.pool
        session = Session.objects.active().select_related("container__pool").filter(visitor=visitor).first()
        if session is None:
            return None
        set_display_name(session, display_name)
        return session.container.pool
