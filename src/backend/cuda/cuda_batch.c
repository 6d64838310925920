/* Batched execution on CUDA over the paged KV cache (src/engine): one
 * forward for a ragged batch whose rows belong to different sequences,
 * each at its own position, prefill chunks and decode tokens mixed.
 *
 * The dense work of every row goes through the same cuBLASLt GEMMs as a
 * prefill chunk (one weight read serves the whole batch: what makes
 * batched decode cheaper per token); the per-sequence parts are the RoPE +
 * cache write (lmc_cu_paged_qkv_post) and the attention, which find each
 * row's keys through its sequence's block table: an item of many rows (a
 * prompt chunk, with LMC_CUDA_PAGED_FA_MIN below) through the flash
 * prefill kernel (tensor cores, keys and values shared by its rows through
 * shared memory), the other rows through the paged attention
 * (lmc_cu_paged_attn: a row's own scan of its keys, split over blocks when
 * rows are few). A step of one decode token runs the single-sequence
 * decode kernels instead (GEMVs with the norms and GLU fused, the
 * one-kernel decode attention reading the keys through the block table),
 * meant to match a sequence of the model's own cache
 * (LMC_CUDA_BATCH_DECODE=0: the batched kernels).
 *
 * The pool's blocks live in one device allocation per model pool:
 * [layers][k, v][blocks][hkv][block_tokens][head_dim] bf16; the pool's
 * copy hook copies a block of every layer for copy-on-write, its
 * grow hook moves them into a larger allocation (block ids unchanged), and
 * lmc_cu_pool_read/write copy one layer's keys or values of a block to or
 * from host floats (prompt-cache save and load). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_model.h"
#include "engine/kv_pool.h"

/* rows of one forward_batch at most (the prefill scratch is sized for it) */
#define BATCH_ROWS PF_CHUNK

typedef struct {
    cu_model *m;
    uint16_t *base;
    size_t n_blocks, block_elems; /* elements of one block of one layer's k (or v) */
} cu_pool;

static uint16_t *pool_k(const cu_pool *p, int l) {
    return p->base + (size_t)l * 2 * p->n_blocks * p->block_elems;
}
static uint16_t *pool_v(const cu_pool *p, int l) {
    return pool_k(p, l) + p->n_blocks * p->block_elems;
}

static lmc_status pool_copy(void *user, uint32_t dst, uint32_t src) {
    cu_pool *p = user;
    size_t b = p->block_elems * 2;
    for (int l = 0; l < p->m->L; l++)
        for (int kv = 0; kv < 2; kv++) {
            uint16_t *base = kv ? pool_v(p, l) : pool_k(p, l);
            CU(cudaMemcpyAsync(base + dst * p->block_elems, base + src * p->block_elems, b,
                               cudaMemcpyDeviceToDevice, p->m->stream));
        }
    return LMC_OK;
}

/* A larger allocation, every layer's k and v of the old blocks copied in. */
static lmc_status pool_grow(void *user, size_t n) {
    cu_pool *p = user;
    cu_model *m = p->m;
    uint16_t *base = NULL;
    size_t be = p->block_elems, bytes = (size_t)m->L * 2 * n * be * 2;
    lmc_status st = lmc_cu_model_alloc(m, bytes, (void **)&base, "kv pool");
    if (st) return lmc_err_prefix(st, "kv pool of %zu blocks (%zu MiB)", n, bytes >> 20);
    for (size_t part = 0; part < (size_t)m->L * 2 && !st; part++)
        if (cudaMemcpyAsync(base + part * n * be, p->base + part * p->n_blocks * be,
                            p->n_blocks * be * 2, cudaMemcpyDeviceToDevice,
                            m->stream) != cudaSuccess)
            st = lmc_err(LMC_ERR_DEVICE, "kv pool: moving the blocks failed");
    if (!st && cudaStreamSynchronize(m->stream) != cudaSuccess)
        st = lmc_err(LMC_ERR_DEVICE, "kv pool: moving the blocks failed");
    if (st) {
        lmc_cu_model_release(m, base);
        return st;
    }
    lmc_cu_model_release(m, p->base);
    p->base = base;
    p->n_blocks = n;
    return LMC_OK;
}

