"""``python -m deploy.benchmark.file_copy_paths [IMAGE]``: copying a 20 MB
folder (20 files of 1 MB) out of a JupyterLab notebook on one machine:
Docker's archive API (what the backends use, on a Swarm through the node's
engine) against the notebook server's contents API with its token (a
listing, then each file as base64 in JSON) and its /files/ handler (each
file's bytes). Prints seconds for 3 runs of each; removes its container.
README "Scaling out" has the figures (why a Swarm copies through each
node's engine)."""

import base64
import secrets
import sys
import time

import docker
import requests

from deploy.benchmark.images import LABEL_BENCH

IMAGE = sys.argv[1] if len(sys.argv) > 1 else "tmpnb/jupyterlab:latest"
FILL = "import os\nos.makedirs('/home/jovyan/work', exist_ok=True)\nfor i in range(20):\n    open(f'/home/jovyan/work/f{i}', 'wb').write(os.urandom(1 << 20))\n"


def archive(container):
    bits, _ = container.get_archive("/home/jovyan/work")
    return sum(len(chunk) for chunk in bits)


def contents(base, token, raw):
    with requests.Session() as session:
        session.trust_env = False
        session.headers["Authorization"] = f"token {token}"
        listing = session.get(f"{base}/api/contents/work", timeout=30).json()
        total = 0
        for item in listing["content"]:
            if raw:
                total += len(session.get(f"{base}/files/work/{item['name']}", timeout=30).content)
            else:
                body = session.get(f"{base}/api/contents/work/{item['name']}?format=base64&type=file", timeout=30).json()
                total += len(base64.b64decode(body["content"]))
        return total


def timed(call):
    runs = []
    for _ in range(3):
        started = time.monotonic()
        size = call()
        runs.append(round(time.monotonic() - started, 3))
    return runs, size


def main():
    client = docker.from_env()
    token = secrets.token_hex(16)
    command = f"jupyter lab --ServerApp.token={token} --ServerApp.ip=0.0.0.0 --ServerApp.port=8888 --no-browser"
    container = client.containers.run(IMAGE, command, detach=True, labels={LABEL_BENCH: "file-copy-paths"}, ports={"8888/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        assert container.exec_run(["python", "-c", FILL]).exit_code == 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        for name, call in [
            ("docker archive API", lambda: archive(container)),
            ("contents API (base64 JSON)", lambda: contents(base, token, False)),
            ("/files/ handler", lambda: contents(base, token, True)),
        ]:
            runs, size = timed(call)
            print(f"{name}: {runs} s ({size / 1e6:.1f} MB read)")
    finally:
        container.remove(force=True)
        client.close()


if __name__ == "__main__":
    main()
