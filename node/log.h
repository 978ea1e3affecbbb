/*
 * log.h - key=value log lines for operators (one line per event).
 *
 * Lines look like: "ts=2026-11-29T22:48:36.123Z level=info node=1
 * code=01/03-00042-6A1B2C3D event=accepted size=1234 delays=0.002". The
 * level is checked before anything is formatted. Libraries (raft/, queue/)
 * call through the same function; the daemon sets the sink once at start.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef SR_LOG_H
#define SR_LOG_H

enum sr_log_level { SR_LOG_DEBUG, SR_LOG_INFO, SR_LOG_WARN, SR_LOG_ERROR };

void sr_log_setup(int level, unsigned node_id, int fd);
int sr_log_enabled(int level);
/* fmt is the key=value tail of the line, without level/ts/node. */
void sr_log_write(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define SR_LOG(level, ...)                                                     \
    do {                                                                       \
        if (sr_log_enabled(level))                                             \
            sr_log_write((level), __VA_ARGS__);                                \
    } while (0)
#define LOG_DEBUG(...) SR_LOG(SR_LOG_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) SR_LOG(SR_LOG_INFO, __VA_ARGS__)
#define LOG_WARN(...) SR_LOG(SR_LOG_WARN, __VA_ARGS__)
#define LOG_ERROR(...) SR_LOG(SR_LOG_ERROR, __VA_ARGS__)

#endif
