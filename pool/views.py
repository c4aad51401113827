import json
import secrets
from collections.abc import Callable
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext, ngettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from django.views.static import serve

from pool import backends, origins, visitors
from pool.http import client_address, hand_rate_exceeded, no_store, page_or_json, resume_rate_exceeded, spawn_rate_exceeded, wants_json
from pool.models import Container, Pool, Session, Snapshot, Workshop
from pool.origins import OriginRequest
from pool.services import assignment, broadcasts, disk, live, look, pools, resume, room, snapshots, spawning, upkeep, usage, waiting, workshops
from proxyapi import ProxyError

RETRY_AFTER = 5  # seconds; without JavaScript, the waiting page reloads itself after this
POLL_SECONDS = 2  # the waiting page asks again this long after a failed status request


def spawn(request: HttpRequest, path: str = "", pool_name: str | None = None) -> HttpResponseBase:
    """The landing page of a pool (/ for the default pool, /p/<name>/ for any):
    a visitor lands in their own notebook, the same one on every reload, or
    takes their place in the waiting room."""
    if spawn_rate_exceeded(request):
        return refusal(request, gettext("Too many requests from your network address; please wait a minute."), 60)
    pool = pools.get_default_pool() if pool_name is None else pools.pool_named(pool_name)
    if pool is None:
        raise Http404("no such pool")
    workshop = workshops.governing(pool)
    language = workshop.language if workshop is not None and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES else ""
    if language:
        translation.activate(language)  # the organiser's, for a participant who chose none
    response = enter(request, pool, path, workshop)
    if language:
        # Remembered, so that the waiting page and the banner speak it too; the switcher still changes it.
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME, language, secure=settings.LANGUAGE_COOKIE_SECURE, httponly=settings.LANGUAGE_COOKIE_HTTPONLY, samesite="Lax"
        )
    return response


def enter(request: HttpRequest, pool: Pool, path: str, workshop: Workshop | None) -> HttpResponseBase:
    if workshop is not None and (closed := workshops.landing_closed(workshop, visitor=visitors.visitor_id(request))) is not None:
        return workshop_closed(request, closed)  # before its start it takes nothing: no place, no notebook
    if (answer := visitors.gate(request, pool)) is not None:
        return answer  # a preview, a client without cookies, or a visitor without the pool's code
    return land(request, pool, path)


def workshop_closed(request: HttpRequest, closed: workshops.Closed) -> HttpResponse:
    return page_or_json(request, "pool/workshop_closed.html", workshop_closed_context(closed), workshop_closed_status(closed))


def workshop_closed_context(closed: workshops.Closed) -> dict[str, Any]:
    return {
        "status": "opens" if closed.opens else "ended",
        "workshop": closed.workshop.name,
        "opens": closed.opens,
        "at": closed.at.isoformat(),
        "time": closed.at.strftime("%H:%M"),
        "day": closed.at.strftime("%Y-%m-%d"),
        "time_zone": closed.workshop.time_zone,
        "retry_after": closed.retry_after,
    }


def workshop_closed_status(closed: workshops.Closed) -> int:
    return 503 if closed.opens else 410


def land(request: HttpRequest, pool: Pool, path: str = "") -> HttpResponseBase:
    """A visitor past the gate (they have the visitor cookie) in their own
    notebook, or in the waiting room of ``pool``."""
    visitor = cast(str, visitors.visitor_id(request))  # the gate let only a visitor with the cookie through
    # API clients without cookies would leave a place behind on every call:
    # they are told when to come back instead (or use POST /api/spawn with wait).
    queue = not wants_json(request)
    try:
        admission = assignment.admit(pool=pool, visitor=visitor, client_ip=client_address(request), path=path, wait=queue)
    except assignment.AddressLimitReached as error:
        response = refusal(request, str(error), 60)
    else:
        session = admission.session
        if session is not None and session.container.pool_id != pool.pk:
            # One visitor holds one notebook at a time, whatever the pool.
            response = held_elsewhere(request, session)
        elif session is not None:
            response = redirect(origins.notebook_url(request, session.container.url_for(path or admission.next_path or pool.redirect_uri)))
        else:
            usage.record_turned_away(pool=pool, visitor=visitor)  # kept waiting, or told to come back
            response = waiting_page(request, visitor) if queue else too_busy_json(pool)
    visitors.renew_visitor_cookie(request, response)  # the gate let only a visitor with the cookie through
    return response


