/*
 * Raft paper "Figure 8" (Raft thesis 3.6.2) against libraft's own test
 * fixture (raft/fixture.h): simulated time, in-memory I/O, kill/revive and
 * per-link message dropping (saturate).
 *
 * The classic schedule, with S1 = server index 0 and L = the last server
 * (S5 of 5, S3 of 3), N = the first index after a committed prefix X, and
 * m = n/2+1 the majority. Terms are those the run produces; the paper's are
 * in brackets (each election here takes two rounds, see schedule()):
 *
 *  (a) S1 leads term 2 and appends A at N; only S2..S(m-1) receive it
 *      (S2 with 5 servers, nobody with 3). S1 crashes.
 *  (b) L is elected in term 4 [3] by the servers that lack A (S3,S4 with 5
 *      servers, S2 with 3), appends B at N and crashes before replicating it.
 *  (c) S1 restarts, is elected in term 5 [4] by S2..Sm and brings its log to
 *      S2..Sm: now a majority stores A at N. Libraft 0.15 commits A here by
 *      counting replicas of an entry from term 2 (canonical/raft issue 220);
 *      0.17.1+ appends a barrier (no-op) at N+1 on election and commits A
 *      only together with that current-term barrier. Either way S1 applies
 *      A at N; S1 crashes before the others learn the new commit index.
 *  (d) L restarts and campaigns in term 7 [5] with S1 down. With 0.15 the
 *      others' last log term is 2 < 4, so L wins, overwrites N with B,
 *      commits it again by counting replicas and applies B at N: a different
 *      payload at an index S1 already applied. With 0.22 the majority that
 *      stored the term-5 barrier refuses its vote, and L cannot win.
 *
 * Finally the network heals, S1 comes back, one more entry is committed and
 * every server's applied sequence (recorded by the FSM apply callback) is
 * checked for conflicts.
 *
 * Usage: figure8 [--expect-violation]
 *   without argument: exit 0 iff both scenarios reached their key steps, no
 *     applied entry was ever overwritten and all servers caught up;
 *   --expect-violation: exit 0 iff the violation was observed in both.
 *
 * The same source builds against canonical raft 0.22.1 (RAFT_VERSION_NUMBER
 * defined) and against Debian bookworm's libraft 0.15.0 (not defined).
 */
#include <raft.h>
#include <raft/fixture.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVERS 5
#define MAX_APPLIED 64
#define MAX_REQS 16

/* Election timeouts (ms). The fixture only accepts values within
 * [election_timeout, 2 * election_timeout] = [1000, 2000]. */
#define T_FAST 1000
#define T_SLOW 2000

struct applied {
    raft_index index;
    uint64_t payload;
};

struct scenario;

struct server_rec {
    struct scenario *s;
    unsigned i;
    unsigned n;
    bool overflow;
    struct applied log[MAX_APPLIED];
};

struct scenario {
    const char *name;
    unsigned n; /* servers */
    unsigned m; /* majority */
    unsigned l; /* index of the second leader ("S5" of the paper) */
    struct raft_fixture f;
    struct raft_fsm fsms[MAX_SERVERS];
    struct server_rec rec[MAX_SERVERS];
    struct raft_apply reqs[MAX_REQS];
    unsigned n_reqs;

    raft_index idx_x; /* committed prefix entry */
    raft_index idx_n; /* the contended index N */
    raft_index idx_z; /* entry committed after healing */
    uint64_t pay_x, pay_a, pay_b, pay_z;

    bool keysteps; /* all key steps of the schedule were reached */
    bool l_won_d;
    bool violation;
    bool converged;
    char why[512];
};

static uint64_t next_payload = 0x0f180000; /* unique per proposal */

