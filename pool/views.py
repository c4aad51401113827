from typing import Any, cast

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext, ngettext
from django.views.decorators.http import require_POST
from django.views.static import serve

from pool import origins, visitors
from pool.http import client_address, no_store, page_or_json, spawn_rate_exceeded, wants_json
from pool.models import Container, Pool, Session, Snapshot
from pool.origins import OriginRequest
from pool.services import assignment, disk, pools, snapshots, spawning, upkeep, usage, waiting
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
    if (answer := visitors.gate(request, pool)) is not None:
        return answer  # a preview, a client without cookies, or a visitor without the pool's code
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


def waiting_page(request: HttpRequest, visitor: str) -> HttpResponse:
    status = waiting.admission_status(visitor)
    context = {"status": status, "retry_after": RETRY_AFTER, "poll_seconds": POLL_SECONDS}
    return no_store(render(request, "pool/waiting.html", context), RETRY_AFTER)


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
        context.update(_work_context(container, *work))
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
    """A new notebook of the same pool, into which the worker puts the saved
    files of the ended one: the visitor lands at once, and JupyterLab shows
    the files as they arrive. Once per snapshot (a copy that failed may be
    asked for again). A visitor kept waiting lands without them, and may ask
    again from this page once they hold a notebook: the files then go into a
    folder of their own."""
    visitor = visitors.visitor_id(request)
    snapshot = snapshots.visitors_snapshot(path_id=path_id, visitor=visitor)
    if snapshot is None:
        raise Http404("no such file")
    pool = snapshot.session.container.pool
    held_before = assignment.active_session(visitor)
    response = spawn(request, pool_name=pool.name)
    session = assignment.active_session(visitor)
    if response.status_code == 302 and session is not None and session.container.pool_id == pool.pk:
        try:
            snapshots.ask_for_restore(snapshot=snapshot, container=session.container, in_use=held_before is not None)
        except snapshots.RestoreError:
            message = gettext("Your files could not be put into the new notebook; download them from the page you came from.")
            return refusal(request, message, RETRY_AFTER)
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
    body = {
        "idle_timeout": left.idle_timeout,
        "idle_left": left.idle_left,
        "age_left": left.age_left,
        "warn": left.warn,
        "reason": left.reason,
        "disk_used": left.disk_used,
        "disk_limit": left.disk_limit,
        "message": cull_warning(left),
        "dismiss": gettext("Dismiss"),
    }
    return no_store(JsonResponse(body))


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
    if settings.TMPNB_SNAPSHOT_HOURS and settings.TMPNB_BACKEND == "docker":  # the Swarm backend cannot copy files out
        saving = gettext("Your files will be saved: the page it ends on offers them for download.")
    else:
        saving = gettext("Download the files you want to keep before then.")
    return f"{text % values} {saving}"


def static_files(request: HttpRequest, path: str) -> HttpResponseBase:
    """tmpnb's static_files, copied out of the first ready container."""
    if not settings.TMPNB_STATIC_FILES:
        raise Http404("no static files are configured")
    try:
        return serve(request, path, document_root=str(spawning.static_files_root()))
    except SuspiciousFileOperation:  # a path that climbs out of the folder
        raise Http404("no such file") from None
