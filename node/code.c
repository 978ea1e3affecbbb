/* code.c - message code generation (see code.h). */
#include "node/code.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

void code_gen_init(struct code_gen *g, unsigned node_id, unsigned boot)
{
    memset(g, 0, sizeof *g);
    g->node_id = node_id;
    g->incarnation = boot % 256;
}

void code_next(struct code_gen *g, uint64_t now_ms, char out[CODE_MAX])
{
    uint64_t sec = now_ms / 1000;
    if (sec > g->sec) {
        g->sec = sec;
        g->seq = 0;
    } else if (g->seq > 99999) {
        /* Out of sequence numbers in this second: borrow the next one. */
        g->sec++;
        g->seq = 0;
    }
    snprintf(out, CODE_MAX, "%02u/%02X-%05u-%08X", g->node_id % 100000,
             g->incarnation, (unsigned)g->seq,
             (unsigned)(g->sec & 0xffffffffu));
    g->seq++;
}

static bool digits(const char **p, int min, int max, int hex)
{
    int n = 0;
    while (**p &&
           (hex ? isxdigit((unsigned char)**p) && !islower((unsigned char)**p)
                : isdigit((unsigned char)**p))) {
        (*p)++;
        n++;
    }
    return n >= min && n <= max;
}

bool code_valid(const char *s)
{
    const char *p = s;
    if (!digits(&p, 2, 5, 0) || *p++ != '/')
        return false;
    if (!digits(&p, 2, 2, 1) || *p++ != '-')
        return false;
    if (!digits(&p, 5, 5, 0) || *p++ != '-')
        return false;
    if (!digits(&p, 8, 8, 1))
        return false;
    return *p == '\0';
}