static const char *state_name(int state)
{
    switch (state) {
    case RAFT_UNAVAILABLE:
        return "unavailable";
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "?";
}

static void fail(struct scenario *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fail(struct scenario *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    printf("[%s] key step NOT reached: %s\n", s->name, s->why);
}

#define REQUIRE(S, COND, ...)                                                  \
    do {                                                                       \
        if (!(COND)) {                                                         \
            fail(S, __VA_ARGS__);                                              \
            return;                                                            \
        }                                                                      \
    } while (0)

static struct raft *srv(struct scenario *s, unsigned i)
{
    return raft_fixture_get(&s->f, i);
}

/* FSM: record (index, payload) of every applied command. The index is
 * last_applied + 1: both 0.15 and 0.22 bump last_applied right after each
 * successful apply call. */
static int fsmApply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                    void **result)
{
    struct server_rec *rec = fsm->data;
    struct raft *r = srv(rec->s, rec->i);
    uint64_t payload = 0;

    if (buf->len >= sizeof payload) {
        memcpy(&payload, buf->base, sizeof payload);
    }
    if (rec->n < MAX_APPLIED) {
        rec->log[rec->n].index = raft_last_applied(r) + 1;
        rec->log[rec->n].payload = payload;
        rec->n++;
    } else {
        rec->overflow = true;
    }
    printf("[%s]   t=%llu S%u applies index %llu payload %#llx (term %llu)\n",
           rec->s->name, (unsigned long long)raft_fixture_time(&rec->s->f),
           rec->i + 1, (unsigned long long)(raft_last_applied(r) + 1),
           (unsigned long long)payload, (unsigned long long)r->current_term);
    *result = NULL;
    return 0;
}

static int fsmSnapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                       unsigned *n_bufs)
{
    (void)fsm;
    (void)bufs;
    (void)n_bufs;
    return RAFT_NOMEM; /* never reached: few entries, default threshold */
}

static int fsmRestore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    (void)buf;
    return RAFT_NOMEM;
}

static void applyCb(struct raft_apply *req, int status, void *result)
{
    (void)req;
    (void)status;
    (void)result;
}

/* Propose one 8-byte payload on server i; return its log index (0 on
 * failure). */
static raft_index propose(struct scenario *s, unsigned i, uint64_t payload)
{
    struct raft *r = srv(s, i);
    struct raft_buffer buf;
    int rv;

    if (s->n_reqs >= MAX_REQS) {
        return 0;
    }
    buf.len = sizeof payload;
    buf.base = raft_malloc(buf.len);
    if (buf.base == NULL) {
        return 0;
    }
    memcpy(buf.base, &payload, sizeof payload);
    rv = raft_apply(r, &s->reqs[s->n_reqs], &buf, 1, applyCb);
    if (rv != 0) {
        raft_free(buf.base);
        printf("[%s] raft_apply on S%u: %s\n", s->name, i + 1,
               raft_strerror(rv));
        return 0;
    }
    s->n_reqs++;
    return raft_last_index(r);
}

/* Restart server i's election timer now with randomized timeout @cur, and
 * make the fixture hand out @next whenever raft re-randomizes it later (on
 * stepping down, on starting another election round).
 * raft_fixture_set_randomized_election_timeout() alone only takes effect at
 * the next reset. This is what raft_fixture_elect() does internally, but that
 * helper requires every server, crashed ones included, to be a follower.
 * For a leader only the step-down (check-quorum) timer is restarted. */
static void arm(struct scenario *s, unsigned i, unsigned cur, unsigned next)
{
    struct raft *r = srv(s, i);
    raft_fixture_set_randomized_election_timeout(&s->f, i, next);
    if (r->state == RAFT_FOLLOWER) {
        r->follower_state.randomized_election_timeout = cur;
    } else if (r->state == RAFT_CANDIDATE) {
        r->candidate_state.randomized_election_timeout = cur;
    }
    r->election_timer_start = raft_fixture_time(&s->f);
}

/* ---- step predicates ---- */

struct target {
    struct scenario *s;
    unsigned i;
    raft_index index;
    raft_term term;
};

