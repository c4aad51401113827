"""JupyterLab's static files, compressed once at image build and served once
per installation (README "Notebook images").

An image of deploy/images/build-jupyter names, in its label tmpnb.lab-static,
the folder that holds JupyterLab's files (with a gzip and a brotli copy of
each one worth compressing), and its JupyterLab asks for them at
/lab-static/<recipe>/ on the notebook's own origin, where <recipe> is the
image's tmpnb.recipe label. The first spawn of a build copies that folder out
of the image itself, once, to TMPNB_VAR_DIR/lab_static/<recipe>/; the proxy
serves it from there to every notebook of that build, with immutable caching,
on the notebooks' origins only (deploy/proxy/lab-static.mjs). So neither a
container nor the app spends CPU on these files for each participant.
"""

import fcntl
import re
import tempfile
from pathlib import Path

from django.conf import settings

from pool.backends import get_backend
from pool.models import Pool

FOLDER_LABEL = "tmpnb.lab-static"
RECIPE_LABEL = "tmpnb.recipe"
RECIPE = re.compile(r"^[0-9a-f]{16}$")  # build-jupyter's: the first 16 hex digits of a sha256


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
