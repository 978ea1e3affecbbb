/*
 * bodystore.c - local body store: append-only segment files with group
 * commit (see bodystore.h).
 *
 * Layout: DIR/NNNNNNNN.seg, appended in order; the newest is active and a
 * new one starts past SEG_MAX bytes. Each record is
 *
 *     "SRB1" | kind u8 (1 put, 2 delete) | 3 zero bytes | code_len u32le |
 *     body_len u64le | crc32 u32le of code and body | 4 zero bytes |
 *     code | body | zero padding to 8 bytes
 *
 * Every body is written once, sequentially, and a whole batch of puts costs
 * one fdatasync (Postfix writes and fsyncs one file per message; LMDB
 * copy-on-write pages cost us several times the body size). The index
 * (code -> segment, offset, length) lives in memory and is rebuilt at start
 * by reading the record headers; a torn record at the end of the newest
 * segment (a crash during a write, never acknowledged) is cut off. A
 * segment whose bodies are all deleted is unlinked. Reading a body checks
 * its CRC; a mismatch is reported as SR_EIO, never returned as data.
 *
 * Threads: the loop thread submits jobs and runs callbacks; one worker
 * thread owns the files and the index.
 */
#include "queue/bodystore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "node/errors.h"
#include "node/log.h"

#define SEG_MAX ((uint64_t)256 << 20)
#define HDR 32
#define KIND_PUT 1
#define KIND_DEL 2
#define MAX_CODE 63
#define MAX_BODY ((uint64_t)1 << 32)
#define BATCH_RECORDS 255 /* 4 iovecs each: under IOV_MAX (1024) */

enum job_kind { JOB_PUT, JOB_GET, JOB_DEL, JOB_HAS };

/* One request; owned by the store from submission to callback. */
struct job {
    struct job *next;
    enum job_kind kind;
    char code[MAX_CODE + 1];
    const uint8_t *data; /* put: borrowed */
    size_t len;
    uint64_t rec_off; /* put/del: where its record was written */
    uint32_t seg;     /* put/del: in which segment */
    uint8_t *out;     /* get: malloc'd result, passed to the callback */
    int status;
    body_done_cb done;
    body_get_cb got;
    void *ud;
};

/* Index entry (worker thread only). */
struct slot {
    char *code; /* NULL = empty, TOMB = deleted slot */
    uint32_t seg;
    uint64_t off; /* offset of the body */
    uint64_t len;
};

/* Per-segment live count (worker thread only). */
struct seg {
    uint32_t id;
    uint64_t live;
    int fd;
};

static char tomb_marker;
#define TOMB (&tomb_marker)

/* The loop thread owns the struct; mu guards todo/done/stopping; the
 * worker alone touches the files, the index and the segment table. */
struct body_store {
    char *dir;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo, **todo_tail;
    struct job *done, **done_tail;
    int stopping;
    unsigned window_us; /* group commit window, 0 = none */
    /* worker state */
    uint64_t last_batch_end;  /* mono_us() when the last batch finished */
    unsigned last_batch_puts; /* bodies the last batch wrote */
    int loading;              /* reading segments at open: unlink nothing yet */
    uint64_t seg_max;         /* start a new segment past this size */
    /* records of the batch being written (worker only) */
    struct iovec iov[4 * BATCH_RECORDS];
    uint8_t hdr[BATCH_RECORDS][HDR];
    struct job *pending[BATCH_RECORDS];
    unsigned n_pending;
    uint64_t pending_len;
    struct slot *slots;
    size_t cap, used, tombs;
    struct seg *segs;
    size_t n_segs;
    int active_fd;
    uint32_t active_id;
    uint64_t active_size;
    /* statistics: written by the worker under mu */
    uint64_t puts, bytes, commits, count;
};

/* ---- index: open addressing, FNV-1a ---- */

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static struct slot *find(struct body_store *b, const char *code)
{
    if (b->cap == 0)
        return NULL;
    size_t i = hash(code) & (b->cap - 1);
    for (;;) {
        struct slot *s = &b->slots[i];
        if (s->code == NULL)
            return NULL;
        if (s->code != TOMB && strcmp(s->code, code) == 0)
            return s;
        i = (i + 1) & (b->cap - 1);
    }
}