static void pool_release(void *user) {
    cu_pool *p = user;
    cudaStreamSynchronize(p->m->stream);
    lmc_cu_model_release(p->m, p->base);
    free(p);
}

lmc_status lmc_cu_pool_new(lmc_model *mm, size_t n_blocks, size_t block_tokens,
                           struct lmc_kv_pool **out) {
    cu_model *m = (cu_model *)mm;
    *out = NULL;
    if (!lmc_cu_paged_attn_supported(m->hq, m->hkv, m->D))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "device cuda: batched attention needs head_dim 64, 96 or 128 with at "
                       "most 8 query heads per kv head, or 256 with at most 4 (got %d, %d/%d)",
                       m->D, m->hq, m->hkv);
    if (block_tokens == 0 || block_tokens > 4096 || n_blocks == 0 || n_blocks > (1u << 24))
        return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: %zu blocks of %zu tokens is not a pool",
                       n_blocks, block_tokens);
    cu_pool *p = calloc(1, sizeof *p);
    if (!p) return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory");
    const char *dec = getenv("LMC_CUDA_BATCH_DECODE");
    m->b_no_decode = (dec && dec[0] == '0') || !lmc_cu_attn_decode_supported(m->hq, m->hkv, m->D);
    m->b_slide = m->window;
    for (int l = 0; l < m->L && m->b_slide > 0; l++)
        if (lmc_cu_layer_window(m, l) <= 0) m->b_slide = 0;
    p->m = m;
    p->n_blocks = n_blocks;
    p->block_elems = (size_t)m->hkv * block_tokens * m->D;
    size_t bytes = (size_t)m->L * 2 * n_blocks * p->block_elems * 2;
    lmc_status st = lmc_cu_model_alloc(m, bytes, (void **)&p->base, "kv pool");
    if (st) {
        free(p);
        return lmc_err_prefix(st, "kv pool of %zu blocks (%zu MiB)", n_blocks, bytes >> 20);
    }
    lmc_kv_pool_options o = {.n_blocks = n_blocks, .block_tokens = block_tokens,
                             .copy = pool_copy, .release = pool_release, .grow = pool_grow,
                             .user = p};
    if ((st = lmc_kv_pool_new(&o, out))) {
        lmc_cu_model_release(m, p->base);
        free(p);
        return st;
    }
    lmc_kv_pool_set_owner(*out, m);
    return LMC_OK;
}

/* One layer's keys (kv 0) or values of a block, to or from host floats
 * [hkv][block_tokens][D], converted from or to bf16 on the host. */