static bool isLeader(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    return raft_state(raft_fixture_get(f, t->i)) == RAFT_LEADER;
}

static bool hasApplied(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    return raft_last_applied(raft_fixture_get(f, t->i)) >= t->index;
}

/* Servers first..last all persisted index. */
static bool storedOn(struct raft_fixture *f, unsigned first, unsigned last,
                     raft_index index)
{
    unsigned i;
    for (i = first; i <= last; i++) {
        if (raft_fixture_get(f, i)->last_stored < index) {
            return false;
        }
    }
    return true;
}

/* (a): S1..S(m-1), the only servers S1 can reach, persisted A. */
static bool aStoredPhaseA(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    return storedOn(f, 0, t->s->m - 2, t->index);
}

/* (d): L leads and applied index N (the caller bounds the wait). */
static bool lLeadsAndApplied(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    struct raft *r = raft_fixture_get(f, t->i);
    return raft_state(r) == RAFT_LEADER && raft_last_applied(r) >= t->index;
}

/* A leader exists among live servers and every other available live server
 * follows it in its term. */
static unsigned stableLeader(struct raft_fixture *f)
{
    unsigned n = raft_fixture_n(f);
    unsigned i;
    unsigned j;
    for (i = 0; i < n; i++) {
        struct raft *l = raft_fixture_get(f, i);
        bool ok = true;
        if (!raft_fixture_alive(f, i) || raft_state(l) != RAFT_LEADER) {
            continue;
        }
        for (j = 0; j < n && ok; j++) {
            struct raft *r = raft_fixture_get(f, j);
            if (j == i || !raft_fixture_alive(f, j) ||
                raft_state(r) == RAFT_UNAVAILABLE) {
                continue;
            }
            ok = raft_state(r) == RAFT_FOLLOWER &&
                 r->current_term == l->current_term &&
                 r->follower_state.current_leader.id == l->id;
        }
        if (ok) {
            return i;
        }
    }
    return n;
}

static bool hasStableLeader(struct raft_fixture *f, void *arg)
{
    (void)arg;
    return stableLeader(f) < raft_fixture_n(f);
}

/* Every available server applied t->index. */
static bool allAvailableApplied(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    unsigned i;
    for (i = 0; i < raft_fixture_n(f); i++) {
        struct raft *r = raft_fixture_get(f, i);
        if (raft_state(r) == RAFT_UNAVAILABLE) {
            continue;
        }
        if (raft_last_applied(r) < t->index) {
            return false;
        }
    }
    return true;
}

static bool step(struct scenario *s,
                 bool (*stop)(struct raft_fixture *f, void *arg),
                 struct target *t, unsigned max_msecs)
{
    t->s = s;
    raft_fixture_step_until(&s->f, stop, t, max_msecs);
    return stop(&s->f, t);
}

static void dump(struct scenario *s, const char *when)
{
    unsigned i;
    printf("[%s] t=%llu %s:\n", s->name,
           (unsigned long long)raft_fixture_time(&s->f), when);
    for (i = 0; i < s->n; i++) {
        struct raft *r = srv(s, i);
        printf("[%s]   S%u %-5s %-11s term %llu last_index %llu "
               "last_stored %llu commit %llu applied %llu\n",
               s->name, i + 1, raft_fixture_alive(&s->f, i) ? "alive" : "dead",
               state_name(raft_state(r)), (unsigned long long)r->current_term,
               (unsigned long long)raft_last_index(r),
               (unsigned long long)r->last_stored,
               (unsigned long long)r->commit_index,
               (unsigned long long)raft_last_applied(r));
    }
}

/* The recorded payload that server i applied at index, or 0. */
static uint64_t appliedAt(struct scenario *s, unsigned i, raft_index index)
{
    unsigned k;
    for (k = 0; k < s->rec[i].n; k++) {
        if (s->rec[i].log[k].index == index) {
            return s->rec[i].log[k].payload;
        }
    }
    return 0;
}

