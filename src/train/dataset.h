/* Internal entry points of the fine-tuning datasets (tests and fuzzing). */
#ifndef LMC_TRAIN_DATASET_H
#define LMC_TRAIN_DATASET_H
#include "lmc.h"
#include <stddef.h>

/* Load a dataset from jsonl bytes held in memory (`name` stands for the file
 * in messages). `tok` may be NULL here: records then load and validate, and
 * lmc_dataset_get fails with LMC_ERR_STATE. */
lmc_status lmc_dataset_load_buffer(const char *text, size_t len, const char *name,
                                   const lmc_tokenizer *tok, const lmc_dataset_options *opts,
                                   lmc_dataset **out);

#endif
