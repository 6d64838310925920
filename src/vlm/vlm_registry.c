/* The model_type and processor_class constructor tables. */
#include "base/error.h"
#include "vlm/vlm.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A small id -> function table; both registries are one of these, the
 * model one canonicalizing ids first. */
typedef void (*any_fn)(void);
typedef struct {
    char *id;
    any_fn fn;
} entry;
typedef struct {
    entry *e;
    size_t n, cap;
} table;

static void table_free(table *t) {
    for (size_t i = 0; i < t->n; i++) free(t->e[i].id);
    free(t->e);
}

static entry *table_find(const table *t, const char *id) {
    for (size_t i = 0; t && id && i < t->n; i++)
        if (!strcmp(t->e[i].id, id)) return &t->e[i];
    return NULL;
}

static lmc_status table_put(table *t, const char *what, const char *id, any_fn fn,
                            any_fn *displaced) {
    entry *e = table_find(t, id);
    if (e) {
        if (displaced) *displaced = e->fn;
        e->fn = fn;
        return LMC_OK;
    }
    if (t->n == t->cap) {
        size_t nc = t->cap ? 2 * t->cap : 8;
        entry *ne = realloc(t->e, nc * sizeof *ne);
        if (!ne) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
        t->e = ne;
        t->cap = nc;
    }
    char *copy = strdup(id);
    if (!copy) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
    t->e[t->n++] = (entry){copy, fn};
    return LMC_OK;
}

/* ------------------------------------------------------------ models */

struct lmc_vlm_model_registry {
    table t;
};

lmc_status lmc_vlm_model_registry_new(lmc_vlm_model_registry **out) {
    *out = calloc(1, sizeof **out);
    return *out ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "VLM model registry: out of memory");
}

void lmc_vlm_model_registry_free(lmc_vlm_model_registry *r) {
    if (!r) return;
    table_free(&r->t);
    free(r);
}

lmc_status lmc_vlm_model_registry_register(lmc_vlm_model_registry *r, const char *model_type,
                                           lmc_vlm_model_ctor ctor,
                                           lmc_vlm_model_ctor *displaced) {
    if (displaced) *displaced = NULL;
    if (!r || !model_type || !*model_type || !ctor)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "VLM model registry: register needs a model_type and a constructor");
    any_fn old = NULL;
    lmc_status st = table_put(&r->t, "VLM model registry", lmc_vlm_remap_model_type(model_type),
                              (any_fn)ctor, &old);
    if (!st && displaced) *displaced = (lmc_vlm_model_ctor)old;
    return st;
}

bool lmc_vlm_model_registry_contains(const lmc_vlm_model_registry *r, const char *model_type) {
    return r && table_find(&r->t, lmc_vlm_remap_model_type(model_type)) != NULL;
}

lmc_status lmc_vlm_model_registry_create(const lmc_vlm_model_registry *r,
                                         const lmc_vlm_loaded_model *lm, lmc_vlm_model **out) {
    *out = NULL;
    if (!lm || !lm->config)
        return lmc_err(LMC_ERR_INVALID_ARG, "VLM model registry: no config");
    const char *mt = lm->config->model_type, *canon = lmc_vlm_remap_model_type(mt);
    const entry *e = r ? table_find(&r->t, canon) : NULL;
    if (!e) {
        if (strcmp(canon, mt))
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "unsupported VLM model type '%s' (alias of '%s'): no constructor "
                           "registered",
                           mt, canon);
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "unsupported VLM model type '%s': no constructor registered", mt);
    }
    return ((lmc_vlm_model_ctor)e->fn)(lm, out);
}

/* ------------------------------------------------------------ processors */

struct lmc_vlm_processor_registry {
    table t;
};

lmc_status lmc_vlm_processor_registry_new(lmc_vlm_processor_registry **out) {
    *out = calloc(1, sizeof **out);
    return *out ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "VLM processor registry: out of memory");
}

void lmc_vlm_processor_registry_free(lmc_vlm_processor_registry *r) {
    if (!r) return;
    table_free(&r->t);
    free(r);
}

lmc_status lmc_vlm_processor_registry_register(lmc_vlm_processor_registry *r,
                                               const char *processor_class,
                                               lmc_vlm_processor_ctor ctor,
                                               lmc_vlm_processor_ctor *displaced) {
    if (displaced) *displaced = NULL;
    if (!r || !processor_class || !*processor_class || !ctor)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "VLM processor registry: register needs a processor_class and a "
                       "constructor");
    any_fn old = NULL;
    lmc_status st =
        table_put(&r->t, "VLM processor registry", processor_class, (any_fn)ctor, &old);
    if (!st && displaced) *displaced = (lmc_vlm_processor_ctor)old;
    return st;
}

bool lmc_vlm_processor_registry_contains(const lmc_vlm_processor_registry *r,
                                         const char *processor_class) {
    return r && table_find(&r->t, processor_class) != NULL;
}

lmc_status lmc_vlm_processor_registry_create(const lmc_vlm_processor_registry *r,
                                             const lmc_vlm_loaded_processor *lp,
                                             lmc_vlm_processor **out) {
    *out = NULL;
    if (!lp || !lp->processor_class)
        return lmc_err(LMC_ERR_INVALID_ARG, "VLM processor registry: no processor_class");
    const entry *e = r ? table_find(&r->t, lp->processor_class) : NULL;
    if (!e)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "unsupported VLM processor class '%s': no constructor registered",
                       lp->processor_class);
    return ((lmc_vlm_processor_ctor)e->fn)(lp, out);
}

/* ------------------------------------------------------------ defaults */

/* Built once, on first use, and never changed afterwards. A LLaVA
 * checkpoint saved from a bare image processor names the CLIP class as
 * its processor_class, so those keys lead to the LLaVA processor too. */
static lmc_vlm_model_registry g_models;
static lmc_vlm_processor_registry g_processors;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_defaults(void) {
    static const char *const llava_processors[] = {"LlavaProcessor", "CLIPImageProcessor",
                                                   "CLIPImageProcessorFast"};
    /* Allocation failure leaves a table short; lookups then refuse the
     * missing ids as unsupported rather than crash. */
    lmc_vlm_model_registry_register(&g_models, "llava", lmc_llava_create, NULL);
    for (size_t i = 0; i < sizeof llava_processors / sizeof llava_processors[0]; i++)
        lmc_vlm_processor_registry_register(&g_processors, llava_processors[i],
                                            lmc_llava_processor_create, NULL);
    lmc_err_clear();
}

const lmc_vlm_model_registry *lmc_vlm_default_model_registry(void) {
    pthread_once(&g_once, build_defaults);
    return &g_models;
}
const lmc_vlm_processor_registry *lmc_vlm_default_processor_registry(void) {
    pthread_once(&g_once, build_defaults);
    return &g_processors;
}