static lmc_status pool_access(lmc_model *mm, struct lmc_kv_pool *pool, uint32_t block,
                              size_t layer, int kv, float *host, bool write) {
    cu_model *m = (cu_model *)mm;
    const cu_pool *p = lmc_kv_pool_user(pool);
    if (lmc_kv_pool_owner(pool) != mm || block >= p->n_blocks || layer >= (size_t)m->L)
        return lmc_err(LMC_ERR_INVALID_ARG, "kv pool: block %u layer %zu is not of this model",
                       block, layer);
    size_t be = p->block_elems;
    uint16_t *at = (kv ? pool_v(p, (int)layer) : pool_k(p, (int)layer)) + block * be;
    uint16_t *tmp = malloc(be * 2);
    if (!tmp) return lmc_err(LMC_ERR_NOMEM, "kv pool: no memory for a block copy");
    if (write)
        for (size_t i = 0; i < be; i++) tmp[i] = lmc_f32_to_bf16(host[i]);
    cudaError_t e = write ? cudaMemcpyAsync(at, tmp, be * 2, cudaMemcpyHostToDevice, m->stream)
                          : cudaMemcpyAsync(tmp, at, be * 2, cudaMemcpyDeviceToHost, m->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(m->stream);
    if (e == cudaSuccess && !write)
        for (size_t i = 0; i < be; i++) host[i] = lmc_bf16_to_f32(tmp[i]);
    free(tmp);
    if (e != cudaSuccess)
        return lmc_err(LMC_ERR_DEVICE, "kv pool: %s block %u: %s",
                       write ? "writing" : "reading", block, cudaGetErrorString(e));
    return LMC_OK;
}

lmc_status lmc_cu_pool_read(lmc_model *m, struct lmc_kv_pool *pool, uint32_t block,
                            size_t layer, int kv, float *dst) {
    return pool_access(m, pool, block, layer, kv, dst, false);
}

lmc_status lmc_cu_pool_write(lmc_model *m, struct lmc_kv_pool *pool, uint32_t block,
                             size_t layer, int kv, const float *src) {
    return pool_access(m, pool, block, layer, kv, (float *)src, true);
}

/* Host-side description of the batch, uploaded once per forward. */
typedef struct {
    int32_t *ids, *row_seq, *row_pos, *tables; /* in the pinned host buffer */
    int max_blocks;
    int attn_splits; /* blocks per row and KV head of the paged attention */
    int32_t *d_meta; /* device copy: ids | row_seq | row_pos | tables */
    int32_t *d_next; /* 2 words per item: greedy id and its log-probability */
    int32_t *h_next; /* their pinned host copy */
    int32_t *rope_long; /* per item, host only: 1 where longrope picks the long table */
    bool rope_mixed;    /* items picked both tables */
    int32_t *flash;     /* per item, host only: 1 where its rows take the flash kernel */
    const lmc_batch_item *it;
    size_t ni;
} batch_meta;

/* Items of at least this many rows (prompt chunks) take the flash prefill
 * kernel over their block table, the other rows the paged attention, one
 * launch per run of them. LMC_CUDA_PAGED_FA_MIN=N sets it (0: never). The
 * default stays 0 (off) until the kernel has run on a GPU in this build:
 * tests/cuda/test_cuda_paged_attn checks it against float64, and
 * test_cuda_batch and test_cuda_wide_parity run with it at 16. */
#define PAGED_FA_MIN 0

static int paged_fa_min(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("LMC_CUDA_PAGED_FA_MIN");
        v = e && *e ? atoi(e) : PAGED_FA_MIN;
        if (v <= 0) v = INT32_MAX;
    }
    return v;
}

/* The batch tables in the pinned host buffer, uploaded to b_scratch. The
 * previous step has finished (every forward ends synchronized), so both
 * buffers are free to rewrite. */
