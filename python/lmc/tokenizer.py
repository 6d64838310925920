"""Tokenizers (tokenizer.json + tokenizer_config.json) and chat templates."""
import ctypes
import json
from ctypes import POINTER, c_int32, c_size_t, c_void_p

from ._lib import check, enc, lib, take_ids, take_string


class Tokenizer:
    """A Hugging Face tokenizer directory, or the tokenizer of a Model
    (borrowed: it lives as long as the model)."""

    def __init__(self, path=None, _handle=None, _owner=None):
        self._owner = _owner
        if _handle is not None:
            self._h, self._owned = _handle, False
            return
        h = c_void_p()
        check(lib.lmc_tokenizer_load(enc(path), ctypes.byref(h)))
        self._h, self._owned = h, True

    def close(self):
        if getattr(self, "_owned", False) and self._h:
            lib.lmc_tokenizer_free(self._h)
        self._h = None

    def __del__(self):
        self.close()

    def encode(self, text, add_special_tokens=True):
        data = text.encode("utf-8")
        ids, n = POINTER(c_int32)(), c_size_t()
        check(lib.lmc_tokenizer_encode(self._h, data, len(data), add_special_tokens,
                                       ctypes.byref(ids), ctypes.byref(n)))
        return take_ids(ids, n.value)

    def decode(self, ids, skip_special_tokens=False):
        arr = (c_int32 * len(ids))(*ids)
        out = c_void_p()
        check(lib.lmc_tokenizer_decode(self._h, arr, len(ids), skip_special_tokens,
                                       ctypes.byref(out)))
        return take_string(out)

    @property
    def vocab_size(self):
        return lib.lmc_tokenizer_vocab_size(self._h)

    def token_to_id(self, token):
        i = lib.lmc_tokenizer_token_to_id(self._h, enc(token))
        return None if i < 0 else i

    def id_to_token(self, i):
        t = lib.lmc_tokenizer_id_to_token(self._h, i)
        return None if t is None else t.decode("utf-8")

    @property
    def chat_template(self):
        t = lib.lmc_tokenizer_chat_template(self._h, None)
        return None if t is None else t.decode("utf-8")

    def apply_chat_template(self, messages, add_generation_prompt=False, tools=None,
                            continue_final_message=False, tokenize=False, **kwargs):
        """Render `messages` (a list of {"role", "content"} dicts) as
        transformers' apply_chat_template does; extra keyword arguments are
        template variables (e.g. enable_thinking=False). tokenize=True
        returns the ids (no special tokens added)."""
        out = c_void_p()
        check(lib.lmc_tokenizer_apply_chat_template(
            self._h, enc(json.dumps(messages)), enc(json.dumps(tools)) if tools else None,
            add_generation_prompt, continue_final_message,
            enc(json.dumps(kwargs)) if kwargs else None, ctypes.byref(out)))
        text = take_string(out)
        return self.encode(text, add_special_tokens=False) if tokenize else text