def waiting_status(request: HttpRequest) -> JsonResponse:
    """What the waiting page polls: ready (with the URL), or the visitor's
    place. With ``?wait=1`` a waiting visitor's request is held until they are
    served (a long poll); the answer says when to ask again (poll_seconds)."""
    visitor = visitors.visitor_id(request)
    status = waiting.await_admission(visitor, wait=bool(request.GET.get("wait"))) if visitor else {"status": "unknown"}
    return no_store(JsonResponse(ready_on_its_origin(request, status)))


def ready_on_its_origin(request: HttpRequest, status: waiting.AdmissionStatus) -> waiting.AdmissionStatus:
    """An admission status whose URL (when ready) is on the notebook's origin."""
    if status["status"] == "ready":
        return {**status, "url": origins.notebook_url(request, status["url"])}
    return status


def waiting_page(request: HttpRequest, visitor: str, name_error: str = "", status: int = 200) -> HttpResponse:
    entry = waiting.waiting_entry(visitor)
    context = {
        "status": waiting.admission_status(visitor),
        "retry_after": RETRY_AFTER,
        "poll_seconds": POLL_SECONDS,
        "name": entry.display_name if entry else "",
        "name_max": room.NAME_MAX,
        "name_error": name_error,
    }
    return no_store(render(request, "pool/waiting.html", context, status=status), RETRY_AFTER)


@require_POST
def waiting_name(request: HttpRequest) -> HttpResponseBase:
    """The name a waiting visitor may type (never required); the page then
    reloads where they were, in their place or in their notebook."""
    if spawn_rate_exceeded(request):
        return refusal(request, gettext("Too many requests from your network address; please wait a minute."), 60)
    visitor = visitors.visitor_id(request)
    if visitor is None:
        return redirect("landing")
    try:
        pool = room.name_waiting_visitor(visitor, request.POST.get("name", ""))
    except room.InvalidText as error:
        return waiting_page(request, visitor, name_error=str(error), status=400)
    return redirect(pool.landing_path if pool else "landing")


def too_busy_json(pool: Pool) -> JsonResponse:
    estimate = waiting.estimate_wait(pool, pool.queue.waiting().count() + 1)
    retry_after = max(1, round(estimate.seconds)) if estimate.seconds is not None else RETRY_AFTER
    body = {
        "status": "full",
        "message": gettext("No notebook server is ready yet; try again shortly, or POST /api/spawn with wait to queue."),
        "retry_after": retry_after,
    }
    return no_store(JsonResponse(body, status=429), retry_after)


def refusal(request: HttpRequest, message: str, retry_after: int) -> HttpResponse:
    """A request we will not serve now, said plainly: 429 as a page or JSON."""
    response: HttpResponse
    if wants_json(request):
        response = JsonResponse({"status": "refused", "message": message, "retry_after": retry_after}, status=429)
    else:
        response = render(request, "pool/refused.html", {"message": message}, status=429)
    return no_store(response, retry_after)


def held_elsewhere(request: HttpRequest, session: Session) -> HttpResponse:
    """The visitor already holds a notebook of another pool: say so, and lead
    them back to it rather than silently somewhere they did not ask for."""
    held = session.container.pool
    context = {"status": "held-elsewhere", "pool": held.name, "url": origins.notebook_url(request, session.container.url_for(held.redirect_uri))}
    return page_or_json(request, "pool/held_elsewhere.html", context, 409)


