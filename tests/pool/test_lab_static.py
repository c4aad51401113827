"""JupyterLab's files of an image build, copied once and served compressed
on the notebooks' origins (pool/services/lab_static.py)."""

import pytest
from django.conf import settings

from pool.services import lab_static, spawning
from tests.factories import PoolFactory

RECIPE = "0123456789abcdef"
LABELLED = {"tmpnb.recipe": RECIPE, "tmpnb.lab-static": "/opt/jupyter/share/jupyter/lab/static"}
FILES = {"main.1a2b.js": b"plain", "main.1a2b.js.br": b"brotli", "main.1a2b.js.gz": b"gzip", "fonts/a.woff": b"woff"}

pytestmark = pytest.mark.django_db


def on_notebook_origin(client, path, **headers):
    return client.get(path, HTTP_HOST=f"127.0.0.1:{settings.TMPNB_NOTEBOOK_PORT}", **headers)


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


@pytest.mark.parametrize(
    ("accept", "body", "encoding"),
    [("gzip, deflate, br, zstd", b"brotli", "br"), ("gzip", b"gzip", "gzip"), ("", b"plain", None), ("br;q=1", b"brotli", "br")],
)
def test_the_best_encoding_the_browser_accepts_is_served_for_good(client, var_dir, labelled_image, accept, body, encoding):
    lab_static.copy_once(PoolFactory(image="lab:1"))
    response = on_notebook_origin(client, f"/lab-static/{RECIPE}/main.1a2b.js", HTTP_ACCEPT_ENCODING=accept)
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == body
    assert response.get("Content-Encoding") == encoding
    assert response["Content-Type"].endswith("javascript")
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "Accept-Encoding" in response["Vary"]


@pytest.mark.parametrize("path", [f"/lab-static/{RECIPE}/missing.js", f"/lab-static/{RECIPE}/../{RECIPE}.lock", "/lab-static/nothex/main.1a2b.js"])
def test_what_is_not_a_file_of_a_build_is_not_found(client, var_dir, labelled_image, path):
    lab_static.copy_once(PoolFactory(image="lab:1"))
    assert on_notebook_origin(client, path).status_code == 404


def test_they_are_never_served_on_the_services_origin(client, var_dir, labelled_image):
    lab_static.copy_once(PoolFactory(image="lab:1"))
    assert client.get(f"/lab-static/{RECIPE}/main.1a2b.js").status_code == 404