/* The State Machine Safety check over everything the FSMs applied. */
static void checkSafety(struct scenario *s)
{
    unsigned i;
    unsigned j;
    unsigned k;
    unsigned q;
    for (i = 0; i < s->n; i++) {
        struct server_rec *a = &s->rec[i];
        if (a->overflow) {
            printf("[%s] S%u applied more than %d entries\n", s->name, i + 1,
                   MAX_APPLIED);
            s->violation = true;
        }
        for (k = 0; k < a->n; k++) {
            for (j = i; j < s->n; j++) {
                struct server_rec *b = &s->rec[j];
                for (q = (j == i ? k + 1 : 0); q < b->n; q++) {
                    if (a->log[k].index != b->log[q].index) {
                        continue;
                    }
                    if (i == j) {
                        printf("[%s] VIOLATION: S%u applied index %llu "
                               "twice (%#llx, %#llx)\n",
                               s->name, i + 1,
                               (unsigned long long)a->log[k].index,
                               (unsigned long long)a->log[k].payload,
                               (unsigned long long)b->log[q].payload);
                        s->violation = true;
                    } else if (a->log[k].payload != b->log[q].payload) {
                        printf("[%s] VIOLATION: index %llu applied as %#llx "
                               "by S%u but as %#llx by S%u\n",
                               s->name, (unsigned long long)a->log[k].index,
                               (unsigned long long)a->log[k].payload, i + 1,
                               (unsigned long long)b->log[q].payload, j + 1);
                        s->violation = true;
                    }
                }
            }
        }
    }
}

static void printApplied(struct scenario *s)
{
    unsigned i;
    unsigned k;
    for (i = 0; i < s->n; i++) {
        printf("[%s]   S%u applied:", s->name, i + 1);
        for (k = 0; k < s->rec[i].n; k++) {
            printf(" %llu=%#llx", (unsigned long long)s->rec[i].log[k].index,
                   (unsigned long long)s->rec[i].log[k].payload);
        }
        printf("\n");
    }
}

/* (c): S1 leads in a term above t->term, i.e. was re-elected (on restart
 * it still is the stale term-2 leader). */
static bool isLeaderAfter(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    struct raft *r = raft_fixture_get(f, t->i);
    return raft_state(r) == RAFT_LEADER && r->current_term > t->term;
}

/* Server i started (or won) an election in a term above t->term. */
static bool campaignsAfter(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    struct raft *r = raft_fixture_get(f, t->i);
    return (raft_state(r) == RAFT_CANDIDATE || raft_state(r) == RAFT_LEADER) &&
           r->current_term > t->term;
}

/* The schedule. Returns early (keysteps false) when a step is not reached.
 *
 * Both libraft versions implement leader stickiness (thesis 4.2.3): a
 * follower that knows a leader rejects RequestVote until its own election
 * timer fires. So before each election the intended voters time out first
 * (and vote for themselves, which makes that round fail); the intended
 * winner then wins the next round. Terms therefore advance by two per
 * election, not by one as in the paper: S1 leads term 2, L term 4 (the
 * paper's 3), S1 term 5 (the paper's 4), L campaigns in term 7 (the paper's
 * 5). Only their order matters. */
