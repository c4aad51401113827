"""The images the benchmark runs, with the command and landing page the
service gives each, and the benchmark's own Docker calls (building a missing
image, removing what it labelled)."""

import concurrent.futures
import os
import subprocess
import time

import docker

from deploy.benchmark import log
from pool.command import CLASSIC_COMMAND, CLASSIC_IMAGE, DEFAULT_COMMAND, DEFAULT_IMAGE
from tests.stack import ROOT, TINY_COMMAND, TINY_IMAGE

# JupyterLab 4, the service's default; TMPNB_BENCH_JUPYTER_IMAGE names another
# tag of it, built from this checkout (as TMPNB_TEST_JUPYTER_IMAGE for the tests).
JUPYTER_IMAGE = os.environ.get("TMPNB_BENCH_JUPYTER_IMAGE") or DEFAULT_IMAGE
IMAGES = {"tiny": TINY_IMAGE, "jupyter": JUPYTER_IMAGE, "classic": CLASSIC_IMAGE}
BUILD_JUPYTER = ROOT / "deploy/images/build-jupyter"
BUILDERS = {TINY_IMAGE: [ROOT / "deploy/images/build-tiny"], JUPYTER_IMAGE: [BUILD_JUPYTER, JUPYTER_IMAGE], CLASSIC_IMAGE: [BUILD_JUPYTER, "--classic"]}
COMMANDS = {TINY_IMAGE: TINY_COMMAND, JUPYTER_IMAGE: DEFAULT_COMMAND, CLASSIC_IMAGE: CLASSIC_COMMAND}
# Where a visitor lands (TMPNB_REDIRECT_URI): a container is ready once that page answered.
LANDINGS = {TINY_IMAGE: "/tree", JUPYTER_IMAGE: "/lab", CLASSIC_IMAGE: "/tree"}
# What the landing page of each image holds once it is the visitor's own.
LANDING_MARKERS = {JUPYTER_IMAGE: "<title>JupyterLab</title>", CLASSIC_IMAGE: "<title>Home Page - Select or create a notebook</title>"}
CONTAINER_PORT = 8888
MEM_LIMIT = "512m"  # the service's default TMPNB_MEM_LIMIT, used for the raw runs too
LABEL_INSTALLATION = "tmpnb.installation"
LABEL_BENCH = "tmpnb.bench"  # marks the raw containers the benchmark starts itself


def docker_client():
    return docker.from_env(timeout=120)


def ensure_image(image):
    client = docker_client()
    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    finally:
        client.close()
    log(f"building {image} (once)")
    subprocess.run([str(arg) for arg in BUILDERS[image]], check=True)


def remove_network(network, tries=10):
    """Docker answers 403 "active endpoints" for a moment after many of a
    network's containers were removed at once."""
    for _ in range(tries):
        try:
            network.remove()
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(0.5)
    log(f"network {network.name} not removed: it still has endpoints")


def remove_labelled(client, labels):
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    containers = client.containers.list(all=True, filters=filters)

    def remove(container):
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

    with concurrent.futures.ThreadPoolExecutor(4) as executor:
        list(executor.map(remove, containers))
    left = client.containers.list(all=True, filters=filters)
    if left:
        raise RuntimeError(f"could not remove {[c.name for c in left]}")
