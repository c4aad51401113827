"""JupyterLab's static files, compressed once at image build and served once
per installation (README "Notebook images").

An image of deploy/images/build-jupyter names, in its label tmpnb.lab-static,
the folder that holds JupyterLab's files (with a gzip and a brotli copy of
each one worth compressing), and its JupyterLab asks for them at
/lab-static/<recipe>/ on the notebook's own origin, where <recipe> is the
image's tmpnb.recipe label. The first spawn of a build copies that folder out
of the image itself, once; the app then serves it to every notebook of that
build, with immutable caching, on the notebooks' origins only. So no
container compresses the same 5 MB for each participant.
"""

import fcntl
import mimetypes
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils._os import safe_join

from pool.backends import get_backend
from pool.models import Pool

FOLDER_LABEL = "tmpnb.lab-static"
RECIPE_LABEL = "tmpnb.recipe"
RECIPE = re.compile(r"^[0-9a-f]{16}$")  # build-jupyter's: the first 16 hex digits of a sha256
# Best first, as the image build made them.
ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


def root() -> Path:
    return Path(settings.VAR_DIR) / "lab_static"


def copy_once(pool: Pool) -> None:
    """Copy the JupyterLab files of ``pool``'s image out of the image, unless
    this build's are here already; raises BackendError when that fails, so no
    notebook is handed out whose page cannot load."""
    labels = get_backend().image_labels(pool.image)
    folder, recipe = labels.get(FOLDER_LABEL), labels.get(RECIPE_LABEL, "")
    if not folder:
        return  # another image: its server serves its own files
    if not RECIPE.match(recipe):
        raise ValueError(f"image {pool.image} has label {FOLDER_LABEL} but no valid {RECIPE_LABEL} ({recipe!r})")
    destination = root() / recipe
    if destination.exists():
        return
    root().mkdir(parents=True, exist_ok=True)
    with open(root() / f"{recipe}.lock", "w") as lock:
        # The other spawns of a pool filling at once wait for this one copy.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if destination.exists():
            return
        with tempfile.TemporaryDirectory(dir=root()) as scratch:
            get_backend().copy_out_of_image(pool.image, pool=pool.name, path=folder, destination=scratch)
            (Path(scratch) / Path(folder).name).rename(destination)


@dataclass(frozen=True)
class StaticFile:
    path: Path
    content_type: str
    encoding: str | None  # the Content-Encoding of the bytes at ``path``


def find(recipe: str, path: str, accept_encoding: str) -> StaticFile | None:
    """The file to answer for ``path`` of build ``recipe``: its compressed copy
    in the best encoding the client accepts, else the file itself."""
    if not RECIPE.match(recipe):
        return None
    original = Path(safe_join(root() / recipe, path))  # SuspiciousFileOperation if it climbs out
    if not original.is_file():
        return None
    content_type = mimetypes.guess_type(original.name)[0] or "application/octet-stream"
    accepted = {token.split(";")[0].strip().lower() for token in accept_encoding.split(",")}
    for encoding, suffix in ENCODINGS:
        compressed = original.with_name(original.name + suffix)
        if encoding in accepted and compressed.is_file():
            return StaticFile(compressed, content_type, encoding)
    return StaticFile(original, content_type, None)
