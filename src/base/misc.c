#include "lmc.h"
#include <stdlib.h>

const char *lmc_version(void) { return LMC_VERSION; }
void lmc_free(void *p) { free(p); }
