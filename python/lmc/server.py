"""The OpenAI-compatible HTTP server over a loaded Model."""
import ctypes
from ctypes import c_void_p

from . import _lib
from ._lib import check, enc, lib
from .model import gen_params


class Server:
    """Serves `model` on host:port (port 0: any free port; see .port) in
    background threads until stop(). A context manager."""

    def __init__(self, model, port=0, host="127.0.0.1", model_name=None, **params):
        if not _lib.has("lmc_server_start"):
            raise _lib.LmcError("LMC_ERR_UNSUPPORTED", "this liblmc was built without the "
                                                      "server (libmicrohttpd)")
        self._model = model  # kept alive while serving
        self._defaults, _ = gen_params(**params) if params else (None, None)
        self._host, self._name = enc(host), enc(model_name)
        o = _lib.ServerOptions(self._host, port, self._name,
                               ctypes.pointer(self._defaults) if self._defaults else None, 0,
                               False)
        h = c_void_p()
        check(lib.lmc_server_start(model._h, ctypes.byref(o), ctypes.byref(h)))
        self._h = h
        self.port = lib.lmc_server_port(h)
        self.url = f"http://{host}:{self.port}"

    def stop(self):
        if getattr(self, "_h", None):
            lib.lmc_server_stop(self._h)
        self._h = None

    def __del__(self):
        self.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
