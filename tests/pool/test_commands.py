"""The operators' management commands and what they print."""

import json
import logging
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import docker
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from pool.backends import docker as docker_backend
from pool.backends.client import labels_for
from pool.models import Container, Event, Schedule, Session
from pool.services import assignment
from proxyapi import ProxyClient, get_proxy
from tests.factories import TINY_IMAGE, ContainerFactory, PoolFactory
from tests.pool.test_upkeep import spawn_all
from tests.stack import ROOT


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def two_pools(db):
    default = PoolFactory(capacity=6, ready_target=3)
    python = PoolFactory(name="python", capacity=2, image="tmpnb/jupyter:latest")
    ContainerFactory.create_batch(2, pool=default, state=Container.State.READY)
    ContainerFactory(pool=default, state=Container.State.ASSIGNED)
    ContainerFactory(pool=python, state=Container.State.SPAWNING)
    ContainerFactory(pool=python, state=Container.State.FAILED, ended_at=timezone.now())
    Schedule.objects.create(pool=default, at=timezone.now().replace(year=2031, month=5, day=4, hour=9, minute=45), capacity=60)
    return default, python


def test_pool_status_prints_a_readable_table_of_every_pool(two_pools):
    lines = run("pool_status").splitlines()
    assert lines[0].split("  ")[0] == "POOL"
    assert [line.split() for line in lines] == [
        ["POOL", "IMAGE", "SIZE", "READY", "TARGET", "READY", "IN", "USE", "STARTING", "FAILED", "TODAY", "NEXT", "SIZE", "SAVED", "WORK", "URL"],
        ["default", "tmpnb/tiny:latest", "6", "3", "2", "1", "0", "0", "60", "at", "2031-05-04", "09:45", "0", "/"],
        ["python", "tmpnb/jupyter:latest", "2", "2", "0", "0", "1", "1", "-", "0", "/p/python/"],
    ]
    # Columns line up: each heading starts where its values start.
    assert lines[1].index("6 ") == lines[0].index("SIZE") and lines[2].index("/p/python/") == lines[0].index("URL")


def test_pool_status_json_for_one_pool(two_pools):
    [row] = json.loads(run("pool_status", "--json", "--pool", "python"))
    assert row == {
        "name": "python",
        "image": "tmpnb/jupyter:latest",
        "capacity": 2,
        "ready_target": 2,
        "ready": 0,
        "in_use": 0,
        "starting": 1,
        "failed_today": 1,
        "next_schedule": None,
        "saved_work": {"snapshots": 0, "bytes": 0},
        "landing": "/p/python/",
    }
    assert json.loads(run("pool_status", "--json"))[0]["next_schedule"]["capacity"] == 60


@pytest.mark.django_db
def test_an_unknown_pool_is_refused_with_the_names_there_are():
    PoolFactory()
    with pytest.raises(CommandError, match="no pool named 'nope'; pools: default"):
        run("pool_status", "--pool", "nope")


@pytest.mark.django_db
def test_resize_and_drain_say_what_they_did_and_log_it_as_manage_py():
    PoolFactory(name="python", capacity=2)
    assert run("resize_pool", "5", "--ready-target", "2", "--pool", "python") == "Pool python: size 5, ready target 2.\n"
    assert run("drain_pool", "--pool", "python") == "Pool python: replacing 0 container(s); containers in use keep running.\n"
    assert list(Event.objects.order_by("pk").values_list("kind", "actor")) == [("resize", "manage.py"), ("drain", "manage.py")]


def test_cull_with_a_pool_culls_only_that_pools_sessions(clean_pools):
    pools = [PoolFactory(capacity=1, cull_max=60), PoolFactory(name="python", capacity=1, cull_max=60)]
    for pool in pools:
        spawn_all(pool)
        assignment.assign_container(pool=pool, visitor=pool.name)
    Session.objects.update(started_at=timezone.now() - timedelta(minutes=5))
    assert run("cull", "--pool", "python") == "culled-idle: 0, culled-age: 1\n"
    assert list(Session.objects.active().values_list("container__pool__name", flat=True)) == ["default"]
    assert run("cull") == "culled-idle: 0, culled-age: 1\n"


