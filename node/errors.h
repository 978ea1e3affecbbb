/*
 * errors.h - the one error convention of SmartRelay.
 *
 * Functions return 0 on success or a negative SR_E* code. Objects that can
 * fail keep an errmsg buffer that each layer fills with context; free
 * functions take (char *err, size_t errlen) and write one line there.
 */
#ifndef SR_ERRORS_H
#define SR_ERRORS_H

#include <stddef.h>

#define SR_OK 0
#define SR_ENOMEM (-1)     /* allocation failed */
#define SR_EINVAL (-2)     /* invalid argument or input */
#define SR_EPARSE (-3)     /* malformed input (wire, file, config) */
#define SR_EIO (-4)        /* disk or socket I/O failed */
#define SR_ENOTFOUND (-5)  /* no such object */
#define SR_ENOTLEADER (-6) /* this node cannot commit right now */
#define SR_ETIMEDOUT (-7)  /* a deadline passed */
#define SR_EFULL (-8)      /* a bounded queue or limit is full */
#define SR_ESHUTDOWN (-9)  /* the node is stopping */
#define SR_EVERSION (-10)  /* unknown format version */
#define SR_EEXIST (-11)    /* object already exists */
#define SR_ECANCELED (-12) /* the operation was abandoned */
#define SR_EAUTH (-13)     /* the peer failed authentication */

#define SR_ERRMSG_SIZE 256

/* Returns the constant name of a code ("SR_EPARSE"), never NULL. */
const char *sr_strerror(int code);

/* printf into err (if non-NULL) and return code; for one-line error paths. */
int sr_err(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Copies untrusted text into an error message: at most 64 bytes, anything
 * that is not printable ASCII shown as '?', "..." when cut, so that a
 * message never carries control characters into a log line. */
void sr_sanitize(char *dst, size_t dstlen, const char *src, size_t len);

#endif
