/*
 * code.h - the message code returned in "250 2.0.0 OK <code>".
 *
 * Format, in the spirit of "79/BC-12331-5C348706":
 *
 *     NN/BB-SSSSS-TTTTTTTT
 *
 *   NN        accepting node id, decimal (1..65535, at least two digits)
 *   BB        node incarnation: the node's boot counter mod 256, two hex
 *             digits (the counter lives in the data dir and is fsynced at
 *             every start)
 *   SSSSS     sequence within that second on that node, 00000..99999
 *   TTTTTTTT  the second of acceptance, Unix time, eight hex digits
 *
 * Unique in the cluster because node ids are unique, and one node never
 * issues the same (incarnation, second, sequence) twice: within one run the
 * generator's second never goes backwards (a clock step back keeps using
 * the last second) and when 100,000 codes are issued in one second it moves
 * on to the next second. A restart increments the incarnation, so a node that
 * restarts within the same second cannot repeat a code unless it restarts
 * 256 times in that second. Codes are at most 23 characters.
 *
 * Pure: the caller passes the time in.
 */
#ifndef SR_CODE_H
#define SR_CODE_H

#include <stdbool.h>
#include <stdint.h>

#define CODE_MAX 24 /* buffer size including NUL */

struct code_gen {
    unsigned node_id;
    unsigned incarnation; /* boot counter */
    uint64_t sec;         /* second of the last code */
    uint32_t seq;         /* next sequence number in sec */
};

void code_gen_init(struct code_gen *g, unsigned node_id, unsigned boot);
/* Writes the next code into out (CODE_MAX bytes). now_ms: wall clock. */
void code_next(struct code_gen *g, uint64_t now_ms, char out[CODE_MAX]);
/* True if s has the shape of a code. */
bool code_valid(const char *s);

#endif
