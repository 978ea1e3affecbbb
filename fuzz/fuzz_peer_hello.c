/* fuzz_peer_hello.c - libFuzzer target for the hello that a node sends
 * inside a mutual-TLS link (raft/peertls.h): the first bytes an
 * authenticated peer controls. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "raft/peertls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char h[PEERTLS_HELLO_LEN];
    memset(h, 0, sizeof h);
    memcpy(h, data, size < sizeof h ? size : sizeof h);
    uint64_t id;
    char address[256], small[8];
    for (int purpose = 0; purpose < 2; purpose++) {
        int p = purpose ? PEERTLS_RAFT : PEERTLS_RPC;
        if (peertls_hello_parse(h, p, &id, address, sizeof address) == 0 &&
            (id == 0 || strlen(address) == 0))
            __builtin_trap();
        peertls_hello_parse(h, p, &id, small, sizeof small);
    }
    return 0;
}
