"""Who may take a notebook from a landing page: a browser that keeps cookies,
holding the pool's access code when it has one.

Everything else that fetches a shared link is answered without taking a
container: link previews of chat and mail apps get a small page with
OpenGraph tags, HEAD gets that page's headers, and a client without a cookie
jar (curl, uptime checks, scanners) gets the visitor cookie and a page that
continues by itself, which no script follows. A real browser continues with
its new cookie, so one click still lands it in its notebook.
"""

import functools
import re
import secrets
import time
from typing import cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext, gettext_lazy

from pool.http import access_code_rate_exceeded, no_store, page_or_json, wants_json
from pool.models import Pool

# The service's cookie names (settings: tmpnb_..., __Host-tmpnb_... with HTTPS),
# which the proxy keeps from every notebook.
VISITOR_COOKIE = settings.TMPNB_VISITOR_COOKIE
VISITOR_COOKIE_AGE = 7 * 24 * 3600
CODE_COOKIE = settings.TMPNB_CODE_COOKIE
# Added to the URL the cookie step continues to: a request that comes back
# with it but without the cookie does not keep cookies. The time in it keeps a
# link copied from the address bar from failing for the next browser.
COOKIE_CHECK = "tmpnb_cookie_check"
COOKIE_CHECK_SECONDS = 60
COOKIES_REQUIRED = gettext_lazy(
    "A notebook goes to a browser that keeps cookies: send the visitor cookie set with this answer back to this URL, or use POST /api/spawn with a token."
)

# User agents of link expanders and scanners (case-insensitive substrings).
# They fetch every link pasted into a chat, mail or social app to show a
# preview; each would otherwise take a notebook. TMPNB_PREVIEW_AGENTS adds more.
LINK_PREVIEW_AGENTS = (
    "Slackbot",  # Slackbot-LinkExpanding
    "Slack-ImgProxy",
    "SkypeUriPreview",  # Microsoft Teams and Skype
    "MicrosoftPreview",  # Teams, Outlook
    "BingPreview",  # Outlook Safe Links
    "Microsoft Office",  # Office apps checking a link before opening it
    "ms-office",
    "Discordbot",
    "WhatsApp",  # also Signal's previews
    "TelegramBot",
    "facebookexternalhit",  # Facebook, Messenger, iMessage (with Twitterbot)
    "Facebot",
    "meta-externalagent",
    "Twitterbot",
    "LinkedInBot",
    "Mattermost-Bot",
    "Zoom",  # Zoom's chat previews (Zoombot)
    "Googlebot",
    "Google-PageRenderer",
    "Google-InspectionTool",
    "Applebot",
    "Embedly",
    "Pinterest",
    "redditbot",
    "Iframely",
    "vkShare",
    "Viber",
    "SnapchatPreview",
    "bitlybot",
)


@functools.lru_cache(maxsize=4)
def _agent_pattern(extra_agents: tuple[str, ...]) -> re.Pattern[str]:
    # Kept: joining and escaping the agents took longer than the search.
    agents = LINK_PREVIEW_AGENTS + extra_agents
    return re.compile("|".join(re.escape(agent) for agent in agents), re.IGNORECASE)


def is_link_preview(request: HttpRequest) -> bool:
    pattern = _agent_pattern(tuple(settings.TMPNB_PREVIEW_AGENTS))
    return bool(pattern.search(request.headers.get("User-Agent", "")))


def visitor_id(request: HttpRequest) -> str | None:
    return request.get_signed_cookie(VISITOR_COOKIE, default=None, salt=VISITOR_COOKIE)


def set_visitor_cookie(response: HttpResponseBase, visitor: str) -> None:
    response.set_signed_cookie(
        VISITOR_COOKIE, visitor, salt=VISITOR_COOKIE, max_age=VISITOR_COOKIE_AGE, httponly=True, samesite="Lax", secure=settings.TMPNB_TLS
    )


def renew_visitor_cookie(request: HttpRequest, response: HttpResponseBase) -> None:
    """The visitor cookie the request came with, for another VISITOR_COOKIE_AGE:
    sent back as it is, already signed (signing it again on every admission
    cost a few percent of its CPU)."""
    response.set_cookie(VISITOR_COOKIE, request.COOKIES[VISITOR_COOKIE], max_age=VISITOR_COOKIE_AGE, httponly=True, samesite="Lax", secure=settings.TMPNB_TLS)


