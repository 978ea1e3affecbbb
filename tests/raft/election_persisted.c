/*
 * Elections on not-yet-persisted log entries, against libraft's own test
 * fixture (raft/fixture.h): simulated time, in-memory I/O with a per-server
 * disk latency, per-link message dropping (saturate).
 *
 * libraft 0.15 fills RequestVote with the index/term of the last entry of
 * the candidate's in-memory log, including entries whose disk write has not
 * completed, while it adopts configuration entries that it received as a
 * follower only once they are persisted. A candidate can therefore win with
 * the votes of its old configuration by advertising the very entries that
 * replaced that configuration. Upstream fixed this in 0.18.0 (commit
 * a54636b "election: Only consider persisted state when running elections",
 * after the failing test c052611 "startElectionWithUnpersistedEntries",
 * whose scenario this one extends to a split brain seen by the FSMs).
 *
 * The fixture cannot lose unpersisted entries: raft_fixture_kill() only
 * freezes a server, its queued disk writes still complete and nothing
 * restarts it from its "disk"; raft_fixture_io_fault() fails requests at
 * submission, not in flight. So the schedule does not crash anybody: it
 * keeps S2's write pending (raft_fixture_set_disk_latency) for the whole
 * election instead.
 *
 * Four servers, S1..S3 voters, S4 standby; S2's disk takes 6 s per write:
 *
 *  (1) S1 leads term 2; a prefix entry X0 is committed everywhere.
 *  (2) S2's disk becomes slow. S1 demotes S2 to standby (index I1, committed
 *      by S1+S3) and promotes S4 to voter (index I2, committed by a
 *      majority of {S1,S3,S4}). S2 holds I1 and I2 in memory only.
 *  (3) Partition {S1,S4} | {S2,S3}. S1 keeps leading with S4, a majority of
 *      {S1,S3,S4}, and commits and applies X at N = I2+1 (and so does S4).
 *  (4) S3 times out first (term 3; it asks only S1 and S4, the voters of its
 *      configuration: unreachable); S2 times out, ties in term 3, then
 *      campaigns in term 4. On 0.15 S2 still uses voters {S1,S2,S3} and its
 *      RequestVote carries last_log_index I2 although its last_stored is
 *      below I1; S3's log ends at I2 too, so it grants, and S2 wins with
 *      {S2,S3}. A client command Y lands at N on S2; once S2's slow writes
 *      complete (as leader, 0.15 does not adopt the configurations in them)
 *      S2 commits Y with S3: index N applied as X by S1/S4 and as Y by
 *      S2/S3. From then on S3 runs two election rounds per round of S2, so
 *      that a library that advertises only persisted entries (S3 refuses the
 *      decisive round) has S2 step down on S3's next, higher-term refusal
 *      before S2's writes complete; S2 then adopts the new configuration as
 *      a follower and never campaigns again with those entries persisted.
 *  (5) Heal: everybody reconnected, one more entry Z committed, every
 *      server's applied sequence (FSM apply callback) checked.
 *
 * Observed: 0.15.0 (Debian) and canonical v0.17.1 (which has the issue 220
 * fix of figure8.c) split; v0.17.1 with only a54636b applied does not (S2
 * campaigns advertising last_stored and loses). 0.22.1 is safe, and more
 * strongly so: a follower never campaigns while entries are being persisted
 * (src/timeout.c "persisting %u entries -> stay follower", since 0.18.0),
 * and it adopts a configuration entry on receipt (replicationAppend calls
 * membershipUncommittedChange before persistEntries), so S2 is a standby at
 * once and never campaigns at all.
 *
 * Besides the FSMs, every server's raft_io->send is wrapped (public struct
 * raft_io vtable, both versions) to record each RequestVote with the
 * sender's last_stored at that moment: a claim beyond last_stored is the
 * protocol-level violation itself.
 *
 * Usage: election_persisted [--expect-violation]
 *   without argument: exit 0 iff the schedule reached its key steps, no
 *     index was applied differently by two servers, no RequestVote
 *     advertised an unpersisted index, and all servers caught up after
 *     healing;
 *   --expect-violation: exit 0 iff two servers applied different entries at
 *     the same index and a RequestVote advertised an unpersisted index (the
 *     cause).
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

#ifndef MSG_REQUEST_VOTE /* RequestVote's message type code */
#ifdef RAFT_VERSION_NUMBER
#define MSG_REQUEST_VOTE RAFT_REQUEST_VOTE
#else
#define MSG_REQUEST_VOTE RAFT_IO_REQUEST_VOTE
#endif
#endif

