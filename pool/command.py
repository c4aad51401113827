"""The container command template, as tmpnb's ``--command`` option defines it.

Kept free of Django imports so that settings can validate the template at
start-up with the same rules the admin uses.
"""

import string

PLACEHOLDERS = ("base_path", "port", "ip", "token")

DEFAULT_COMMAND = (
    "jupyter notebook --no-browser --ip={ip} --port={port} "
    "--NotebookApp.base_url={base_path} --NotebookApp.token={token} "
    "--NotebookApp.port_retries=0"
)


def check_command_template(template):
    """Raise ValueError naming what is wrong with ``template``, if anything."""
    if not template or not template.strip():
        raise ValueError("the command is empty")
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise ValueError(f"the command is not a valid template ({error}); write a literal brace as {{{{ or }}}}") from None
    unknown = sorted({field for field in fields if field not in PLACEHOLDERS})
    if unknown:
        known = ", ".join("{%s}" % name for name in PLACEHOLDERS)
        raise ValueError(f"unknown placeholder {', '.join('{%s}' % f for f in unknown)} in the command; known: {known}")
    if "base_path" not in fields:
        raise ValueError("the command must place {base_path}, so the server answers under its own /user/<id>/ path")


def render_command(template, *, base_path, port, ip, token):
    return template.format(base_path=base_path, port=port, ip=ip, token=token)
