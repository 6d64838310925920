/* Fuzz config.json / generation_config.json loading.
 *
 * Input: config.json bytes, optionally followed by the separator line
 * "\n#generation_config.json\n" and generation_config.json bytes. The
 * config is parsed in memory (lmc_config_parse) and then loaded from a
 * directory (lmc_config_load); both must agree on whether config.json is
 * acceptable, and without a generation_config.json they must produce the
 * same typed config. */
#include "formats/config.h"
#include "fuzz_util.h"
#include <stdint.h>

#define GEN_SEP "\n#generation_config.json\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t clen, glen;
    const unsigned char *gen = fz_split(data, size, GEN_SEP, &clen, &glen);

    lmc_model_config a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    json_object *ja = NULL;
    lmc_status sa = lmc_config_parse((const char *)data, clen, "config.json", &a, &ja);
    FZ_REQUIRE_MESSAGE(sa);
    if (sa == LMC_OK) {
        FZ_REQUIRE(ja != NULL);
        FZ_REQUIRE(memchr(a.model_type, 0, sizeof a.model_type) != NULL);
        FZ_REQUIRE(a.n_eos >= 0 && a.n_eos <= LMC_MAX_EOS);
    }
    json_object_put(ja);

    fz_write("config.json", 0, data, clen);
    if (gen)
        fz_write("generation_config.json", 1, gen, glen);
    else
        fz_remove("generation_config.json", 1);
    json_object *jb = NULL;
    char *raw = NULL;
    lmc_status sb = lmc_config_load(fz_scratch(), &b, &jb, &raw);
    FZ_REQUIRE_MESSAGE(sb);
    fz_note("config", sb);
    if (sa != LMC_OK) FZ_REQUIRE(sb == sa);
    if (sb == LMC_OK) {
        FZ_REQUIRE(jb != NULL && raw != NULL);
        FZ_REQUIRE(b.n_eos >= 0 && b.n_eos <= LMC_MAX_EOS);
        FZ_REQUIRE(!strcmp(a.model_type, b.model_type));
        if (!gen) {
            FZ_REQUIRE(a.n_eos == b.n_eos);
            FZ_REQUIRE(!memcmp(a.eos_ids, b.eos_ids, sizeof a.eos_ids));
            FZ_REQUIRE(a.vocab_size == b.vocab_size && a.hidden_size == b.hidden_size);
        }
    }
    if (!gen && sa == LMC_OK) FZ_REQUIRE(sb == LMC_OK);
    json_object_put(jb);
    free(raw);
    return 0;
}