#define N_SERVERS 4
#define N_VOTING 3
#define MAX_APPLIED 64
#define MAX_REQS 16
#define MAX_VOTE_REQS 128

/* Server indexes (S1..S4). */
#define SA 0 /* first leader */
#define SB 1 /* slow disk, demoted */
#define SC 2 /* voter in both partitions' view, grants SB */
#define SD 3 /* standby, promoted */

/* Election timeouts (ms). The fixture only accepts values within
 * [election_timeout, 2 * election_timeout] = [1000, 2000]. */
#define T_FAST 1000
#define T_MID 1500
#define T_SLOW 2000

/* SB's disk latency (ms): longer than it takes SB to win the election. */
#define SLOW_DISK 6000
/* When S2's second election round (term 4) is over, after the partition. */
#define T_DECIDE (T_MID + T_FAST + 200)
/* How long the partition lasts (ms): SB's writes all complete in it. */
#define PARTITION 14000

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
    raft_index applied_upto; /* final last_applied */
    struct applied log[MAX_APPLIED];
};

/* A RequestVote as handed to raft_io->send, with the sender's state. */
struct vote_req {
    unsigned from;
    raft_time time;
    raft_term term;
    raft_index last_log_index;
    raft_term last_log_term;
    raft_index sender_last_stored;
    raft_index sender_last_index;
};

struct scenario {
    const char *name;
    struct raft_fixture f;
    struct raft_fsm fsms[N_SERVERS];
    struct server_rec rec[N_SERVERS];
    struct raft_apply reqs[MAX_REQS];
    unsigned n_reqs;
    struct raft_change changes[2];

    /* raft_io->send wrapper */
    int (*send[N_SERVERS])(struct raft_io *io, struct raft_io_send *req,
                           const struct raft_message *message,
                           raft_io_send_cb cb);
    struct vote_req votes[MAX_VOTE_REQS];
    unsigned n_votes;
    bool votes_overflow;
    unsigned n_unpersisted_claims;

    raft_index idx_x0; /* committed prefix */
    raft_index idx_i1; /* SB demoted to standby */
    raft_index idx_i2; /* SD promoted to voter */
    raft_index idx_n;  /* first index after the partition */
    raft_index idx_y;  /* S2's proposal, if it wins */
    raft_index idx_z;  /* entry committed after healing */
    raft_time t_partition;
    uint64_t pay_x0, pay_x, pay_y, pay_z;

    bool keysteps; /* all key steps of the schedule were reached */
    bool b_campaigned;
    bool b_won;
    raft_term b_term;
    bool violation;
    bool converged;
    char why[512];
};

static struct scenario *the_scenario;      /* for the send wrapper */
static uint64_t next_payload = 0x0e1e0000; /* unique per proposal */

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