static void schedule(struct scenario *s)
{
    struct raft_fixture *f = &s->f;
    struct target t;
    const unsigned n = s->n;
    const unsigned m = s->m;
    const unsigned L = s->l;
    raft_term t_b;
    raft_term t_c;
    raft_term t_d;
    unsigned i;

    /* Start: S1 times out first and wins term 2. */
    for (i = 0; i < n; i++) {
        arm(s, i, i == 0 ? T_FAST : T_SLOW, T_SLOW);
    }
    memset(&t, 0, sizeof t);
    REQUIRE(s, step(s, hasStableLeader, &t, 10000) && stableLeader(f) == 0,
            "S1 did not become leader at start");
    REQUIRE(s, srv(s, 0)->current_term == 2, "S1 leads term %llu, not 2",
            (unsigned long long)srv(s, 0)->current_term);
    printf("[%s] S1 leader in term 2\n", s->name);

    /* Committed prefix X, applied everywhere. */
    s->pay_x = ++next_payload;
    s->idx_x = propose(s, 0, s->pay_x);
    REQUIRE(s, s->idx_x != 0, "could not propose X");
    REQUIRE(s, raft_fixture_step_until_applied(f, n, s->idx_x, 5000),
            "X (index %llu) not applied everywhere",
            (unsigned long long)s->idx_x);
    /* Let the commit index of X reach everybody. */
    raft_fixture_step_until_elapsed(f, 300);
    for (i = 0; i < n; i++) {
        REQUIRE(s, srv(s, i)->commit_index == s->idx_x,
                "S%u commit %llu != X index %llu", i + 1,
                (unsigned long long)srv(s, i)->commit_index,
                (unsigned long long)s->idx_x);
    }
    s->idx_n = s->idx_x + 1;
    printf("[%s] X=%#llx committed and applied at index %llu on all\n", s->name,
           (unsigned long long)s->pay_x, (unsigned long long)s->idx_x);

    /* (a) S1 appends A at N; only S2..S(m-1) receive S1's messages. */
    for (i = m - 1; i < n; i++) {
        raft_fixture_saturate(f, 0, i);
    }
    s->pay_a = ++next_payload;
    REQUIRE(s, propose(s, 0, s->pay_a) == s->idx_n,
            "A not appended at N=%llu on S1", (unsigned long long)s->idx_n);
    memset(&t, 0, sizeof t);
    t.index = s->idx_n;
    REQUIRE(s, step(s, aStoredPhaseA, &t, 500), "A not stored on S1..S%u",
            m - 1);
    REQUIRE(s, srv(s, 0)->commit_index < s->idx_n,
            "S1 committed A in term 2 with only %u replicas", m - 1);
    raft_fixture_kill(f, 0);
    printf("[%s] (a) S1 (term 2) stored A=%#llx at N=%llu on S1..S%u only; "
           "S1 crashes\n",
           s->name, (unsigned long long)s->pay_a, (unsigned long long)s->idx_n,
           m - 1);
    dump(s, "after (a)");

    /* (b) All live servers time out together and vote for themselves (term
     * 3, nobody wins); L retries first (term 4): S(m)..S(n-1) grant, S2..
     * S(m-1) refuse since they hold A. L appends B at N and crashes before
     * sending anything. */
    for (i = 1; i < n; i++) {
        arm(s, i, T_FAST, i == L ? T_FAST : T_SLOW);
    }
    memset(&t, 0, sizeof t);
    t.i = L;
    REQUIRE(s, step(s, isLeader, &t, 4000), "S%u not elected after (a)", L + 1);
    t_b = srv(s, L)->current_term;
    REQUIRE(s, t_b > 2, "S%u leads term %llu", L + 1, (unsigned long long)t_b);
    for (i = 1; i < L; i++) {
        bool holds_a = i < m - 1;
        REQUIRE(s, (srv(s, i)->voted_for == L + 1) != holds_a,
                "S%u %s S%u in term %llu", i + 1,
                holds_a ? "voted for" : "did not vote for", L + 1,
                (unsigned long long)t_b);
    }
    s->pay_b = ++next_payload;
    REQUIRE(s, propose(s, L, s->pay_b) == s->idx_n,
            "B not appended at N=%llu on S%u (last index %llu)",
            (unsigned long long)s->idx_n, L + 1,
            (unsigned long long)raft_last_index(srv(s, L)));
    raft_fixture_kill(f, L);
    /* The disk write of B completes on the crashed server; nothing it sends
     * is delivered. */
    raft_fixture_step_until_elapsed(f, 100);
    REQUIRE(s, srv(s, L)->last_stored == s->idx_n, "B not persisted on S%u",
            L + 1);
    for (i = 1; i < L; i++) {
        raft_index want = i < m - 1 ? s->idx_n : s->idx_n - 1;
        REQUIRE(s, raft_last_index(srv(s, i)) == want,
                "S%u last index %llu != %llu after (b)", i + 1,
                (unsigned long long)raft_last_index(srv(s, i)),
                (unsigned long long)want);
    }
    printf("[%s] (b) S%u leader in term %llu (votes from S%u..S%u), appended "
           "B=%#llx at N=%llu, not replicated; S%u crashes\n",
           s->name, L + 1, (unsigned long long)t_b, m, n - 1,
           (unsigned long long)s->pay_b, (unsigned long long)s->idx_n, L + 1);
    dump(s, "after (b)");

    /* (c) S1 restarts (it is still the stale term-2 leader: it steps down on
     * the first replies) and is elected by S2..Sm, which know no leader since
     * L's messages were lost. S1's messages to S(m+1)..S(n-1) are dropped, so
     * A ends up on exactly S1..Sm: a majority. */
    raft_fixture_revive(f, 0);
    for (i = m; i < n; i++) {
        raft_fixture_saturate(f, 0, i);
    }
    for (i = 0; i < n; i++) {
        arm(s, i, i == 0 ? T_FAST : T_SLOW, i == 0 ? T_FAST : T_SLOW);
    }
    memset(&t, 0, sizeof t);
    t.i = 0;
    t.term = t_b;
    REQUIRE(s, step(s, isLeaderAfter, &t, 3000),
            "S1 not leader after term %llu (state %s term %llu)",
            (unsigned long long)t_b, state_name(raft_state(srv(s, 0))),
            (unsigned long long)srv(s, 0)->current_term);
    t_c = srv(s, 0)->current_term;
    printf("[%s] (c) S1 leader in term %llu\n", s->name,
           (unsigned long long)t_c);
    memset(&t, 0, sizeof t);
    t.i = 0;
    t.index = s->idx_n;
    REQUIRE(s, step(s, hasApplied, &t, 1000), "S1 did not apply N in term %llu",
            (unsigned long long)t_c);
    REQUIRE(s, appliedAt(s, 0, s->idx_n) == s->pay_a,
            "S1 applied %#llx at N, not A",
            (unsigned long long)appliedAt(s, 0, s->idx_n));
    for (i = 1; i < m; i++) {
        REQUIRE(s, srv(s, i)->last_stored >= s->idx_n,
                "S%u does not store A at N", i + 1);
    }
    for (i = 1; i < n; i++) {
        REQUIRE(s, srv(s, i)->commit_index < s->idx_n,
                "S%u already knows N is committed", i + 1);
    }
    for (i = m; i < L; i++) {
        REQUIRE(s, raft_last_index(srv(s, i)) < s->idx_n,
                "S%u received A in term %llu", i + 1, (unsigned long long)t_c);
    }
    raft_fixture_kill(f, 0);
    printf("[%s] (c) A stored at N on S1..S%u (a majority); S1 committed and "
           "applied it (commit index %llu, last index %llu) and crashes "
           "before the others learn it\n",
           s->name, m, (unsigned long long)srv(s, 0)->commit_index,
           (unsigned long long)raft_last_index(srv(s, 0)));
    dump(s, "after (c)");

    /* (d) S1 and L down: S2..S(n-1) time out (they forget leader S1) and
     * vote for themselves, with no majority among them. Then L restarts
     * (stale leader of term t_b, steps down) and campaigns. */
    for (i = 1; i < L; i++) {
        arm(s, i, T_FAST, T_SLOW);
    }
    raft_fixture_step_until_elapsed(f, T_FAST + 150);
    for (i = 1; i < L; i++) {
        struct raft *r = srv(s, i);
        REQUIRE(s,
                raft_state(r) != RAFT_LEADER &&
                    (raft_state(r) != RAFT_FOLLOWER ||
                     r->follower_state.current_leader.id == 0),
                "S%u still follows a leader or leads (%s)", i + 1,
                state_name(raft_state(r)));
    }
    raft_fixture_revive(f, L);
    arm(s, L, T_FAST, T_FAST);
    memset(&t, 0, sizeof t);
    t.i = L;
    t.term = t_c;
    REQUIRE(s, step(s, campaignsAfter, &t, 3000),
            "S%u did not campaign after term %llu", L + 1,
            (unsigned long long)t_c);
    t_d = srv(s, L)->current_term;
    printf("[%s] (d) S%u campaigns in term %llu, its last log entry is B "
           "(term %llu) at N\n",
           s->name, L + 1, (unsigned long long)t_d, (unsigned long long)t_b);
    memset(&t, 0, sizeof t);
    t.i = L;
    t.index = s->idx_n;
    /* Wait for L to win and apply N, or for the round to be over. */
    step(s, lLeadsAndApplied, &t, T_FAST - 100);
    s->l_won_d =
        raft_state(srv(s, L)) == RAFT_LEADER && srv(s, L)->current_term == t_d;
    printf("[%s] (d) S%u %s term %llu%s; votes:", s->name, L + 1,
           s->l_won_d ? "WON" : "did not win", (unsigned long long)t_d,
           s->l_won_d && raft_last_applied(srv(s, L)) >= s->idx_n
               ? " and applied index N"
               : "");
    for (i = 1; i < L; i++) {
        printf(" S%u:%s", i + 1,
               srv(s, i)->current_term == t_d && srv(s, i)->voted_for == L + 1
                   ? "yes"
                   : "no");
    }
    printf("\n");
    dump(s, "after (d)");
    s->keysteps = true;
}

