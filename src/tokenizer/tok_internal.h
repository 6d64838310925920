/* Internal types of the tokenizer: hash maps, Unicode helpers and the
 * pipeline stages (normalizer -> pre-tokenizer -> model -> post-processor,
 * and decoders) described by a Hugging Face tokenizer.json. */
#ifndef LMC_TOKENIZER_INTERNAL_H
#define LMC_TOKENIZER_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lmc.h"
#include "base/buf.h"
#include <json-c/json.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Token ids above this are refused (real vocabularies are < 1M), so a
 * corrupt file cannot make the id tables huge. */
#define TK_MAX_ID ((int64_t)1 << 24)

/* ---- string -> int32 map (keys borrowed; owner keeps them alive) ---- */
typedef struct {
    const char *s;
    uint32_t len;
    int32_t val;
} tk_strent;
typedef struct {
    uint64_t *slots; /* entry index + 1 and a hash tag; 0 = empty */
    size_t cap;      /* power of two */
    tk_strent *ent;
    size_t n, ent_cap;
} tk_strmap;
uint64_t tk_hash(const void *p, size_t n);
bool tk_strmap_put(tk_strmap *m, const char *s, size_t len, int32_t val); /* overwrites */
int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t len);    /* -1 if absent */
bool tk_strmap_reserve(tk_strmap *m, size_t n); /* room for n more keys */
/* out[i] = tk_strmap_get(s[i], len[i]) for n keys, memory latency overlapped. */
void tk_strmap_get_many(const tk_strmap *m, const char *const *s, const uint32_t *len, size_t n,
                        int32_t *out);
void tk_strmap_free(tk_strmap *m);

/* ---- uint64 -> (rank, id) map for BPE merges ---- */
typedef struct {
    uint64_t *keys; /* UINT64_MAX = empty */
    uint32_t *rank;
    int32_t *id;
    size_t cap, n;
} tk_pairmap;
bool tk_pairmap_put(tk_pairmap *m, uint64_t key, uint32_t rank, int32_t id);
bool tk_pairmap_get(const tk_pairmap *m, uint64_t key, uint32_t *rank, int32_t *id);
bool tk_pairmap_reserve(tk_pairmap *m, size_t n); /* room for n more keys */
/* Ask for key's slot ahead of a put (a hint; no effect on the contents). */
void tk_pairmap_prefetch(const tk_pairmap *m, uint64_t key);
void tk_pairmap_free(tk_pairmap *m);

/* ---- bump allocator for one encode call ---- */
typedef struct tk_block tk_block;
typedef struct {
    tk_block *head;
} tk_arena;
char *tk_arena_alloc(tk_arena *a, size_t n);
char *tk_arena_dup(tk_arena *a, const char *s, size_t n);
void tk_arena_reset(tk_arena *a);
void tk_arena_free(tk_arena *a);

/* ---- growable int32 vector ---- */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tk_ids;
bool tk_ids_push(tk_ids *x, int32_t id);
bool tk_ids_append(tk_ids *x, const int32_t *ids, size_t n);

/* ---- Unicode helpers (input is valid UTF-8) ---- */
int tk_utf8_dec(const char *s, size_t len, uint32_t *cp); /* bytes used, >= 1 */
int tk_utf8_enc(uint32_t cp, char *out);                  /* bytes written */
bool tk_utf8_valid(const char *s, size_t len, size_t *bad_at);
bool tk_is_ws(uint32_t cp);    /* Unicode White_Space */
bool tk_is_punct(uint32_t cp); /* ASCII punctuation or any P* category */
bool tk_is_numeric(uint32_t cp);
bool tk_is_alnum(uint32_t cp);
/* Bytes -> text replacing each maximal ill-formed subsequence by U+FFFD. */
bool tk_utf8_lossy(const char *s, size_t len, lmc_buf *out);

/* ---- tokenizer.json field readers ---- */
/* A flag: absent or null gives `def`; any other value converts the way
 * json_object_get_boolean does (numbers: non-zero, strings: non-empty,
 * arrays and objects: false), which is how these files have always been read. */
bool tk_json_flag(json_object *o, const char *key, bool def);
/* A "Sequence" stage: loads the array `key` of `o` into a calloc'd array of
 * `size`-byte items, calling `load` on each with the name "<where>.<key>[i]".
 * *items and *n are updated as items load (a failed item counts, since loaders
 * leave it freeable), so the stage's free function releases a partial list. */
typedef lmc_status (*tk_item_loader)(void *item, json_object *o, const char *where);
lmc_status tk_load_list(json_object *o, const char *key, const char *where, size_t size,
                        tk_item_loader load, void **items, size_t *n);

