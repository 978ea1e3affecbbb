/* test_codec.c - entry and RPC framing (proto/codec.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "node/errors.h"
#include "proto/codec.h"

static uint8_t *pack_entry(size_t *len, const char *code)
{
    Sr__MessageAccept a = SR__MESSAGE_ACCEPT__INIT;
    char *rcpts[] = {"a@b.c"};
    a.code = (char *)code;
    a.rcpts = rcpts;
    a.n_rcpts = 1;
    Sr__Op op = SR__OP__INIT;
    op.op_case = SR__OP__OP_ACCEPT;
    op.accept = &a;
    Sr__Op *ops[] = {&op};
    Sr__Entry e = SR__ENTRY__INIT;
    e.version = ENTRY_VERSION;
    e.time_ms = 1234;
    e.ops = ops;
    e.n_ops = 1;
    *len = codec_entry_size(&e);
    uint8_t *buf = malloc(*len);
    codec_entry_pack(&e, buf);
    return buf;
}

static void test_entry_roundtrip_and_padding(void **state)
{
    (void)state;
    /* every code length gives a multiple of 8 (libraft issue 189) */
    char code[40];
    for (int n = 1; n < 30; n++) {
        memset(code, 'x', (size_t)n);
        code[n] = '\0';
        size_t len;
        uint8_t *buf = pack_entry(&len, code);
        assert_int_equal(len % 8, 0);
        Sr__Entry *e;
        assert_int_equal(codec_entry_decode(buf, len, &e), 0);
        assert_int_equal(e->n_ops, 1);
        assert_string_equal(e->ops[0]->accept->code, code);
        assert_int_equal(e->time_ms, 1234);
        sr__entry__free_unpacked(e, NULL);
        free(buf);
    }
}

static void test_entry_rejects(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = pack_entry(&len, "abc");
    Sr__Entry *e;
    /* truncated, extended, bad magic, bad padding, bad length */
    assert_int_equal(codec_entry_decode(buf, len - 8, &e), SR_EPARSE);
    assert_int_equal(codec_entry_decode(buf, len - 1, &e), SR_EPARSE);
    uint8_t *big = calloc(1, len + 8);
    memcpy(big, buf, len);
    assert_int_equal(codec_entry_decode(big, len + 8, &e), SR_EPARSE);
    free(big);
    buf[0] = 'X';
    assert_int_equal(codec_entry_decode(buf, len, &e), SR_EPARSE);
    buf[0] = 'S';
    uint32_t n = buf[4] | buf[5] << 8;
    if (8 + n < len) {
        buf[len - 1] = 1;
        assert_int_equal(codec_entry_decode(buf, len, &e), SR_EPARSE);
        buf[len - 1] = 0;
    }
    buf[4] = (uint8_t)(n + 200);
    assert_int_equal(codec_entry_decode(buf, len, &e), SR_EPARSE);
    assert_null(e);
    free(buf);
}

static void test_entry_version(void **state)
{
    (void)state;
    Sr__Entry e = SR__ENTRY__INIT;
    e.version = 99;
    size_t len = codec_entry_size(&e);
    uint8_t *buf = malloc(len);
    codec_entry_pack(&e, buf);
    Sr__Entry *out;
    assert_int_equal(codec_entry_decode(buf, len, &out), SR_EVERSION);
    free(buf);
}

static void test_rpc_frames(void **state)
{
    (void)state;
    Sr__BodyGet g = SR__BODY_GET__INIT;
    g.code = "01/00-00000-00000001";
    Sr__Rpc r = SR__RPC__INIT;
    r.version = RPC_VERSION;
    r.id = 7;
    r.body_case = SR__RPC__BODY_BODY_GET;
    r.body_get = &g;
    uint8_t *f;
    size_t len;
    assert_int_equal(codec_rpc_encode(&r, &f, &len), 0);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(codec_rpc_frame_size(f, i), 0);
    assert_int_equal(codec_rpc_frame_size(f, len), (long)len);
    Sr__Rpc *m;
    assert_int_equal(codec_rpc_decode(f, len, &m), 0);
    assert_int_equal(m->id, 7);
    assert_string_equal(m->body_get->code, g.code);
    sr__rpc__free_unpacked(m, NULL);
    /* oversized and empty frames are refused before allocation */
    uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff}, zero[4] = {0};
    assert_int_equal(codec_rpc_frame_size(huge, 4), SR_EPARSE);
    assert_int_equal(codec_rpc_frame_size(zero, 4), SR_EPARSE);
    /* an unknown version is refused */
    r.version = 2;
    free(f);
    codec_rpc_encode(&r, &f, &len);
    assert_int_equal(codec_rpc_decode(f, len, &m), SR_EVERSION);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_roundtrip_and_padding),
        cmocka_unit_test(test_entry_rejects),
        cmocka_unit_test(test_entry_version),
        cmocka_unit_test(test_rpc_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
