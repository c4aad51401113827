"""The container command template, as tmpnb's ``--command`` option defines it.

Kept free of Django imports so that settings can validate the template at
start-up with the same rules the admin uses.
"""

import re
import shlex
import string

PLACEHOLDERS = ("base_path", "port", "ip", "token")

# The images deploy/images/build-jupyter makes, by default and with --classic.
DEFAULT_IMAGE = "tmpnb/jupyterlab:latest"
CLASSIC_IMAGE = "tmpnb/jupyter:latest"

# JupyterLab 4 on jupyter-server 2 (deploy/images/build-jupyter); it opens /lab.
DEFAULT_COMMAND = (
    "jupyter lab --no-browser --ip={ip} --port={port} "
    "--ServerApp.base_url={base_path} --IdentityProvider.token={token} "
    "--ServerApp.root_dir=/home/jovyan --ServerApp.port_retries=0"
)
# Debian's classic Notebook 6 (build-jupyter --classic), which knows only NotebookApp.
CLASSIC_COMMAND = (
    "jupyter notebook --no-browser --ip={ip} --port={port} --NotebookApp.base_url={base_path} --NotebookApp.token={token} --NotebookApp.port_retries=0"
)
# What a classic option is called on jupyter-server 2; the rest keep their name under ServerApp.
SERVER2_NAMES = {"token": "IdentityProvider.token", "password": "PasswordIdentityProvider.hashed_password", "notebook_dir": "ServerApp.root_dir"}


def check_command_template(template: str) -> None:
    """Raise ValueError naming what is wrong with ``template``, if anything."""
    if not template or not template.strip():
        raise ValueError("the command is empty")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise ValueError(f"the command is not a valid template ({error}); write a literal brace as {{{{ or }}}}") from None
    unknown = sorted({field for field in fields if field not in PLACEHOLDERS})
    if unknown:
        known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        raise ValueError(f"unknown placeholder {', '.join(f'{{{f}}}' for f in unknown)} in the command; known: {known}")
    if "base_path" not in fields:
        raise ValueError("the command must place {base_path}, so the server answers under its own /user/<id>/ path")
    # Both backends split the command into words as a shell would (docker-py and
    # swarm.py with shlex); the values filled in hold no quotes, so the template
    # splits exactly when every rendered command does.
    try:
        shlex.split(template)
    except ValueError as error:
        raise ValueError(f"the command's quoting is unbalanced ({error})") from None
    _check_server2_options(template)


def _check_server2_options(template: str) -> None:
    """`jupyter lab` and `jupyter server` run on jupyter-server 2, where
    NotebookApp options are deprecated: for now they are passed on to ServerApp
    with a warning, and a release that drops them would serve at / and never
    become ready under the pool's path. Refused now, naming the new option."""
    classic = re.findall(r"--NotebookApp\.(\w+)", template)
    if classic and runs_jupyter_server(template):
        name = classic[0]
        raise ValueError(
            f"jupyter-server 2 no longer takes --NotebookApp.{name}: write --{SERVER2_NAMES.get(name, 'ServerApp.' + name)} "
            "(or run Debian's classic Notebook with its own command, see the README)"
        )


# What a pool with live help adds to its command: JupyterLab's real-time
# collaboration on (the image has it off, see deploy/images/jupyter_server_config.json).
LIVE_HELP_OPTION = "--YDocExtension.disable_rtc=False"


def runs_jupyter_server(template: str) -> bool:
    """Whether the command runs `jupyter lab` or `jupyter server` (jupyter-server 2)."""
    return bool(re.search(r"\bjupyter[ -](lab|server)\b", template))


def render_command(template: str, *, base_path: str, port: int, ip: str, token: str, live_help: bool = False) -> str:
    command = template.format(base_path=base_path, port=port, ip=ip, token=token)
    return f"{command} {LIVE_HELP_OPTION}" if live_help else command