static lmc_status build_meta(cu_model *m, const lmc_batch_item *it, size_t ni, size_t T,
                             batch_meta *b) {
    memset(b, 0, sizeof *b);
    for (size_t i = 0; i < ni; i++) {
        size_t nt;
        lmc_kv_seq_table(it[i].seq, &nt);
        if ((int)nt > b->max_blocks) b->max_blocks = (int)nt;
    }
    /* the table width at a power of two: a captured graph holds it, so a
     * sequence growing by a block does not make every step a new shape */
    int w = 4;
    while (w < b->max_blocks) w *= 2;
    b->max_blocks = w;
    size_t words = 3 * T + ni * (size_t)b->max_blocks;
    size_t need = words + 4 * ni;
    if (need > m->b_words) { /* grow-only: no allocation in the steady state */
        CU(cudaStreamSynchronize(m->stream));
        lmc_cu_model_release(m, m->b_scratch);
        if (m->h_meta) cudaFreeHost(m->h_meta);
        m->b_scratch = NULL;
        m->h_meta = NULL;
        m->b_words = 0;
        size_t cap = need < 4096 ? 4096 : 2 * need;
        lmc_status st = lmc_cu_model_alloc(m, cap * 4, (void **)&m->b_scratch, "batch tables");
        if (st) return st;
        CU(cudaMallocHost((void **)&m->h_meta, cap * 4));
        m->b_words = cap;
    }
    int32_t *h = m->h_meta;
    b->ids = h;
    b->row_seq = h + T;
    b->row_pos = h + 2 * T;
    b->tables = h + 3 * T;
    b->rope_long = h + words + 2 * ni;
    b->flash = h + words + 3 * ni;
    b->it = it;
    b->ni = ni;
    const bool fa = lmc_cu_attn_prefill_paged_supported(m->D);
    for (size_t i = 0, r = 0; i < ni; i++) {
        size_t pos0 = lmc_kv_seq_len(it[i].seq), nt;
        const uint32_t *tab = lmc_kv_seq_table(it[i].seq, &nt);
        b->rope_long[i] = lmc_cu_rope_long(m, lmc_batch_item_rope_len(&it[i], pos0));
        b->rope_mixed |= b->rope_long[i] != b->rope_long[0];
        b->flash[i] = fa && it[i].n >= (size_t)paged_fa_min();
        for (size_t j = 0; j < (size_t)b->max_blocks; j++)
            b->tables[i * b->max_blocks + j] =
                j < nt && tab[j] != LMC_KV_NO_BLOCK ? (int32_t)tab[j] : 0;
        for (size_t j = 0; j < it[i].n; j++, r++) {
            b->ids[r] = it[i].ids[j];
            b->row_seq[r] = (int32_t)i;
            b->row_pos[r] = (int32_t)(pos0 + j);
        }
    }
    /* the paged attention's split count, from its rows and their longest
     * span (a window shortens it only where every layer slides) */
    int span = 0, slide = m->b_slide, rows = 0;
    for (size_t i = 0; i < ni; i++) {
        if (b->flash[i]) continue;
        int last = (int)(lmc_kv_seq_len(it[i].seq) + it[i].n);
        int lo = slide > 0 && last > slide ? last - slide : 0;
        if (last - lo > span) span = last - lo;
        rows += (int)it[i].n;
    }
    b->attn_splits = rows ? lmc_cu_paged_attn_splits(rows, m->hkv, span, m->num_sms) : 1;
    size_t wsf = lmc_cu_paged_attn_ws_floats(rows, m->hq, m->D, b->attn_splits);
    if (wsf > m->b_attn_ws_floats) { /* grow-only, like the tables */
        CU(cudaStreamSynchronize(m->stream));
        lmc_cu_model_release(m, m->b_attn_ws);
        m->b_attn_ws = NULL;
        m->b_attn_ws_floats = 0;
        lmc_status st =
            lmc_cu_model_alloc(m, wsf * 4, (void **)&m->b_attn_ws, "batched attention partials");
        if (st) return st;
        m->b_attn_ws_floats = wsf;
    }
    b->d_meta = m->b_scratch;
    b->d_next = m->b_scratch + words;
    b->h_next = h + words;
    CU(cudaMemcpyAsync(b->d_meta, h, words * 4, cudaMemcpyHostToDevice, m->stream));
    return LMC_OK;
}

/* RoPE and the cache write of layer l for the step's T rows: one launch,
 * or with longrope one per run of rows whose items picked the same table
 * (the kernel finds a row's qkv, sequence, position and q output through
 * its index into the pointers it is given, so a run is the same pointers
 * offset by its first row). */
static lmc_status batch_qkv_post(cu_model *m, const cu_pool *p, const batch_meta *b, int l,
                                 int T, size_t bt) {
    const cu_layer *w = &m->layers[l];
    const int32_t *d_seq = b->d_meta + T, *d_pos = b->d_meta + 2 * T,
                  *d_tab = b->d_meta + 3 * T;
    const size_t qd = (size_t)m->hq * m->D;
    for (int r0 = 0; r0 < T;) {
        const int32_t lng = b->rope_long[b->row_seq[r0]];
        int r1 = b->rope_mixed ? r0 + 1 : T; /* one table: one launch, no scan */
        while (r1 < T && b->rope_long[b->row_seq[r1]] == lng) r1++;
        KL(lmc_cu_paged_qkv_post(m->p_qkv + (size_t)r0 * m->qkv_dim, r1 - r0, m->hq, m->hkv,
                                 m->D, w->qkv_b, w->q_norm, w->k_norm, m->eps, m->norm_offset,
                                 lmc_cu_layer_freq_sel(m, l, lng != 0), m->rot,
                                 lmc_cu_layer_rope_attn(m, l), d_seq + r0, d_pos + r0, d_tab,
                                 b->max_blocks, (int)bt, m->p_q + (size_t)r0 * qd, pool_k(p, l),
                                 pool_v(p, l), m->rnd, (lmc_cu_stream)m->stream));
        r0 = r1;
    }
    return LMC_OK;
}

