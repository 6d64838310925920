"""Loaded models: generation (whole or streamed), perplexity, chat sessions."""
import ctypes
import queue
import threading
from ctypes import c_char_p, c_int, c_int32, c_void_p

from . import _lib
from ._lib import LmcError, check, enc, lib
from .tokenizer import Tokenizer

DEVICES = {"cpu": 0, "cuda": 1}
ROLES = {"system": 0, "user": 1, "assistant": 2, "tool": 3}


class Chunk:
    """One generated token: its text (may be "" while a character or a
    possible stop string is incomplete), id, log-probability, and the finish
    reason ("stop", "length", or None while more follow)."""
    __slots__ = ("text", "token", "logprob", "finish_reason")

    def __init__(self, text, token, logprob, finish_reason):
        self.text, self.token, self.logprob, self.finish_reason = (
            text, token, logprob, finish_reason)

    def __repr__(self):
        return f"Chunk({self.text!r}, token={self.token}, finish_reason={self.finish_reason!r})"


def _chunk(r):
    reason = lib.lmc_finish_reason_str(r.finish_reason).decode() or None
    return Chunk((r.text or b"").decode("utf-8"), r.token, r.logprob, reason)


class _Callback:
    """Wraps a Python progress callable for the C progress signature; an
    exception inside it stops the call and is raised afterwards."""

    def __init__(self, fn, cfunctype, convert):
        self.fn, self.error = fn, None

        def call(user, *args):
            try:
                return self.fn(*convert(*args)) is not False
            except BaseException as e:  # re-raised by raise_pending
                self.error = e
                return False
        self.c = cfunctype(call) if fn else cfunctype()

    def raise_pending(self):
        if self.error is not None:
            raise self.error


def progress_callback(fn):
    """fn(stage: str, fraction: float) -> None or False (False cancels)."""
    return _Callback(fn, _lib.PROGRESS_FN, lambda stage, frac: (stage.decode(), frac))


