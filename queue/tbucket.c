/* tbucket.c - replicated token buckets (see tbucket.h). */
#include "queue/tbucket.h"

#include <stdio.h>
#include <string.h>

#include "node/errors.h"
#include "queue/store.h"
#include "queue/store_int.h"

static void put64(uint8_t *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

static size_t tb_key(char *k, size_t cap, const char *scope)
{
    return (size_t)snprintf(k, cap, "tb:%s", scope);
}

int tbucket_apply(struct queue_store *s, MDB_txn *txn, uint64_t time_ms,
                  const Sr__RateGrant *g)
{
    size_t sl = strlen(g->scope);
    if (sl == 0 || sl > 200 || g->want == 0 || g->want > TBUCKET_WANT_MAX ||
        g->burst == 0 || g->burst > TBUCKET_WANT_MAX ||
        g->per_hour > TBUCKET_PER_HOUR_MAX)
        return SR_EINVAL;
    char k[256];
    MDB_val key = {tb_key(k, sizeof k, g->scope), k}, v;
    /* unit: 1/3,600,000 token, so that per_hour units accrue per ms */
    const uint64_t unit = 3600000;
    uint64_t cap = (uint64_t)g->burst * unit;
    uint64_t have_u = cap, last = time_ms;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0 && v.mv_size == 16) {
        have_u = get64(v.mv_data);
        last = get64((const uint8_t *)v.mv_data + 8);
        if (time_ms > last) {
            uint64_t dt = time_ms - last;
            if (dt > TBUCKET_REFILL_MAX_MS)
                dt = TBUCKET_REFILL_MAX_MS;
            have_u += dt * g->per_hour;
            last = time_ms;
        }
        if (have_u > cap)
            have_u = cap;
    }
    uint64_t have = have_u / unit;
    uint64_t grant = have < g->want ? have : g->want;
    have_u -= grant * unit;
    uint8_t b[16];
    put64(b, have_u);
    put64(b + 8, last);
    store_put(txn, s->dbi[DB_META], k, key.mv_size, b, 16);
    return (int)grant;
}

uint64_t tbucket_tokens(struct queue_store *s, const char *scope)
{
    char k[256];
    MDB_txn *txn;
    uint64_t n = 0;
    if (mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    MDB_val key = {tb_key(k, sizeof k, scope), k}, v;
    if (mdb_get(txn, s->dbi[DB_META], &key, &v) == 0 && v.mv_size == 16)
        n = get64(v.mv_data) / 3600000;
    mdb_txn_abort(txn);
    return n;
}