/* The attention of layer l: the flash kernel for each flash item's rows,
 * the paged attention for each run of rows between them (a run's rows are
 * the same pointers offset by its first row, as in batch_qkv_post). */
static lmc_status batch_attn(cu_model *m, const cu_pool *p, const batch_meta *b, int l, int T,
                             size_t bt, float scale) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const int32_t *d_seq = b->d_meta + T, *d_pos = b->d_meta + 2 * T,
                  *d_tab = b->d_meta + 3 * T;
    const size_t qd = (size_t)m->hq * m->D;
    const int window = lmc_cu_layer_window(m, l);
    int run = 0, r = 0; /* the current run of paged rows starts at row `run` */
    for (size_t i = 0; i <= b->ni; i++) {
        const bool fl = i < b->ni && b->flash[i];
        if ((fl || i == b->ni) && r > run)
            KL(lmc_cu_paged_attn(m->p_q + run * qd, pool_k(p, l), pool_v(p, l), d_seq + run,
                                 d_pos + run, d_tab, b->max_blocks, (int)bt, r - run, m->hq,
                                 m->hkv, m->D, window, scale, m->attn_softcap, b->attn_splits,
                                 m->b_attn_ws, m->p_attn + run * qd, s));
        if (i == b->ni) break;
        const int n = (int)b->it[i].n;
        if (fl) {
            KL(lmc_cu_attn_prefill_paged(m->p_q + r * qd, pool_k(p, l), pool_v(p, l),
                                         m->p_attn + r * qd, n, m->hq, m->hkv, m->D, d_pos + r,
                                         d_tab + i * b->max_blocks, (int)bt, window, scale,
                                         m->attn_softcap, s));
            run = r + n;
        }
        r += n;
    }
    return LMC_OK;
}

static lmc_status batch_layers(cu_model *m, const cu_pool *p, const batch_meta *b, int T,
                               size_t bt) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const int H = m->H;
    const int32_t *d_pos = b->d_meta + 2 * T, *d_tab = b->d_meta + 3 * T;
    const float scale = m->attn_scale != 0.0f ? m->attn_scale : 1.0f / sqrtf((float)m->D);
    lmc_status st;
    KL(lmc_cu_embed(m->embed, b->d_meta, T, H, m->V, m->embed_scale, m->rnd, m->p_x, s));
    if (T == 1 && !m->b_no_decode) { /* one decode token: the decode step's kernels */
        for (int l = 0; l < m->L; l++)
            if ((st = lmc_cu_decode_layer_paged(m, l, m->p_x, d_pos, pool_k(p, l), pool_v(p, l),
                                                d_tab, (int)bt, m->b_dec_ws,
                                                b->rope_long[0] != 0)))
                return st;
        return LMC_OK;
    }
    for (int l = 0; l < m->L; l++) {
        const cu_layer *w = &m->layers[l];
        KL(lmc_cu_rmsnorm(m->p_x, w->in_norm, T, H, m->eps, m->p_norm, m->norm_offset, m->rnd,
                          s));
        if ((st = lmc_cu_gemm(&m->gemm, m->p_norm, w->qkv, m->p_qkv, T, m->qkv_dim, H, false,
                              false, m->stream)))
            return st;
        if ((st = batch_qkv_post(m, p, b, l, T, bt))) return st;
        if ((st = batch_attn(m, p, b, l, T, bt, scale))) return st;
        if ((st = lmc_cu_rows_out(m, w, T))) return st;
    }
    return LMC_OK;
}

