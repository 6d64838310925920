/* A server without a model, for the HTTP fuzz target: the whole request
 * path runs (libmicrohttpd's parsing, the Host/Origin/key gate, routing,
 * body limits, the JSON body parser, admission), and a request that would
 * generate is answered at once with a fixed reply instead. Connections are
 * handed in as connected sockets (no listening port). */
#ifndef LMC_SERVER_STUB_H
#define LMC_SERVER_STUB_H
#include "lmc.h"

#define LMC_SRV_STUB_VOCAB 1000

/* opts->host/port are ignored; the server acts as if bound to loopback. */
lmc_status lmc_srv_start_stub(const lmc_server_options *opts, lmc_server **out);
/* Serve one connected socket (the server closes it). */
lmc_status lmc_srv_add_connection(lmc_server *s, int fd);

#endif
