/* test_bodystore.c - the segment body store (queue/bodystore.h): put, get,
 * delete, reload after restart, torn tails, corruption, space reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node/errors.h"
#include "queue/bodystore.h"

struct res {
    int done;
    int status;
    uint8_t *data;
    size_t len;
};

static void done_cb(void *ud, int status)
{
    struct res *r = ud;
    r->done = 1;
    r->status = status;
}

static void get_cb(void *ud, int status, uint8_t *data, size_t len)
{
    struct res *r = ud;
    r->done = 1;
    r->status = status;
    r->data = data;
    r->len = len;
}

static void wait_for(uv_loop_t *loop, struct res *r)
{
    while (!r->done)
        uv_run(loop, UV_RUN_ONCE);
}

static struct body_store *open_store(uv_loop_t *loop, const char *dir)
{
    struct body_store *b;
    char err[256];
    assert_int_equal(body_store_open(loop, dir, 500, &b, err, sizeof err), 0);
    return b;
}

static void close_store(uv_loop_t *loop, struct body_store *b)
{
    body_store_close(b);
    uv_run(loop, UV_RUN_DEFAULT);
}

static int put(uv_loop_t *loop, struct body_store *b, const char *code,
               const char *body)
{
    struct res r = {0};
    assert_int_equal(body_store_put(b, code, (const uint8_t *)body,
                                    strlen(body), done_cb, &r),
                     0);
    wait_for(loop, &r);
    return r.status;
}

/* Returns the status; on success compares the data with want. */
static int get(uv_loop_t *loop, struct body_store *b, const char *code,
               const char *want)
{
    struct res r = {0};
    assert_int_equal(body_store_get(b, code, get_cb, &r), 0);
    wait_for(loop, &r);
    if (r.status == 0) {
        assert_int_equal(r.len, strlen(want));
        assert_memory_equal(r.data, want, r.len);
    }
    free(r.data);
    return r.status;
}

static int del(uv_loop_t *loop, struct body_store *b, const char *code)
{
    struct res r = {0};
    assert_int_equal(body_store_del(b, code, done_cb, &r), 0);
    wait_for(loop, &r);
    return r.status;
}

static char *tmpdir(void)
{
    static char dir[64];
    strcpy(dir, "/tmp/sr-test-bodies-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static char *seg_path(const char *dir, int id)
{
    static char p[256];
    snprintf(p, sizeof p, "%s/%08d.seg", dir, id);
    return p;
}

static void test_put_get_del_reload(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = tmpdir();
    struct body_store *b = open_store(&loop, dir);
    assert_int_equal(put(&loop, b, "01/01-00001-00000001", "first body\r\n"),
                     0);
    assert_int_equal(put(&loop, b, "01/01-00002-00000001", ""), 0);
    assert_int_equal(put(&loop, b, "01/01-00003-00000001", "third"), 0);
    assert_int_equal(get(&loop, b, "01/01-00001-00000001", "first body\r\n"),
                     0);
    assert_int_equal(get(&loop, b, "01/01-00002-00000001", ""), 0);
    assert_int_equal(get(&loop, b, "nope", ""), SR_ENOTFOUND);
    assert_int_equal(del(&loop, b, "01/01-00003-00000001"), 0);
    assert_int_equal(del(&loop, b, "01/01-00003-00000001"), SR_ENOTFOUND);
    /* a second put of the same code replaces the body */
    assert_int_equal(put(&loop, b, "01/01-00001-00000001", "replaced"), 0);
    close_store(&loop, b);

    b = open_store(&loop, dir);
    assert_int_equal(get(&loop, b, "01/01-00001-00000001", "replaced"), 0);
    assert_int_equal(get(&loop, b, "01/01-00002-00000001", ""), 0);
    assert_int_equal(get(&loop, b, "01/01-00003-00000001", ""), SR_ENOTFOUND);
    uint64_t puts, bytes, commits;
    body_store_stats(b, &puts, &bytes, &commits);
    assert_int_equal(puts, 0); /* counters are per run */
    close_store(&loop, b);
    uv_loop_close(&loop);
}

static void test_torn_tail_is_cut(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = tmpdir();
    struct body_store *b = open_store(&loop, dir);
    assert_int_equal(put(&loop, b, "A", "kept"), 0);
    close_store(&loop, b);
    /* a half-written record, as a crash during a write leaves it */
    int fd = open(seg_path(dir, 1), O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "SRB1\x01\0\0\0\x01\0\0\0\xff", 13), 13);
    close(fd);
    b = open_store(&loop, dir);
    assert_int_equal(get(&loop, b, "A", "kept"), 0);
    assert_int_equal(put(&loop, b, "B", "after"), 0);
    close_store(&loop, b);
    b = open_store(&loop, dir);
    assert_int_equal(get(&loop, b, "A", "kept"), 0);
    assert_int_equal(get(&loop, b, "B", "after"), 0);
    close_store(&loop, b);
    uv_loop_close(&loop);
}

static void test_corruption_is_an_error_not_data(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = tmpdir();
    struct body_store *b = open_store(&loop, dir);
    assert_int_equal(put(&loop, b, "A", "0123456789"), 0);
    close_store(&loop, b);
    int fd = open(seg_path(dir, 1), O_WRONLY);
    /* header 32 + code "A" = body at offset 33 */
    assert_int_equal(pwrite(fd, "X", 1, 35), 1);
    close(fd);
    b = open_store(&loop, dir);
    assert_int_equal(get(&loop, b, "A", ""), SR_EIO);
    close_store(&loop, b);
    uv_loop_close(&loop);
}

static void test_group_commit_many(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = tmpdir();
    struct body_store *b = open_store(&loop, dir);
    enum { N = 500 };
    static struct res r[N];
    static char codes[N][32];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        snprintf(codes[i], sizeof codes[i], "01/01-%05d-00000001", i);
        assert_int_equal(body_store_put(b, codes[i], (const uint8_t *)codes[i],
                                        strlen(codes[i]), done_cb, &r[i]),
                         0);
    }
    for (int i = 0; i < N; i++) {
        wait_for(&loop, &r[i]);
        assert_int_equal(r[i].status, 0);
    }
    uint64_t puts, bytes, commits;
    body_store_stats(b, &puts, &bytes, &commits);
    assert_int_equal(puts, N);
    /* submitted together, they share fsyncs */
    assert_true(commits < N);
    for (int i = 0; i < N; i++)
        assert_int_equal(get(&loop, b, codes[i], codes[i]), 0);
    /* delete all: the only segment is active, so it stays */
    for (int i = 0; i < N; i++)
        assert_int_equal(del(&loop, b, codes[i]), 0);
    close_store(&loop, b);
    b = open_store(&loop, dir);
    assert_int_equal(get(&loop, b, codes[7], ""), SR_ENOTFOUND);
    /* the segment whose bodies were all deleted is still the one written */
    assert_int_equal(put(&loop, b, "after", "all deleted"), 0);
    close_store(&loop, b);
    b = open_store(&loop, dir);
    assert_int_equal(get(&loop, b, "after", "all deleted"), 0);
    assert_int_equal(body_store_count(b), 1);
    close_store(&loop, b);
    uv_loop_close(&loop);
}

