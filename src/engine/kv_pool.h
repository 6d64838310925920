/* Paged KV-cache memory: a fixed pool of equal blocks (each holds the keys
 * and values of `block_tokens` positions for every layer), a block table
 * per sequence, blocks shared by reference count between sequences with a
 * common prefix and copied on write where they diverge, and sliding-window
 * sequences giving back blocks that fell out of their window.
 *
 * The pool is backend-independent bookkeeping: a CPU backend lets it own
 * host storage (bytes_per_block each) and reads slots through
 * lmc_kv_pool_block(); a device backend keeps the storage itself and passes
 * a copy hook for copy-on-write. Sizes are set when the pool is made and
 * change only through lmc_kv_pool_grow (a single-sequence cache grows its
 * own pool with use); running out is LMC_ERR_LIMIT with nothing changed,
 * never a crash.
 *
 * Prefix sharing across requests: lmc_kv_seq_publish() records a
 * sequence's full blocks under a chain of (salt, previous block, tokens) so
 * lmc_kv_seq_new_prefix() can attach them to a new sequence. The salt keeps
 * callers that must not see each other's prefixes (API keys, cache_salt)
 * apart. Published blocks stay cached after their sequences end and are
 * evicted least-recently-used first when free blocks run out.
 *
 * Not thread-safe: one engine thread owns a pool and its sequences. */
#ifndef LMC_ENGINE_KV_POOL_H
#define LMC_ENGINE_KV_POOL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lmc.h"

#define LMC_KV_NO_BLOCK UINT32_MAX

typedef struct lmc_kv_pool lmc_kv_pool;
typedef struct lmc_kv_seq lmc_kv_seq;

typedef struct {
    size_t n_blocks;        /* blocks in the pool (>= 1) */
    size_t block_tokens;    /* positions per block (>= 1) */
    size_t bytes_per_block; /* host storage per block; 0 = the backend keeps it */
    /* Copy block src's contents into dst (copy-on-write). Required when
     * bytes_per_block is 0; otherwise NULL means memcpy of host storage. */
    lmc_status (*copy)(void *user, uint32_t dst, uint32_t src);
    /* Called by lmc_kv_pool_free (the backend frees its storage); may be NULL. */
    void (*release)(void *user);
    /* Make room for n_blocks blocks (more than today), keeping every block's
     * contents under its id. Needed by lmc_kv_pool_grow when
     * bytes_per_block is 0; host storage is reallocated by the pool. */
    lmc_status (*grow)(void *user, size_t n_blocks);
    void *user;
} lmc_kv_pool_options;

lmc_status lmc_kv_pool_new(const lmc_kv_pool_options *o, lmc_kv_pool **out);
/* Every sequence of the pool must have been freed first. */
void lmc_kv_pool_free(lmc_kv_pool *p);
/* Grow to n_blocks blocks (no-op when not more than today); block ids and
 * contents stay, the new blocks are free. Host storage may move (read it
 * again through lmc_kv_pool_block). On failure the pool is unchanged. */
lmc_status lmc_kv_pool_grow(lmc_kv_pool *p, size_t n_blocks);
size_t lmc_kv_pool_block_tokens(const lmc_kv_pool *p);
size_t lmc_kv_pool_n_blocks(const lmc_kv_pool *p);
size_t lmc_kv_pool_bytes_per_block(const lmc_kv_pool *p);
/* The caller's tag (a backend marks the pools it made for a model). */
const void *lmc_kv_pool_owner(const lmc_kv_pool *p);
void lmc_kv_pool_set_owner(lmc_kv_pool *p, const void *owner);
/* Blocks on the free list, and blocks held only by the prefix cache (which
 * an allocation may evict); their sum is what a new sequence can get. */
