/* relay.c — the floor under a pooler's data path, with epoll or with io_uring.
 *
 *   relayd epoll|uring|uring_ms LISTEN_PORT TARGET_PORT
 *
 * A TCP relay on 127.0.0.1:LISTEN_PORT, one thread: each client it accepts
 * gets a connection of its own to 127.0.0.1:TARGET_PORT, and bytes go both
 * ways unread. It does the least a pooler must do per message: a read on one
 * socket and a write on another, woken by the kernel. With epoll that is a
 * system call for each read and each write plus one epoll_wait per wake-up
 * (weir's and PgBouncer's way); with io_uring the reads and writes of a
 * wake-up go to the kernel in one io_uring_enter, which also waits. bench/
 * relay.sh runs pgbench through both, with PostgreSQL behind them, and
 * compares their CPU per transaction: what io_uring could save a pooler on
 * this machine. It runs until SIGINT or SIGTERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#ifdef WEIR_BENCH_URING
#include <liburing.h>
#endif

#define BUF  16384
#define QCAP 16

/* Two sockets relayed to each other: side 0 the client, side 1 the target.
 * buf[s] holds what was read from side s and not yet written to the other. */
typedef struct pair {
    int fd[2];
    size_t len[2], off[2];
    int pending; /* io_uring: operations in flight; freed at 0 once dead */
    int dead;
    struct pair *next; /* epoll: closed in this batch, freed after it */
    /* uring_ms: the buffers side s read and has not yet written on, oldest
     * first from qhead (one write at a time per side keeps their order) */
    uint16_t qbid[2][QCAP], qlen[2][QCAP];
    int qhead[2], qn[2];
    char buf[2][BUF];
} pair;

static volatile sig_atomic_t stop;
static void on_signal(int sig)
{
    (void)sig, stop = 1;
}

static struct sockaddr_in loopback(int port)
{
    return (struct sockaddr_in){.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = loopback(port);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1024)) {
        perror("relay: listen");
        exit(1);
    }
    return fd;
}

