/* libFuzzer target for the chat-template parser and evaluator: the input is
 * a template source; whatever compiles is rendered over a small chat with
 * low limits, so runaway loops or output end in LMC_ERR_LIMIT, never a hang
 * or crash. */
#include "lmc.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const context =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},"
    "{\"role\":\"user\",\"content\":\"hi \\u00e9\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1,\"b\":[true,null,2.5]}}}]},"
    "{\"role\":\"tool\",\"content\":\"42\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{}}}],"
    "\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1u << 16)) return 0;
    char *src = malloc(size + 1);
    if (!src) return 0;
    memcpy(src, data, size);
    src[size] = '\0';
    lmc_chat_template *t = NULL;
    if (lmc_chat_template_compile(src, &t) == LMC_OK) {
        char *out = NULL;
        lmc_chat_template_set_limits(t, 1u << 16, 20000);
        if (lmc_chat_template_render(t, context, &out) == LMC_OK) lmc_free(out);
        lmc_chat_template_free(t);
    }
    free(src);
    return 0;
}
