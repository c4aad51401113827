"""A helper's read-only look at a participant's notebooks, from the room view.

The service reads them through its own channel (notebook_api: the contents
API with the notebook's token), never through the helper's browser, so the
helper holds no credential of the participant's. What the participant's
server answers is untrusted: it is read within a cap and a deadline, and
turned here into our own plain shapes (text, PNG or JPEG images checked to be
what they say) that the template shows escaped. HTML, SVG, JavaScript and
every other kind of output are named, never shown; markdown is shown as its
text; nothing from a notebook becomes a link.

While a helper's look page is open it beats (an iframe that reloads itself),
and the participant's banner says a helper is looking until LOOK_SECONDS
after the last beat. Each look is an event."""

import base64
import binascii
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests
from django.utils import timezone

from pool.models import Event, Session
from pool.services import notebook_api
from pool.services.events import record_event

READ_SECONDS = 10.0  # a notebook not read by then is not shown
MAX_NOTEBOOK_BYTES = 8 * 1024 * 1024
MAX_CELLS = 500  # cells shown; the rest are counted
MAX_TEXT = 20_000  # characters of one source or output; the rest are cut
MAX_ENTRIES = 500  # a folder's entries shown
MAX_IMAGE_BYTES = 1024 * 1024
BEAT_SECONDS = 15
LOOK_SECONDS = 45

_IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class LookError(Exception):
    """What a helper is told when a notebook cannot be shown."""


@dataclass(frozen=True)
class Output:
    text: str = ""  # shown as preformatted text
    image_url: str = ""  # a data: URL of a checked PNG or JPEG
    note: str = ""  # what was not shown, and why
    error: bool = False


@dataclass(frozen=True)
class Cell:
    kind: str  # code, markdown or raw
    source: str
    prompt: str  # "[3]" for an executed code cell
    outputs: list[Output] = field(default_factory=list)


@dataclass(frozen=True)
class Notebook:
    path: str
    cells: list[Cell]
    cells_left_out: int = 0


@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    is_folder: bool


@dataclass(frozen=True)
class Folder:
    path: str
    entries: list[Entry]
    entries_left_out: int = 0
    open_notebooks: list[str] = field(default_factory=list)


def look(session: Session, path: str, *, by: str) -> Notebook | Folder:
    """The notebook or folder at ``path`` in ``session``'s server, read now
    for helper ``by``; recorded as a look, and the participant told."""
    clean = _clean(path)
    beat(session)
    record_event(
        Event.Kind.LOOK,
        f"{by} looked at {clean or 'the home folder'} of {session.visitor_tag}",
        container=session.container,
        session=session,
        actor=by,
        path=clean,
    )
    return read(session, clean)


def read(session: Session, path: str) -> Notebook | Folder:
    container = session.container
    deadline = time.monotonic() + READ_SECONDS
    try:
        answer = notebook_api.get_json_by(notebook_api.contents_url(container, path), container.token, deadline=deadline, max_bytes=MAX_NOTEBOOK_BYTES)
    except (requests.RequestException, ValueError, TimeoutError, RecursionError) as error:
        raise LookError(f"The notebook server did not give {path or 'its home folder'}: {_reason(error)}") from None
    if not isinstance(answer, dict) or answer.get("type") not in ("notebook", "directory"):
        raise LookError(f"{path or 'That'} is not a notebook or a folder.")
    if answer["type"] == "directory":
        return Folder(path=path, **_entries(answer.get("content")), open_notebooks=_open_notebooks(session, deadline))
    return render(path, answer.get("content"))


def _reason(error: BaseException) -> str:
    if isinstance(error, TimeoutError | requests.Timeout):
        return f"no answer within {READ_SECONDS:.0f} s"
    if isinstance(error, RecursionError):
        return "an answer nested too deep to read"
    if isinstance(error, requests.RequestException):
        return "it could not be reached"
    return str(error)[:200]


def _clean(path: str) -> str:
    try:
        return notebook_api.clean_path(path)
    except ValueError as error:
        raise LookError(str(error)) from None


def _entries(content: Any) -> dict[str, Any]:
    """A folder's notebooks and subfolders, folders first, by name."""
    entries = []
    for item in content if isinstance(content, list) else []:
        if not isinstance(item, dict) or item.get("type") not in ("directory", "notebook") or not isinstance(item.get("path"), str):
            continue
        try:
            path = notebook_api.clean_path(item["path"])
        except ValueError:
            continue
        entries.append(Entry(name=_plain(path.rsplit("/", 1)[-1]), path=path, is_folder=item["type"] == "directory"))
    entries.sort(key=lambda entry: (not entry.is_folder, entry.name.lower()))
    return {"entries": entries[:MAX_ENTRIES], "entries_left_out": max(0, len(entries) - MAX_ENTRIES)}