def user_fallback(request: OriginRequest, path_id: str, rest: str = "") -> HttpResponseBase:
    """/user/<id>/... on a notebook's origin reaches the app only when the
    proxy has no route for it: the route is being restored, or the server has
    ended, which the participants' pages say (with the visitor's cookie, which
    never reaches a notebook's origin). On those pages, an old link to a live
    notebook leads to its origin."""
    container = Container.objects.select_related("pool").filter(path_id=path_id).first()
    live = container is not None and container.state in (Container.State.READY, Container.State.ASSIGNED)
    if request.origin_kind == origins.NOTEBOOK:
        if live:
            return page_or_json(request, "pool/reconnecting.html", {"status": "reconnecting", "retry_after": 2}, 200)
        return redirect(origins.service_url(request, request.get_full_path()))
    if container is not None and live:
        held = assignment.active_session(visitors.visitor_id(request))
        path = container.url_for(rest) if held is not None and held.container_id == container.pk else f"{container.base_path}{rest}"
        return redirect(origins.notebook_url(request, path))
    if container is None:
        return page_or_json(request, "pool/ended.html", {"status": "ended"}, 404)
    # A new notebook from the pool the ended one came from.
    context = {"status": "ended", "landing": container.pool.landing_path}
    work = snapshots.ended_work(container, visitors.visitor_id(request))
    if work is not None:  # only the visitor who held it hears about its files
        context |= _work_context(container, *work) | {"resume_code": resume.ended_code(container, visitors.visitor_id(request))}
    return page_or_json(request, "pool/ended.html", context, 410)


def _work_context(container: Container, status: str, snapshot: Snapshot | None) -> dict[str, Any]:
    context: dict[str, Any] = {"work": status}
    if snapshot is not None and snapshot.session.end_reason == Session.EndReason.DISK_FULL and settings.TMPNB_DISK_LIMIT:
        context["disk_limit"] = disk.size_text(settings.TMPNB_DISK_LIMIT)
    if status == "saving":
        context["retry_after"] = 2
    elif status == "kept" and snapshot is not None:  # a kept one always comes with its snapshot
        context.update(
            download=reverse("work-download", args=[container.path_id]),
            restore=reverse("work-restore", args=[container.path_id]),
            expires_at=snapshot.expires_at,
            left_out=[item["path"] for item in snapshot.left_out],
            left_out_more=snapshot.left_out_count - len(snapshot.left_out),
            stopped_on_its_own=snapshot.session.end_reason == Session.EndReason.CONTAINER_GONE,
        )
    return context


def download_work(request: HttpRequest, path_id: str) -> FileResponse:
    """The zip of an ended notebook's files, for the visitor who held it; 404
    for anyone else, as for a notebook that never was."""
    snapshot = snapshots.visitors_snapshot(path_id=path_id, visitor=visitors.visitor_id(request))
    if snapshot is None:
        raise Http404("no such file")
    return zip_download(snapshot)


def zip_download(snapshot: Snapshot) -> FileResponse:
    try:
        work = open(snapshots.snapshot_path(snapshot), "rb")
    except FileNotFoundError:  # pruned just now
        raise Http404("no such file") from None
    name = f"notebook-{snapshot.session.container.pool.name}-{snapshot.taken_at:%Y%m%d-%H%M}.zip"
    return no_store(FileResponse(work, as_attachment=True, filename=name, content_type="application/zip"))


@require_POST
def start_again_with_files(request: HttpRequest, path_id: str) -> HttpResponseBase:
    """The ended page's "Start again with my files" (see with_saved_work)."""
    snapshot = snapshots.visitors_snapshot(path_id=path_id, visitor=visitors.visitor_id(request))
    if snapshot is None:
        raise Http404("no such file")
    return with_saved_work(request, snapshot, lambda pool: spawn(request, pool_name=pool.name))[0]


