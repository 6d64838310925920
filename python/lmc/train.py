"""LoRA fine-tuning (PEFT-format adapters) and fusing adapters into a model."""
import ctypes
import os
from ctypes import c_void_p

from . import _lib
from ._lib import check, enc, lib
from .model import Model, _Callback, progress_callback

FORMATS = {"auto": 0, "text": 1, "chat": 2, "completions": 3}


class Progress:
    """What a training progress callback receives after each step."""
    __slots__ = ("step", "iters", "loss", "tokens_per_sec", "trained_tokens", "truncated")

    def __init__(self, p):
        for k in self.__slots__:
            setattr(self, k, getattr(p, k))

    def __repr__(self):
        return f"Progress(step={self.step}/{self.iters}, loss={self.loss:.4f})"


def train_lora(model, data, adapter_path, iters=100, rank=8, alpha=16.0, num_layers=-1,
               target_modules=None, batch_size=4, learning_rate=1e-5, seed=0,
               max_seq_length=2048, mask_prompt=False, format="auto", progress=None):
    """Train LoRA adapters for `model` (a directory or "org/name") on `data`
    (a jsonl file, or a directory with train.jsonl) and save them to
    adapter_path. progress(Progress) is called after every step; returning
    False stops training (LmcError LMC_ERR_CANCELLED). Returns a dict of the
    run's figures (steps, final_loss, trained_tokens, truncated,
    skipped_records, seconds)."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}")
    o = _lib.LoraOptions()
    lib.lmc_lora_options_init(ctypes.byref(o))
    o.iters, o.rank, o.alpha, o.num_layers = iters, rank, alpha, num_layers
    o.batch_size, o.learning_rate, o.seed = batch_size, learning_rate, seed
    o.max_seq_length = max_seq_length
    targets = enc(target_modules)
    o.target_modules = targets
    cb = _Callback(progress, _lib.LORA_PROGRESS_FN, lambda p: (Progress(p.contents),))
    o.progress = cb.c
    trainer, ds = c_void_p(), c_void_p()
    m = None
    try:
        check(lib.lmc_lora_trainer_new(enc(model), ctypes.byref(o), ctypes.byref(trainer)))
        m = Model(model)
        do = _lib.DatasetOptions()
        lib.lmc_dataset_options_init(ctypes.byref(do))
        do.format, do.mask_prompt = FORMATS[format], mask_prompt
        tok = m.tokenizer._h
        if os.path.isdir(data):
            check(lib.lmc_dataset_load_dir(enc(data), tok, ctypes.byref(do), ctypes.byref(ds),
                                           None, None))
        else:
            check(lib.lmc_dataset_load(enc(data), tok, ctypes.byref(do), ctypes.byref(ds)))
        stats = _lib.LoraTrainStats()
        st = lib.lmc_lora_train(trainer, ds, ctypes.byref(stats))
        cb.raise_pending()
        check(st)
        check(lib.lmc_lora_trainer_save(trainer, enc(adapter_path)))
        return {k: getattr(stats, k) for k, _ in _lib.LoraTrainStats._fields_}
    finally:
        if ds:
            lib.lmc_dataset_free(ds)
        if m is not None:
            m.close()
        if trainer:
            lib.lmc_lora_trainer_free(trainer)


def fuse_lora(model, adapter_path, save_path, progress=None):
    """Write model + adapters (merged into the weights) to save_path."""
    cb = progress_callback(progress)
    st = lib.lmc_lora_fuse(enc(model), enc(adapter_path), enc(save_path), cb.c, None)
    cb.raise_pending()
    check(st)