def _open_notebooks(session: Session, deadline: float) -> list[str]:
    """The notebooks open in the participant's JupyterLab now (its sessions)."""
    url = f"{notebook_api.server_url(session.container)}api/sessions"
    try:
        answer = notebook_api.get_json_by(url, session.container.token, deadline=deadline, max_bytes=256 * 1024)
    except (requests.RequestException, ValueError, TimeoutError, RecursionError):
        return []
    found = []
    for item in answer if isinstance(answer, list) else []:
        if isinstance(item, dict) and item.get("type") == "notebook" and isinstance(item.get("path"), str):
            try:
                found.append(notebook_api.clean_path(item["path"]))
            except ValueError:
                continue
    return sorted(set(found))[:MAX_ENTRIES]


def render(path: str, content: Any) -> Notebook:
    """A notebook's JSON (nbformat 4, as the contents API gives it) as our
    own cells; whatever is not in shape is left out or named."""
    cells = content.get("cells") if isinstance(content, dict) else None
    if not isinstance(cells, list):
        raise LookError(f"{path} is not a notebook that can be read.")
    shown = [_cell(cell) for cell in cells[:MAX_CELLS] if isinstance(cell, dict)]
    return Notebook(path=path, cells=shown, cells_left_out=max(0, len(cells) - MAX_CELLS))


def _cell(cell: dict[str, Any]) -> Cell:
    kind = cell.get("cell_type") if cell.get("cell_type") in ("code", "markdown", "raw") else "raw"
    count = cell.get("execution_count")
    prompt = f"[{count}]" if isinstance(count, int) and not isinstance(count, bool) else ""
    outputs = cell.get("outputs") if kind == "code" else None
    shown = [_output(output) for output in outputs[:MAX_CELLS] if isinstance(output, dict)] if isinstance(outputs, list) else []
    return Cell(kind=str(kind), source=_text(cell.get("source")), prompt=prompt, outputs=shown)


def _output(output: dict[str, Any]) -> Output:
    kind = output.get("output_type")
    if kind == "stream":
        return Output(text=_text(output.get("text")), error=output.get("name") == "stderr")
    if kind == "error":
        lines = output.get("traceback")
        traceback = _text("\n".join(line for line in lines if isinstance(line, str))) if isinstance(lines, list) else ""
        return Output(text=traceback or _text(f"{output.get('ename')}: {output.get('evalue')}"), error=True)
    if kind in ("display_data", "execute_result"):
        data = output.get("data")
        return _rich(data if isinstance(data, dict) else {})
    return Output(note="An output of a kind this view does not show.")


def _rich(data: dict[str, Any]) -> Output:
    """The one representation shown of a rich output: a PNG or JPEG image,
    else its plain text; the others named."""
    for mime in _IMAGE_MAGIC:
        image = _image(mime, data[mime]) if mime in data else ""
        if image:
            return Output(image_url=image, text=_text(data.get("text/plain")))
    others = sorted(_plain(str(mime))[:80] for mime in data if mime != "text/plain")
    note = f"Also as {', '.join(others[:5])}: not shown here." if others else ""
    if "text/plain" in data:
        return Output(text=_text(data["text/plain"]), note=note)
    return Output(note=f"An output this view does not show ({', '.join(others[:5]) or 'empty'}).")


def _image(mime: str, value: Any) -> str:
    """A data: URL of the image when it is base64 of a real ``mime`` image within MAX_IMAGE_BYTES; else ""."""
    encoded = "".join(value) if isinstance(value, list) and all(isinstance(part, str) for part in value) else value
    if not isinstance(encoded, str) or len(encoded) > MAX_IMAGE_BYTES * 4 // 3 + 4096:
        return ""
    try:
        raw = base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        return ""
    if len(raw) > MAX_IMAGE_BYTES or not raw.startswith(_IMAGE_MAGIC[mime]):
        return ""
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def _text(value: Any) -> str:
    """A notebook's text (a string, or a list of them) as plain text: colour
    codes and control characters out, cut at MAX_TEXT."""
    if isinstance(value, list):
        value = "".join(part for part in value if isinstance(part, str))
    if not isinstance(value, str):
        return ""
    text = _plain(_ANSI.sub("", value))
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT} more characters not shown)"


def _plain(text: str) -> str:
    return _CONTROL.sub("", text.replace("\r\n", "\n"))


def beat(session: Session, *, now: datetime | None = None) -> None:
    """A helper's look page is open: the participant sees it for LOOK_SECONDS more."""
    until = (now or timezone.now()) + timedelta(seconds=LOOK_SECONDS)
    Session.objects.filter(pk=session.pk).update(helper_looking_until=until)
    session.helper_looking_until = until


def is_looked_at(session: Session, *, now: datetime | None = None) -> bool:
    return session.helper_looking_until is not None and session.helper_looking_until > (now or timezone.now())