def with_saved_work(request: HttpRequest, snapshot: Snapshot, spawn_in: Callable[[Pool], HttpResponseBase]) -> tuple[HttpResponseBase, Session | None]:
    """A new notebook of the pool of ``snapshot`` (``spawn_in(pool)`` answers
    as the landing page does), into which the worker puts its saved files:
    the visitor lands at once, and JupyterLab shows the files as they arrive.
    Once per snapshot (a copy that failed may be asked for again). A visitor
    kept waiting lands without them, and may ask again from the ended page
    once they hold a notebook: the files then go into a folder of their own.
    Returns the answer and the session the files were asked into, if any; the
    resume code of the ended session goes with them."""
    visitor = visitors.visitor_id(request)
    pool = snapshot.session.container.pool
    held_before = assignment.active_session(visitor)
    response = spawn_in(pool)
    session = assignment.active_session(visitor)
    if response.status_code != 302 or session is None or session.container.pool_id != pool.pk:
        return response, None
    try:
        asked = snapshots.ask_for_restore(snapshot=snapshot, container=session.container, in_use=held_before is not None)
    except snapshots.RestoreError:
        message = gettext("Your files could not be put into the new notebook; download them from the page you came from.")
        return refusal(request, message, RETRY_AFTER), None
    if not asked:
        return response, None
    resume.carry_code(source=snapshot.session, target=session)
    return response, session


def resume_page(request: HttpRequest) -> HttpResponseBase:
    """/resume/: the visitor's own resume code, and the form where a code
    typed on another device opens its notebook there."""
    if request.method == "POST":
        return resume_with_code(request)
    visitor = visitors.visitor_id(request)
    response = resume_form(request, {"status": "form", "session": resume.holders_session(visitor)}, 200)
    if visitor is None:  # a code of an ended notebook starts a new one for this browser
        visitors.set_visitor_cookie(response, secrets.token_hex(16))
    return response


def resume_form(request: HttpRequest, context: dict[str, Any], status: int) -> HttpResponse:
    session = context.pop("session", None)
    if session is not None:
        context.update(code=session.resume_code, expires_at=resume.expires_at(session))
    return page_or_json(request, "pool/resume.html", context, status)


def resume_with_code(request: HttpRequest) -> HttpResponseBase:
    """A typed resume code: into its live notebook, as the landing page leads
    there (the device that took it keeps it: README "Participants' work"), or,
    if it has ended, into a new one with its saved files."""
    typed = request.POST.get("code", "")
    code = resume.normalized(typed)
    if resume_rate_exceeded(request, code and resume.code_key(code)):
        return refusal(request, gettext("Too many tries at resume codes; wait a minute and try again."), 60)
    session = resume.find(typed)
    if session is None:
        message = gettext("That resume code is not right, or no longer works. Check it and try again.")
        return resume_form(request, {"status": "wrong-code", "message": message}, 403)
    visitor = visitors.visitor_id(request)
    if session.is_active:
        resume.record_resume(session=session, visitor=visitor)
        container = session.container
        return ready(request, redirect(origins.notebook_url(request, container.url_for(container.pool.redirect_uri))))
    status, snapshot = resume.saved_work(session)
    if status == resume.SAVING:
        message = gettext("The notebook of this code has just ended and its files are being saved; try again in a moment.")
        return resume_form(request, {"status": "saving", "message": message, "retry_after": 2}, 409)
    if snapshot is None:
        message = gettext(
            "The notebook of this code has ended, and its files cannot be brought back: they were not saved, were deleted after a while, or were already put into another notebook."
        )
        return resume_form(request, {"status": "ended", "message": message}, 410)
    if visitor is None:
        return resume_form(request, {"status": "cookies-required", "message": str(visitors.COOKIES_REQUIRED)}, 403)
    response, into = with_saved_work(request, snapshot, lambda pool: land(request, pool))
    if into is not None:
        resume.record_resume(session=session, visitor=visitor, into=into.container)
    return ready(request, response)


