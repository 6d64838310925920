/* The chat-template fixtures taken from the fetched tokenizer assets equal
 * the assets' chat_template, and lmc_tokenizer_apply_chat_template (template
 * and special tokens from the tokenizer) reproduces the transformers golden. */
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "lmc.h"

static char *golden_dir, *fixture_dir;
static int n_verified;

/* The fixtures that come from the fetched tokenizer assets must equal the
 * assets' chat_template; when the tokenizer exposes it, apply through it. */
static void check_assets(const char *root) {
    static const char *pairs[][2] = {{"qwen3", "qwen3"}, {"llama3", "llama3_1"}, {"gemma3", "gemma3"},
                                     {"deepseek_v3", "deepseek_v3"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        char dir[4096], path[4200];
        snprintf(dir, sizeof dir, "%s/.cache/assets/tokenizers/%s", root, pairs[i][1]);
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        json_object *cfg;
        char *raw;
        if (lmc_json_load_file(path, "tokenizer_config.json", 64u << 20, &cfg, &raw)) {
            printf("  (assets for %s not fetched; fixture cross-check skipped)\n", pairs[i][0]);
            continue;
        }
        free(raw);
        char fx[4200];
        snprintf(fx, sizeof fx, "%s/%s.jinja", fixture_dir, pairs[i][0]);
        char *src = NULL;
        size_t len;
        const char *asset_tpl = lmc_json_str(cfg, "chat_template", NULL);
        CHECK_MSG(!lmc_read_file(fx, "fixture", 1u << 20, &src, &len) && asset_tpl && !strcmp(src, asset_tpl),
                  "fixture %s.jinja differs from the asset's chat_template", pairs[i][0]);
        free(src);
        json_object_put(cfg);
        lmc_tokenizer *tok = NULL;
        if (lmc_tokenizer_load(dir, &tok) || !lmc_tokenizer_chat_template(tok, NULL)) {
            printf("  (tokenizer for %s does not expose its chat template yet; tokenizer path skipped)\n",
                   pairs[i][0]);
            lmc_tokenizer_free(tok);
            continue;
        }
        char *got = NULL;
        lmc_status st = lmc_tokenizer_apply_chat_template(
            tok, "[{\"role\":\"user\",\"content\":\"Hello, who are you?\"}]", NULL, true, false, NULL, &got);
        CHECK_MSG(st == LMC_OK, "%s via tokenizer: %s", pairs[i][0], lmc_last_error());
        /* the same case in the goldens */
        char gpath[4200];
        snprintf(gpath, sizeof gpath, "%s/%s.json", golden_dir, pairs[i][0]);
        json_object *doc;
        if (!st && !lmc_json_load_file(gpath, "golden", 16u << 20, &doc, &raw)) {
            free(raw);
            json_object *cases = lmc_json_get(doc, "cases");
            for (size_t k = 0; k < json_object_array_length(cases); k++) {
                json_object *cs = json_object_array_get_idx(cases, k);
                if (strcmp(lmc_json_str(cs, "name", NULL), "single_user_gen")) continue;
                CHECK_STREQ(got, lmc_json_str(cs, "expected", NULL));
                printf("  %-14s tokenizer path (real assets) matches\n", pairs[i][0]);
                n_verified++;
            }
            json_object_put(doc);
        }
        if (!st && !strcmp(pairs[i][0], "qwen3")) {
            /* the ids variant encodes that string without extra specials */
            int32_t *ids = NULL;
            size_t n_ids = 0;
            char *back = NULL;
            CHECK(!lmc_tokenizer_apply_chat_template_ids(
                tok, "[{\"role\":\"user\",\"content\":\"Hello, who are you?\"}]", NULL, true, false, NULL,
                &ids, &n_ids));
            CHECK(n_ids > 5 && ids && ids[0] == lmc_tokenizer_token_to_id(tok, "<|im_start|>"));
            CHECK(!lmc_tokenizer_decode(tok, ids, n_ids, false, &back));
            CHECK_STREQ(back, got);
            lmc_free(back);
            lmc_free(ids);
        }
        lmc_free(got);
        lmc_tokenizer_free(tok);
    }
}

int main(void) {
    const char *root = getenv("LMC_SOURCE_DIR") ? getenv("LMC_SOURCE_DIR") : ".";
    fixture_dir = lmc_path_join(root, "tests/golden/templates");
    golden_dir = strdup(fixture_dir);
    check_assets(root);
    free(fixture_dir);
    free(golden_dir);
    if (check_count == 0) CHECK_SKIP("tokenizer assets not fetched (scripts/fetch_assets.sh)");
    printf("%d tokenizer(s) verified through lmc_tokenizer_apply_chat_template\n", n_verified);
    return check_summary("test_template_tokenizer");
}
