/* fuzz_snapshot.c - libFuzzer target for snapshot restore
 * (queue_store_restore): arbitrary bytes never crash the store and a
 * refused snapshot leaves the state as it was. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/store.h"

static struct queue_store *store;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL) {
        char dir[] = "/tmp/sr-fuzz-snapshot-XXXXXX";
        if (mkdtemp(dir) == NULL)
            abort();
        char err[256];
        if (queue_store_open(dir, &store, err, sizeof err) != 0)
            abort();
    }
    uint8_t before[32], after[32];
    uint64_t a1, a2;
    queue_store_digest(store, before, &a1);
    if (queue_store_restore(store, data, size) != 0) {
        queue_store_digest(store, after, &a2);
        if (memcmp(before, after, 32) != 0 || a1 != a2)
            abort(); /* a refused snapshot changed the state */
    } else {
        /* a restored snapshot serializes back to a loadable one */
        uint8_t *buf;
        size_t len;
        if (queue_store_snapshot(store, &buf, &len) != 0)
            abort();
        if (queue_store_restore(store, buf, len) != 0)
            abort();
        free(buf);
    }
    return 0;
}