static int grow(struct body_store *b)
{
    size_t cap = b->cap ? b->cap * 2 : 1024;
    struct slot *n = calloc(cap, sizeof *n);
    if (n == NULL)
        return SR_ENOMEM;
    for (size_t i = 0; i < b->cap; i++) {
        struct slot *s = &b->slots[i];
        if (s->code == NULL || s->code == TOMB)
            continue;
        size_t j = hash(s->code) & (cap - 1);
        while (n[j].code)
            j = (j + 1) & (cap - 1);
        n[j] = *s;
    }
    free(b->slots);
    b->slots = n;
    b->cap = cap;
    b->tombs = 0;
    return 0;
}

static struct seg *seg_get(struct body_store *b, uint32_t id)
{
    for (size_t i = 0; i < b->n_segs; i++)
        if (b->segs[i].id == id)
            return &b->segs[i];
    return NULL;
}

static void seg_release(struct body_store *b, uint32_t id)
{
    struct seg *g = seg_get(b, id);
    if (g == NULL || g->live == 0 || --g->live > 0 || id == b->active_id ||
        b->loading)
        return;
    /* Every body in it was deleted: give the space back. */
    char path[1024];
    snprintf(path, sizeof path, "%s/%08u.seg", b->dir, id);
    if (g->fd >= 0)
        close(g->fd);
    unlink(path);
    *g = b->segs[--b->n_segs];
}

static void index_del(struct body_store *b, const char *code)
{
    struct slot *s = find(b, code);
    if (s == NULL)
        return;
    uint32_t seg = s->seg;
    free(s->code);
    s->code = TOMB;
    b->used--;
    b->tombs++;
    seg_release(b, seg);
}

static int index_put(struct body_store *b, const char *code, uint32_t seg,
                     uint64_t off, uint64_t len)
{
    index_del(b, code); /* a second put replaces the first */
    if ((b->used + b->tombs + 1) * 2 > b->cap && grow(b) != 0)
        return SR_ENOMEM;
    char *c = strdup(code);
    if (c == NULL)
        return SR_ENOMEM;
    size_t i = hash(code) & (b->cap - 1);
    while (b->slots[i].code && b->slots[i].code != TOMB)
        i = (i + 1) & (b->cap - 1);
    if (b->slots[i].code == TOMB)
        b->tombs--;
    b->slots[i] = (struct slot){c, seg, off, len};
    b->used++;
    struct seg *g = seg_get(b, seg);
    if (g)
        g->live++;
    return 0;
}

/* ---- segments ---- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

static int seg_open(struct body_store *b, uint32_t id, int create)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%08u.seg", b->dir, id);
    int fd =
        open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0), 0640);
    if (fd < 0)
        return -1;
    struct seg *n = realloc(b->segs, (b->n_segs + 1) * sizeof *n);
    if (n == NULL) {
        close(fd);
        return -1;
    }
    b->segs = n;
    b->segs[b->n_segs++] = (struct seg){id, 0, fd};
    if (create) {
        /* The new file's directory entry must be durable too. */
        int dfd = open(b->dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return fd;
}

static int roll(struct body_store *b)
{
    uint32_t id = b->active_id + 1;
    int fd = seg_open(b, id, 1);
    if (fd < 0)
        return SR_EIO;
    /* The old segment stays open: the batch being written may still have
     * records in it to sync and index (write_batch releases it after). */
    b->active_id = id;
    b->active_fd = fd;
    b->active_size = 0;
    return 0;
}