/* ---- regex (PCRE2, UTF + UCP, JIT when available) ---- */
typedef struct {
    pcre2_code *code;
    bool jit;
    char *where; /* the field it came from and its source, for match errors */
    char *literal; /* for String patterns: plain substring search */
    size_t literal_len;
} tk_pattern;
/* Reads {"String": "..."} or {"Regex": "..."}; `where` names the field. */
lmc_status tk_pattern_load(tk_pattern *p, json_object *o, const char *where);
void tk_pattern_free(tk_pattern *p);
/* Next match at or after `from`: 1 found, 0 none, -1 when PCRE2 gave up
 * (match/depth/heap limit, ...): the error (LMC_ERR_LIMIT) is then set,
 * naming the pattern, and its status is in *err. */
int tk_pattern_find(const tk_pattern *p, pcre2_match_data *md, const char *s, size_t len,
                     size_t from, size_t *ms, size_t *me, lmc_status *err);

/* ---- pieces flowing through the encode pipeline ---- */
typedef struct {
    const char *p;
    size_t len;
    int32_t added_id; /* >= 0: an added token, already final */
    bool origin;      /* starts at offset 0 of the original text */
} tk_piece;
typedef struct {
    tk_piece *v;
    size_t n, cap;
} tk_pieces;
bool tk_pieces_push(tk_pieces *x, tk_piece p);

typedef struct {
    tk_arena arena;
    pcre2_match_data *md;
    lmc_buf tmp, tmp2;
    lmc_status err; /* set when a stage failed for a reason other than memory */
} tk_ctx;

/* ---- normalizers ---- */
typedef enum {
    TK_NORM_SEQ, TK_NORM_NFC, TK_NORM_NFD, TK_NORM_NFKC, TK_NORM_NFKD, TK_NORM_LOWER,
    TK_NORM_STRIP, TK_NORM_STRIP_ACCENTS, TK_NORM_REPLACE, TK_NORM_PREPEND, TK_NORM_BERT,
    TK_NORM_NMT
} tk_norm_type;
typedef struct tk_normalizer {
    tk_norm_type type;
    struct tk_normalizer *subs;
    size_t n_subs;
    tk_pattern pat;
    char *str; /* Replace content / Prepend text */
    bool left, right;                       /* Strip */
    bool clean_text, chinese, accents, lower; /* Bert */
} tk_normalizer;
lmc_status tk_normalizer_load(tk_normalizer *n, json_object *o, const char *where);
void tk_normalizer_free(tk_normalizer *n);
/* Normalize s into out (replacing its contents). */
lmc_status tk_normalize(const tk_normalizer *n, tk_ctx *c, const char *s, size_t len,
                        lmc_buf *out);

/* ---- pre-tokenizers ---- */
typedef enum {
    TK_PRE_SEQ, TK_PRE_SPLIT, TK_PRE_BYTELEVEL, TK_PRE_METASPACE, TK_PRE_WHITESPACE,
    TK_PRE_WSSPLIT, TK_PRE_BERT, TK_PRE_PUNCT, TK_PRE_DIGITS, TK_PRE_CHARDELIM
} tk_pre_type;
typedef enum {
    TK_BEH_REMOVED, TK_BEH_ISOLATED, TK_BEH_MERGED_PREV, TK_BEH_MERGED_NEXT, TK_BEH_CONTIGUOUS
} tk_behavior;
typedef enum { TK_PREPEND_ALWAYS, TK_PREPEND_NEVER, TK_PREPEND_FIRST } tk_prepend;
typedef struct tk_pretok {
    tk_pre_type type;
    struct tk_pretok *subs;
    size_t n_subs;
    tk_pattern pat;
    tk_pattern gpt2; /* ByteLevel use_regex */
    tk_behavior behavior;
    bool invert, add_prefix_space, use_regex, split, individual_digits;
    tk_prepend prepend;
    char repl[8]; /* Metaspace replacement char (UTF-8) */
    size_t repl_len;
    uint32_t delim;
} tk_pretok;
lmc_status tk_pretok_load(tk_pretok *p, json_object *o, const char *where);
void tk_pretok_free(tk_pretok *p);
lmc_status tk_pretokenize(const tk_pretok *p, tk_ctx *c, tk_pieces *pieces);
/* Byte-level alphabet: each byte has a printable stand-in character. */
const char *tk_bytelevel_char(unsigned char b, size_t *len);
int tk_bytelevel_byte(uint32_t cp); /* stand-in char -> byte, -1 if none */

