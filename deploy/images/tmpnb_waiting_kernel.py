"""A kernel already waiting when the participant opens their first notebook.

tmpnb's JupyterLab image runs this as a jupyter-server extension and kernel
manager (jupyter_server_config.json): as the server starts, it starts one
kernel of the default kernel spec in the root folder and asks it for its
kernel_info, so Python and IPython are imported while the pool fills, not
while a room of participants waits. The first notebook (or console) that
asks for a kernel of that spec gets it, moved to its folder; every other
request (a second notebook, a restart, another kernel spec) is served as
jupyter-server always does. The waiting kernel ends with the server.

``GET <base_url>tmpnb/waiting-kernel`` (with the server's token) answers
``{"ready": bool, "id": ..., "error": ...}``: the pool marks a container ready once it says
ready (pool/services/spawning.py); a server without this extension answers 404.

jupyter-kernel-gateway's prespawn does this for the gateway's own API only,
not for a notebook server's sessions, hence this module.
"""

import asyncio
import json

from jupyter_server.base.handlers import APIHandler
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web

# ipykernel imports IPython, which takes about a second of CPU on a small machine.
READY_TIMEOUT = 120


class WaitingKernelManager(AsyncMappingKernelManager):
    """jupyter-server's kernel manager, plus one kernel started in advance."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.waiting_kernel_id = None
        self.waiting_kernel_ready = False
        self.waiting_kernel_error = None
        self._waiting_start = None

    def start_waiting_kernel(self):
        self._waiting_start = asyncio.ensure_future(self._start_waiting_kernel())

    async def _start_waiting_kernel(self):
        try:
            await self._start_and_ask_kernel_info()
        except Exception as error:  # reported to the pool, which gives this server up
            self.log.exception("The waiting kernel did not start")
            self.waiting_kernel_error = f"{type(error).__name__}: {error}"

    async def _start_and_ask_kernel_info(self):
        kernel_id = await super().start_kernel(path="")
        self.waiting_kernel_id = kernel_id
        # Started is not answering: the kernel imports IPython first. One
        # kernel_info round trip, as a notebook's first request would make.
        client = self.get_kernel(kernel_id).client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=READY_TIMEOUT)
        finally:
            client.stop_channels()
        self.waiting_kernel_ready = self.waiting_kernel_id == kernel_id
        self.log.info("Kernel %s is waiting for the first notebook", kernel_id)

    def _take_waiting_kernel(self, kernel_id, kernel_name):
        waiting = self.waiting_kernel_id
        if not self.waiting_kernel_ready or kernel_id is not None or waiting not in self:
            return None
        if (kernel_name or self.default_kernel_name) != self.get_kernel(waiting).kernel_name:
            return None
        self.waiting_kernel_id, self.waiting_kernel_ready = None, False
        return waiting

    async def _move_to(self, kernel_id, path):
        """Work in the notebook's folder, as a kernel started for it would:
        the waiting one started in the root folder. A silent request leaves
        no trace in the participant's history, numbering or namespace."""
        cwd = self.cwd_for_path(path)
        if cwd == self.cwd_for_path(""):
            return
        client = self.get_kernel(kernel_id).client()
        client.start_channels()
        try:
            msg_id = client.execute(f"__import__('os').chdir({cwd!r})", silent=True, store_history=False)
            while True:
                reply = await client.get_shell_msg(timeout=READY_TIMEOUT)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
        finally:
            client.stop_channels()
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the waiting kernel could not move to {cwd}: {reply['content'].get('evalue')}")
        # A restart launches the kernel again with the arguments it was first
        # launched with (jupyter_client's KernelManager keeps them there).
        self.get_kernel(kernel_id)._launch_args["cwd"] = cwd

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        taken = self._take_waiting_kernel(kernel_id, kwargs.get("kernel_name"))
        if taken is None:
            return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)
        try:
            await self._move_to(taken, path or "")
        except Exception:
            self.log.exception("The waiting kernel %s is not handed out", taken)
            await self.shutdown_kernel(taken, now=True)
            return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)
        self.log.info("The first notebook takes the waiting kernel %s", taken)
        return taken

    def list_kernels(self):
        # Until a notebook takes it, the waiting kernel is the server's own:
        # JupyterLab's "Running" panel does not show it.
        return [kernel for kernel in super().list_kernels() if kernel["id"] != self.waiting_kernel_id]


class WaitingKernelHandler(APIHandler):
    @web.authenticated
    def get(self):
        manager = self.kernel_manager
        self.finish(json.dumps({"ready": manager.waiting_kernel_ready, "id": manager.waiting_kernel_id, "error": manager.waiting_kernel_error}))


def _jupyter_server_extension_points():
    return [{"module": "tmpnb_waiting_kernel"}]


def _load_jupyter_server_extension(serverapp):
    if not isinstance(serverapp.kernel_manager, WaitingKernelManager):
        serverapp.log.warning("tmpnb_waiting_kernel: ServerApp.kernel_manager_class is not its WaitingKernelManager; no kernel waits")
        return
    base_url = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", [(f"{base_url}tmpnb/waiting-kernel", WaitingKernelHandler)])


async def _start_jupyter_server_extension(serverapp):
    if isinstance(serverapp.kernel_manager, WaitingKernelManager):
        serverapp.kernel_manager.start_waiting_kernel()
