/*
 * fuzz_config.c - libFuzzer target for the YAML/JSON configuration parsers.
 *
 * Feeds the same bytes to config_load_string (node config YAML),
 * policy_parse_json (the replicated policy) and policy_yaml_to_json (what
 * clusterctl runs on an operator's file), then parses any converted JSON as
 * a policy too. Everything is freed, so LeakSanitizer checks the error paths.
 * Seeds: fuzz/corpus/config/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"
#include "node/errors.h"
#include "queue/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    char err[SR_ERRMSG_SIZE] = "";

    struct sr_config cfg;
    if (config_load_string(text, size, &cfg, err, sizeof err) == 0) {
        /* A loaded config upholds the documented invariants. */
        if (cfg.n_peers == 0 || cfg.n_smtp_listen == 0 ||
            cfg.data_dir == NULL || cfg.hostname == NULL ||
            cfg.heartbeat_ms >= cfg.election_timeout_ms)
            abort();
    } else if (err[0] == '\0') {
        abort(); /* every failure explains itself */
    }
    config_free(&cfg);

    struct policy *p = NULL;
    if (policy_parse_json(text, size, &p, err, sizeof err) == 0) {
        if (p == NULL || p->n_customers == 0)
            abort();
        policy_find(p, p->customers[0].name);
    }
    policy_free(p);

    char *json = NULL;
    if (policy_yaml_to_json(text, size, &json, err, sizeof err) == 0) {
        p = NULL;
        policy_parse_json(json, strlen(json), &p, err, sizeof err);
        policy_free(p);
        free(json);
    }
    return 0;
}