/* ---- models ---- */
typedef enum { TK_MODEL_BPE, TK_MODEL_WORDPIECE, TK_MODEL_UNIGRAM, TK_MODEL_WORDLEVEL } tk_model_type;
typedef struct tk_cache tk_cache;
typedef struct {
    tk_model_type type;
    char **tokens; /* id -> token (NULL for holes) */
    uint32_t *token_lens; /* byte lengths (a Unigram piece may hold U+0000) */
    size_t n_tokens, tokens_cap; /* n_tokens = highest id + 1 */
    tk_arena strings; /* every token string (and alias) */
    tk_strmap vocab;
    int32_t unk_id;
    /* BPE */
    tk_pairmap merges;
    char *prefix, *suffix; /* continuing_subword_prefix / end_of_word_suffix */
    bool fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_ids[256]; /* <0xXX> ids for byte_fallback, -1 if absent */
    tk_cache *cache;
    /* WordPiece */
    size_t max_chars;
    /* Unigram */
    double *scores;
    double min_score;
    size_t max_piece_len;
} tk_model;
/* tokenizer.json read by tok_json.c: model.vocab (when an object) and
 * model.merges come as flat arrays (strings NUL-terminated, in `strings`),
 * absent from the json-c tree `root` that holds everything else. */
typedef struct {
    const char *s;
    uint32_t len;
    int64_t id;
    bool is_int; /* false: the value was not an integer */
} tk_vocab_ent;
typedef enum { TK_MERGE_STRING, TK_MERGE_PAIR, TK_MERGE_INVALID } tk_merge_kind;
typedef struct {
    const char *a, *b; /* STRING: "left right" in a */
    uint32_t al, bl;
    tk_merge_kind kind;
} tk_merge_ent;
typedef struct {
    json_object *root;
    tk_vocab_ent *vocab;
    size_t n_vocab, vocab_cap;
    tk_merge_ent *merges;
    size_t n_merges, merges_cap;
    bool has_vocab, has_merges;
    tk_arena strings;
} tk_json_doc;
lmc_status tk_json_doc_load(const char *path, size_t max_bytes, tk_json_doc *d);
void tk_json_doc_free(tk_json_doc *d);

/* `o` is the model object of d->root; the model takes d->strings over. */
lmc_status tk_model_load(tk_model *m, json_object *o, tk_json_doc *d, const char *where);
void tk_model_free(tk_model *m);
lmc_status tk_model_tokenize(const tk_model *m, tk_ctx *c, const char *s, size_t len,
                             tk_ids *out);

/* ---- decoders ---- */
typedef enum {
    TK_DEC_SEQ, TK_DEC_BYTELEVEL, TK_DEC_METASPACE, TK_DEC_BYTEFALLBACK, TK_DEC_FUSE,
    TK_DEC_STRIP, TK_DEC_REPLACE, TK_DEC_WORDPIECE, TK_DEC_BPE, TK_DEC_CTC
} tk_dec_type;
typedef struct tk_decoder {
    tk_dec_type type;
    struct tk_decoder *subs;
    size_t n_subs;
    tk_pattern pat;
    char *str; /* Replace content, Strip content char, WordPiece prefix, BPE suffix */
    size_t start, stop;
    bool cleanup, prepend_first;
    char repl[8];
    size_t repl_len;
} tk_decoder;
lmc_status tk_decoder_load(tk_decoder *d, json_object *o, const char *where);
void tk_decoder_free(tk_decoder *d);
/* Tokens (strings with byte lengths) -> text. */
lmc_status tk_decode_tokens(const tk_decoder *d, const char **toks, const size_t *lens, size_t n,
                            lmc_buf *out);

/* ---- post-processor ---- */
typedef struct {
    int32_t *pre, *post; /* ids placed before / after the single sequence */
    size_t n_pre, n_post;
    bool present;
} tk_post;
lmc_status tk_post_load(tk_post *p, json_object *o, const tk_strmap *added, const tk_model *m,
                        const char *where);
void tk_post_free(tk_post *p);

/* ---- added tokens: trie of contents, leftmost-longest matching ---- */
typedef struct tk_trie tk_trie;
tk_trie *tk_trie_new(void);
bool tk_trie_add(tk_trie *t, const char *s, size_t len, int32_t idx);
/* Longest entry starting at s[0]; returns its idx and length, or -1. */
int32_t tk_trie_longest(const tk_trie *t, const char *s, size_t len, size_t *mlen);
bool tk_trie_first_byte(const tk_trie *t, unsigned char b);
void tk_trie_free(tk_trie *t);

#endif
