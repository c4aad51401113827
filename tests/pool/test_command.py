import pytest

from pool.command import DEFAULT_COMMAND, check_command_template, render_command


def test_it_fills_every_placeholder():
    command = render_command(
        "serve --base={base_path} --port={port} --ip={ip} --token={token}",
        base_path="/user/abc/", port=8888, ip="0.0.0.0", token="t0k",
    )
    assert command == "serve --base=/user/abc/ --port=8888 --ip=0.0.0.0 --token=t0k"


def test_the_default_command_is_valid_and_places_the_token():
    check_command_template(DEFAULT_COMMAND)
    rendered = render_command(DEFAULT_COMMAND, base_path="/user/x/", port=8888, ip="0.0.0.0", token="secret")
    assert "--NotebookApp.base_url=/user/x/" in rendered
    assert "--NotebookApp.token=secret" in rendered


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("jupyter notebook --base={base_path} --user={user}", "unknown placeholder {user}"),
        ("jupyter notebook --base={base_path} {}", "unknown placeholder {}"),
        ("jupyter notebook --port={port}", "must place {base_path}"),
        ("jupyter notebook --base={base_path", "not a valid template"),
        ("   ", "empty"),
    ],
)
def test_it_refuses_a_bad_template_with_a_clear_message(template, message):
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        check_command_template(template)


def test_literal_braces_can_be_written_doubled():
    check_command_template("sh -c 'x={{a}}; serve {base_path}'")
    assert render_command("x={{a}} {base_path}", base_path="/b/", port=1, ip="i", token="t") == "x={a} /b/"