/* A connection to the target, blocking while it connects (loopback). */
static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct sockaddr_in a = loopback(port);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        fprintf(stderr, "relay: cannot connect to 127.0.0.1:%d: %s\n", port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static pair *pair_new(int client, int target_port)
{
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int target = dial(target_port);
    pair *p = target < 0 ? NULL : calloc(1, sizeof *p);
    if (!p) {
        close(client);
        if (target >= 0) close(target);
        return NULL;
    }
    p->fd[0] = client, p->fd[1] = target;
    return p;
}

/* Ends both connections at once; the descriptors stay open until the pair
 * is freed, when no operation names them any more. An io_uring operation
 * prepared and not yet submitted names its socket by number: closed
 * earlier, the number could be a new pair's by the time it is submitted. */
static void pair_close(pair *p)
{
    if (p->dead) return;
    p->dead = 1;
    shutdown(p->fd[0], SHUT_RDWR);
    shutdown(p->fd[1], SHUT_RDWR);
}

static void pair_free(pair *p)
{
    close(p->fd[0]);
    close(p->fd[1]);
    free(p);
}

/* epoll: level-triggered. Side s is watched for reading while buf[s] is
 * empty, and for writing while buf[!s] waits on it (a short write). */
static void ep_watch(int ep, int op, pair *p, int s)
{
    struct epoll_event ev = {.events = (p->len[s] ? 0 : EPOLLIN) | (p->len[!s] ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)s};
    epoll_ctl(ep, op, p->fd[s], &ev);
}

/* Writes buf[s] to side !s; 0 once the pair must close. A short write
 * leaves the rest for EPOLLOUT on side !s and stops reading side s. */
static int ep_flush(int ep, pair *p, int s)
{
    while (p->off[s] < p->len[s]) {
        ssize_t n = send(p->fd[!s], p->buf[s] + p->off[s], p->len[s] - p->off[s], MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            ep_watch(ep, EPOLL_CTL_MOD, p, s);
            ep_watch(ep, EPOLL_CTL_MOD, p, !s);
            return 1;
        }
        if (n <= 0) return 0;
        p->off[s] += (size_t)n;
    }
    p->len[s] = p->off[s] = 0;
    return 1;
}

static void run_epoll(int lfd, int target_port)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, -1);
        pair *closed = NULL;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == 0) { /* the listener */
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                pair *p = c < 0 ? NULL : pair_new(c, target_port);
                if (!p) continue;
                fcntl(p->fd[1], F_SETFL, fcntl(p->fd[1], F_GETFL) | O_NONBLOCK);
                ep_watch(ep, EPOLL_CTL_ADD, p, 0);
                ep_watch(ep, EPOLL_CTL_ADD, p, 1);
                continue;
            }
            pair *p = (pair *)(uintptr_t)(evs[i].data.u64 & ~(uint64_t)1);
            int s = (int)(evs[i].data.u64 & 1), ok = 1;
            if (p->dead) continue;
            if (evs[i].events & EPOLLOUT) { /* the rest of buf[!s] */
                size_t was = p->len[!s];
                ok = ep_flush(ep, p, !s);
                if (ok && was && !p->len[!s]) {
                    ep_watch(ep, EPOLL_CTL_MOD, p, s);
                    ep_watch(ep, EPOLL_CTL_MOD, p, !s);
                }
            }
            if (ok && p->len[s] && (evs[i].events & (EPOLLHUP | EPOLLERR)))
                ok = 0; /* gone while its bytes waited on the other side */
            if (ok && !p->len[s] && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                ssize_t r = recv(p->fd[s], p->buf[s], BUF, 0);
                if (r > 0)
                    p->len[s] = (size_t)r, ok = ep_flush(ep, p, s);
                else if (r == 0 || errno != EAGAIN)
                    ok = 0;
            }
            if (!ok) {
                pair_close(p);
                p->next = closed, closed = p;
            }
        }
        while (closed) { /* no event of this batch is left to name them */
            pair *p = closed;
            closed = p->next;
            pair_free(p);
        }
    }
    close(ep);
}

#ifdef WEIR_BENCH_URING
/* io_uring, two ways. "uring": one read at a time per socket, into the
 * pair's own buffer, armed for polling first (a pooler re-arms a read once
 * it has passed the last message on, and the next cannot have come yet).
 * "uring_ms": one multishot read per socket for its lifetime, each message
 * in a buffer the kernel takes from a shared ring of them, written on and
 * then given back. In "uring" a message's write is linked to the next read
 * of the side it came from, and posts no completion unless it fails
 * (MSG_WAITALL: the kernel finishes a short write itself), so that one
 * io_uring_enter a hop both hands it over and waits. Every operation's
 * user_data is its pair with a tag in the low bits (0/1: a read on side
 * 0/1, +4 if linked after a write; 2/3: the write of what side 0/1 read);
 * 0 is the listener's accept. */
enum { T_RECV = 0, T_SEND = 2, T_AFTER = 4, NBUF = 1024 };

static bool multishot;
static struct io_uring_buf_ring *br;
static char *bufs; /* NBUF buffers of BUF bytes: buffer group 0 */

static struct io_uring_sqe *sqe_get(struct io_uring *r)
{
    struct io_uring_sqe *e;
    while (!(e = io_uring_get_sqe(r))) io_uring_submit(r); /* full: hand the batch over */
    return e;
}

static void u_recv(struct io_uring *r, pair *p, int s, int after_send)
{
    struct io_uring_sqe *e = sqe_get(r);
    if (multishot) {
        io_uring_prep_recv_multishot(e, p->fd[s], NULL, 0, 0);
        e->flags |= IOSQE_BUFFER_SELECT;
        e->buf_group = 0;
    } else {
        io_uring_prep_recv(e, p->fd[s], p->buf[s], BUF, 0);
        e->ioprio |= IORING_RECVSEND_POLL_FIRST;
    }
    io_uring_sqe_set_data64(e, (uint64_t)(uintptr_t)p | (uint64_t)(T_RECV + s + after_send));
    p->pending++;
}