def test_reconcile_with_a_pool_repairs_only_that_pool_with_one_list_call_each(clean_pools, monkeypatch):
    PoolFactory(name="python")
    engine = docker.from_env()
    for name in ("default", "python"):
        labels = labels_for(name)
        engine.containers.run(TINY_IMAGE, "sleep 600", detach=True, name=f"tmpnb-{settings.TMPNB_INSTALLATION}-{name}-orphan", labels=labels)
        get_proxy().add_route(f"/user/stray{name}", "http://127.0.0.1:1", container="x", pool=name)
    engine.close()
    calls = []
    real_docker_list, real_proxy_list = docker_backend.list_containers, ProxyClient.list_routes
    monkeypatch.setattr(docker_backend, "list_containers", lambda: calls.append("docker") or real_docker_list())
    monkeypatch.setattr(ProxyClient, "list_routes", lambda self: calls.append("proxy") or real_proxy_list(self))

    out = run("reconcile", "--pool", "python")
    assert out == (
        "dead replaced: 0, stuck failed: 0, teardowns retried: 0, orphans removed: 1, routes added: 0, routes deleted: 1, activity synced: 0, repairs failed: 0\n"
    )
    assert calls == ["docker", "proxy"]
    assert [c.name for c in docker_backend.list_containers()] == [f"tmpnb-{settings.TMPNB_INSTALLATION}-default-orphan"]
    assert list(get_proxy().list_routes()) == ["/user/straydefault"]
    # Without --pool, every pool: the other pool's orphan and route go too.
    assert "orphans removed: 1, routes added: 0, routes deleted: 1" in run("reconcile")
    assert docker_backend.list_containers() == []


# --- Refusals: one line, never a traceback ------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resize_pool", "-5"], "the pool size cannot be negative"),
        (["resize_pool", "3", "--ready-target", "-1"], "the ready target cannot be negative"),
        (["resize_pool", "many"], "argument size: invalid int value: 'many'"),
        (["resize_pool", "3", "--pool", "nope"], "no pool named 'nope'; pools: default"),
        (["drain_pool", "--pool", "nope"], "no pool named 'nope'; pools: default"),
        (["cull", "--pool", "nope"], "no pool named 'nope'; pools: default"),
        (["reconcile", "--pool", "nope"], "no pool named 'nope'; pools: default"),
        (["pool_status", "--jsn"], "unrecognized arguments: --jsn"),
    ],
)
def test_each_command_refuses_bad_arguments_with_a_command_error(args, message):
    PoolFactory()
    with pytest.raises(CommandError, match=re.escape(message)):
        run(*args)


@pytest.mark.django_db
@pytest.mark.parametrize("command", [pytest.param("reconcile", marks=pytest.mark.integration), "cull"])  # reconcile lists Docker first
def test_a_proxy_that_does_not_answer_is_a_command_error_not_a_traceback(command, settings):
    settings.CONFIGPROXY_ENDPOINT = "http://127.0.0.1:9"  # a closed port, even once a test has started the session's proxy
    PoolFactory()
    with pytest.raises(CommandError, match=r"^GET http://127\.0\.0\.1:9/api/routes"):
        run(command)


@pytest.mark.django_db
def test_init_pool_names_the_setting_that_makes_no_valid_pool(settings):
    PoolFactory()
    settings.TMPNB_DEFAULT_POOL = {**settings.TMPNB_DEFAULT_POOL, "image": ""}
    settings.TMPNB_POOL_FROM_ENVIRONMENT = ["image"]
    with pytest.raises(CommandError, match=r"^the TMPNB_\* settings do not make a valid pool: image: This field cannot be blank\.$"):
        run("init_pool")


def test_from_the_shell_a_bad_argument_is_one_line_and_exit_status_2():
    shell = subprocess.run([sys.executable, "manage.py", "resize_pool", "many"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (shell.returncode, shell.stdout) == (2, "")
    assert shell.stderr == "manage.py resize_pool: error: argument size: invalid int value: 'many'\n"


def test_from_the_shell_a_refused_setting_is_one_line_naming_the_variable():
    shell = subprocess.run([sys.executable, "manage.py", "pool_status"], cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert (shell.returncode, shell.stdout) == (1, "")
    assert shell.stderr.startswith("ImproperlyConfigured: DJANGO_SECRET_KEY must be set") and shell.stderr.count("\n") == 1


def test_stop_pools_says_once_that_the_proxy_is_not_running(clean_pools, settings, caplog):
    pool = PoolFactory(capacity=3)
    spawn_all(pool)
    settings.CONFIGPROXY_ENDPOINT = "http://127.0.0.1:9"  # the proxy has stopped
    out, err = StringIO(), StringIO()
    call_command("stop_pools", stdout=out, stderr=err)
    assert out.getvalue() == "3 notebook containers removed.\n"
    assert err.getvalue() == "The proxy is not running: the routes went with it; only the containers were removed.\n"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert Container.objects.live().count() == 0 and docker_backend.list_containers() == []