def gate(request: HttpRequest, pool: Pool) -> HttpResponse | None:
    """A response for a request that must not take a notebook of ``pool``, or
    None when it may go on to claim one."""
    if request.method not in ("GET", "POST") or is_link_preview(request):
        return preview_page(request, pool)
    if visitor_id(request) is None:
        return cookie_step(request)
    if pool.access_code and not has_access_code(request, pool):
        return access_code_form(request, pool)
    return None


def preview_page(request: HttpRequest, pool: Pool) -> HttpResponse:
    """What a link preview shows: the workshop's name and what the link does."""
    if pool.name == "default":
        title = gettext("Jupyter notebooks")
    else:
        title = gettext("%(pool)s · Jupyter notebooks") % {"pool": pool.name}
    context = {
        "pool": pool,
        "title": title,
        "description": gettext("Open this link in your browser to get a Jupyter notebook of your own, with nothing to install."),
        "url": request.build_absolute_uri(request.path),
    }
    return no_store(render(request, "pool/preview.html", context))


def cookie_step(request: HttpRequest) -> HttpResponse:
    """Give the visitor cookie and a page that continues to the same URL by
    itself (JavaScript, or a meta refresh without it); only a client that
    comes back with the cookie may claim a notebook. A page, not a redirect:
    HTTP libraries (Python's requests, wget) keep cookies along a redirect
    chain, but no script runs a page's JavaScript or meta refresh."""
    checked_at = request.GET.get(COOKIE_CHECK, "")
    came_back = checked_at.isdigit() and 0 <= time.time() - int(checked_at) < COOKIE_CHECK_SECONDS
    if came_back or wants_json(request):
        context = {"status": "cookies-required", "message": str(COOKIES_REQUIRED), "url": request.path}
        response = page_or_json(request, "pool/cookies_needed.html", context, 403 if wants_json(request) else 200)
    else:
        query = request.GET.copy()
        query[COOKIE_CHECK] = str(int(time.time()))
        response = no_store(HttpResponse(continue_page(translation.get_language(), f"{request.path}?{query.urlencode()}")))
    # Also with the cookies-needed answer: a browser that refused it once
    # may take it now, and a JSON client with a cookie jar asks again.
    set_visitor_cookie(response, secrets.token_hex(16))
    return response


@functools.lru_cache(maxsize=64)
def continue_page(language: str, next_url: str) -> str:
    """The cookie step's page, kept: in a burst every new visitor of a landing
    page gets the same one (the check's time changes once a second), and
    rendering it was an eighth of an admission's work. Rendered without the
    request's context processors: it needs none."""
    return render_to_string("pool/continue.html", {"next": next_url})


def _code_cookie(pool: Pool) -> str:
    return f"{CODE_COOKIE}_{pool.pk}"


def _code_proof(pool: Pool) -> str:
    """What the code cookie holds: a keyed hash of the pool's code, so the
    cookie never shows the code, and changing the code asks everyone again."""
    return salted_hmac("tmpnb.access-code", f"{pool.pk}:{pool.access_code}").hexdigest()


def has_access_code(request: HttpRequest, pool: Pool) -> bool:
    given = cast(str, request.get_signed_cookie(_code_cookie(pool), default="", salt=CODE_COOKIE))  # never None: the default is a str
    return constant_time_compare(given, _code_proof(pool))


def access_code_form(request: HttpRequest, pool: Pool) -> HttpResponse:
    """Asks for the pool's code; a right one is remembered in a signed cookie.
    The code travels in a POST body, so it never appears in a URL or an access log."""
    context: dict[str, str | int] = {"status": "code-required", "message": gettext("This workshop needs its access code."), "pool": pool.name}
    status = 401 if wants_json(request) else 200
    if request.method == "POST":
        if access_code_rate_exceeded(request):
            message = gettext("Too many attempts from your network address; wait a minute and try again.")
            context.update(status="refused", message=message, retry_after=60)
            return page_or_json(request, "pool/access_code.html", context, 429)
        if constant_time_compare(request.POST.get("code", "").strip(), pool.access_code):
            response = no_store(HttpResponseRedirect(request.path, status=303))  # see other: GET it
            response.set_signed_cookie(
                _code_cookie(pool), _code_proof(pool), salt=CODE_COOKIE, max_age=VISITOR_COOKIE_AGE, httponly=True, samesite="Lax", secure=settings.TMPNB_TLS
            )
            return response
        context.update(status="wrong-code", message=gettext("That code is not right. Check it with your organiser and try again."))
        status = 403
    return page_or_json(request, "pool/access_code.html", context, status)
