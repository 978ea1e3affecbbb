/*
 * yamlsafe.h - what every YAML input goes through before and after libfyaml
 * 0.7.12 parses it, because fuzzing found that version hanging on invalid
 * UTF-8 in a directive (upstream issue 101), reading its input as a C
 * string, mis-unescaping adjacent '' escapes and printing parse errors of
 * alias "paths" to stderr. Used by node/config.c and queue/policy.c.
 */
#ifndef SR_YAMLSAFE_H
#define SR_YAMLSAFE_H

#include <libfyaml.h>
#include <stddef.h>

/* Decodes one UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
 * nothing above U+10FFFF); returns its length or 0 if invalid. */
size_t yamlsafe_utf8_decode(const unsigned char *s, size_t len, unsigned *cp);
/* 1-based line of a scalar node, 0 when unknown. */
int yamlsafe_node_line(struct fy_node *n);
/* Checks that s is valid UTF-8 of YAML's printable characters and returns
 * a NUL-terminated malloc'd copy to parse. */
int yamlsafe_copy(const char *s, size_t len, char **copy, char *err,
                  size_t errlen);
/* Refuses, in a parsed tree, what libfyaml 0.7.12 gets wrong (adjacent ''
 * escapes, alias names with '/'), and trees nested over 256 levels. */
int yamlsafe_check_tree(struct fy_node *n, const char *text, size_t len,
                        int depth, char *err, size_t errlen);

/* Parses one YAML document with every check above and calls fn(ud, root)
 * with its root, or with NULL for an empty stream (comments only). A second
 * document is refused. Returns fn's result, or SR_EPARSE / SR_ENOMEM with
 * err set ("line L, column C: ..."). */
int yamlsafe_parse(const char *yaml, size_t len,
                   int (*fn)(void *ud, struct fy_node *root), void *ud,
                   char *err, size_t errlen);

#endif
