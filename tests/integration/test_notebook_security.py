"""A real Jupyter notebook from the pool (the default JupyterLab image): locked
to its own token, run as a user without privileges, quiet on the internet."""

import docker

from pool.command import DEFAULT_COMMAND
from pool.models import Container
from pool.services import pools, spawning
from tests.factories import JUPYTER_IMAGE, PoolFactory
from tests.stack import Browser


def test_another_visitors_url_is_not_enough_to_use_their_notebook(clean_pools, proxy):
    pool = PoolFactory(capacity=1, image=JUPYTER_IMAGE, command=DEFAULT_COMMAND, mem_limit="256m")
    [row] = pools.fill_pool(pool.pk)
    container = spawning.spawn_container(row.pk)
    assert container.state == Container.State.READY, container.error
    base = f"{proxy.notebook_url}{container.base_path}"

    stranger = Browser()
    tree = stranger.get(f"{base}tree", timeout=10, allow_redirects=False)
    assert tree.status_code == 302 and "/login" in tree.headers["Location"]
    assert stranger.get(f"{base}api/contents", timeout=10).status_code == 403
    assert stranger.post(f"{base}api/kernels", timeout=10).status_code == 403

    owner = Browser()
    page = owner.get(f"{proxy.notebook_url}{container.url_for('/lab')}", timeout=10)
    assert page.status_code == 200 and "<title>JupyterLab</title>" in page.text
    assert owner.get(f"{base}api/contents", timeout=10).status_code == 200
    # The image's settings: nothing is looked up on the internet by the server itself.
    assert owner.get(f"{base}lab/api/news", timeout=10).json() == {"news": []}
    assert owner.get(f"{base}lab/api/update", timeout=10).json() == {"notification": None}
    assert '"extensionManager": {"can_install": false' in page.text
    assert owner.get(f"{base}lab", headers={"Accept-Encoding": "gzip"}, timeout=10).headers.get("Content-Encoding") == "gzip"

    client = docker.from_env()
    try:
        running = client.containers.get(container.backend_id)
        assert running.exec_run("id -u").output.decode().strip() == "1000"
        status = running.exec_run("grep -E '^(CapEff|NoNewPrivs)' /proc/1/status").output.decode()
        assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
        assert running.exec_run("ls /var/run/docker.sock").exit_code != 0
    finally:
        client.close()