/* Reads every record of one segment into the index; cuts a torn tail. */
static int seg_load(struct body_store *b, uint32_t id, int fd, int last)
{
    uint64_t off = 0;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return SR_EIO;
    uint64_t size = (uint64_t)st.st_size;
    uint8_t h[HDR];
    char code[MAX_CODE + 1];
    while (off + HDR <= size) {
        if (pread(fd, h, HDR, (off_t)off) != HDR)
            return SR_EIO;
        uint32_t cl = get32(h + 8);
        uint64_t bl = get32(h + 12) | (uint64_t)get32(h + 16) << 32;
        if (memcmp(h, "SRB1", 4) != 0 ||
            (h[4] != KIND_PUT && h[4] != KIND_DEL) || cl == 0 ||
            cl > MAX_CODE || bl > MAX_BODY)
            break;
        uint64_t rec = pad8(HDR + cl + bl);
        if (off + rec > size)
            break;
        if (pread(fd, code, cl, (off_t)(off + HDR)) != (ssize_t)cl)
            return SR_EIO;
        code[cl] = '\0';
        if (h[4] == KIND_PUT) {
            if (index_put(b, code, id, off + HDR + cl, bl) != 0)
                return SR_ENOMEM;
        } else {
            index_del(b, code);
        }
        off += rec;
    }
    if (off != size) {
        if (!last) {
            LOG_ERROR("event=body_segment_corrupt segment=%u offset=%llu", id,
                      (unsigned long long)off);
            return SR_EIO;
        }
        /* Only the newest segment can end in a record that was being
         * written when the process died; no put in it was acknowledged. */
        LOG_WARN("event=body_segment_truncated segment=%u from=%llu to=%llu",
                 id, (unsigned long long)size, (unsigned long long)off);
        if (ftruncate(fd, (off_t)off) != 0 || fdatasync(fd) != 0)
            return SR_EIO;
    }
    if (last) {
        b->active_id = id;
        b->active_fd = fd;
        b->active_size = off;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int load_all(struct body_store *b)
{
    DIR *d = opendir(b->dir);
    if (d == NULL)
        return SR_EIO;
    uint32_t *ids = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned id;
        char tail[8];
        if (sscanf(e->d_name, "%8u.%3s", &id, tail) == 2 &&
            strcmp(tail, "seg") == 0 && strlen(e->d_name) == 12) {
            uint32_t *p = realloc(ids, (n + 1) * sizeof *ids);
            if (p == NULL)
                break;
            ids = p;
            ids[n++] = id;
        }
    }
    closedir(d);
    if (n > 1)
        qsort(ids, n, sizeof *ids, cmp_u32);
    int rc = 0;
    b->loading = 1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        int fd = seg_open(b, ids[i], 0);
        rc = fd < 0 ? SR_EIO : seg_load(b, ids[i], fd, i + 1 == n);
    }
    b->loading = 0;
    free(ids);
    if (rc == 0 && n == 0) {
        b->active_id = 0;
        rc = roll(b);
    }
    /* Empty old segments can go now. */
    for (size_t i = 0; rc == 0 && i < b->n_segs;) {
        struct seg *g = &b->segs[i];
        if (g->live == 0 && g->id != b->active_id) {
            g->live = 1;
            seg_release(b, g->id);
        } else {
            i++;
        }
    }
    return rc;
}

/* ---- the worker ---- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void header(uint8_t *h, int kind, size_t cl, uint64_t bl,
                   const char *code, const uint8_t *body)
{
    memset(h, 0, HDR);
    memcpy(h, "SRB1", 4);
    h[4] = (uint8_t)kind;
    put32(h + 8, (uint32_t)cl);
    put32(h + 12, (uint32_t)bl);
    put32(h + 16, (uint32_t)(bl >> 32));
    uLong crc = crc32(0L, (const Bytef *)code, (uInt)cl);
    if (bl)
        crc = crc32(crc, body, (uInt)bl);
    put32(h + 20, (uint32_t)crc);
}

/* Writes the records gathered in b->iov with one pwritev at the end of
 * the active segment; on failure cuts them off again and fails their jobs. */
static void flush_records(struct body_store *b)
{
    if (b->n_pending == 0)
        return;
    uint64_t start = b->pending[0]->rec_off;
    ssize_t w =
        pwritev(b->active_fd, b->iov, (int)(b->n_pending * 4), (off_t)start);
    int ok = w == (ssize_t)b->pending_len;
    if (!ok) {
        LOG_ERROR("event=body_write_failed bodies=%u error=\"%s\"",
                  b->n_pending, w < 0 ? strerror(errno) : "short write");
        /* Leave no torn record behind for the next start to trip on. */
        if (ftruncate(b->active_fd, (off_t)start) != 0)
            LOG_ERROR("event=body_truncate_failed");
        b->active_size = start;
    }
    for (unsigned i = 0; i < b->n_pending; i++)
        b->pending[i]->status = ok ? 1 : SR_EIO; /* 1: written, not synced */
    b->n_pending = 0;
    b->pending_len = 0;
}