/* The last row of every item that wants logits or a greedy id: gathered to
 * the front of p_x, normed, through lm_head in LOGIT_ROWS pieces; logits
 * go to the host, greedy ids to d_next (two words per gathered row, in
 * item order). Host logits are only ever asked of direct launches, never
 * of a captured graph. */
static lmc_status batch_logits(cu_model *m, lmc_batch_item *it, size_t ni, int32_t *d_next) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const size_t H = (size_t)m->H, V = (size_t)m->V;
    size_t nl = 0;
    for (size_t i = 0, r = 0; i < ni; r += it[i].n, i++) {
        if (!it[i].logits && !it[i].next) continue;
        size_t src = r + it[i].n - 1;
        if (src != nl)
            CU(cudaMemcpyAsync(m->p_x + nl * H, m->p_x + src * H, H * 4,
                               cudaMemcpyDeviceToDevice, m->stream));
        nl++;
    }
    size_t j = 0; /* the item of the next gathered row */
    for (size_t r0 = 0; r0 < nl; r0 += LOGIT_ROWS) {
        size_t rr = nl - r0 < LOGIT_ROWS ? nl - r0 : LOGIT_ROWS;
        KL(lmc_cu_rmsnorm(m->p_x + r0 * H, m->final_norm, (int)rr, m->H, m->eps, m->p_norm,
                          m->norm_offset, m->rnd, s));
        lmc_status st = lmc_cu_lm_head_rows(m, (int)rr);
        if (st) return st;
        bool host = false, greedy = false;
        for (size_t k = 0; k < rr; k++, j++) {
            while (!it[j].logits && !it[j].next) j++;
            const float *row = m->p_logits + k * V;
            if (it[j].logits) {
                CU(cudaMemcpyAsync(it[j].logits, row, V * 4, cudaMemcpyDeviceToHost, m->stream));
                host = true;
            }
            greedy |= it[j].next != NULL;
        }
        /* every row of the piece in one launch (rows whose item wants no
         * greedy id too: cheaper than a launch per row) */
        if (greedy) KL(lmc_cu_argmax_rows(m->p_logits, (int)rr, m->V, V, d_next + 2 * r0, s));
        /* p_logits is reused by the next piece; pageable host copies end
         * before it is overwritten only once the stream reaches them */
        if (host && r0 + rr < nl) CU(cudaStreamSynchronize(m->stream));
    }
    return LMC_OK;
}

/* Everything of a step after the tables' upload (the part a graph holds). */
static lmc_status batch_body(cu_model *m, const cu_pool *p, const batch_meta *b, size_t T,
                             size_t bt, lmc_batch_item *it, size_t ni) {
    lmc_status st = batch_layers(m, p, b, (int)T, bt);
    return st ? st : batch_logits(m, it, ni, b->d_next);
}

/* A step whose items all want only greedy ids replays a graph while its
 * shape repeats: rows, items, each item's row count and RoPE table
 * (longrope), the table width, the pool and the scratch addresses the
 * kernels were given. */
static unsigned long long step_sig(const cu_model *m, const struct lmc_kv_pool *pool,
                                   const batch_meta *b, const lmc_batch_item *it, size_t ni,
                                   size_t T, bool *graphable) {
    unsigned long long h = 1469598103934665603ull;
#define MIX(v) (h = (h ^ (unsigned long long)(v)) * 1099511628211ull)
    *graphable = !m->no_graphs;
    MIX(T);
    MIX(ni);
    MIX(b->max_blocks);
    MIX(b->attn_splits);
    MIX((uintptr_t)m->b_attn_ws);
    MIX((uintptr_t)m->b_dec_ws);
    MIX(m->b_no_decode);
    MIX((uintptr_t)pool);
    { /* a pool's storage moves as it grows; its layers' offsets scale with its size */
        const cu_pool *p = lmc_kv_pool_user(pool);
        MIX((uintptr_t)p->base);
        MIX(p->n_blocks);
        MIX(p->block_elems);
    }
    MIX((uintptr_t)m->b_scratch);
    const void *bufs[] = {m->p_x,    m->p_norm, m->p_qkv, m->p_q,     m->p_attn,
                          m->p_gu,   m->p_act,  m->p_logits, m->d_argmax_ws};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) MIX((uintptr_t)bufs[i]);
    for (size_t i = 0; i < ni; i++) {
        MIX(it[i].n);
        MIX(it[i].next != NULL);
        MIX(b->rope_long[i]); /* the table's address is in the graph */
        if (it[i].logits) *graphable = false;
    }