/* uring_ms: writes the rest of side s's oldest queued buffer. */
static void u_send(struct io_uring *r, pair *p, int s)
{
    const char *from = bufs + (size_t)p->qbid[s][p->qhead[s]] * BUF;
    struct io_uring_sqe *e = sqe_get(r);
    io_uring_prep_send(e, p->fd[!s], from + p->off[s], p->qlen[s][p->qhead[s]] - p->off[s],
                       MSG_NOSIGNAL);
    io_uring_sqe_set_data64(e, (uint64_t)(uintptr_t)p | (uint64_t)(T_SEND + s));
    p->pending++;
}

static void buf_give_back(uint16_t bid)
{
    io_uring_buf_ring_add(br, bufs + (size_t)bid * BUF, BUF, bid, io_uring_buf_ring_mask(NBUF), 0);
    io_uring_buf_ring_advance(br, 1);
}

static void u_accept(struct io_uring *r, int lfd)
{
    struct io_uring_sqe *e = sqe_get(r);
    io_uring_prep_accept(e, lfd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(e, 0);
}

/* A read's completion: one more message of side s to write on. */
static void u_read(struct io_uring *r, pair *p, int s, struct io_uring_cqe *c)
{
    if (!multishot) { /* the write, then (linked) the next read */
        struct io_uring_sqe *e = sqe_get(r);
        io_uring_prep_send(e, p->fd[!s], p->buf[s], (size_t)c->res, MSG_NOSIGNAL | MSG_WAITALL);
        e->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(e, (uint64_t)(uintptr_t)p | (uint64_t)(T_SEND + s));
        p->pending++;
        u_recv(r, p, s, T_AFTER);
        return;
    }
    if (p->qn[s] == QCAP) { /* pgbench never has this many messages in flight */
        buf_give_back((uint16_t)(c->flags >> IORING_CQE_BUFFER_SHIFT));
        fprintf(stderr, "relay: more than %d messages queued on a socket: closed\n", QCAP);
        pair_close(p);
        return;
    }
    int at = (p->qhead[s] + p->qn[s]++) % QCAP;
    p->qbid[s][at] = (uint16_t)(c->flags >> IORING_CQE_BUFFER_SHIFT);
    p->qlen[s][at] = (uint16_t)c->res;
    if (p->qn[s] == 1) p->off[s] = 0, u_send(r, p, s);
}

/* uring_ms, a write's completion: the rest, or the next queued message. */
static void u_wrote(struct io_uring *r, pair *p, int s, size_t n)
{
    if ((p->off[s] += n) < p->qlen[s][p->qhead[s]]) {
        u_send(r, p, s);
        return;
    }
    p->off[s] = 0;
    buf_give_back(p->qbid[s][p->qhead[s]]);
    p->qhead[s] = (p->qhead[s] + 1) % QCAP;
    if (--p->qn[s]) u_send(r, p, s);
}

static void u_done(struct io_uring *r, struct io_uring_cqe *c, int lfd, int target_port)
{
    uint64_t d = io_uring_cqe_get_data64(c);
    if (d == 0) { /* accept */
        pair *p = c->res < 0 ? NULL : pair_new(c->res, target_port);
        if (p) u_recv(r, p, 0, 0), u_recv(r, p, 1, 0);
        if (!stop) u_accept(r, lfd);
        return;
    }
    pair *p = (pair *)(uintptr_t)(d & ~(uint64_t)7);
    int tag = (int)(d & 3), s = tag & 1, after = (int)(d & T_AFTER);
    bool more = tag < T_SEND && (c->flags & IORING_CQE_F_MORE);
    if (!more) p->pending--;
    if (after && c->res != -ECANCELED) p->pending--; /* its write succeeded, silently */
    if (!p->dead) {
        if (tag < T_SEND && c->res > 0) {
            u_read(r, p, s, c);
            if (multishot && !more && !p->dead) u_recv(r, p, s, 0); /* the kernel ended it */
        } else if (tag < T_SEND && c->res == -ENOBUFS && !more)
            u_recv(r, p, s, 0);
        else if (c->res <= 0 || !multishot) /* "uring" posts only a failed write */
            pair_close(p);
        else
            u_wrote(r, p, s, (size_t)c->res);
    } else if (c->res > 0 && (c->flags & IORING_CQE_F_BUFFER))
        buf_give_back((uint16_t)(c->flags >> IORING_CQE_BUFFER_SHIFT));
    if (p->dead && p->pending == 0) {
        for (int k = 0; multishot && k < 2; k++)
            for (; p->qn[k]; p->qn[k]--, p->qhead[k] = (p->qhead[k] + 1) % QCAP)
                buf_give_back(p->qbid[k][p->qhead[k]]);
        pair_free(p);
    }
}

static int run_uring(int lfd, int target_port)
{
    struct io_uring r;
    /* completions' work runs when the loop asks for it, on its own thread
     * (Linux 6.1; what the relay uses besides came in 5.17-6.0) */
    struct io_uring_params prm = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    int rc = io_uring_queue_init_params(4096, &r, &prm);
    if (rc < 0) {
        fprintf(stderr, "relay: io_uring with deferred task work (Linux 6.1 or later): %s\n",
                strerror(-rc));
        return 1;
    }
    if (multishot) {
        void *ring = NULL;
        bufs = malloc((size_t)NBUF * BUF);
        if (!bufs || posix_memalign(&ring, 4096, NBUF * sizeof(struct io_uring_buf))) {
            fprintf(stderr, "relay: no memory for %d buffers\n", NBUF);
            return 1;
        }
        br = ring;
        io_uring_buf_ring_init(br);
        struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = NBUF};
        if ((rc = io_uring_register_buf_ring(&r, &reg, 0))) {
            fprintf(stderr, "relay: io_uring buffer ring: %s\n", strerror(-rc));
            return 1;
        }
        for (uint16_t b = 0; b < NBUF; b++)
            io_uring_buf_ring_add(br, bufs + (size_t)b * BUF, BUF, b, io_uring_buf_ring_mask(NBUF),
                                  b);
        io_uring_buf_ring_advance(br, NBUF);
    }
    u_accept(&r, lfd);
    while (!stop) {
        rc = io_uring_submit_and_wait(&r, 1);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            fprintf(stderr, "relay: io_uring_enter: %s\n", strerror(-rc));
            break;
        }
        unsigned head, n = 0;
        struct io_uring_cqe *c;
        io_uring_for_each_cqe(&r, head, c)
        {
            u_done(&r, c, lfd, target_port);
            n++;
        }
        io_uring_cq_advance(&r, n);
    }
    io_uring_queue_exit(&r);
    return 0;
}
#endif

int main(int argc, char **argv)
{
    if (argc != 4 ||
        (strcmp(argv[1], "epoll") && strcmp(argv[1], "uring") && strcmp(argv[1], "uring_ms"))) {
        fprintf(stderr, "usage: %s epoll|uring|uring_ms LISTEN_PORT TARGET_PORT\n", argv[0]);
        return 2;
    }
#ifndef WEIR_BENCH_URING
    if (strcmp(argv[1], "epoll")) {
        fprintf(stderr, "relay: built without liburing (apt-get install liburing-dev)\n");
        return 3;
    }
#endif
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: the wait ends */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int lfd = listen_on(atoi(argv[2])), target_port = atoi(argv[3]);
#ifdef WEIR_BENCH_URING
    multishot = !strcmp(argv[1], "uring_ms");
    if (strcmp(argv[1], "epoll")) return run_uring(lfd, target_port);
#endif
    run_epoll(lfd, target_port);
    return 0;
}