/* Heal: everybody up and connected, commit one more entry, catch up. */
static void heal(struct scenario *s)
{
    struct raft_fixture *f = &s->f;
    struct target t;
    unsigned i;
    unsigned leader;

    for (i = 0; i < s->n; i++) {
        if (!raft_fixture_alive(f, i)) {
            raft_fixture_revive(f, i);
        }
    }
    /* revive() reconnected every live pair; clear leftovers anyway. */
    for (i = 0; i < s->n; i++) {
        unsigned j;
        for (j = 0; j < s->n; j++) {
            if (i != j && raft_fixture_saturated(f, i, j)) {
                raft_fixture_desaturate(f, i, j);
            }
        }
    }
    for (i = 0; i < s->n; i++) {
        arm(s, i, T_FAST + 100 * i, T_FAST + 100 * i);
    }
    memset(&t, 0, sizeof t);
    if (!step(s, hasStableLeader, &t, 20000)) {
        printf("[%s] heal: no stable leader\n", s->name);
        dump(s, "heal failed");
        return;
    }
    leader = stableLeader(f);
    printf("[%s] heal: S%u leader in term %llu\n", s->name, leader + 1,
           (unsigned long long)srv(s, leader)->current_term);
    s->pay_z = ++next_payload;
    s->idx_z = propose(s, leader, s->pay_z);
    if (s->idx_z == 0) {
        return;
    }
    t.index = s->idx_z;
    step(s, allAvailableApplied, &t, 10000);
    raft_fixture_step_until_elapsed(f, 300);
    dump(s, "after healing");
    s->converged = true;
    for (i = 0; i < s->n; i++) {
        if (raft_last_applied(srv(s, i)) < s->idx_z ||
            appliedAt(s, i, s->idx_z) != s->pay_z) {
            printf("[%s] heal: S%u (%s) did not catch up to index %llu\n",
                   s->name, i + 1, state_name(raft_state(srv(s, i))),
                   (unsigned long long)s->idx_z);
            s->converged = false;
        }
    }
}

