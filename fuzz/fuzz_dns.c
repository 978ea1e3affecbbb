/* fuzz_dns.c - libFuzzer target for the DNS answer parser of the MX
 * resolver (engine/mx.h): answers come from the network. */
#include <stddef.h>
#include <stdint.h>

#include "engine/mx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mx_msg m;
    if (mx_msg_parse(data, size, &m) != 0)
        return 0;
    for (size_t i = 0; i < m.nrr; i++) {
        uint32_t ttl = UINT32_MAX;
        const char *name = m.rr[i].owner;
        mx_msg_canon(&m, name, &ttl);
        struct mx_cand c[MX_MAX_HOSTS];
        mx_msg_mx(&m, name, c, MX_MAX_HOSTS, &ttl);
        struct mx_addr a[MX_MAX_ADDRS];
        mx_msg_addrs(&m, name, AF_INET, a, MX_MAX_ADDRS, &ttl);
        mx_msg_addrs(&m, name, AF_INET6, a, MX_MAX_ADDRS, &ttl);
    }
    mx_msg_free(&m);
    return 0;
}