def ready(request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
    """A redirect into a notebook, for a JSON client the URL in JSON."""
    if response.status_code == 302 and wants_json(request):
        return no_store(JsonResponse({"status": "ready", "url": response["Location"]}))
    return response


def notebook_time_left(request: OriginRequest, path_id: str) -> JsonResponse:
    """What the banner inside a held JupyterLab asks (deploy/images/cull-warning.js),
    on the notebook's origin with the notebook's token: how long until its
    cull, worded for the participant; 404 for anyone else (and for anyone but
    the visitor who holds it, on the participants' pages)."""
    token, visitor = None, None
    if request.origin_kind == origins.NOTEBOOK:
        token = request.headers.get("Authorization", "").removeprefix("token ").strip()
    else:
        visitor = visitors.visitor_id(request)
    try:
        left = upkeep.time_left(path_id=path_id, visitor=visitor, token=token)
    except ProxyError:
        return no_store(JsonResponse({"status": "unknown"}, status=503), RETRY_AFTER)
    if left is None:
        raise Http404("no such notebook")
    message = cull_warning(left) + resume_hint(request, left)
    body = {
        "idle_timeout": left.idle_timeout,
        "idle_left": left.idle_left,
        "age_left": left.age_left,
        "warn": left.warn,
        "reason": left.reason,
        "disk_used": left.disk_used,
        "disk_limit": left.disk_limit,
        "message": message,
        "dismiss": gettext("Dismiss"),
    }
    if request.origin_kind == origins.NOTEBOOK and left.session is not None:  # its holder's page: the hand, the name, what arrived
        body |= participant_state(left.session) | {"words": participant_words()}
        if look.is_looked_at(left.session):
            body |= helper_looking(left, message)
        if (arrived := broadcasts.latest_arrival(left.session)) is not None:
            body["arrived"] = {"id": arrived.pk, "message": gettext("The organiser sent you “%(name)s”: it is in your files.") % {"name": arrived.name}}
    return no_store(JsonResponse(body))


def helper_looking(left: upkeep.TimeLeft, warning: str) -> dict[str, Any]:
    """A helper's look page is open (pool/services/look.py): the banner says
    so, before the warning if one is due. Its own reason, so that a banner the
    participant closed shows again when a helper looks."""
    said = gettext("A helper is looking at your notebooks (read-only).")
    if left.warn:
        return {"warn": True, "reason": f"{left.reason}+looking", "message": f"{said} {warning}"}
    return {"warn": True, "reason": "looking", "message": said}


def _notebook_token(request: HttpRequest) -> str:
    return request.headers.get("Authorization", "").removeprefix("token ").strip()


@csrf_exempt  # the notebook's token in a header, never a cookie, says who asks
@require_http_methods(["POST", "DELETE"])
def notebook_hand(request: OriginRequest, path_id: str) -> JsonResponse:
    """The banner's hand (deploy/images/cull-warning.js): POST raises it with
    an optional {"text"}, DELETE lowers it; on the notebook's origin with its
    token, 404 for anyone else."""
    if request.method == "DELETE":
        return _told_by_holder(request, path_id, lambda session, body: room.lower_hand(session))
    return _told_by_holder(request, path_id, lambda session, body: room.raise_hand(session, body.get("text", "")))


@csrf_exempt
@require_POST
def notebook_live(request: OriginRequest, path_id: str) -> JsonResponse:
    """The participant's answer to a helper who asks to join live, or its end ({"answer"})."""
    return _told_by_holder(request, path_id, lambda session, body: live.participant_says(session, body.get("answer")))


@csrf_exempt
@require_POST
def notebook_name(request: OriginRequest, path_id: str) -> JsonResponse:
    """The name the participant types from the banner ({"name"}; empty clears it)."""
    return _told_by_holder(request, path_id, lambda session, body: room.set_display_name(session, body.get("name", "")))


def _told_by_holder(request: OriginRequest, path_id: str, change: Callable[[Session, dict[str, Any]], None]) -> JsonResponse:
    session = room.held_session(path_id=path_id, token=_notebook_token(request)) if request.origin_kind == origins.NOTEBOOK else None
    if session is None:
        raise Http404("no such notebook")
    if hand_rate_exceeded(path_id):
        return no_store(JsonResponse({"error": gettext("Too many requests; wait a minute and try again.")}, status=429), 60)
    try:
        body = json.loads(request.body or b"{}") if request.method == "POST" else {}
        if not isinstance(body, dict):
            raise room.InvalidText("the body must be a JSON object")
        change(session, body)
    except (ValueError, RecursionError) as error:  # room.InvalidText, or a body that is not JSON (or nested past reading)
        return no_store(JsonResponse({"error": str(error)}, status=400))
    return no_store(JsonResponse(participant_state(session)))


def participant_state(session: Session) -> dict[str, Any]:
    return {"hand": {"raised": session.hand_raised_at is not None, "text": session.hand_text}, "name": session.display_name, "live": live_state(session)}


def live_state(session: Session) -> dict[str, Any] | None:
    """Who asks to join live, or who may be there and until when, worded."""
    invitation = live.current(session)
    if invitation is None:
        return None
    if invitation.state == live.State.ASKED:
        said = gettext("%(helper)s asks to join your notebook live, to see and edit it with you.")
        return {"state": "asked", "helper": invitation.helper, "message": said % {"helper": invitation.helper}}
    minutes = live.minutes_left(invitation)
    said = ngettext("%(helper)s is here live (for %(minutes)d more minute).", "%(helper)s is here live (for %(minutes)d more minutes).", minutes)
    return {"state": "here", "helper": invitation.helper, "message": said % {"helper": invitation.helper, "minutes": minutes}}


def participant_words() -> dict[str, str]:
    """The banner's buttons and forms, in the participant's language."""
    return {
        "raise": gettext("Raise hand"),
        "lower": gettext("Lower hand"),
        "raised": gettext("Your hand is raised: someone will come and help."),
        "ask": gettext("What do you need help with? (optional)"),
        "cancel": gettext("Cancel"),
        "name": gettext("Your name"),
        "name_label": gettext("Your name, shown to the organisers (optional)"),
        "save": gettext("Save"),
        "failed": gettext("That did not work; try again in a moment."),
        "accept": gettext("Accept"),
        "decline": gettext("Decline"),
        "end": gettext("End"),
        "hand_max": str(room.HAND_TEXT_MAX),
        "name_max": str(room.NAME_MAX),
    }


def cull_warning(left: upkeep.TimeLeft) -> str:
    if left.reason == upkeep.RESTORE_FAILED:
        return gettext("Your saved files could not be copied into this notebook. The page where your last notebook ended offers them again, and for download.")
    minutes = max(1, -(-left.seconds_left // 60))
    values: dict[str, int | str] = {"minutes": minutes}
    if left.reason == Session.EndReason.DISK_FULL:
        text = gettext("This notebook has written %(used)s of the %(limit)s it may write; past that it will be shut down. Delete the files you do not need.")
        # A disk warning comes with both figures.
        values = {"used": disk.size_text(cast(int, left.disk_used)), "limit": disk.size_text(cast(int, left.disk_limit))}
    elif left.reason == Session.EndReason.CULLED_IDLE:
        text = ngettext(
            "This notebook will be shut down in about %(minutes)d minute because it has been idle; any activity keeps it open.",
            "This notebook will be shut down in about %(minutes)d minutes because it has been idle; any activity keeps it open.",
            minutes,
        )
    else:
        text = ngettext(
            "This notebook reaches its time limit and will be shut down in about %(minutes)d minute.",
            "This notebook reaches its time limit and will be shut down in about %(minutes)d minutes.",
            minutes,
        )
    if settings.TMPNB_SNAPSHOT_HOURS and backends.copies_files():
        saving = gettext("Your files will be saved: the page it ends on offers them for download.")
    else:
        saving = gettext("Download the files you want to keep before then.")
    return f"{text % values} {saving}"


def resume_hint(request: OriginRequest, left: upkeep.TimeLeft) -> str:
    """The resume code, in the banner of the notebook's holder (asked with its
    token on its own origin) while the banner shows."""
    if request.origin_kind != origins.NOTEBOOK or not left.warn or left.session is None:
        return ""
    values = {"url": origins.service_url(request, reverse("resume")), "code": resume.code_for(left.session)}
    return " " + gettext("To carry on from another device, open %(url)s there and type your resume code %(code)s.") % values


def static_files(request: HttpRequest, path: str) -> HttpResponseBase:
    """tmpnb's static_files, copied out of the first ready container."""
    if not settings.TMPNB_STATIC_FILES:
        raise Http404("no static files are configured")
    try:
        return serve(request, path, document_root=str(spawning.static_files_root()))
    except SuspiciousFileOperation:  # a path that climbs out of the folder
        raise Http404("no such file") from None
