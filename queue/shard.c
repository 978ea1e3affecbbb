/* shard.c - delivery shards (see shard.h). */
#include "queue/shard.h"

#include <ctype.h>
#include <string.h>

unsigned shard_of_domain(const char *domain, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)tolower((unsigned char)domain[i]);
        h *= 16777619u;
    }
    return h % SHARD_COUNT;
}

unsigned shard_of_rcpt(const char *address)
{
    const char *at = strrchr(address, '@');
    const char *d = at ? at + 1 : address;
    return shard_of_domain(d, strlen(d));
}

/* splitmix64: a well-mixed 64-bit hash of (shard, node). */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t shard_pick_owner(unsigned shard, const uint64_t *nodes, size_t n)
{
    uint64_t best = 0, best_w = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = mix(((uint64_t)shard << 32) ^ mix(nodes[i]));
        if (best == 0 || w > best_w || (w == best_w && nodes[i] < best)) {
            best = nodes[i];
            best_w = w;
        }
    }
    return best;
}
