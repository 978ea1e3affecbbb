/* bodystore.c - local body store with group commit (see bodystore.h). */
#include "queue/bodystore.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "node/errors.h"
#include "node/log.h"

enum job_kind { JOB_PUT, JOB_GET, JOB_DEL };

/* One request; owned by the store from submission to callback. */
struct job {
    struct job *next;
    enum job_kind kind;
    char code[64];
    const uint8_t *data; /* put: borrowed */
    size_t len;
    uint8_t *out; /* get: malloc'd result, passed to the callback */
    int status;
    body_done_cb done;
    body_get_cb got;
    void *ud;
};

/* Loop thread owns the struct; mu guards todo/done/stopping. */
struct body_store {
    MDB_env *env;
    MDB_dbi dbi;
    uv_async_t async;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *todo, **todo_tail;
    struct job *done, **done_tail;
    int stopping;
    uint64_t puts, bytes, commits;
};

static void run_batch(struct body_store *b, struct job *jobs)
{
    MDB_txn *txn;
    int have_put = 0;
    for (struct job *j = jobs; j; j = j->next)
        if (j->kind != JOB_GET)
            have_put = 1;
    int rc = mdb_txn_begin(b->env, NULL, have_put ? 0 : MDB_RDONLY, &txn);
    if (rc != 0) {
        for (struct job *j = jobs; j; j = j->next)
            j->status = SR_EIO;
        return;
    }
    for (struct job *j = jobs; j; j = j->next) {
        MDB_val k = {strlen(j->code), j->code}, v;
        if (j->kind == JOB_PUT) {
            v.mv_size = j->len;
            v.mv_data = (void *)j->data;
            rc = mdb_put(txn, b->dbi, &k, &v, 0);
            j->status = rc == 0 ? 0 : SR_EIO;
            if (rc != 0)
                LOG_ERROR("event=body_put_failed code=%s error=\"%s\"",
                          j->code, mdb_strerror(rc));
        } else if (j->kind == JOB_DEL) {
            rc = mdb_del(txn, b->dbi, &k, NULL);
            j->status = rc == 0 ? 0 : rc == MDB_NOTFOUND ? SR_ENOTFOUND
                                                         : SR_EIO;
        } else {
            rc = mdb_get(txn, b->dbi, &k, &v);
            if (rc == 0) {
                j->out = malloc(v.mv_size ? v.mv_size : 1);
                if (j->out) {
                    memcpy(j->out, v.mv_data, v.mv_size);
                    j->len = v.mv_size;
                    j->status = 0;
                } else {
                    j->status = SR_ENOMEM;
                }
            } else {
                j->status = rc == MDB_NOTFOUND ? SR_ENOTFOUND : SR_EIO;
            }
        }
    }
    if (have_put) {
        /* One fsync for the whole batch: the group commit. */
        rc = mdb_txn_commit(txn);
        if (rc != 0) {
            LOG_ERROR("event=body_commit_failed error=\"%s\"",
                      mdb_strerror(rc));
            for (struct job *j = jobs; j; j = j->next)
                if (j->kind != JOB_GET)
                    j->status = SR_EIO;
        }
        b->commits++;
    } else {
        mdb_txn_abort(txn);
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
        struct job *jobs = b->todo;
        b->todo = NULL;
        b->todo_tail = &b->todo;
        pthread_mutex_unlock(&b->mu);

        run_batch(b, jobs);

        pthread_mutex_lock(&b->mu);
        for (struct job *j = jobs; j;) {
            struct job *next = j->next;
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
        if (j->kind == JOB_GET) {
            j->got(j->ud, j->status, j->out, j->status == 0 ? j->len : 0);
        } else {
            if (j->kind == JOB_PUT && j->status == 0) {
                b->puts++;
                b->bytes += j->len;
            }
            if (j->done)
                j->done(j->ud, j->status);
        }
        free(j);
    }
}

int body_store_open(uv_loop_t *loop, const char *dir, struct body_store **out,
                    char *err, size_t errlen)
{
    struct body_store *b = calloc(1, sizeof *b);
    if (b == NULL)
        return SR_ENOMEM;
    mkdir(dir, 0750);
    int rc = mdb_env_create(&b->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(b->env, (size_t)256 << 30);
    if (rc == 0)
        rc = mdb_env_open(b->env, dir, MDB_NOTLS, 0640);
    MDB_txn *txn = NULL;
    if (rc == 0)
        rc = mdb_txn_begin(b->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &b->dbi);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        if (txn)
            mdb_txn_abort(txn);
        if (b->env)
            mdb_env_close(b->env);
        free(b);
        return sr_err(err, errlen, SR_EIO, "body store %s: %s", dir,
                      mdb_strerror(rc));
    }
    b->todo_tail = &b->todo;
    b->done_tail = &b->done;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    uv_async_init(loop, &b->async, on_async);
    b->async.data = b;
    if (pthread_create(&b->thread, NULL, worker, b) != 0) {
        uv_close((uv_handle_t *)&b->async, NULL);
        mdb_env_close(b->env);
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
    mdb_env_close(b->env);
    uv_close((uv_handle_t *)&b->async, on_closed);
}

static int submit(struct body_store *b, enum job_kind kind, const char *code,
                  const uint8_t *data, size_t len, body_done_cb done,
                  body_get_cb got, void *ud)
{
    if (strlen(code) >= sizeof((struct job *)0)->code)
        return SR_EINVAL;
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return SR_ENOMEM;
    j->kind = kind;
    strcpy(j->code, code);
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

void body_store_stats(struct body_store *b, uint64_t *puts, uint64_t *bytes,
                      uint64_t *commits)
{
    *puts = b->puts;
    *bytes = b->bytes;
    pthread_mutex_lock(&b->mu);
    *commits = b->commits;
    pthread_mutex_unlock(&b->mu);
}
