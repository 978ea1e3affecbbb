/* log.c - key=value log sink (see log.h). */
#include "node/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int g_level = SR_LOG_INFO;
static unsigned g_node;
static int g_fd = 2;

static const char *level_name(int level)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    return level >= 0 && level <= SR_LOG_ERROR ? names[level] : "?";
}

void sr_log_setup(int level, unsigned node_id, int fd)
{
    g_level = level;
    g_node = node_id;
    g_fd = fd;
}

int sr_log_enabled(int level)
{
    return level >= g_level;
}

void sr_log_write(int level, const char *fmt, ...)
{
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(
        line, sizeof line,
        "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s node=%u ",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
        tm.tm_sec, (long)(tv.tv_usec / 1000), level_name(level), g_node);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    ssize_t w = write(g_fd, line, len);
    (void)w;
}
