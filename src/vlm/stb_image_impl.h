/* Private wrappers around the stb_image implementation (stb_image_impl.c).
 * Callers must run the pre-checks in image_decode.c first. */
#ifndef LMC_VLM_STB_IMAGE_IMPL_H
#define LMC_VLM_STB_IMAGE_IMPL_H
#include <stddef.h>

/* Largest single allocation the decoder may make on this thread. */
void lmc_stbi_set_alloc_cap(size_t cap);
int lmc_stbi_info(const unsigned char *p, int len, int *w, int *h, int *comp);
/* Pixels (free with lmc_stbi_free) or NULL; see lmc_stbi_failure_reason. */
unsigned char *lmc_stbi_load(const unsigned char *p, int len, int *w, int *h, int *comp, int req);
void lmc_stbi_free(void *px);
const char *lmc_stbi_failure_reason(void);

#endif