/* Appends the puts and deletes of a batch with as few pwritev calls as the
 * iovec limit allows, then one fdatasync per segment written. */
static void write_batch(struct body_store *b, struct job *jobs)
{
    static const uint8_t zeros[8];
    for (struct job *j = jobs; j; j = j->next) {
        if (j->kind == JOB_GET || j->kind == JOB_HAS)
            continue;
        if (j->kind == JOB_DEL && find(b, j->code) == NULL) {
            j->status = SR_ENOTFOUND;
            continue;
        }
        size_t cl = strlen(j->code);
        uint64_t bl = j->kind == JOB_PUT ? j->len : 0;
        uint64_t rec = pad8(HDR + cl + bl);
        if (b->n_pending == BATCH_RECORDS ||
            (b->active_size > 0 && b->active_size + rec > b->seg_max)) {
            flush_records(b);
            if (b->active_size > 0 && b->active_size + rec > b->seg_max &&
                roll(b) != 0) {
                j->status = SR_EIO;
                continue;
            }
        }
        unsigned k = b->n_pending++;
        header(b->hdr[k], j->kind == JOB_PUT ? KIND_PUT : KIND_DEL, cl, bl,
               j->code, j->data);
        struct iovec *v = &b->iov[4 * k];
        v[0] = (struct iovec){b->hdr[k], HDR};
        v[1] = (struct iovec){j->code, cl};
        v[2] = (struct iovec){(void *)j->data, bl};
        v[3] = (struct iovec){(void *)zeros, rec - HDR - cl - bl};
        b->pending[k] = j;
        j->rec_off = b->active_size;
        j->seg = b->active_id;
        b->active_size += rec;
        b->pending_len += rec;
    }
    flush_records(b);
    /* One fdatasync per segment written (two when the batch rolled). */
    uint32_t synced_ok[4], synced_bad[4];
    unsigned n_ok = 0, n_bad = 0;
    for (struct job *j = jobs; j; j = j->next) {
        if (j->kind == JOB_GET || j->kind == JOB_HAS || j->status != 1)
            continue;
        int done = 0;
        for (unsigned i = 0; i < n_ok; i++)
            done |= synced_ok[i] == j->seg;
        for (unsigned i = 0; i < n_bad; i++)
            if (synced_bad[i] == j->seg)
                done = 2;
        if (!done) {
            struct seg *g = seg_get(b, j->seg);
            if (g != NULL && fdatasync(g->fd) == 0) {
                if (n_ok < 4)
                    synced_ok[n_ok++] = j->seg;
                done = 1;
            } else {
                LOG_ERROR("event=body_sync_failed segment=%u error=\"%s\"",
                          j->seg, strerror(errno));
                if (n_bad < 4)
                    synced_bad[n_bad++] = j->seg;
                done = 2;
            }
        }
        if (done == 2) {
            j->status = SR_EIO;
            continue;
        }
        j->status = 0;
        if (j->kind == JOB_PUT) {
            uint64_t off = j->rec_off + HDR + strlen(j->code);
            if (index_put(b, j->code, j->seg, off, j->len) != 0)
                j->status = SR_ENOMEM;
        } else {
            index_del(b, j->code);
        }
    }
    /* Segments left behind by a roll with no live body go now. */
    for (size_t i = 0; i < b->n_segs;) {
        struct seg *g = &b->segs[i];
        if (g->live == 0 && g->id != b->active_id) {
            g->live = 1;
            seg_release(b, g->id);
        } else {
            i++;
        }
    }
}