static const char *role_name(int role)
{
    switch (role) {
    case RAFT_VOTER:
        return "voter";
    case RAFT_STANDBY:
        return "standby";
    case RAFT_SPARE:
        return "spare";
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

/* Role of server id in server i's current (applied) configuration, or -1. */
static int roleIn(struct scenario *s, unsigned i, raft_id id)
{
    const struct raft_configuration *c = &srv(s, i)->configuration;
    unsigned k;
    for (k = 0; k < c->n; k++) {
        if (c->servers[k].id == id) {
            return c->servers[k].role;
        }
    }
    return -1;
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

static void changeCb(struct raft_change *req, int status)
{
    (void)req;
    (void)status;
}

/* raft_io->send wrapper: record RequestVote messages, then forward to the
 * fixture's implementation. */
static int sendSpy(struct raft_io *io, struct raft_io_send *req,
                   const struct raft_message *message, raft_io_send_cb cb)
{
    struct scenario *s = the_scenario;
    unsigned i;

    for (i = 0; i < N_SERVERS; i++) {
        if (srv(s, i)->io == io) {
            break;
        }
    }
    if (i == N_SERVERS) {
        abort(); /* not one of ours */
    }
    if (message->type == MSG_REQUEST_VOTE) {
        struct raft *r = srv(s, i);
        const struct raft_request_vote *rv = &message->request_vote;
        bool unpersisted = rv->last_log_index > r->last_stored;
        if (s->n_votes < MAX_VOTE_REQS) {
            struct vote_req *v = &s->votes[s->n_votes++];
            v->from = i;
            v->time = raft_fixture_time(&s->f);
            v->term = rv->term;
            v->last_log_index = rv->last_log_index;
            v->last_log_term = rv->last_log_term;
            v->sender_last_stored = r->last_stored;
            v->sender_last_index = raft_last_index(r);
        } else {
            s->votes_overflow = true;
        }
        if (unpersisted) {
            s->n_unpersisted_claims++;
        }
        printf("[%s]   t=%llu S%u sends RequestVote(term %llu, "
               "last_log_index %llu, last_log_term %llu) to server %llu; its "
               "last_stored %llu, in-memory last index %llu%s\n",
               s->name, (unsigned long long)raft_fixture_time(&s->f), i + 1,
               (unsigned long long)rv->term,
               (unsigned long long)rv->last_log_index,
               (unsigned long long)rv->last_log_term,
               (unsigned long long)message->server_id,
               (unsigned long long)r->last_stored,
               (unsigned long long)raft_last_index(r),
               unpersisted ? "  <-- UNPERSISTED INDEX ADVERTISED" : "");
    }
    return s->send[i](io, req, message, cb);
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
 * make the fixture hand out @next whenever raft re-randomizes it later.
 * See figure8.c: raft_fixture_set_randomized_election_timeout() alone only
 * takes effect at the next reset. For a leader only the step-down timer is
 * restarted. */
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
};

static bool hasApplied(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    return raft_last_applied(raft_fixture_get(f, t->i)) >= t->index;
}

/* Server t->i leads, its last configuration change is committed and its
 * commit index reached t->index. */
static bool changeCommitted(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    struct raft *r = raft_fixture_get(f, t->i);
    return raft_state(r) == RAFT_LEADER &&
           r->configuration_uncommitted_index == 0 &&
           r->commit_index >= t->index;
}

/* S1's configuration (applied on append) has S4 as voter. */
static bool promotedOnA(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    (void)f;
    return roleIn(t->s, SA, SD + 1) == RAFT_VOTER;
}

/* (2) done: SC and SD persisted I2, SB holds it in memory. */
static bool i2Spread(struct raft_fixture *f, void *arg)
{
    struct target *t = arg;
    return raft_fixture_get(f, SC)->last_stored >= t->index &&
           raft_fixture_get(f, SD)->last_stored >= t->index &&
           raft_last_index(raft_fixture_get(f, SB)) >= t->index;
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

/* Step until absolute fixture time @until. */
static void stepTo(struct scenario *s, raft_time until)
{
    raft_time now = raft_fixture_time(&s->f);
    if (until > now) {
        raft_fixture_step_until_elapsed(&s->f, (unsigned)(until - now));
    }
}

static void dump(struct scenario *s, const char *when)
{
    unsigned i;
    printf("[%s] t=%llu %s:\n", s->name,
           (unsigned long long)raft_fixture_time(&s->f), when);
    for (i = 0; i < N_SERVERS; i++) {
        struct raft *r = srv(s, i);
        int role = roleIn(s, i, r->id);
        printf("[%s]   S%u %-11s term %llu last_index %llu last_stored %llu "
               "commit %llu applied %llu; own config: self %s, S2 %s, "
               "S4 %s\n",
               s->name, i + 1, state_name(raft_state(r)),
               (unsigned long long)r->current_term,
               (unsigned long long)raft_last_index(r),
               (unsigned long long)r->last_stored,
               (unsigned long long)r->commit_index,
               (unsigned long long)raft_last_applied(r),
               role < 0 ? "absent" : role_name(role),
               role_name(roleIn(s, i, SB + 1)),
               role_name(roleIn(s, i, SD + 1)));
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

/* The State Machine Safety check over everything the FSMs applied: no index
 * applied with two payloads, and no command applied by one server at an
 * index where another applied a non-command entry (a barrier or a
 * configuration change: its last_applied passed the index without an FSM
 * call). */
static void checkSafety(struct scenario *s)
{
    unsigned i;
    unsigned j;
    unsigned k;
    unsigned q;
    for (i = 0; i < N_SERVERS; i++) {
        s->rec[i].applied_upto = raft_last_applied(srv(s, i));
    }
    for (i = 0; i < N_SERVERS; i++) {
        struct server_rec *a = &s->rec[i];
        for (k = 0; k < a->n; k++) {
            for (j = 0; j < N_SERVERS; j++) {
                if (j != i && s->rec[j].applied_upto >= a->log[k].index &&
                    appliedAt(s, j, a->log[k].index) == 0) {
                    printf("[%s] VIOLATION: index %llu applied as %#llx by "
                           "S%u but as a non-command entry by S%u\n",
                           s->name, (unsigned long long)a->log[k].index,
                           (unsigned long long)a->log[k].payload, i + 1, j + 1);
                    s->violation = true;
                }
            }
        }
    }
    for (i = 0; i < N_SERVERS; i++) {
        struct server_rec *a = &s->rec[i];
        if (a->overflow) {
            printf("[%s] S%u applied more than %d entries\n", s->name, i + 1,
                   MAX_APPLIED);
            s->violation = true;
        }
        for (k = 0; k < a->n; k++) {
            for (j = i; j < N_SERVERS; j++) {
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
    for (i = 0; i < N_SERVERS; i++) {
        printf("[%s]   S%u applied:", s->name, i + 1);
        for (k = 0; k < s->rec[i].n; k++) {
            printf(" %llu=%#llx", (unsigned long long)s->rec[i].log[k].index,
                   (unsigned long long)s->rec[i].log[k].payload);
        }
        printf("\n");
    }
}

static void partition(struct scenario *s, bool on)
{
    static const unsigned left[2] = {SA, SD};
    static const unsigned right[2] = {SB, SC};
    unsigned a;
    unsigned b;
    for (a = 0; a < 2; a++) {
        for (b = 0; b < 2; b++) {
            if (on) {
                raft_fixture_saturate(&s->f, left[a], right[b]);
                raft_fixture_saturate(&s->f, right[b], left[a]);
            } else {
                raft_fixture_desaturate(&s->f, left[a], right[b]);
                raft_fixture_desaturate(&s->f, right[b], left[a]);
            }
        }
    }
}

/* The schedule. Returns early (keysteps false) when a step is not reached. */
static void schedule(struct scenario *s)
{
    struct raft_fixture *f = &s->f;
    struct target t;
    struct raft *a = srv(s, SA);
    struct raft *b = srv(s, SB);
    struct raft *c = srv(s, SC);
    unsigned i;
    int rv;

    /* (1) S1 times out first and wins term 2; X0 committed everywhere. */
    for (i = 0; i < N_SERVERS; i++) {
        arm(s, i, i == SA ? T_FAST : T_SLOW, T_SLOW);
    }
    memset(&t, 0, sizeof t);
    REQUIRE(s, step(s, hasStableLeader, &t, 10000) && stableLeader(f) == SA,
            "S1 did not become leader at start");
    REQUIRE(s, a->current_term == 2, "S1 leads term %llu, not 2",
            (unsigned long long)a->current_term);
    s->pay_x0 = ++next_payload;
    s->idx_x0 = propose(s, SA, s->pay_x0);
    REQUIRE(s, s->idx_x0 != 0, "could not propose X0");
    REQUIRE(s, raft_fixture_step_until_applied(f, N_SERVERS, s->idx_x0, 5000),
            "X0 (index %llu) not applied everywhere",
            (unsigned long long)s->idx_x0);
    raft_fixture_step_until_elapsed(f, 300);
    for (i = 0; i < N_SERVERS; i++) {
        REQUIRE(s, srv(s, i)->last_stored == s->idx_x0,
                "S%u last_stored %llu != X0 index %llu", i + 1,
                (unsigned long long)srv(s, i)->last_stored,
                (unsigned long long)s->idx_x0);
    }
    printf("[%s] (1) S1 leader in term 2; X0=%#llx committed, applied and "
           "persisted at index %llu on all\n",
           s->name, (unsigned long long)s->pay_x0,
           (unsigned long long)s->idx_x0);

    /* (2) S2's disk becomes slow; S1 demotes S2, then promotes S4. */
    raft_fixture_set_disk_latency(f, SB, SLOW_DISK);
    rv = raft_assign(a, &s->changes[0], SB + 1, RAFT_STANDBY, changeCb);
    REQUIRE(s, rv == 0, "raft_assign(S2, standby): %s", raft_strerror(rv));
    s->idx_i1 = raft_last_index(a);
    memset(&t, 0, sizeof t);
    t.i = SA;
    t.index = s->idx_i1;
    REQUIRE(s, step(s, changeCommitted, &t, 2000),
            "demotion of S2 (index %llu) not committed",
            (unsigned long long)s->idx_i1);
    rv = raft_assign(a, &s->changes[1], SD + 1, RAFT_VOTER, changeCb);
    REQUIRE(s, rv == 0, "raft_assign(S4, voter): %s", raft_strerror(rv));
    /* 0.15 first runs a catch-up round for the promotee, 0.22 may append
     * the configuration entry at once: wait until it is appended. */
    memset(&t, 0, sizeof t);
    t.i = SA;
    t.index = s->idx_i1 + 1;
    REQUIRE(s,
            step(s, promotedOnA, &t, 2000) &&
                raft_last_index(a) == s->idx_i1 + 1,
            "promotion of S4 not appended at %llu (last index %llu)",
            (unsigned long long)s->idx_i1 + 1,
            (unsigned long long)raft_last_index(a));
    s->idx_i2 = raft_last_index(a);
    REQUIRE(s, step(s, changeCommitted, &t, 2000),
            "promotion of S4 (index %llu) not committed",
            (unsigned long long)s->idx_i2);
    REQUIRE(s, step(s, i2Spread, &t, 1000),
            "index %llu not persisted on S3,S4 / not received by S2",
            (unsigned long long)s->idx_i2);
    REQUIRE(s,
            roleIn(s, SA, SB + 1) == RAFT_STANDBY &&
                roleIn(s, SA, SD + 1) == RAFT_VOTER &&
                roleIn(s, SC, SB + 1) == RAFT_STANDBY &&
                roleIn(s, SC, SD + 1) == RAFT_VOTER,
            "S1/S3 do not use the new configuration");
    REQUIRE(s, raft_last_index(b) == s->idx_i2 && b->last_stored < s->idx_i1,
            "S2 last index %llu last_stored %llu: I1..I2 not held in memory "
            "only",
            (unsigned long long)raft_last_index(b),
            (unsigned long long)b->last_stored);
    /* Which configuration S2 uses depends on the version: 0.15 adopts a
     * configuration entry received as a follower once it is persisted
     * (appendFollowerCb), 0.22.1 as soon as it is received (replicationAppend
     * calls membershipUncommittedChange before persistEntries). */
    printf("[%s] (2) S2 demoted at I1=%llu, S4 promoted at I2=%llu, both "
           "committed by S1; S2 holds them in memory only (last_stored %llu) "
           "and uses the %s configuration (S2 %s, S4 %s)\n",
           s->name, (unsigned long long)s->idx_i1,
           (unsigned long long)s->idx_i2, (unsigned long long)b->last_stored,
           roleIn(s, SB, SB + 1) == RAFT_VOTER ? "OLD" : "new",
           role_name(roleIn(s, SB, SB + 1)), role_name(roleIn(s, SB, SD + 1)));
    dump(s, "after (2)");

    /* (3) Partition {S1,S4} | {S2,S3}; S1 commits X with S4. S3 will time
     * out first, S2 half a second later and again after another second (the
     * first round ties with S3's term). */
    partition(s, true);
    s->t_partition = raft_fixture_time(f);
    arm(s, SC, T_FAST, T_SLOW);
    arm(s, SB, T_MID, T_FAST);
    s->pay_x = ++next_payload;
    s->idx_n = propose(s, SA, s->pay_x);
    REQUIRE(s, s->idx_n == s->idx_i2 + 1, "X not appended at I2+1 on S1");
    memset(&t, 0, sizeof t);
    t.i = SA;
    t.index = s->idx_n;
    REQUIRE(s, step(s, hasApplied, &t, 500),
            "S1 did not apply X at N=%llu with S4",
            (unsigned long long)s->idx_n);
    REQUIRE(s, appliedAt(s, SA, s->idx_n) == s->pay_x,
            "S1 applied %#llx at N, not X",
            (unsigned long long)appliedAt(s, SA, s->idx_n));
    printf("[%s] (3) partition {S1,S4} | {S2,S3}; S1 (term %llu) committed "
           "and applied X=%#llx at N=%llu with S4\n",
           s->name, (unsigned long long)a->current_term,
           (unsigned long long)s->pay_x, (unsigned long long)s->idx_n);

    /* (4) S2/S3 side: the decisive round is S2's second one (term 4, at
     * T_MID + T_FAST after the partition). */
    stepTo(s, s->t_partition + T_DECIDE);
    s->b_won = raft_state(b) == RAFT_LEADER;
    if (s->b_won) {
        s->b_term = b->current_term;
        printf("[%s] (4) S2 WON term %llu with voters {S2,S3} of its old "
               "configuration: S3 voted for %llu in term %llu; S3's "
               "last_stored %llu, S2's last_stored %llu\n",
               s->name, (unsigned long long)s->b_term,
               (unsigned long long)c->voted_for,
               (unsigned long long)c->current_term,
               (unsigned long long)c->last_stored,
               (unsigned long long)b->last_stored);
    } else {
        printf("[%s] (4) S2 did not win (state %s, term %llu); S3 %s term "
               "%llu\n",
               s->name, state_name(raft_state(b)),
               (unsigned long long)b->current_term, state_name(raft_state(c)),
               (unsigned long long)c->current_term);
    }
    /* From now on S3 runs two election rounds for each of S2's: if S2 lost
     * the decisive round it learns S3's higher term from S3's next refusal
     * and steps down to follower before its slow writes complete, so that
     * it adopts the configuration entries it persisted (libraft 0.15 to
     * 0.17 adopt them only in the follower state, appendFollowerCb) instead
     * of campaigning again with them persisted. This keeps the schedule
     * from reaching a split brain by that other route: a library that
     * advertises only persisted entries is then safe here. */
    arm(s, SC, T_FAST, T_FAST);
    arm(s, SB, T_SLOW, T_SLOW);
    if (s->b_won) {
        s->pay_y = ++next_payload;
        /* At N, or after the barrier that 0.17.1+ appends on election. */
        s->idx_y = propose(s, SB, s->pay_y);
        REQUIRE(s, s->idx_y >= s->idx_n,
                "Y not appended on S2 (last index %llu)",
                (unsigned long long)raft_last_index(b));
        printf("[%s] (4) S2 appended Y=%#llx at %llu (N=%llu)\n", s->name,
               (unsigned long long)s->pay_y, (unsigned long long)s->idx_y,
               (unsigned long long)s->idx_n);
    }
    stepTo(s, s->t_partition + PARTITION);
    REQUIRE(s, b->last_stored >= s->idx_i2,
            "S2's slow writes did not complete during the partition");
    REQUIRE(s, appliedAt(s, SD, s->idx_n) == s->pay_x,
            "S4 did not apply X at N");
    for (i = 0; i < s->n_votes; i++) {
        if (s->votes[i].from == SB && s->votes[i].time >= s->t_partition) {
            s->b_campaigned = true;
        }
    }
    dump(s, "end of partition");
    s->keysteps = true;
}

/* Heal: everybody connected, commit one more entry, catch up. */
static void heal(struct scenario *s)
{
    struct raft_fixture *f = &s->f;
    struct target t;
    unsigned i;
    unsigned leader;

    partition(s, false);
    for (i = 0; i < N_SERVERS; i++) {
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
    for (i = 0; i < N_SERVERS; i++) {
        if (raft_last_applied(srv(s, i)) < s->idx_z ||
            appliedAt(s, i, s->idx_z) != s->pay_z) {
            printf("[%s] heal: S%u (%s) did not catch up to index %llu\n",
                   s->name, i + 1, state_name(raft_state(srv(s, i))),
                   (unsigned long long)s->idx_z);
            s->converged = false;
        }
    }
}

static int scenarioRun(struct scenario *s, const char *name)
{
    struct raft_configuration conf;
    unsigned i;
    int rv;

    memset(s, 0, sizeof *s);
    s->name = name;
    the_scenario = s;

    /* libraft 0.15's raft_fixture_initialize() leaves n, leader_id, event
     * and servers unset: start from zero. (0.22: same call, also fine.) */
    memset(&s->f, 0, sizeof s->f);
    rv = raft_fixture_initialize(&s->f);
    if (rv != 0) {
        return rv;
    }
    for (i = 0; i < N_SERVERS; i++) {
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
    /* S1..S3 voters, S4 standby. */
    rv = raft_fixture_configuration(&s->f, N_VOTING, &conf);
    if (rv != 0) {
        return rv;
    }
    rv = raft_fixture_bootstrap(&s->f, &conf);
    raft_configuration_close(&conf);
    if (rv != 0) {
        return rv;
    }
    for (i = 0; i < N_SERVERS; i++) {
        struct raft_io *io = srv(s, i)->io;
        s->send[i] = io->send;
        io->send = sendSpy;
    }
    rv = raft_fixture_start(&s->f);
    if (rv != 0) {
        return rv;
    }

    printf("[%s] %u servers, S1..S%u voters, S%u standby; S2 disk latency "
           "%u ms from step (2)\n",
           name, N_SERVERS, N_VOTING, N_SERVERS, SLOW_DISK);
    schedule(s);
    if (s->keysteps) {
        heal(s);
    }
    checkSafety(s);
    printApplied(s);
    if (s->keysteps) {
        printf("[%s] index N=%llu: X=%#llx Y=%#llx (at %llu);", name,
               (unsigned long long)s->idx_n, (unsigned long long)s->pay_x,
               (unsigned long long)s->pay_y, (unsigned long long)s->idx_y);
        for (i = 0; i < N_SERVERS; i++) {
            printf(" S%u:%#llx", i + 1,
                   (unsigned long long)appliedAt(s, i, s->idx_n));
        }
        printf("\n");
    }
    printf("[%s] RequestVotes sent: %u%s, advertising an unpersisted index: "
           "%u\n",
           name, s->n_votes, s->votes_overflow ? " (+more)" : "",
           s->n_unpersisted_claims);
    raft_fixture_close(&s->f);
    the_scenario = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    static struct scenario scenario;
    struct scenario *s = &scenario;
    const char *name = "persisted-4";
    bool expect_violation = false;
    bool ok;
    int rv;

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

    rv = scenarioRun(s, name);
    if (rv != 0) {
        printf("[%s] fixture setup failed: %s\n", name, raft_strerror(rv));
        return 1;
    }
    if (expect_violation) {
        ok = s->violation && s->n_unpersisted_claims > 0;
    } else {
        ok = s->keysteps && !s->violation && s->n_unpersisted_claims == 0 &&
             s->converged;
    }
    printf("%s: %s: keysteps=%s violation=%s unpersisted-RequestVote=%s "
           "S2-campaigned=%s S2-won=%s converged=%s\n",
           ok ? "PASS" : "FAIL", name, s->keysteps ? "yes" : "no",
           s->violation ? "yes" : "no",
           s->n_unpersisted_claims > 0 ? "yes" : "no",
           s->b_campaigned ? "yes" : "no", s->b_won ? "yes" : "no",
           s->converged ? "yes" : "no");
    return ok ? 0 : 1;
}