def _stream(run):
    """Run `run(cb)` (a blocking lmc call driving a generation callback) on
    a worker thread and yield its Chunks as they come. Leaving the loop
    early stops the generation."""
    q = queue.Queue()
    stop = threading.Event()
    end = object()
    result = {}

    def on_token(user, resp):
        if stop.is_set():
            return False
        q.put(_chunk(resp.contents))
        return True
    cb = _lib.GEN_CB(on_token)

    def work():
        try:
            st = run(cb)
            result["error"] = _lib.error(st) if st else None
        finally:
            q.put(end)
    t = threading.Thread(target=work, name="lmc-generate", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is end:
                break
            yield item
    finally:
        stop.set()
        t.join()
    if result.get("error"):
        raise result["error"]


def gen_params(max_tokens=256, temperature=0.0, top_p=1.0, top_k=0, min_p=0.0,
               repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0, seed=0,
               stop=None):
    p = _lib.GenParams()
    lib.lmc_gen_params_default(ctypes.byref(p))
    p.max_tokens = max_tokens
    s = p.sampler
    s.temperature, s.top_p, s.top_k, s.min_p = temperature, top_p, top_k, min_p
    s.repetition_penalty, s.seed = repetition_penalty, seed
    s.presence_penalty, s.frequency_penalty = presence_penalty, frequency_penalty
    keep = []
    if stop:
        arr = (c_char_p * len(stop))(*[enc(x) for x in stop])
        keep.append(arr)
        p.stop, p.n_stop = ctypes.cast(arr, ctypes.POINTER(c_char_p)), len(stop)
    return p, keep


class Model:
    """A checkpoint directory (or "org/name" in the local Hugging Face
    cache) with its tokenizer, on "cpu" or "cuda".

    progress(stage, fraction) is called while loading."""

    def __init__(self, path, tokenizer=None, device="cpu", progress=None):
        if device not in DEVICES:
            raise ValueError(f"device must be one of {sorted(DEVICES)}, got {device!r}")
        cb = progress_callback(progress)
        o = _lib.LoadOptions(enc(path), enc(tokenizer), DEVICES[device], cb.c, None)
        h = c_void_p()
        st = lib.lmc_context_load(ctypes.byref(o), ctypes.byref(h))
        cb.raise_pending()
        check(st)
        self._h = h
        self.tokenizer = Tokenizer(_handle=lib.lmc_context_tokenizer(h), _owner=self)

    def close(self):
        if getattr(self, "_h", None):
            lib.lmc_context_free(self._h)
        self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def model_type(self):
        return lib.lmc_context_model_type(self._h).decode()

    def encode(self, text, add_special_tokens=True):
        return self.tokenizer.encode(text, add_special_tokens)

    def decode(self, ids, skip_special_tokens=False):
        return self.tokenizer.decode(ids, skip_special_tokens)

    def apply_chat_template(self, messages, **kwargs):
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def stream(self, prompt, **params):
        """Yield Chunks as they are generated. `prompt` is text (encoded
        with special tokens) or a list of token ids; params as gen_params
        (max_tokens, temperature, top_p, top_k, min_p, seed, stop, ...)."""
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        arr = (c_int32 * len(ids))(*ids)
        p, keep = gen_params(**params)

        def run(cb):
            _ = keep
            return lib.lmc_generate_ids(self._h, arr, len(ids), ctypes.byref(p), None, cb,
                                        None, None)
        return _stream(run)

    def generate(self, prompt, **params):
        """The whole completion as a string (see stream)."""
        return "".join(c.text for c in self.stream(prompt, **params))

    def perplexity(self, text, context=0, stride=0, progress=None):
        """Sliding-window perplexity (transformers' fixed-length recipe);
        context 0: max_position_embeddings, stride 0: context. Returns a
        dict: perplexity, nll, n_tokens, n_scored, n_windows."""
        data = text.encode("utf-8")
        r = _lib.PerplexityResult()
        cb = progress_callback(progress)
        st = lib.lmc_perplexity_text(self._h, data, len(data), context, stride, cb.c, None,
                                     ctypes.byref(r))
        cb.raise_pending()
        check(st)
        return {k: getattr(r, k) for k, _ in _lib.PerplexityResult._fields_}

    def chat(self, system=None, **params):
        """A ChatSession over this model (params as gen_params)."""
        return ChatSession(self, system, **params)


class ChatSession:
    """A conversation with a KV cache reused across turns; each turn renders
    the whole history with the model's chat template."""

    def __init__(self, model, system=None, template_kwargs=None, **params):
        import json
        self._model = model
        self._p, _ = gen_params(**params)
        o = _lib.ChatOptions()
        o.instructions = enc(system)
        o.gen = ctypes.pointer(self._p)
        kw = enc(json.dumps(template_kwargs)) if template_kwargs else None
        o.template_kwargs_json = kw
        h = c_void_p()
        check(lib.lmc_chat_session_new(model._h, ctypes.byref(o), ctypes.byref(h)))
        self._h = h

    def close(self):
        if getattr(self, "_h", None):
            lib.lmc_chat_session_free(self._h)
        self._h = None

    def __del__(self):
        self.close()

    def stream(self, message, role="user"):
        """Yield the reply's Chunks; the turn joins the history at the end."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
        msg = enc(message)
        return _stream(lambda cb: lib.lmc_chat_session_stream(self._h, ROLES[role], msg, cb,
                                                              None))

    def send(self, message, role="user"):
        return "".join(c.text for c in self.stream(message, role))

    def clear(self):
        lib.lmc_chat_session_clear(self._h)

    @property
    def history(self):
        out = []
        for i in range(lib.lmc_chat_session_history_len(self._h)):
            role = c_int()
            text = lib.lmc_chat_session_history_at(self._h, i, ctypes.byref(role))
            out.append({"role": lib.lmc_role_str(role.value).decode(),
                        "content": text.decode("utf-8")})
        return out


__all__ = ["Model", "ChatSession", "Chunk", "LmcError"]
