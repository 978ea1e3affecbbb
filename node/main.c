/* main.c - smartrelayd: parse the command line, load the config, run. */
#include <stdio.h>
#include <string.h>

#include "node/config.h"
#include "node/errors.h"
#include "node/log.h"
#include "node/node.h"

static void usage(void)
{
    fprintf(stderr, "usage: smartrelayd [--config FILE] [--check]\n"
                    "  --config FILE  YAML configuration (docs/CONFIG.md)\n"
                    "  --check        validate the configuration and exit\n");
}

static int level_of(const char *s)
{
    if (strcmp(s, "debug") == 0)
        return SR_LOG_DEBUG;
    if (strcmp(s, "warn") == 0)
        return SR_LOG_WARN;
    if (strcmp(s, "error") == 0)
        return SR_LOG_ERROR;
    return SR_LOG_INFO;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else {
            usage();
            return 2;
        }
    }
    struct sr_config cfg;
    char err[SR_ERRMSG_SIZE];
    if (config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "smartrelayd: %s: %s\n", path ? path : "(defaults)",
                err);
        return 1;
    }
    if (check) {
        printf("smartrelayd: configuration OK\n");
        config_free(&cfg);
        return 0;
    }
    sr_log_setup(level_of(cfg.log_level), (unsigned)cfg.node_id, 2);
    struct sr_node *node;
    if (node_start(&cfg, &node, err, sizeof err) != 0) {
        fprintf(stderr, "smartrelayd: %s\n", err);
        LOG_ERROR("event=start_failed error=\"%s\"", err);
        return 1;
    }
    int rc = node_run(node);
    config_free(&cfg);
    return rc;
}
