/*
 * The least a UDP forwarder with ferrite's spoofing defence can do: the floor that
 * `scripts/bench fwd-miss` measures beside dnsdist and ferrite.
 *
 * Every query leaves from a fresh random source port (a kept socket is unbound with
 * connect(AF_UNSPEC) and the send to the upstream binds it afresh) with a random ID, and a reply
 * is taken only from the upstream's address and port, with that ID and the query's question.
 * Nothing else: no parsing beyond the header and question, no EDNS, no timeouts (a socket whose
 * reply never comes stays busy), no TCP. One thread receives queries and sends them upstream
 * (blocking receive, as dnsdist's); one waits for replies on all the sockets (epoll: with a port
 * per query there is no one socket to block on) and sends them to the clients.
 *
 * Usage: fwd-floor LISTEN_PORT UPSTREAM_PORT   (both on 127.0.0.1)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOCKS 512
#define QMAX 512

struct slot {
    int fd;
    atomic_int busy;             /* set by the receiving thread, cleared by the replying one */
    uint16_t id, client_id;      /* our ID upstream, the client's */
    struct sockaddr_in client;
    unsigned char question[QMAX];/* the query's question section, to match the reply's */
    size_t qlen;
};

static struct slot slots[SOCKS];
static int client_fd, ep;
static struct sockaddr_in upstream;

/* Length of the question section of `m` (one question), or 0 when it does not fit. */
static size_t question_len(const unsigned char *m, size_t n) {
    size_t i = 12;
    while (i < n && m[i] != 0) {
        if (m[i] & 0xc0) return 0;
        i += 1 + m[i];
    }
    return i + 5 <= n ? i + 5 - 12 : 0;
}

static void *replies(void *arg) {
    (void)arg;
    struct epoll_event evs[32];
    unsigned char buf[4096];
    for (;;) {
        int k = epoll_wait(ep, evs, 32, -1);
        for (int e = 0; e < k; e++) {
            struct slot *s = &slots[evs[e].data.u32];
            struct sockaddr_in from;
            socklen_t fl = sizeof from;
            ssize_t n;
            while ((n = recvfrom(s->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl)) >= 0) {
                fl = sizeof from;
                if (!atomic_load_explicit(&s->busy, memory_order_acquire)) continue;
                if (from.sin_port != upstream.sin_port || from.sin_addr.s_addr != upstream.sin_addr.s_addr) continue;
                if (n < 12 + (ssize_t)s->qlen || !(buf[2] & 0x80) || ((buf[0] << 8) | buf[1]) != s->id) continue;
                if (buf[4] != 0 || buf[5] != 1 || strncasecmp((char *)buf + 12, (char *)s->question, s->qlen) != 0) continue;
                buf[0] = s->client_id >> 8;
                buf[1] = s->client_id & 0xff;
                sendto(client_fd, buf, n, 0, (struct sockaddr *)&s->client, sizeof s->client);
                atomic_store_explicit(&s->busy, 0, memory_order_release);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s LISTEN_PORT UPSTREAM_PORT\n", argv[0]);
        return 2;
    }
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
    upstream = local;
    upstream.sin_port = htons(atoi(argv[2]));
    client_fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (client_fd < 0 || bind(client_fd, (struct sockaddr *)&local, sizeof local) < 0) {
        perror("bind");
        return 1;
    }
    ep = epoll_create1(0);
    for (uint32_t i = 0; i < SOCKS; i++) {
        slots[i].fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, slots[i].fd, &ev);
    }
    pthread_t t;
    pthread_create(&t, NULL, replies, NULL);

    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    unsigned char buf[4096];
    uint32_t next = 0;
    uint64_t rng = 0;
    while (rng == 0)
        if (getrandom(&rng, sizeof rng, 0) != sizeof rng) return 1;
    for (;;) {
        struct sockaddr_in client;
        socklen_t cl = sizeof client;
        ssize_t n = recvfrom(client_fd, buf, sizeof buf, 0, (struct sockaddr *)&client, &cl);
        if (n < 12 || buf[4] != 0 || buf[5] != 1) continue;
        size_t ql = question_len(buf, n);
        if (ql == 0 || ql > QMAX) continue;
        struct slot *s = NULL;
        for (int tries = 0; tries < SOCKS && !s; tries++, next = (next + 1) % SOCKS)
            if (!atomic_load_explicit(&slots[next].busy, memory_order_acquire)) s = &slots[next];
        if (!s) continue; /* every socket waits for a reply: drop */
        rng ^= rng << 13; /* xorshift64, seeded by the system */
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uint16_t id = rng >> 48;
        s->client_id = (buf[0] << 8) | buf[1];
        s->id = id;
        s->client = client;
        memcpy(s->question, buf + 12, ql);
        s->qlen = ql;
        buf[0] = id >> 8;
        buf[1] = id & 0xff;
        atomic_store_explicit(&s->busy, 1, memory_order_release);
        connect(s->fd, &unspec, sizeof unspec); /* give up the last port */
        sendto(s->fd, buf, n, 0, (struct sockaddr *)&upstream, sizeof upstream);
    }
}
