/* Model arguments as "org/name" in the local Hugging Face cache
 * (lmc_model_dir_resolve in lmc.h), applied to load options. */
#ifndef LMC_BASE_HF_CACHE_H
#define LMC_BASE_HF_CACHE_H
#include "lmc.h"

/* *out = *in with model_dir and tokenizer_dir (when set) resolved; the two
 * resolved strings are returned in *model / *tok for the caller to free(). */
lmc_status lmc_load_options_resolve(const lmc_load_options *in, lmc_load_options *out,
                                    char **model, char **tok);

#endif
