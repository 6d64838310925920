/* model_type aliases and the model_type -> constructor registry. */
#include "base/error.h"
#include "lm/context.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Checkpoints declaring the left model_type are served by the right one's
 * implementation. Sorted by alias. */
static const struct {
    const char *alias, *canonical;
} model_remapping[] = {
    {"falcon_mamba", "mamba"},
    {"iquestcoder", "llama"},
    {"joyai_llm_flash", "deepseek_v3"},
    {"kimi_k2", "deepseek_v3"},
    {"llava", "mistral3"},
    {"minimax_m2", "minimax"},
    {"mistral", "llama"},
    {"phi-msft", "phixtral"},
    {"qwen2_5_vl", "qwen2_vl"},
};

const char *lmc_remap_model_type(const char *model_type) {
    if (!model_type) return NULL;
    for (size_t i = 0; i < sizeof model_remapping / sizeof model_remapping[0]; i++)
        if (!strcmp(model_remapping[i].alias, model_type)) return model_remapping[i].canonical;
    return model_type;
}

typedef struct {
    char *model_type; /* canonical */
    lmc_model_ctor ctor;
} registry_entry;

struct lmc_model_registry {
    registry_entry *e;
    size_t n, cap;
};

lmc_status lmc_registry_new(lmc_model_registry **out) {
    *out = calloc(1, sizeof **out);
    return *out ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "model registry: out of memory");
}

void lmc_registry_free(lmc_model_registry *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) free(r->e[i].model_type);
    free(r->e);
    free(r);
}

static registry_entry *lookup(const lmc_model_registry *r, const char *model_type) {
    const char *id = lmc_remap_model_type(model_type);
    for (size_t i = 0; r && id && i < r->n; i++)
        if (!strcmp(r->e[i].model_type, id)) return &r->e[i];
    return NULL;
}

lmc_status lmc_registry_register(lmc_model_registry *r, const char *model_type,
                                 lmc_model_ctor ctor, lmc_model_ctor *displaced) {
    if (displaced) *displaced = NULL;
    if (!r || !model_type || !*model_type || !ctor)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "model registry: register needs a model_type and a constructor");
    registry_entry *e = lookup(r, model_type);
    if (e) {
        if (displaced) *displaced = e->ctor;
        e->ctor = ctor;
        return LMC_OK;
    }
    if (r->n == r->cap) {
        size_t nc = r->cap ? 2 * r->cap : 8;
        registry_entry *ne = realloc(r->e, nc * sizeof *ne);
        if (!ne) return lmc_err(LMC_ERR_NOMEM, "model registry: out of memory");
        r->e = ne;
        r->cap = nc;
    }
    char *id = strdup(lmc_remap_model_type(model_type));
    if (!id) return lmc_err(LMC_ERR_NOMEM, "model registry: out of memory");
    r->e[r->n++] = (registry_entry){id, ctor};
    return LMC_OK;
}

bool lmc_registry_contains(const lmc_model_registry *r, const char *model_type) {
    return lookup(r, model_type) != NULL;
}

static lmc_status unsupported(const char *model_type) {
    const char *canon = lmc_remap_model_type(model_type);
    if (canon && strcmp(canon, model_type))
        return lmc_err(LMC_ERR_UNSUPPORTED, "unsupported model type '%s' (alias of '%s')",
                       model_type, canon);
    return lmc_err(LMC_ERR_UNSUPPORTED, "unsupported model type '%s'", model_type);
}

lmc_status lmc_registry_create(const lmc_model_registry *r, const lmc_loaded_model *lm,
                               lmc_model **out) {
    *out = NULL;
    if (!lm || !lm->config) return lmc_err(LMC_ERR_INVALID_ARG, "model registry: no config");
    const registry_entry *e = lookup(r, lm->config->model_type);
    if (!e) return unsupported(lm->config->model_type);
    return e->ctor(lm, out);
}

#ifdef LMC_NO_MODELS
/* Built without src/models and src/backend: the table still names llama,
 * but loading one reports that the architecture is missing. */
static lmc_status no_models(const lmc_loaded_model *lm, lmc_model **out) {
    *out = NULL;
    return lmc_err(LMC_ERR_UNSUPPORTED, "model type '%s': this build has no llama architecture",
                   lm->config->model_type);
}
#else
#include "backend/backend.h"
#endif

static lmc_model_registry *g_default;
static pthread_once_t g_default_once = PTHREAD_ONCE_INIT;

/* Every architecture description (models/arch/registry.c) under its
 * canonical model_type; aliases resolve through lmc_remap_model_type or,
 * for those only the descriptions name, through their own entries. */
static void build_default(void) {
    lmc_model_registry *r;
    if (lmc_registry_new(&r)) return;
#ifdef LMC_NO_MODELS
    if (lmc_registry_register(r, "llama", no_models, NULL)) {
        lmc_registry_free(r);
        return;
    }
#else
    size_t n = 0;
    const lmc_arch_desc *const *all = lmc_arch_all(&n);
    for (size_t i = 0; i < n; i++) {
        bool ok = !lmc_registry_register(r, all[i]->model_type, lmc_model_create, NULL);
        for (const char *const *a = all[i]->aliases; ok && a && *a; a++)
            ok = !lmc_registry_register(r, *a, lmc_model_create, NULL);
        if (!ok) {
            lmc_registry_free(r);
            return;
        }
    }
#endif
    g_default = r;
}

const lmc_model_registry *lmc_default_registry(void) {
    pthread_once(&g_default_once, build_default);
    return g_default; /* NULL only after OOM: every lookup then fails cleanly */
}
