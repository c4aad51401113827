"""The service's code in this process, on a SQLite database of its own: the
runs that time it without HTTP (``admissions``, ``sweep``) set it up here."""

import os


def setup_django(state, token, **env):
    """Django set up with the service's settings, ``state`` as its folder
    (and database), ``token`` as its secrets, ``env`` more settings; migrated."""
    os.environ.update(DJANGO_SETTINGS_MODULE="tmpnb_site.settings", TMPNB_VAR_DIR=str(state), DJANGO_SECRET_KEY=token, CONFIGPROXY_AUTH_TOKEN=token, **env)
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def container_rows(pool, names, backend_ids, **fields):
    """A container row of ``pool`` for each name, numbered as their path ids and host ports."""
    from pool.models import Container

    return Container.objects.bulk_create(
        Container(pool=pool, name=name, path_id=f"{n:012x}", token=f"t{n}", backend_id=backend_id, host_ip="127.0.0.1", host_port=20000 + n, **fields)
        for n, (name, backend_id) in enumerate(zip(names, backend_ids))
    )
