import re

import pytest

from pool.command import CLASSIC_COMMAND, DEFAULT_COMMAND, check_command_template, render_command


def test_it_fills_every_placeholder():
    command = render_command(
        "serve --base={base_path} --port={port} --ip={ip} --token={token}",
        base_path="/user/abc/",
        port=8888,
        ip="0.0.0.0",
        token="t0k",
    )
    assert command == "serve --base=/user/abc/ --port=8888 --ip=0.0.0.0 --token=t0k"


def test_the_default_command_runs_jupyterlab_on_jupyter_server_2():
    check_command_template(DEFAULT_COMMAND)
    rendered = render_command(DEFAULT_COMMAND, base_path="/user/x/", port=8888, ip="0.0.0.0", token="secret")
    assert rendered.startswith("jupyter lab ")
    assert "--ServerApp.base_url=/user/x/" in rendered
    assert "--IdentityProvider.token=secret" in rendered
    assert "NotebookApp" not in rendered


def test_the_classic_command_speaks_notebookapp():
    check_command_template(CLASSIC_COMMAND)
    rendered = render_command(CLASSIC_COMMAND, base_path="/user/x/", port=8888, ip="0.0.0.0", token="secret")
    assert "jupyter notebook " in rendered and "--NotebookApp.base_url=/user/x/ --NotebookApp.token=secret" in rendered


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("jupyter lab --NotebookApp.base_url={base_path}", "jupyter-server 2 no longer takes --NotebookApp.base_url: write --ServerApp.base_url"),
        ("jupyter lab --ServerApp.base_url={base_path} --NotebookApp.token={token}", "write --IdentityProvider.token"),
        ("jupyter server --ServerApp.base_url={base_path} --NotebookApp.notebook_dir=/w", "write --ServerApp.root_dir"),
        ("jupyter-lab --NotebookApp.base_url={base_path}", "write --ServerApp.base_url"),
    ],
)
def test_it_refuses_classic_options_on_jupyter_server_2_naming_the_new_one(template, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_command_template(template)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("jupyter notebook --base={base_path} --user={user}", "unknown placeholder {user}"),
        ("jupyter notebook --base={base_path} {}", "unknown placeholder {}"),
        ("jupyter notebook --port={port}", "must place {base_path}"),
        ("jupyter notebook --base={base_path", "not a valid template"),
        ("   ", "empty"),
        ("jupyter lab --ServerApp.base_url={base_path} --ServerApp.root_dir='/home/jovyan", "the command's quoting is unbalanced (No closing quotation)"),
        ('sh -c "serve {base_path}', "the command's quoting is unbalanced (No closing quotation)"),
        ("serve {base_path} \\", "the command's quoting is unbalanced (No escaped character)"),
    ],
)
def test_it_refuses_a_bad_template_with_a_clear_message(template, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_command_template(template)


def test_literal_braces_can_be_written_doubled():
    check_command_template("sh -c 'x={{a}}; serve {base_path}'")
    assert render_command("x={{a}} {base_path}", base_path="/b/", port=1, ip="i", token="t") == "x={a} /b/"