#undef MIX
    return h;
}

static lmc_status run_step(cu_model *m, const struct lmc_kv_pool *pool, const cu_pool *p,
                           const batch_meta *b, size_t T, size_t bt, lmc_batch_item *it,
                           size_t ni) {
    bool graphable;
    unsigned long long sig = step_sig(m, pool, b, it, ni, T, &graphable);
    if (!graphable) return batch_body(m, p, b, T, bt, it, ni);
    if (m->b_have_graph && m->b_sig == sig) {
        CU(cudaGraphLaunch(m->b_graph, m->stream));
        return LMC_OK;
    }
    if (m->b_seen_sig != sig) { /* first step of this shape: plain, builds the plans */
        m->b_seen_sig = sig;
        return batch_body(m, p, b, T, bt, it, ni);
    }
    if (m->b_have_graph) cudaGraphExecDestroy(m->b_graph);
    m->b_have_graph = false;
    cudaGraph_t g = NULL;
    CU(cudaStreamBeginCapture(m->stream, cudaStreamCaptureModeThreadLocal));
    lmc_status st = batch_body(m, p, b, T, bt, it, ni);
    cudaError_t e = cudaStreamEndCapture(m->stream, &g);
    if (st) {
        if (g) cudaGraphDestroy(g);
        return st;
    }
    if (e == cudaSuccess && cudaGraphInstantiate(&m->b_graph, g, 0) == cudaSuccess) {
        m->b_have_graph = true;
        m->b_sig = sig;
    }
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    if (m->b_have_graph) {
        CU(cudaGraphLaunch(m->b_graph, m->stream));
        return LMC_OK;
    }
    return batch_body(m, p, b, T, bt, it, ni); /* capture failed: plain launches */
}

/* Every row's logits of the items that want them all (speculative
 * verification, perplexity), in LOGIT_ROWS pieces, before batch_logits
 * gathers the last rows (which moves them). */
static lmc_status batch_all_logits(cu_model *m, const lmc_batch_item *it, size_t ni) {
    lmc_cu_stream s = (lmc_cu_stream)m->stream;
    const size_t H = (size_t)m->H, V = (size_t)m->V;
    for (size_t i = 0, r = 0; i < ni; r += it[i].n, i++) {
        if (!it[i].all_logits) continue;
        for (size_t r0 = 0; r0 < it[i].n; r0 += LOGIT_ROWS) {
            size_t rr = it[i].n - r0 < LOGIT_ROWS ? it[i].n - r0 : LOGIT_ROWS;
            KL(lmc_cu_rmsnorm(m->p_x + (r + r0) * H, m->final_norm, (int)rr, m->H, m->eps,
                              m->p_norm, m->norm_offset, m->rnd, s));
            lmc_status st = lmc_cu_lm_head_rows(m, (int)rr);
            if (st) return st;
            CU(cudaMemcpyAsync(it[i].logits + r0 * V, m->p_logits, rr * V * 4,
                               cudaMemcpyDeviceToHost, m->stream));
            CU(cudaStreamSynchronize(m->stream)); /* p_logits is reused */
        }
    }
    return LMC_OK;
}

/* A step with all-logits items: plain launches; batch_logits then sees
 * those items as wanting only their greedy id (if any). */