size_t lmc_kv_pool_free_blocks(const lmc_kv_pool *p);
size_t lmc_kv_pool_cached_blocks(const lmc_kv_pool *p);
/* Drop every cached prefix no sequence uses (their blocks become free). */
void lmc_kv_pool_drop_cache(lmc_kv_pool *p);
/* The backend's user pointer given at creation. */
void *lmc_kv_pool_user(const lmc_kv_pool *p);
/* Host storage of block id (NULL when the backend keeps the storage). */
void *lmc_kv_pool_block(lmc_kv_pool *p, uint32_t id);
/* References held on block id (sequences + the prefix cache); for tests. */
uint32_t lmc_kv_pool_refs(const lmc_kv_pool *p, uint32_t id);

/* A sequence; window > 0 keeps only the last `window` positions live. */
lmc_status lmc_kv_seq_new(lmc_kv_pool *p, size_t window, lmc_kv_seq **out);
/* A new sequence sharing every block of s (same length and window). */
lmc_status lmc_kv_seq_fork(lmc_kv_seq *s, lmc_kv_seq **out);
void lmc_kv_seq_free(lmc_kv_seq *s);
size_t lmc_kv_seq_len(const lmc_kv_seq *s);
size_t lmc_kv_seq_window(const lmc_kv_seq *s);
lmc_kv_pool *lmc_kv_seq_pool(const lmc_kv_seq *s);
/* The first position whose keys/values are still held (0 without window
 * or start offset). */
size_t lmc_kv_seq_first_live(const lmc_kv_seq *s);
/* Keep `extra` positions beyond the window before giving blocks back, so
 * that short rollbacks (lmc_kv_seq_trim by up to extra + 1) still work
 * after the window has moved on. */
void lmc_kv_seq_set_slack(lmc_kv_seq *s, size_t extra);
/* Start an empty sequence at position n without holding positions below
 * it (a restored windowed cache keeps only its newest positions);
 * LMC_ERR_STATE unless the sequence is empty. */
lmc_status lmc_kv_seq_start_at(lmc_kv_seq *s, size_t n);
/* Give back every block; the sequence is empty again (length 0). */
void lmc_kv_seq_reset(lmc_kv_seq *s);
/* Make positions len .. len + n - 1 writable: allocate blocks, and copy the
 * partly filled last block first when another holder shares it. All or
 * nothing: LMC_ERR_LIMIT (naming the blocks needed and available) leaves
 * the sequence and pool unchanged. The length does not change. */
lmc_status lmc_kv_seq_reserve(lmc_kv_seq *s, size_t n);
/* Mark n reserved positions written (len += n), then give back the blocks
 * that fell out of the window. LMC_ERR_STATE if n exceeds the reserve. */
lmc_status lmc_kv_seq_commit(lmc_kv_seq *s, size_t n);
/* Block and slot of live position pos (< len + reserved). */
lmc_status lmc_kv_seq_locate(const lmc_kv_seq *s, size_t pos, uint32_t *block, uint32_t *slot);
/* The block table: entry i covers positions [i*B, (i+1)*B); entries below
 * the first live block are LMC_KV_NO_BLOCK. */
const uint32_t *lmc_kv_seq_table(const lmc_kv_seq *s, size_t *n_entries);
/* Shorten to n positions (n <= len); blocks past it are given back; a
 * block still shared with another holder is only unreferenced, and the
 * next write into a shared partial block copies it first (reserve).
 * LMC_ERR_STATE when the query at position n would need a position the
 * window already gave back (n + 1 < first live + window). */
lmc_status lmc_kv_seq_trim(lmc_kv_seq *s, size_t n);

/* Record the full blocks of s, whose positions hold ids[0 .. n) (n <= len),
 * as a prefix others with the same salt may share. */
lmc_status lmc_kv_seq_publish(lmc_kv_seq *s, uint64_t salt, const int32_t *ids, size_t n);
/* A new sequence whose leading blocks are published blocks matching
 * ids[0 .. n) under salt; *matched is the number of positions they cover
 * (a multiple of the block size, < n so that at least one token is left to
 * compute the next logits from). */
lmc_status lmc_kv_seq_new_prefix(lmc_kv_pool *p, size_t window, uint64_t salt,
                                 const int32_t *ids, size_t n, lmc_kv_seq **out,
                                 size_t *matched);

#endif
