/* Post-processors ("post_processor" field). For a single sequence they
 * reduce to constant ids placed before and after it when special tokens
 * are requested; ByteLevel only adjusts offsets and adds nothing. */
#include "base/error.h"
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>

static lmc_status add_ids(int32_t **v, size_t *n, const int32_t *ids, size_t k, bool front,
                          const char *where) {
    int32_t *nv = realloc(*v, (*n + k + 1) * sizeof *nv);
    if (!nv) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    if (k && front) {
        memmove(nv + k, nv, *n * sizeof *nv);
        memcpy(nv, ids, k * sizeof *nv);
    } else if (k) {
        memcpy(nv + *n, ids, k * sizeof *nv);
    }
    *v = nv;
    *n += k;
    return LMC_OK;
}

static int32_t lookup(const tk_strmap *added, const tk_model *m, const char *s) {
    int32_t id = tk_strmap_get(added, s, strlen(s));
    return id >= 0 ? id : tk_strmap_get(&m->vocab, s, strlen(s));
}

/* [token, id] pair of Bert/RobertaProcessing. */
static lmc_status pair_id(json_object *o, const char *key, const char *where, int32_t *id) {
    json_object *p;
    if (!json_object_object_get_ex(o, key, &p) || !json_object_is_type(p, json_type_array) ||
        json_object_array_length(p) != 2 ||
        !json_object_is_type(json_object_array_get_idx(p, 1), json_type_int))
        return lmc_err(LMC_ERR_FORMAT, "%s.%s: expected [\"token\", id]", where, key);
    *id = (int32_t)json_object_get_int64(json_object_array_get_idx(p, 1));
    return LMC_OK;
}

static lmc_status load1(tk_post *p, json_object *o, const tk_strmap *added, const tk_model *m,
                        const char *where) {
    json_object *tv, *v;
    if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "type", &tv) ||
        !json_object_is_type(tv, json_type_string))
        return lmc_err(LMC_ERR_FORMAT, "%s.type: missing", where);
    const char *t = json_object_get_string(tv);
    char sub[256];
    if (!strcmp(t, "Sequence")) {
        if (!json_object_object_get_ex(o, "processors", &v) || !json_object_is_type(v, json_type_array))
            return lmc_err(LMC_ERR_FORMAT, "%s.processors: missing or not an array", where);
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", where, i);
            lmc_status st = load1(p, json_object_array_get_idx(v, i), added, m, sub);
            if (st) return st;
        }
        return LMC_OK;
    }
    if (!strcmp(t, "ByteLevel")) return LMC_OK;
    if (!strcmp(t, "BertProcessing") || !strcmp(t, "RobertaProcessing")) {
        int32_t cls, sep;
        lmc_status st = pair_id(o, "cls", where, &cls);
        if (!st) st = pair_id(o, "sep", where, &sep);
        if (!st) st = add_ids(&p->pre, &p->n_pre, &cls, 1, true, where);
        if (!st) st = add_ids(&p->post, &p->n_post, &sep, 1, false, where);
        return st;
    }
    if (strcmp(t, "TemplateProcessing"))
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s.type: unsupported post_processor \"%s\"", where, t);
    json_object *single, *specials = NULL;
    if (!json_object_object_get_ex(o, "single", &single) || !json_object_is_type(single, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s.single: missing or not an array", where);
    json_object_object_get_ex(o, "special_tokens", &specials);
    int32_t *pre = NULL, *post = NULL;
    size_t npre = 0, npost = 0;
    bool seen_seq = false;
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < json_object_array_length(single) && !st; i++) {
        json_object *it = json_object_array_get_idx(single, i), *x;
        if (json_object_object_get_ex(it, "Sequence", &x)) {
            seen_seq = true;
            continue;
        }
        json_object *idv;
        if (!json_object_object_get_ex(it, "SpecialToken", &x) ||
            !json_object_object_get_ex(x, "id", &idv) || !json_object_is_type(idv, json_type_string)) {
            st = lmc_err(LMC_ERR_FORMAT, "%s.single[%zu]: expected Sequence or SpecialToken", where, i);
            break;
        }
        const char *name = json_object_get_string(idv);
        json_object *sp, *ids;
        int32_t *vals = NULL;
        size_t nv = 0;
        if (specials && json_object_object_get_ex(specials, name, &sp) &&
            json_object_object_get_ex(sp, "ids", &ids) && json_object_is_type(ids, json_type_array)) {
            nv = json_object_array_length(ids);
            vals = malloc((nv ? nv : 1) * sizeof *vals);
            if (!vals) {
                st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
                break;
            }
            for (size_t k = 0; k < nv; k++)
                vals[k] = (int32_t)json_object_get_int64(json_object_array_get_idx(ids, k));
        } else {
            int32_t id = lookup(added, m, name);
            if (id < 0) {
                st = lmc_err(LMC_ERR_FORMAT, "%s.special_tokens: \"%s\" is not defined", where, name);
                break;
            }
            vals = malloc(sizeof *vals);
            if (!vals) {
                st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
                break;
            }
            vals[0] = id;
            nv = 1;
        }
        st = seen_seq ? add_ids(&post, &npost, vals, nv, false, where)
                      : add_ids(&pre, &npre, vals, nv, false, where);
        free(vals);
    }
    /* A later processor wraps the result of the earlier ones. */
    if (!st) st = add_ids(&p->pre, &p->n_pre, pre, npre, true, where);
    if (!st) st = add_ids(&p->post, &p->n_post, post, npost, false, where);
    free(pre);
    free(post);
    return st;
}

lmc_status tk_post_load(tk_post *p, json_object *o, const tk_strmap *added, const tk_model *m,
                        const char *where) {
    memset(p, 0, sizeof *p);
    p->present = true;
    return load1(p, o, added, m, where);
}

void tk_post_free(tk_post *p) {
    free(p->pre);
    free(p->post);
    memset(p, 0, sizeof *p);
}
