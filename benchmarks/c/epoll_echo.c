/*
 * epoll_echo: the project's C yardstick server. One thread, level-triggered epoll, the same
 * uppercase-echo protocol as `iomodels serve`: every byte received is sent back with ASCII a-z
 * uppercased (bytes.upper() in Python), every other byte unchanged.
 *
 * It is the floor that the Python models are measured against (benchmarks/run.py,
 * bench_vs_c.py): it does the least a correct server can do per request, so what it costs is
 * mostly the kernel's loopback TCP work.
 *
 * Correctness over speed where the two meet: a partial send keeps the rest of the reply and
 * stops reading from that peer until the rest is out (back-pressure: memory per connection stays
 * one buffer), and a reply is never dropped or reordered.
 *
 *   epoll_echo [--host 127.0.0.1] [--port 0] [--port-file FILE] [--lifetime SECONDS]
 *
 * Prints `listening on HOST:PORT (model c-epoll)` on stdout (flushed) once it accepts connections,
 * and writes the port to FILE (atomically: written to FILE.tmp, then renamed). Exits 0 on
 * SIGINT/SIGTERM or when SECONDS have passed (a bound, so a forgotten server does not live on).
 * Loopback addresses only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUFSIZE 65536
#define MAX_EVENTS 256

struct peer {
    int fd;
    size_t pending; /* reply bytes not yet sent, at buf + offset */
    size_t offset;
    unsigned char buf[BUFSIZE];
};

static volatile sig_atomic_t stopping;

static void on_stop(int sig) {
    (void)sig;
    stopping = 1;
}

static void die(const char *what) {
    fprintf(stderr, "epoll_echo: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void usage_error(const char *message, const char *value) {
    fprintf(stderr, "epoll_echo: %s: %s\n"
                    "usage: epoll_echo [--host ADDR] [--port N] [--port-file FILE] [--lifetime SECONDS]\n",
            message, value);
    exit(2);
}

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void uppercase(unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 'a' && p[i] <= 'z') p[i] -= 'a' - 'A';
}

static void write_port_file(const char *path, int port) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) usage_error("path too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) die(path);
}

static void set_events(int ep, struct peer *p, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = p};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev) < 0) die("epoll_ctl");
}

static void drop(struct peer *p) {
    close(p->fd); /* closing removes it from the epoll set */
    free(p);
}

/* Send what is pending; returns 0 when all of it went out, 1 when the socket is full, -1 on error. */
static int flush_peer(struct peer *p) {
    while (p->pending) {
        ssize_t n = send(p->fd, p->buf + p->offset, p->pending, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 1 : -1;
        }
        p->offset += (size_t)n;
        p->pending -= (size_t)n;
    }
    p->offset = 0;
    return 0;
}

static void on_readable(int ep, struct peer *p) {
    ssize_t n = recv(p->fd, p->buf, BUFSIZE, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(p);
        return;
    }
    if (n < 0) return;
    uppercase(p->buf, (size_t)n);
    p->pending = (size_t)n;
    p->offset = 0;
    int sent = flush_peer(p);
    if (sent < 0)
        drop(p);
    else if (sent > 0)
        set_events(ep, p, EPOLLOUT); /* stop reading until the reply is out */
}

static void on_writable(int ep, struct peer *p) {
    int sent = flush_peer(p);
    if (sent < 0)
        drop(p);
    else if (sent == 0)
        set_events(ep, p, EPOLLIN);
}

static void accept_all(int ep, int listener) {
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) fprintf(stderr, "epoll_echo: accept: %s\n", strerror(errno));
            return; /* out of descriptors: the next wake-up retries */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct peer *p = malloc(sizeof *p);
        if (!p) {
            close(fd);
            continue;
        }
        p->fd = fd;
        p->pending = p->offset = 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(p);
        }
    }
}

/* Bind and listen on host:port; returns the descriptor and sets *bound_port (port 0: the kernel picks). */
static int open_listener(const char *host, int port, int *bound_port) {
    struct sockaddr_storage addr = {0};
    socklen_t len;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        if ((ntohl(v4->sin_addr.s_addr) >> 24) != 127) usage_error("loopback addresses only", host);
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) usage_error("loopback addresses only", host);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        len = sizeof *v6;
    } else {
        usage_error("not an IP address", host);
    }
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, len) < 0) die("bind");
    if (listen(fd, 4096) < 0) die("listen");
    len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    *bound_port = ntohs(addr.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    return fd;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port_file = NULL;
    long port = 0;
    double lifetime = 3600;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(flag, "-h") || !strcmp(flag, "--help")) {
            puts("usage: epoll_echo [--host ADDR] [--port N] [--port-file FILE] [--lifetime SECONDS]");
            return 0;
        }
        if (!value) usage_error("missing value after", flag);
        i++;
        if (!strcmp(flag, "--host")) {
            host = value;
        } else if (!strcmp(flag, "--port")) {
            port = strtol(value, &end, 10);
            if (*end || end == value || port < 0 || port > 65535) usage_error("bad --port", value);
        } else if (!strcmp(flag, "--port-file")) {
            port_file = value;
        } else if (!strcmp(flag, "--lifetime")) {
            lifetime = strtod(value, &end);
            if (*end || end == value || !(lifetime > 0 && lifetime <= 86400)) usage_error("bad --lifetime", value);
        } else {
            usage_error("unknown option", flag);
        }
    }
    struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: epoll_wait returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int bound_port;
    int listener = open_listener(host, (int)port, &bound_port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL marks the listener */
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev) < 0) die("epoll_ctl");
    if (port_file) write_port_file(port_file, bound_port);
    printf(strchr(host, ':') ? "listening on [%s]:%d (model c-epoll)\n" : "listening on %s:%d (model c-epoll)\n",
           host, bound_port);
    fflush(stdout);

    double end = monotonic_s() + lifetime;
    struct epoll_event events[MAX_EVENTS];
    while (!stopping) {
        double left = end - monotonic_s();
        if (left <= 0) break;
        int n = epoll_wait(ep, events, MAX_EVENTS, left > 1 ? 1000 : (int)(left * 1000) + 1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct peer *p = events[i].data.ptr;
            if (!p)
                accept_all(ep, listener);
            else if (p->pending)
                on_writable(ep, p); /* EPOLLOUT, or an error that send() reports */
            else
                on_readable(ep, p); /* EPOLLIN, or EPOLLHUP/EPOLLERR: recv reports them */
        }
    }
    return 0;
}
