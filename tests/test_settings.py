"""Start-up with bad settings stops with a message that names the variable.

Each case starts a real Python process that loads the settings, as gunicorn,
the worker and manage.py do."""

import os
import subprocess
import sys

import pytest

from tests.stack import ROOT

LOAD_SETTINGS = "import django; django.setup(); from django.conf import settings; print(settings.TMPNB_DEFAULT_POOL); print(settings.CONFIGPROXY_AUTH_TOKEN)"


def start_with(tmp_path, code=LOAD_SETTINGS, **env):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TMPNB_", "DJANGO_", "CONFIGPROXY_"))}
    environment.update(
        DJANGO_SETTINGS_MODULE="tmpnb_site.settings",
        TMPNB_VAR_DIR=str(tmp_path),
        DJANGO_SECRET_KEY="a-real-secret",
        CONFIGPROXY_AUTH_TOKEN="a-real-token",
    )
    environment.update(env)
    environment = {k: v for k, v in environment.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TMPNB_POOL_SIZE", "ten", "TMPNB_POOL_SIZE must be a whole number, not 'ten'"),
        ("TMPNB_POOL_SIZE", "-1", "TMPNB_POOL_SIZE must be at least 0"),
        ("TMPNB_CULL_TIMEOUT", "1h", "TMPNB_CULL_TIMEOUT must be a whole number"),
        ("TMPNB_MEM_LIMIT", "lots", "TMPNB_MEM_LIMIT must be a size such as 512m"),
        ("TMPNB_CONTAINER_IP", "localhost", "TMPNB_CONTAINER_IP must be an IP address"),
        ("TMPNB_CONTAINER_PORT", "70000", "TMPNB_CONTAINER_PORT must be at most 65535"),
        ("TMPNB_COMMAND", "jupyter notebook --base={base_path} --x={nope}", "TMPNB_COMMAND: unknown placeholder {nope}"),
        (
            "TMPNB_COMMAND",
            "jupyter lab --NotebookApp.base_url={base_path}",
            "TMPNB_COMMAND: jupyter-server 2 no longer takes --NotebookApp.base_url: write --ServerApp.base_url",
        ),
        (
            "TMPNB_COMMAND",
            "jupyter lab --ServerApp.base_url={base_path} --ServerApp.root_dir='/home/jovyan",
            "TMPNB_COMMAND: the command's quoting is unbalanced (No closing quotation)",
        ),
        ("TMPNB_MAX_DOCK_WORKERS", "0", "TMPNB_MAX_DOCK_WORKERS must be at least 1"),
        ("TMPNB_NODE_GRACE", "0", "TMPNB_NODE_GRACE must be at least 1"),
        ("TMPNB_SWARM_NODE_ENGINES", "node-1", "TMPNB_SWARM_NODE_ENGINES must list name=value pairs separated by commas, and 'node-1' is not one"),
        ("TMPNB_SWARM_NODE_ENGINES", "node-1=http://10.0.0.2:2375", "TMPNB_SWARM_NODE_ENGINES: the engine of node-1 must be unix://... or tcp://..."),
        ("TMPNB_SWARM_NODE_ENGINES", "node-1=tcp://10.0.0.2:2376", "node-1's engine is on the network, which needs TLS: set TMPNB_SWARM_ENGINE_CERTS"),
        ("TMPNB_SWARM_ENGINE_CERTS", "/nonexistent", "TMPNB_SWARM_ENGINE_CERTS: /nonexistent holds no ca.pem"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must be a URL starting with redis://"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL must be a URL starting with sqlite://"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG must be true or false"),
        ("TMPNB_HOST_DIRECTORIES", "data:/data", "TMPNB_HOST_DIRECTORIES: 'data:/data' is not /host/path:/container/path"),
        ("TMPNB_EXTRA_HOSTS", "db:nowhere", "TMPNB_EXTRA_HOSTS: 'db:nowhere': 'nowhere' is not an IP address"),
        ("TMPNB_USE_TOKENS", "sometimes", "TMPNB_USE_TOKENS must be true or false"),
        ("TMPNB_USER_LENGTH", "4", "TMPNB_USER_LENGTH must be at least 8"),
        ("TMPNB_STATIC_FILES", "static", "TMPNB_STATIC_FILES must be an absolute path"),
        ("TMPNB_CULL_MAX", "0", "TMPNB_CULL_MAX must be at least 1"),
        ("TMPNB_SAMPLE_PERIOD", "0", "TMPNB_SAMPLE_PERIOD must be at least 1"),
        ("TMPNB_SAMPLE_DAYS", "two weeks", "TMPNB_SAMPLE_DAYS must be a whole number"),
        ("TMPNB_LANGUAGE", "klingon", "TMPNB_LANGUAGE must be one of en, fr, de, es, pt, it, ja, zh-hans, not 'klingon'"),
        ("TMPNB_SPAWN_RATE", "fast", "TMPNB_SPAWN_RATE must be requests per period"),
        ("TMPNB_ACCESS_CODE_RATE", "10", "TMPNB_ACCESS_CODE_RATE must be requests per period"),
        ("TMPNB_LOGIN_FAILURE_LIMIT", "0", "TMPNB_LOGIN_FAILURE_LIMIT must be at least 1"),
        ("TMPNB_LOGIN_LOCKOUT", "15m", "TMPNB_LOGIN_LOCKOUT must be a whole number"),
        ("TMPNB_HISTORY_DAYS", "0", "TMPNB_HISTORY_DAYS must be at least 1"),
        ("TMPNB_HISTORY_DAYS", "forever", "TMPNB_HISTORY_DAYS must be a whole number"),
        ("TMPNB_SNAPSHOT_HOURS", "-1", "TMPNB_SNAPSHOT_HOURS must be at least 0"),
        ("TMPNB_SNAPSHOT_MAX_MB", "lots", "TMPNB_SNAPSHOT_MAX_MB must be a whole number"),
        ("TMPNB_SNAPSHOT_MAX_FILES", "0", "TMPNB_SNAPSHOT_MAX_FILES must be at least 1"),
        ("TMPNB_SNAPSHOT_TIMEOUT", "0", "TMPNB_SNAPSHOT_TIMEOUT must be at least 1"),
        ("TMPNB_COPIES_AT_ONCE", "0", "TMPNB_COPIES_AT_ONCE must be at least 1"),
        ("TMPNB_SNAPSHOT_HOURS", "3000", "TMPNB_SNAPSHOT_HOURS (3000) cannot exceed TMPNB_HISTORY_DAYS (90) in hours"),
        ("TMPNB_NETWORK_GUARD", "maybe", "TMPNB_NETWORK_GUARD must be true or false"),
        ("TMPNB_GUARD_DENY", "10.0.0.0/8, intranet", "TMPNB_GUARD_DENY must list IPv4 networks such as 10.0.0.0/8, and 'intranet' is not one"),
        ("TMPNB_GUARD_ALLOW", "10.1.2.3/8", "TMPNB_GUARD_ALLOW must list IPv4 networks such as 10.0.0.0/8, and '10.1.2.3/8' is not one"),
        ("TMPNB_GUARD_PEERS", "sometimes", "TMPNB_GUARD_PEERS must be true or false"),
        ("TMPNB_MATERIALS", "workshop.zip", "TMPNB_MATERIALS: materials must be a git URL or an absolute path"),
        ("TMPNB_MATERIALS", "/srv/notes.pdf", "TMPNB_MATERIALS: /srv/notes.pdf is not a folder on this host, nor an archive ending in .zip"),
        ("TMPNB_MATERIALS_MAX_MB", "0", "TMPNB_MATERIALS_MAX_MB must be at least 1"),
        ("TMPNB_MATERIALS_MAX_MB", "lots", "TMPNB_MATERIALS_MAX_MB must be a whole number"),
        ("TMPNB_MATERIALS_GIT_TIMEOUT", "1m", "TMPNB_MATERIALS_GIT_TIMEOUT must be a whole number"),
        ("TMPNB_ACCESS_LOG", "verbose", "TMPNB_ACCESS_LOG must be true or false"),
        ("TMPNB_CPU_QUOTA", "a core", "TMPNB_CPU_QUOTA must be a whole number or none, not 'a core'"),
        ("TMPNB_CPU_QUOTA", "500", "TMPNB_CPU_QUOTA must be at least 1000"),
        ("TMPNB_DISK_LIMIT", "lots", "TMPNB_DISK_LIMIT must be a size such as 512m or 2g, or none, not 'lots'"),
        ("TMPNB_DISK_LIMIT", "1k", "TMPNB_DISK_LIMIT must be at least 1m"),
        ("TMPNB_DISK_PERIOD", "0", "TMPNB_DISK_PERIOD must be at least 1"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, variable, value, message):
    result = start_with(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_a_ready_target_above_the_pool_size_is_refused(tmp_path):
    result = start_with(tmp_path, TMPNB_POOL_SIZE="5", TMPNB_READY_TARGET="6")
    assert result.returncode != 0
    assert "TMPNB_READY_TARGET (6) cannot exceed TMPNB_POOL_SIZE (5)" in result.stderr


def test_good_values_make_the_default_pool(tmp_path):
    result = start_with(tmp_path, TMPNB_POOL_SIZE="30", TMPNB_READY_TARGET="5", TMPNB_IMAGE="my/image:1", TMPNB_MEM_LIMIT="1g", TMPNB_ACCESS_CODE="tulip-42")
    assert result.returncode == 0, result.stderr
    assert "'access_code': 'tulip-42'" in result.stdout
    assert "'capacity': 30" in result.stdout
    assert "'ready_target': 5" in result.stdout
    assert "'image': 'my/image:1'" in result.stdout
    assert "'mem_limit': '1g'" in result.stdout


def test_the_default_pool_caps_each_notebook_at_one_core_unless_told_otherwise(tmp_path):
    result = start_with(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'cpu_quota': 100000" in result.stdout
    for value, expected in (("50000", "'cpu_quota': 50000"), ("none", "'cpu_quota': None"), ("None", "'cpu_quota': None")):
        chosen = start_with(tmp_path, TMPNB_CPU_QUOTA=value)
        assert chosen.returncode == 0, chosen.stderr
        assert expected in chosen.stdout


def test_each_notebook_may_write_two_gigabytes_unless_told_otherwise(tmp_path):
    code = "import django; django.setup(); from django.conf import settings; print(settings.TMPNB_DISK_LIMIT, settings.TMPNB_DISK_PERIOD)"
    assert start_with(tmp_path, code).stdout.split() == [str(2 * 1024**3), "15"]
    assert start_with(tmp_path, code, TMPNB_DISK_LIMIT="500m", TMPNB_DISK_PERIOD="5").stdout.split() == [str(500 * 1024**2), "5"]
    assert start_with(tmp_path, code, TMPNB_DISK_LIMIT="none").stdout.split()[0] == "None"


def test_materials_from_the_environment_seed_the_default_pool(tmp_path):
    result = start_with(tmp_path, TMPNB_MATERIALS="https://git.example.org/workshop.git", TMPNB_MATERIALS_BRANCH="day-2")
    assert result.returncode == 0, result.stderr
    assert "'materials_source': 'https://git.example.org/workshop.git'" in result.stdout
    assert "'materials_branch': 'day-2'" in result.stdout


def test_the_default_pool_lands_participants_in_jupyterlab(tmp_path):
    result = start_with(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'image': 'tmpnb/jupyterlab:latest'" in result.stdout
    assert "'command': 'jupyter lab " in result.stdout
    assert "'redirect_uri': '/lab'" in result.stdout


def test_the_classic_image_brings_its_own_command_and_landing_page(tmp_path):
    result = start_with(tmp_path, TMPNB_IMAGE="tmpnb/jupyter:latest")
    assert result.returncode == 0, result.stderr
    assert "'command': 'jupyter notebook " in result.stdout and "--NotebookApp.base_url={base_path}" in result.stdout
    assert "'redirect_uri': '/tree'" in result.stdout
    explicit = start_with(tmp_path, TMPNB_IMAGE="tmpnb/jupyter:latest", TMPNB_REDIRECT_URI="/notebooks/intro.ipynb")
    assert "'redirect_uri': '/notebooks/intro.ipynb'" in explicit.stdout


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    result = start_with(tmp_path, CONFIGPROXY_AUTH_TOKEN=None, CONFIGPROXY_AUTH_TOKEN_FILE=str(secret))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "from-a-file"


def test_an_unreadable_secret_file_is_named(tmp_path):
    result = start_with(tmp_path, DJANGO_SECRET_KEY=None, DJANGO_SECRET_KEY_FILE=str(tmp_path / "missing"))
    assert "DJANGO_SECRET_KEY_FILE: cannot read" in result.stderr


@pytest.mark.parametrize("variable", ["DJANGO_SECRET_KEY", "CONFIGPROXY_AUTH_TOKEN"])
def test_production_refuses_a_default_secret(tmp_path, variable):
    result = start_with(tmp_path, **{variable: None})
    assert result.returncode != 0
    assert f"{variable} must be set" in result.stderr
    assert start_with(tmp_path, DJANGO_DEBUG="true", **{variable: None}).returncode == 0


def test_an_unknown_backend_is_refused(tmp_path):
    result = start_with(tmp_path, TMPNB_BACKEND="kubernetes")
    assert result.returncode != 0
    assert "TMPNB_BACKEND must be one of docker, swarm, not 'kubernetes'" in result.stderr


def test_the_organiser_sets_the_default_language(tmp_path):
    show = "import django; django.setup(); from django.conf import settings; print(settings.LANGUAGE_CODE)"
    assert start_with(tmp_path, show).stdout.strip() == "en"
    assert start_with(tmp_path, show, TMPNB_LANGUAGE="zh-Hans").stdout.strip() == "zh-hans"
    assert start_with(tmp_path, show, TMPNB_LANGUAGE="fr").stdout.strip() == "fr"


def test_an_unknown_route_is_refused(tmp_path):
    result = start_with(tmp_path, TMPNB_ROUTE_TO="ip")
    assert result.returncode != 0
    assert "TMPNB_ROUTE_TO must be one of published, container, not 'ip'" in result.stderr


def test_a_swarm_is_routed_to_published_ports(tmp_path):
    result = start_with(tmp_path, TMPNB_BACKEND="swarm", TMPNB_ROUTE_TO="container")
    assert result.returncode != 0
    assert "TMPNB_ROUTE_TO=container is not available with TMPNB_BACKEND=swarm" in result.stderr
    assert start_with(tmp_path, TMPNB_BACKEND="swarm").returncode == 0


def test_a_swarm_refuses_the_host_network_and_an_internal_one_without_the_guard(tmp_path):
    result = start_with(tmp_path, TMPNB_BACKEND="swarm", TMPNB_HOST_NETWORK="true")
    assert result.returncode != 0
    assert "TMPNB_HOST_NETWORK=true is not available with TMPNB_BACKEND=swarm" in result.stderr
    result = start_with(tmp_path, TMPNB_BACKEND="swarm", TMPNB_INTERNAL_NETWORK="true", TMPNB_NETWORK_GUARD="false")
    assert result.returncode != 0
    assert "TMPNB_INTERNAL_NETWORK=true with TMPNB_BACKEND=swarm needs TMPNB_NETWORK_GUARD=true" in result.stderr
    assert start_with(tmp_path, TMPNB_BACKEND="swarm", TMPNB_INTERNAL_NETWORK="true").returncode == 0