static int scenarioRun(struct scenario *s, const char *name, unsigned n)
{
    struct raft_configuration conf;
    unsigned i;
    int rv;

    memset(s, 0, sizeof *s);
    s->name = name;
    s->n = n;
    s->m = n / 2 + 1;
    s->l = n - 1;

    /* libraft 0.15's raft_fixture_initialize() leaves n, leader_id, event
     * and servers unset: start from zero. (0.22: same call, also fine.) */
    memset(&s->f, 0, sizeof s->f);
    rv = raft_fixture_initialize(&s->f);
    if (rv != 0) {
        return rv;
    }
    for (i = 0; i < n; i++) {
        s->rec[i].s = s;
        s->rec[i].i = i;
        s->fsms[i].version = 1;
        s->fsms[i].data = &s->rec[i];
        s->fsms[i].apply = fsmApply;
        s->fsms[i].snapshot = fsmSnapshot;
        s->fsms[i].restore = fsmRestore;
        rv = raft_fixture_grow(&s->f, &s->fsms[i]);
        if (rv != 0) {
            return rv;
        }
    }
    rv = raft_fixture_configuration(&s->f, n, &conf);
    if (rv != 0) {
        return rv;
    }
    rv = raft_fixture_bootstrap(&s->f, &conf);
    raft_configuration_close(&conf);
    if (rv != 0) {
        return rv;
    }
    rv = raft_fixture_start(&s->f);
    if (rv != 0) {
        return rv;
    }

    printf("[%s] %u servers, majority %u\n", name, n, s->m);
    schedule(s);
    if (s->keysteps) {
        heal(s);
    }
    checkSafety(s);
    printApplied(s);
    if (s->keysteps && s->idx_n != 0) {
        printf("[%s] index N=%llu: A=%#llx B=%#llx;", name,
               (unsigned long long)s->idx_n, (unsigned long long)s->pay_a,
               (unsigned long long)s->pay_b);
        for (i = 0; i < n; i++) {
            printf(" S%u:%#llx", i + 1,
                   (unsigned long long)appliedAt(s, i, s->idx_n));
        }
        printf("\n");
    }
    raft_fixture_close(&s->f);
    return 0;
}