static int count_segments(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".seg") != NULL;
    closedir(d);
    return n;
}

/* Small segments: one batch spans several; all of it is synced, indexed in
 * the right segment, readable after a restart, and emptied segments go. */
static void test_batches_across_segments(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir = tmpdir();
    struct body_store *b = open_store(&loop, dir);
    body_store_set_segment_max(b, 4096);
    enum { N = 40 };
    static struct res r[N];
    static char codes[N][32], body[600];
    memset(r, 0, sizeof r);
    memset(body, 'b', sizeof body - 1);
    for (int i = 0; i < N; i++) {
        snprintf(codes[i], sizeof codes[i], "01/01-%05d-00000002", i);
        assert_int_equal(body_store_put(b, codes[i], (const uint8_t *)body,
                                        strlen(body), done_cb, &r[i]),
                         0);
    }
    for (int i = 0; i < N; i++) {
        wait_for(&loop, &r[i]);
        assert_int_equal(r[i].status, 0);
    }
    int segs = count_segments(dir);
    assert_true(segs >= 5);
    close_store(&loop, b);
    b = open_store(&loop, dir);
    for (int i = 0; i < N; i++)
        assert_int_equal(get(&loop, b, codes[i], body), 0);
    for (int i = 0; i < N - 1; i++)
        assert_int_equal(del(&loop, b, codes[i]), 0);
    /* every segment but the one holding the last body (and the active
     * one) has been unlinked */
    assert_true(count_segments(dir) <= 2);
    assert_int_equal(get(&loop, b, codes[N - 1], body), 0);
    close_store(&loop, b);
    uv_loop_close(&loop);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct body_store *b = open_store(&loop, tmpdir());
    struct res r = {0};
    char longcode[100];
    memset(longcode, 'x', sizeof longcode - 1);
    longcode[sizeof longcode - 1] = '\0';
    assert_int_equal(
        body_store_put(b, "", (const uint8_t *)"x", 1, done_cb, &r), SR_EINVAL);
    assert_int_equal(body_store_get(b, longcode, get_cb, &r), SR_EINVAL);
    assert_int_equal(r.done, 0);
    close_store(&loop, b);
    uv_loop_close(&loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_del_reload),
        cmocka_unit_test(test_torn_tail_is_cut),
        cmocka_unit_test(test_corruption_is_an_error_not_data),
        cmocka_unit_test(test_group_commit_many),
        cmocka_unit_test(test_batches_across_segments),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