static void read_one(struct body_store *b, struct job *j)
{
    struct slot *s = find(b, j->code);
    struct seg *g = s ? seg_get(b, s->seg) : NULL;
    if (s == NULL || g == NULL) {
        j->status = SR_ENOTFOUND;
        return;
    }
    uint8_t h[HDR];
    size_t cl = strlen(j->code);
    j->out = malloc(s->len ? s->len : 1);
    if (j->out == NULL) {
        j->status = SR_ENOMEM;
        return;
    }
    if (pread(g->fd, h, HDR, (off_t)(s->off - cl - HDR)) != HDR ||
        pread(g->fd, j->out, s->len, (off_t)s->off) != (ssize_t)s->len) {
        j->status = SR_EIO;
    } else {
        uLong crc = crc32(0L, (const Bytef *)j->code, (uInt)cl);
        crc = crc32(crc, j->out, (uInt)s->len);
        j->status = (uint32_t)crc == get32(h + 20) ? 0 : SR_EIO;
        if (j->status)
            LOG_ERROR("event=body_crc_mismatch code=%s", j->code);
    }
    if (j->status == 0) {
        j->len = s->len;
    } else {
        free(j->out);
        j->out = NULL;
    }
}

static void *worker(void *arg)
{
    struct body_store *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (b->todo == NULL && !b->stopping)
            pthread_cond_wait(&b->cv, &b->mu);
        if (b->todo == NULL && b->stopping)
            break;
        if (b->window_us > 0 && !b->stopping && b->last_batch_puts >= 2 &&
            mono_us() - b->last_batch_end < 10000) {
            /* Busy (the last batch, less than 10 ms ago, held several
             * bodies: clients are writing concurrently): wait a little for
             * more bodies so that one fdatasync covers more of them, as
             * PostgreSQL's commit_delay does with commit_siblings. On this
             * hardware each sync, not each byte, is what costs. A store
             * that gets one body at a time syncs at once. */
            pthread_mutex_unlock(&b->mu);
            usleep(b->window_us);
            pthread_mutex_lock(&b->mu);
        }
        struct job *jobs = b->todo;
        b->todo = NULL;
        b->todo_tail = &b->todo;
        pthread_mutex_unlock(&b->mu);

        int writes = 0;
        unsigned puts = 0;
        for (struct job *j = jobs; j; j = j->next) {
            writes |= j->kind == JOB_PUT || j->kind == JOB_DEL;
            puts += j->kind == JOB_PUT;
        }
        if (writes)
            write_batch(b, jobs);
        for (struct job *j = jobs; j; j = j->next) {
            if (j->kind == JOB_GET)
                read_one(b, j);
            else if (j->kind == JOB_HAS)
                j->status = find(b, j->code) ? 0 : SR_ENOTFOUND;
        }

        pthread_mutex_lock(&b->mu);
        if (writes) {
            b->commits++;
            b->last_batch_end = mono_us();
            b->last_batch_puts = puts;
        }
        b->count = b->used;
        for (struct job *j = jobs; j;) {
            struct job *next = j->next;
            if (j->kind == JOB_PUT && j->status == 0) {
                b->puts++;
                b->bytes += j->len;
            }
            j->next = NULL;
            *b->done_tail = j;
            b->done_tail = &j->next;
            j = next;
        }
        uv_async_send(&b->async);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

static void on_async(uv_async_t *h)
{
    struct body_store *b = h->data;
    pthread_mutex_lock(&b->mu);
    struct job *jobs = b->done;
    b->done = NULL;
    b->done_tail = &b->done;
    pthread_mutex_unlock(&b->mu);
    while (jobs) {
        struct job *j = jobs;
        jobs = j->next;
        if (j->kind == JOB_GET)
            j->got(j->ud, j->status, j->out, j->status == 0 ? j->len : 0);
        else if (j->done)
            j->done(j->ud, j->status);
        free(j);
    }
}

/* ---- API ---- */

static void free_worker_state(struct body_store *b)
{
    for (size_t i = 0; i < b->cap; i++)
        if (b->slots[i].code && b->slots[i].code != TOMB)
            free(b->slots[i].code);
    free(b->slots);
    for (size_t i = 0; i < b->n_segs; i++)
        if (b->segs[i].fd >= 0)
            close(b->segs[i].fd);
    free(b->segs);
    free(b->dir);
}

void body_store_set_window(struct body_store *b, unsigned window_us)
{
    pthread_mutex_lock(&b->mu);
    b->window_us = window_us;
    pthread_mutex_unlock(&b->mu);
}

int body_store_open(uv_loop_t *loop, const char *dir, unsigned window_us,
                    struct body_store **out, char *err, size_t errlen)
{
    struct body_store *b = calloc(1, sizeof *b);
    if (b == NULL || (b->dir = strdup(dir)) == NULL) {
        free(b);
        return SR_ENOMEM;
    }
    b->window_us = window_us;
    b->seg_max = SEG_MAX;
    mkdir(dir, 0750);
    b->active_fd = -1;
    int rc = load_all(b);
    if (rc != 0) {
        free_worker_state(b);
        free(b);
        return sr_err(err, errlen, rc, "body store %s: %s", dir,
                      rc == SR_ENOMEM ? "out of memory"
                                      : "cannot read segments");
    }
    LOG_INFO("event=body_store_opened bodies=%zu segments=%zu", b->used,
             b->n_segs);
    b->count = b->used;
    b->todo_tail = &b->todo;
    b->done_tail = &b->done;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    uv_async_init(loop, &b->async, on_async);
    b->async.data = b;
    if (pthread_create(&b->thread, NULL, worker, b) != 0) {
        free_worker_state(b);
        b->dir = NULL;
        b->slots = NULL;
        b->segs = NULL;
        b->cap = b->n_segs = 0;
        uv_close((uv_handle_t *)&b->async, NULL);
        return sr_err(err, errlen, SR_EIO, "body store: cannot start worker");
    }
    *out = b;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    struct body_store *b = h->data;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

void body_store_close(struct body_store *b)
{
    pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    /* Completed jobs still get their callbacks before the handle closes. */
    on_async(&b->async);
    free_worker_state(b);
    uv_close((uv_handle_t *)&b->async, on_closed);
}

static int submit(struct body_store *b, enum job_kind kind, const char *code,
                  const uint8_t *data, size_t len, body_done_cb done,
                  body_get_cb got, void *ud)
{
    size_t cl = strlen(code);
    if (cl == 0 || cl > MAX_CODE || (uint64_t)len >= MAX_BODY)
        return SR_EINVAL;
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return SR_ENOMEM;
    j->kind = kind;
    memcpy(j->code, code, cl + 1);
    j->data = data;
    j->len = len;
    j->done = done;
    j->got = got;
    j->ud = ud;
    pthread_mutex_lock(&b->mu);
    if (b->stopping) {
        pthread_mutex_unlock(&b->mu);
        free(j);
        return SR_ESHUTDOWN;
    }
    *b->todo_tail = j;
    b->todo_tail = &j->next;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

int body_store_put(struct body_store *b, const char *code, const uint8_t *data,
                   size_t len, body_done_cb cb, void *ud)
{
    return submit(b, JOB_PUT, code, data, len, cb, NULL, ud);
}

int body_store_get(struct body_store *b, const char *code, body_get_cb cb,
                   void *ud)
{
    return submit(b, JOB_GET, code, NULL, 0, NULL, cb, ud);
}

int body_store_del(struct body_store *b, const char *code, body_done_cb cb,
                   void *ud)
{
    return submit(b, JOB_DEL, code, NULL, 0, cb, NULL, ud);
}

int body_store_has(struct body_store *b, const char *code, body_done_cb cb,
                   void *ud)
{
    return submit(b, JOB_HAS, code, NULL, 0, cb, NULL, ud);
}

uint64_t body_store_count(struct body_store *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t n = b->count;
    pthread_mutex_unlock(&b->mu);
    return n;
}

void body_store_stats(struct body_store *b, uint64_t *puts, uint64_t *bytes,
                      uint64_t *commits)
{
    pthread_mutex_lock(&b->mu);
    *puts = b->puts;
    *bytes = b->bytes;
    *commits = b->commits;
    pthread_mutex_unlock(&b->mu);
}

void body_store_set_segment_max(struct body_store *b, uint64_t bytes)
{
    pthread_mutex_lock(&b->mu);
    b->seg_max = bytes;
    pthread_mutex_unlock(&b->mu);
}