int main(int argc, char **argv)
{
    static struct scenario scenarios[2];
    const unsigned sizes[2] = {3, 5};
    const char *names[2] = {"fig8-3", "fig8-5"};
    bool expect_violation = false;
    int failures = 0;
    unsigned k;

    if (argc == 2 && strcmp(argv[1], "--expect-violation") == 0) {
        expect_violation = true;
    } else if (argc != 1) {
        fprintf(stderr, "usage: %s [--expect-violation]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
#ifdef RAFT_VERSION_NUMBER
    printf("libraft %d (header %d), mode %s\n", raft_version_number(),
           RAFT_VERSION_NUMBER,
           expect_violation ? "expect-violation" : "expect-safety");
#else
    printf("libraft < 0.17 (no RAFT_VERSION_NUMBER), mode %s\n",
           expect_violation ? "expect-violation" : "expect-safety");
#endif

    for (k = 0; k < 2; k++) {
        struct scenario *s = &scenarios[k];
        bool ok;
        int rv = scenarioRun(s, names[k], sizes[k]);
        if (rv != 0) {
            printf("[%s] fixture setup failed: %s\n", names[k],
                   raft_strerror(rv));
            failures++;
            continue;
        }
        if (expect_violation) {
            ok = s->violation;
        } else {
            ok = s->keysteps && !s->violation && s->converged;
        }
        printf("%s: %s: keysteps=%s violation=%s S%u-won-(d)=%s "
               "converged=%s\n",
               ok ? "PASS" : "FAIL", names[k], s->keysteps ? "yes" : "no",
               s->violation ? "yes" : "no", s->l + 1, s->l_won_d ? "yes" : "no",
               s->converged ? "yes" : "no");
        if (!ok) {
            failures++;
        }
    }
    return failures == 0 ? 0 : 1;
}
