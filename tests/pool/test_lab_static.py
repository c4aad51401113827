"""JupyterLab's files of an image build, copied out of its image once
(pool/services/lab_static.py); the proxy serves them
(tests/integration/test_lab_static.py)."""

import pytest

from pool.services import lab_static, spawning
from tests.factories import PoolFactory

RECIPE = "0123456789abcdef"
LABELLED = {"tmpnb.recipe": RECIPE, "tmpnb.lab-static": "/opt/jupyter/share/jupyter/lab/static"}
FILES = {"main.1a2b.js": b"plain", "main.1a2b.js.br": b"brotli", "main.1a2b.js.gz": b"gzip", "fonts/a.woff": b"woff"}

pytestmark = pytest.mark.django_db


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.fixture
def labelled_image(fake_backend):
    fake_backend.image_files["lab:1"] = {**LABELLED, "files": FILES}
    copies = []
    copy = fake_backend.copy_out_of_image
    fake_backend.copy_out_of_image = lambda *args, **kwargs: copies.append(args) or copy(*args, **kwargs)
    return copies


def test_the_files_of_a_build_are_copied_out_of_its_image_once(var_dir, labelled_image):
    pool = PoolFactory(image="lab:1")
    lab_static.copy_once(pool)
    lab_static.copy_once(pool)
    assert len(labelled_image) == 1
    assert (var_dir / "lab_static" / RECIPE / "main.1a2b.js.br").read_bytes() == b"brotli"


def test_an_image_without_the_label_serves_its_own_files(var_dir, fake_backend):
    fake_backend.image_files["other:1"] = {"tmpnb.recipe": RECIPE}
    lab_static.copy_once(PoolFactory(image="other:1"))
    assert not (var_dir / "lab_static").exists()


def test_a_recipe_label_that_is_no_hash_is_refused(var_dir, fake_backend):
    fake_backend.image_files["odd:1"] = {**LABELLED, "tmpnb.recipe": "../../etc", "files": FILES}
    with pytest.raises(ValueError, match="tmpnb.recipe"):
        lab_static.copy_once(PoolFactory(image="odd:1"))


def test_a_spawn_copies_them_before_the_notebook_is_routed(var_dir, labelled_image, fake_proxy):
    from pool.services import pools

    pool = PoolFactory(image="lab:1", capacity=1)
    [row] = pools.fill_pool(pool.pk)
    spawning.spawn_container(row.pk)
    assert (var_dir / "lab_static" / RECIPE / "main.1a2b.js").exists()