static lmc_status all_logits_step(cu_model *m, const cu_pool *p, const batch_meta *b, size_t T,
                                  size_t bt, lmc_batch_item *it, size_t ni) {
    lmc_batch_item *li = malloc(ni * sizeof *li);
    if (!li) return lmc_err(LMC_ERR_NOMEM, "forward_batch: no memory");
    memcpy(li, it, ni * sizeof *li);
    for (size_t i = 0; i < ni; i++)
        if (li[i].all_logits) li[i].logits = NULL;
    lmc_status st = batch_layers(m, p, b, (int)T, bt);
    if (!st) st = batch_all_logits(m, it, ni);
    if (!st) st = batch_logits(m, li, ni, b->d_next);
    free(li);
    return st;
}

lmc_status lmc_cu_forward_batch(lmc_model *mm, struct lmc_kv_pool *pool, lmc_batch_item *it,
                                size_t ni) {
    cu_model *m = (cu_model *)mm;
    size_t T = 0;
    lmc_status st = lmc_batch_check(mm, pool, it, ni, &T);
    if (st) return st;
    if (T > BATCH_ROWS)
        return lmc_err(LMC_ERR_LIMIT, "forward_batch: %zu rows exceed the %d rows of one step",
                       T, BATCH_ROWS);
    bool any_all = false;
    for (size_t i = 0; i < ni; i++) {
        if (it[i].embeds)
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "device cuda: forward_batch takes token ids (item %zu has "
                           "embeddings)",
                           i);
        any_all |= it[i].all_logits;
    }
    const cu_pool *p = lmc_kv_pool_user(pool);
    size_t bt = lmc_kv_pool_block_tokens(pool);
    for (size_t i = 0; i < ni; i++)
        if ((st = lmc_kv_seq_reserve(it[i].seq, it[i].n)))
            return lmc_err_prefix(st, "forward_batch: item %zu", i);
    if ((st = lmc_cu_model_rows(m, T))) return st;
    if (T == 1 && !m->b_no_decode && !m->b_dec_ws) { /* the decode attention's workspace */
        size_t wsb = lmc_cu_attn_decode_ws_bytes(m->hq, m->hkv, m->D, m->dec_splits);
        if ((st = lmc_cu_model_alloc(m, wsb, &m->b_dec_ws, "decode attention workspace")))
            return st;
        if (cudaMemsetAsync(m->b_dec_ws, 0, wsb, m->stream) != cudaSuccess) {
            lmc_cu_model_release(m, m->b_dec_ws);
            m->b_dec_ws = NULL;
            return lmc_err(LMC_ERR_DEVICE, "forward_batch: clearing the decode workspace failed");
        }
    }
    batch_meta b;
    st = build_meta(m, it, ni, T, &b);
    if (!st)
        st = any_all ? all_logits_step(m, p, &b, T, bt, it, ni)
                     : run_step(m, pool, p, &b, T, bt, it, ni);
    bool greedy = false;
    for (size_t i = 0; i < ni; i++) greedy |= it[i].next != NULL;
    if (!st && greedy &&
        cudaMemcpyAsync(b.h_next, b.d_next, 2 * ni * 4, cudaMemcpyDeviceToHost, m->stream) !=
            cudaSuccess)
        st = lmc_err(LMC_ERR_DEVICE, "forward_batch: copying the greedy ids failed");
    cudaError_t e = cudaStreamSynchronize(m->stream);
    if (!st && e != cudaSuccess)
        st = lmc_err(LMC_ERR_DEVICE, "forward_batch: %s", cudaGetErrorString(e));
    /* d_next holds two words per row batch_logits gathered: the items that
     * want a greedy id or last-row logits (all-logits items only for an id) */
    for (size_t i = 0, g = 0; i < ni && !st; i++) {
        if (!(it[i].logits && !it[i].all_logits) && !it[i].next) continue;
        if (it[i].next) {
            *it[i].next = b.h_next[2 * g];
            if (it[i].logprob) memcpy(it[i].logprob, &b.h_next[2 * g + 1], sizeof(float));
        }
        g++;
    }
    for (size_t i = 0; i < ni && !st; i++) st = lmc_kv_seq_commit(it[i].seq, it[i].n);
    return st;
}
