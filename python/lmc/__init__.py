"""lmc: load, run, chat with, serve and fine-tune Hugging Face-format
language models from a local directory — Python over liblmc (ctypes).

    import lmc
    m = lmc.Model("models/stories260K")
    for chunk in m.stream("Once upon a time", max_tokens=32):
        print(chunk.text, end="", flush=True)

Failures raise lmc.LmcError carrying lmc's message and status name."""
from ._lib import LmcError, lib as _lib_handle
from .model import ChatSession, Chunk, Model
from .server import Server
from .tokenizer import Tokenizer
from .train import Progress, fuse_lora, train_lora


def version():
    """The library's version string."""
    return _lib_handle.lmc_version().decode()


def resolve_model(name):
    """Where a model argument points: a directory as is, or "org/name"
    found in the local Hugging Face cache (never downloaded)."""
    import ctypes
    from ._lib import check, enc, lib, take_string
    out = ctypes.c_void_p()
    check(lib.lmc_model_dir_resolve(enc(name), ctypes.byref(out)))
    return take_string(out)


__version__ = "0.1.0"
__all__ = ["LmcError", "Model", "ChatSession", "Chunk", "Server", "Tokenizer", "Progress",
           "train_lora", "fuse_lora", "version", "resolve_model"]
