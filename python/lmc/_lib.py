"""Finding liblmc and declaring its C API (include/lmc.h) for ctypes.

The library is looked for, in order, at $LMC_LIBRARY (a file), under
$LMC_PREFIX/lib*, beside this package's install prefix (sys.prefix/lib*,
where `cmake --install --prefix` into a virtual environment puts it), on the
dynamic loader's search path, and in the build tree of the checkout the
package was built from.
"""
import ctypes
import ctypes.util
import glob
import os
import sys
from ctypes import (CFUNCTYPE, c_uint, POINTER, Structure, c_bool, c_char_p, c_double, c_float,
                    c_int, c_int32, c_size_t, c_uint16, c_uint64, c_void_p)


class LmcError(Exception):
    """A failed lmc call: `status` is the lmc_status name (e.g.
    "LMC_ERR_NOT_FOUND"), the message is lmc's own."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


STATUS_NAMES = ["LMC_OK", "LMC_ERR_INVALID_ARG", "LMC_ERR_NOT_FOUND", "LMC_ERR_IO",
                "LMC_ERR_FORMAT", "LMC_ERR_UNSUPPORTED", "LMC_ERR_LIMIT", "LMC_ERR_NOMEM",
                "LMC_ERR_TEMPLATE", "LMC_ERR_STATE", "LMC_ERR_DEVICE", "LMC_ERR_CANCELLED"]


def _candidates():
    env = os.environ.get("LMC_LIBRARY")
    if env:
        yield env
    for prefix in (os.environ.get("LMC_PREFIX"), sys.prefix):
        if prefix:
            yield from sorted(glob.glob(os.path.join(prefix, "lib*", "liblmc.so.*")))
            yield from sorted(glob.glob(os.path.join(prefix, "lib*", "*", "liblmc.so.*")))
    found = ctypes.util.find_library("lmc")
    if found:
        yield found
    try:
        from ._build_hint import BUILD_DIR
        yield os.path.join(BUILD_DIR, "liblmc.so")
    except ImportError:
        pass


def _load():
    tried = []
    for path in _candidates():
        if path in tried:
            continue
        tried.append(path)
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise ImportError("lmc: liblmc not found; set LMC_LIBRARY to the library file or "
                      "LMC_PREFIX to its install prefix (tried: %s)" % (", ".join(tried) or
                                                                       "nothing"))


lib = _load()

# ------------------------------------------------------------------ structs
PROGRESS_FN = CFUNCTYPE(c_bool, c_void_p, c_char_p, c_double)


class LoadOptions(Structure):
    _fields_ = [("model_dir", c_char_p), ("tokenizer_dir", c_char_p), ("device", c_int),
                ("progress", PROGRESS_FN), ("progress_user", c_void_p)]


class SamplerParams(Structure):
    _fields_ = [("temperature", c_float), ("top_p", c_float), ("top_k", c_int32),
                ("min_p", c_float), ("min_tokens_to_keep", c_int32),
                ("repetition_penalty", c_float), ("repetition_context_size", c_int32),
                ("logit_bias_ids", POINTER(c_int32)), ("logit_bias_values", POINTER(c_float)),
                ("n_logit_bias", c_size_t), ("seed", c_uint64), ("top_logprobs", c_int32),
                ("presence_penalty", c_float), ("frequency_penalty", c_float),
                ("penalty_context_size", c_int32)]


CANCEL_FN = CFUNCTYPE(c_bool, c_void_p)


class GenParams(Structure):
    # mirrors lmc_gen_params field for field: the library writes its defaults
    # into the whole struct
    _fields_ = [("sampler", SamplerParams), ("max_tokens", c_size_t),
                ("stop", POINTER(c_char_p)), ("n_stop", c_size_t), ("prefill_step", c_size_t),
                ("draft", c_void_p), ("num_draft_tokens", c_size_t),
                ("max_context", c_size_t), ("cancel", CANCEL_FN), ("cancel_user", c_void_p),
                ("grammar", c_void_p)]


class GenResponse(Structure):
    _fields_ = [("text", c_char_p), ("token", c_int32), ("logprob", c_float),
                ("top_ids", POINTER(c_int32)), ("top_logprobs", POINTER(c_float)),
                ("n_top", c_size_t), ("prompt_tokens", c_size_t), ("prompt_tps", c_double),
                ("generation_tokens", c_size_t), ("generation_tps", c_double),
                ("peak_memory_bytes", c_size_t), ("finish_reason", c_int),
                ("from_draft", c_bool)]


class GenStats(Structure):
    _fields_ = [("prompt_tokens", c_size_t), ("prefill_tokens", c_size_t),
                ("generation_tokens", c_size_t), ("prompt_tps", c_double),
                ("generation_tps", c_double), ("peak_memory_bytes", c_size_t),
                ("finish_reason", c_int), ("draft_proposed", c_size_t),
                ("draft_accepted", c_size_t), ("cache_rebuilt", c_bool)]


GEN_CB = CFUNCTYPE(c_bool, c_void_p, POINTER(GenResponse))


class ChatOptions(Structure):
    _fields_ = [("instructions", c_char_p), ("gen", POINTER(GenParams)),
                ("history_json", c_char_p), ("cache", c_void_p), ("draft", c_void_p),
                ("num_draft_tokens", c_size_t), ("template_kwargs_json", c_char_p)]


class PerplexityResult(Structure):
    _fields_ = [("perplexity", c_double), ("nll", c_double), ("n_tokens", c_size_t),
                ("n_scored", c_size_t), ("n_windows", c_size_t)]


class DatasetOptions(Structure):
    _fields_ = [("format", c_int), ("text_key", c_char_p), ("chat_key", c_char_p),
                ("prompt_key", c_char_p), ("completion_key", c_char_p),
                ("mask_prompt", c_bool), ("cache", c_bool), ("max_file_bytes", c_size_t),
                ("max_line_bytes", c_size_t)]


class LoraProgress(Structure):
    _fields_ = [("step", c_int32), ("iters", c_int32), ("loss", c_float),
                ("tokens_per_sec", c_double), ("trained_tokens", c_size_t),
                ("truncated", c_size_t)]


LORA_PROGRESS_FN = CFUNCTYPE(c_bool, c_void_p, POINTER(LoraProgress))


class LoraOptions(Structure):
    _fields_ = [("rank", c_int32), ("alpha", c_float), ("dropout", c_float),
                ("target_modules", c_char_p), ("num_layers", c_int32), ("seed", c_uint64),
                ("iters", c_int32), ("batch_size", c_int32),
                ("grad_accumulation_steps", c_int32), ("max_seq_length", c_size_t),
                ("learning_rate", c_float), ("beta1", c_float), ("beta2", c_float),
                ("eps", c_float), ("weight_decay", c_float),
                ("progress", LORA_PROGRESS_FN), ("progress_user", c_void_p)]


class LoraTrainStats(Structure):
    _fields_ = [("steps", c_int32), ("final_loss", c_float), ("trained_tokens", c_size_t),
                ("truncated", c_size_t), ("skipped_records", c_size_t), ("seconds", c_double)]


class ServerOptions(Structure):
    _fields_ = [("host", c_char_p), ("port", c_uint16), ("model_name", c_char_p),
                ("defaults", POINTER(GenParams)), ("max_body_bytes", c_size_t),
                ("no_prompt_cache", c_bool),
                ("api_keys", POINTER(c_char_p)), ("n_api_keys", c_size_t),
                ("api_key_file", c_char_p), ("allow_origins", POINTER(c_char_p)),
                ("n_allow_origins", c_size_t), ("max_queue", c_size_t),
                ("max_tokens_cap", c_size_t), ("cache_keep_tokens", c_size_t),
                ("max_pending", c_uint), ("max_per_ip", c_uint), ("header_timeout_s", c_uint),
                ("body_timeout_s", c_uint), ("log", c_void_p), ("tool_parser", c_char_p)]


# --------------------------------------------------------------- functions
P = c_void_p
PP = POINTER(c_void_p)
PSTR = POINTER(c_void_p)  # char ** out-parameters: freed with lmc_free
PIDS = POINTER(POINTER(c_int32))
_SIGNATURES = {
    "lmc_last_error": (c_char_p, []),
    "lmc_version": (c_char_p, []),
    "lmc_free": (None, [c_void_p]),
    "lmc_model_dir_resolve": (c_int, [c_char_p, PSTR]),
    "lmc_tokenizer_load": (c_int, [c_char_p, PP]),
    "lmc_tokenizer_free": (None, [P]),
    "lmc_tokenizer_encode": (c_int, [P, c_char_p, c_size_t, c_bool, PIDS, POINTER(c_size_t)]),
    "lmc_tokenizer_decode": (c_int, [P, POINTER(c_int32), c_size_t, c_bool, PSTR]),
    "lmc_tokenizer_vocab_size": (c_size_t, [P]),
    "lmc_tokenizer_token_to_id": (c_int32, [P, c_char_p]),
    "lmc_tokenizer_id_to_token": (c_char_p, [P, c_int32]),
    "lmc_tokenizer_bos_id": (c_int32, [P]),
    "lmc_tokenizer_chat_template": (c_char_p, [P, c_char_p]),
    "lmc_tokenizer_apply_chat_template": (c_int, [P, c_char_p, c_char_p, c_bool, c_bool,
                                                  c_char_p, PSTR]),
    "lmc_context_load": (c_int, [POINTER(LoadOptions), PP]),
    "lmc_context_free": (None, [P]),
    "lmc_context_tokenizer": (P, [P]),
    "lmc_context_model_type": (c_char_p, [P]),
    "lmc_gen_params_default": (None, [POINTER(GenParams)]),
    "lmc_generate_ids": (c_int, [P, POINTER(c_int32), c_size_t, POINTER(GenParams), P, GEN_CB,
                                 c_void_p, POINTER(GenStats)]),
    "lmc_finish_reason_str": (c_char_p, [c_int]),
    "lmc_perplexity_text": (c_int, [P, c_char_p, c_size_t, c_size_t, c_size_t, PROGRESS_FN,
                                    c_void_p, POINTER(PerplexityResult)]),
    "lmc_chat_session_new": (c_int, [P, POINTER(ChatOptions), PP]),
    "lmc_chat_session_free": (None, [P]),
    "lmc_chat_session_stream": (c_int, [P, c_int, c_char_p, GEN_CB, c_void_p]),
    "lmc_chat_session_clear": (None, [P]),
    "lmc_chat_session_history_len": (c_size_t, [P]),
    "lmc_chat_session_history_at": (c_char_p, [P, c_size_t, POINTER(c_int)]),
    "lmc_role_str": (c_char_p, [c_int]),
    "lmc_dataset_options_init": (None, [POINTER(DatasetOptions)]),
    "lmc_dataset_load": (c_int, [c_char_p, P, POINTER(DatasetOptions), PP]),
    "lmc_dataset_load_dir": (c_int, [c_char_p, P, POINTER(DatasetOptions), PP, PP, PP]),
    "lmc_dataset_free": (None, [P]),
    "lmc_dataset_len": (c_size_t, [P]),
    "lmc_lora_options_init": (None, [POINTER(LoraOptions)]),
    "lmc_lora_trainer_new": (c_int, [c_char_p, POINTER(LoraOptions), PP]),
    "lmc_lora_trainer_free": (None, [P]),
    "lmc_lora_train": (c_int, [P, P, POINTER(LoraTrainStats)]),
    "lmc_lora_trainer_save": (c_int, [P, c_char_p]),
    "lmc_lora_fuse": (c_int, [c_char_p, c_char_p, c_char_p, PROGRESS_FN, c_void_p]),
    "lmc_server_start": (c_int, [P, POINTER(ServerOptions), PP]),
    "lmc_server_port": (c_uint16, [P]),
    "lmc_server_stop": (None, [P]),
}
for _name, (_res, _args) in _SIGNATURES.items():
    _f = getattr(lib, _name, None)
    if _f is None:  # the server is optional at build time
        continue
    _f.restype, _f.argtypes = _res, _args


def check(status):
    """Raise LmcError for a failed call (the message read on this thread)."""
    if status:
        raise error(status)


def error(status, message=None):
    if message is None:
        message = lib.lmc_last_error().decode("utf-8", "replace")
    name = STATUS_NAMES[status] if 0 <= status < len(STATUS_NAMES) else str(status)
    return LmcError(name, message)


def enc(s):
    """str / path / bytes -> bytes for a const char * argument."""
    if s is None or isinstance(s, bytes):
        return s
    if isinstance(s, os.PathLike):
        return os.fsencode(s)
    return str(s).encode("utf-8")


def take_string(ptr):
    """Copy and free a char * the library returned."""
    if not ptr.value:
        return ""
    try:
        return ctypes.string_at(ptr.value).decode("utf-8")
    finally:
        lib.lmc_free(ptr.value)


def take_ids(ptr, n):
    try:
        return [ptr[i] for i in range(n)]
    finally:
        lib.lmc_free(ptr)


def has(name):
    return getattr(lib, name, None) is not None
