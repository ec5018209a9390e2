/*
 * loadgen: the project's C yardstick load generator for the uppercase-echo protocol.
 *
 * Each of C connections keeps D messages of S bytes in flight (D = 1: ping-pong). Every reply byte
 * is checked against the ASCII uppercase of what was sent, in the order sent: a wrong byte is a
 * mismatch, a byte that answers nothing yet sent (extra, unsolicited) is a protocol error, and
 * either ends that connection (the stream is no longer aligned). A partial send keeps its place
 * and waits for EPOLLOUT. The same load, with the same checks, for every server measured.
 *
 *   loadgen -p PORT [-H HOST] [-c C] [-s S] [-d D] [-t SECONDS] [-w WARMUP] [-j THREADS]
 *           [-P SERVER_PID] [--connect-timeout S] [--label TEXT]
 *
 * Phases: connect every connection (bounded by --connect-timeout), warm up for WARMUP seconds
 * (replies checked, not counted), then measure for SECONDS; the program always ends by itself.
 * A request counts in the window when its reply completes inside it; its latency is from its
 * first byte sent to its last byte received, kept in a log-linear histogram (64 sub-buckets per
 * power of two: a percentile is the upper edge of its bucket, at most 1/64 high, capped at max).
 *
 * Output: one JSON line on stdout: requests and rps in the window, p50/p90/p99/p999/max/mean
 * latency (us), errors (connection errors + failed connects), mismatches, protocol_errors, the
 * load generator's own CPU (client_cpu_pct, getrusage; client_system_cpu_pct: its kernel part), the server's (server_cpu_pct, from
 * /proc/PID/stat, with -P) and that of every other user process (other_cpu_pct: a shared machine
 * shows here). Exit status 0 when every reply was right, 1 otherwise, 2 for a usage error.
 *
 * Safety: the target must be a loopback address (127.0.0.0/8 or ::1).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* What is sent: windows into one pseudo-random pattern of letters to uppercase and bytes to leave
 * alone (the letters' ASCII neighbours, digits, punctuation, 0xE9 and 0xFF), as iomodels/bench does. */
static const char ALPHABET[] = "abcdefghijklmnopqrstuvwxyz0123456789 -_.,;:!?@[`{~ABCXYZ\xe9\xff";
#define PERIOD 251 /* prime: message k starts at (13 k + connection) mod PERIOD, visiting every offset */
#define SUB_BITS 6
#define SUBS (1 << SUB_BITS)
#define BUCKETS (SUBS * (64 - SUB_BITS) + SUBS) /* the last: shift 63 - SUB_BITS */
#define RECV_SIZE 65536

struct conn {
    int fd, id, alive, watching_output;
    uint64_t sent, done;      /* messages fully sent / replies fully received */
    size_t send_off, recv_off; /* bytes of the message (reply) in progress */
    uint64_t *started;        /* ring of D send times, slot k % D for message k */
};

struct worker {
    pthread_t thread;
    int ep, count;
    struct conn **conns;
    uint64_t requests, warmup_requests, errors, mismatches, protocol_errors, latency_sum, latency_max;
    uint64_t hist[BUCKETS];
};

static const char *opt_host = "127.0.0.1", *opt_port, *opt_label;
static int opt_conns = 1, opt_threads = 1;
static size_t opt_size = 64;
static uint32_t opt_depth = 1;
static double opt_duration = 5, opt_warmup = 1, opt_connect_timeout = 10;
static long opt_server_pid;

static unsigned char *pattern, *expected; /* PERIOD + S bytes each */
static uint64_t warm_end_ns, end_ns;
static volatile sig_atomic_t interrupted;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

static void build_pattern(void) {
    size_t n = PERIOD + opt_size, letters = sizeof ALPHABET - 1;
    pattern = malloc(n);
    expected = malloc(n);
    if (!pattern || !expected) {
        perror("loadgen: malloc");
        exit(2);
    }
    uint64_t state = 0x9e3779b97f4a7c15u; /* splitmix64 */
    for (size_t i = 0; i < PERIOD; i++) {
        uint64_t z = (state += 0x9e3779b97f4a7c15u);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        pattern[i] = (unsigned char)ALPHABET[(z ^ (z >> 31)) % letters];
    }
    for (size_t i = PERIOD; i < n; i++) pattern[i] = pattern[i % PERIOD];
    for (size_t i = 0; i < n; i++)
        expected[i] = (pattern[i] >= 'a' && pattern[i] <= 'z') ? (unsigned char)(pattern[i] - 32) : pattern[i];
}

static size_t message_offset(const struct conn *c, uint64_t k) {
    return (size_t)((k * 13 + (uint64_t)c->id) % PERIOD);
}

/* ------------------------------------------------------------------ latency histogram */

static int bucket_of(uint64_t v) {
    if (v < 2 * SUBS) return (int)v;
    int shift = 63 - __builtin_clzll(v) - SUB_BITS; /* v >> shift is in [SUBS, 2 SUBS) */
    int b = shift * SUBS + (int)(v >> shift);
    return b < BUCKETS ? b : BUCKETS - 1;
}

static uint64_t bucket_upper(int b) {
    if (b < 2 * SUBS) return (uint64_t)b;
    int shift = b / SUBS - 1;
    uint64_t top = (uint64_t)(b % SUBS + SUBS);
    return ((top + 1) << shift) - 1;
}

/* ------------------------------------------------------------------ one connection */

static void close_conn(struct conn *c) {
    if (c->alive) close(c->fd);
    c->alive = 0;
}

static void watch_output(struct worker *w, struct conn *c, int on) {
    if (c->watching_output == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->watching_output = on;
}

/* Send until D messages are in flight (or the socket is full, or the run is over): every message
   that may go now leaves in one writev(), so at depth D a refill costs one system call, not D. A
   message is timed from the writev() that first tries to send it. */
#define BATCH 64
static void pump(struct worker *w, struct conn *c) {
    while (c->alive) {
        struct iovec iov[BATCH];
        int k = 0;
        size_t total = 0;
        uint64_t m = c->sent, now = now_ns();
        if (c->send_off) { /* the rest of a message the socket took in part */
            iov[k].iov_base = (void *)(pattern + message_offset(c, m) + c->send_off);
            iov[k].iov_len = opt_size - c->send_off;
            total += iov[k++].iov_len;
            m++;
        }
        while (k < BATCH && m - c->done < opt_depth && now < end_ns) {
            c->started[m % opt_depth] = now;
            iov[k].iov_base = (void *)(pattern + message_offset(c, m));
            iov[k].iov_len = opt_size;
            total += iov[k++].iov_len;
            m++;
        }
        if (!k) break;
        ssize_t n = writev(c->fd, iov, k);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                watch_output(w, c, 1);
                return;
            }
            w->errors++;
            close_conn(c);
            return;
        }
        for (size_t left = (size_t)n; left;) { /* count what the socket took, message by message */
            size_t rest = opt_size - c->send_off;
            if (left < rest) {
                c->send_off += left;
                break;
            }
            left -= rest;
            c->send_off = 0;
            c->sent++;
        }
        if ((size_t)n < total) { /* the socket is full: wait until it takes more */
            watch_output(w, c, 1);
            return;
        }
    }
    watch_output(w, c, 0);
}

static void reply_completed(struct worker *w, struct conn *c, uint64_t now) {
    uint64_t latency = now - c->started[c->done % opt_depth];
    c->done++;
    c->recv_off = 0;
    if (now < warm_end_ns) {
        w->warmup_requests++;
    } else if (now < end_ns) {
        w->requests++;
        w->latency_sum += latency;
        if (latency > w->latency_max) w->latency_max = latency;
        w->hist[bucket_of(latency)]++;
    }
}

/* Check what arrived against what was sent; returns 0 when the connection must end. */
static int check_reply(struct worker *w, struct conn *c, const unsigned char *data, size_t n) {
    uint64_t now = now_ns();
    while (n) {
        uint64_t sent_bytes = c->sent * opt_size + c->send_off, got_bytes = c->done * opt_size + c->recv_off;
        if (got_bytes + n > sent_bytes) { /* more bytes than were asked for */
            w->protocol_errors++;
            return 0;
        }
        size_t take = opt_size - c->recv_off < n ? opt_size - c->recv_off : n;
        if (memcmp(data, expected + message_offset(c, c->done) + c->recv_off, take)) {
            w->mismatches++;
            return 0;
        }
        c->recv_off += take;
        data += take;
        n -= take;
        if (c->recv_off == opt_size) reply_completed(w, c, now);
    }
    return 1;
}

static void on_readable(struct worker *w, struct conn *c, unsigned char *buf) {
    ssize_t n = recv(c->fd, buf, RECV_SIZE, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { /* closed or reset by the server before the run was over */
        w->errors++;
        close_conn(c);
        return;
    }
    if (!check_reply(w, c, buf, (size_t)n)) {
        close_conn(c);
        return;
    }
    pump(w, c);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    unsigned char *buf = malloc(RECV_SIZE);
    struct epoll_event events[256];
    if (!buf) return NULL;
    for (int i = 0; i < w->count; i++) pump(w, w->conns[i]);
    while (!interrupted) {
        uint64_t now = now_ns();
        if (now >= end_ns) break;
        uint64_t wait_ms = (end_ns - now) / 1000000 + 1;
        int n = epoll_wait(w->ep, events, 256, wait_ms > 100 ? 100 : (int)wait_ms);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c->alive) continue;
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(w, c, buf);
            if (c->alive && (events[i].events & EPOLLOUT)) pump(w, c);
        }
    }
    free(buf);
    return NULL;
}

/* ------------------------------------------------------------------ set-up */

static void usage(FILE *f) {
    fputs("usage: loadgen -p PORT [-H HOST] [-c CONNECTIONS] [-s SIZE] [-d DEPTH] [-t SECONDS] [-w WARMUP]\n"
          "               [-j THREADS] [-P SERVER_PID] [--connect-timeout SECONDS] [--label TEXT]\n"
          "  HOST: a loopback address (127.0.0.0/8 or ::1), default 127.0.0.1; defaults: -c 1 -s 64 -d 1 -t 5\n"
          "  -w 1 -j 1. Prints one JSON line; exit 0 when every reply was the request uppercased.\n",
          f);
}

static double number(const char *text, const char *what, double low, double high) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= low && v <= high)) {
        fprintf(stderr, "loadgen: bad %s '%s' (from %g to %g)\n", what, text, low, high);
        exit(2);
    }
    return v;
}

static int loopback(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) return ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24 == 127;
    return sa->sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
}

/* Open every connection at once (non-blocking connects), bounded by --connect-timeout. */
static int connect_all(struct conn *conns, const struct addrinfo *ai, int *failed) {
    int ep = epoll_create1(EPOLL_CLOEXEC), waiting = 0;
    *failed = 0;
    for (int i = 0; i < opt_conns; i++) {
        struct conn *c = &conns[i];
        c->id = i;
        c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS)) {
            if ((*failed)++ == 0) fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
            if (c->fd >= 0) close(c->fd);
            c->fd = -1;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        waiting++;
    }
    uint64_t deadline = now_ns() + (uint64_t)(opt_connect_timeout * 1e9);
    struct epoll_event events[256];
    while (waiting && !interrupted && now_ns() < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            waiting--;
            if (err) {
                if ((*failed)++ == 0) fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
                close(c->fd);
                c->fd = -1;
                continue;
            }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            c->alive = 1;
        }
    }
    close(ep);
    int connected = 0;
    for (int i = 0; i < opt_conns; i++) {
        connected += conns[i].alive;
        if (!conns[i].alive && conns[i].fd >= 0) close(conns[i].fd); /* still connecting at the deadline */
    }
    if (waiting && !interrupted) fprintf(stderr, "loadgen: %d connections timed out\n", waiting);
    *failed = opt_conns - connected;
    return connected;
}

/* ------------------------------------------------------------------ CPU accounting */

/* utime + stime of a process (clock ticks) and whether it is a kernel thread; -1 if unreadable. */
static long long process_ticks(long pid, int *kernel_thread) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *after_name = strrchr(text, ')'); /* the name may hold spaces and parentheses */
    unsigned long flags;
    unsigned long long user, sys;
    if (!after_name || sscanf(after_name + 2, "%*c %*d %*d %*d %*d %*d %lu %*u %*u %*u %*u %llu %llu", &flags,
                              &user, &sys) != 3)
        return -1;
    if (kernel_thread) *kernel_thread = (flags & 0x00200000) != 0; /* PF_KTHREAD */
    return (long long)(user + sys);
}

struct census {
    int count;
    long pid[16384];
    long long ticks[16384];
};

/* Every user process but ourselves and the server: what else is using the machine. */
static void take_census(struct census *c) {
    c->count = 0;
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    while (proc && (entry = readdir(proc)) && c->count < 16384) {
        char *end;
        long pid = strtol(entry->d_name, &end, 10);
        int kernel_thread = 0;
        if (*end || pid <= 0 || pid == getpid() || pid == opt_server_pid) continue;
        long long ticks = process_ticks(pid, &kernel_thread);
        if (ticks < 0 || kernel_thread) continue;
        c->pid[c->count] = pid;
        c->ticks[c->count++] = ticks;
    }
    if (proc) closedir(proc);
}

/* Ticks spent between two censuses (a process that started in between counts from its start). */
static long long census_delta(const struct census *before, const struct census *after) {
    long long sum = 0;
    for (int j = 0, i = 0; j < after->count; j++) {
        while (i < before->count && before->pid[i] < after->pid[j]) i++; /* /proc lists PIDs in order */
        long long base = (i < before->count && before->pid[i] == after->pid[j]) ? before->ticks[i] : 0;
        if (after->ticks[j] > base) sum += after->ticks[j] - base;
    }
    return sum;
}

/* Our own CPU seconds so far: user + system in *total, system alone (the kernel's share) in *system. */
static void own_cpu_s(double *total, double *system) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *system = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    *total = *system + (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
}

static void sleep_until(uint64_t t) {
    uint64_t now;
    while (!interrupted && (now = now_ns()) < t) {
        uint64_t left = t - now;
        struct timespec ts = {.tv_sec = (time_t)(left / 1000000000u), .tv_nsec = (long)(left % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------ report */

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static double percentile_us(const uint64_t *hist, uint64_t total, uint64_t max, double pct) {
    uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)total), seen = 0;
    if (rank < 1) rank = 1;
    for (int b = 0; b < BUCKETS; b++)
        if ((seen += hist[b]) >= rank) return (double)(bucket_upper(b) < max ? bucket_upper(b) : max) / 1000.0;
    return (double)max / 1000.0;
}

int main(int argc, char **argv) {
    static const struct option long_options[] = {
        {"host", required_argument, 0, 'H'},     {"port", required_argument, 0, 'p'},
        {"connections", required_argument, 0, 'c'}, {"size", required_argument, 0, 's'},
        {"depth", required_argument, 0, 'd'},    {"duration", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'},   {"threads", required_argument, 0, 'j'},
        {"server-pid", required_argument, 0, 'P'}, {"connect-timeout", required_argument, 0, 'T'},
        {"label", required_argument, 0, 'L'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    for (int o; (o = getopt_long(argc, argv, "H:p:c:s:d:t:w:j:P:h", long_options, NULL)) != -1;) {
        switch (o) {
        case 'H': opt_host = optarg; break;
        case 'p': opt_port = optarg; number(optarg, "port", 1, 65535); break;
        case 'c': opt_conns = (int)number(optarg, "connections", 1, 60000); break;
        case 's': opt_size = (size_t)number(optarg, "size", 1, 16 << 20); break;
        case 'd': opt_depth = (uint32_t)number(optarg, "depth", 1, 65536); break;
        case 't': opt_duration = number(optarg, "duration", 0.001, 3600); break;
        case 'w': opt_warmup = number(optarg, "warmup", 0, 600); break;
        case 'j': opt_threads = (int)number(optarg, "threads", 1, 256); break;
        case 'P': opt_server_pid = (long)number(optarg, "server-pid", 1, 4194304); break;
        case 'T': opt_connect_timeout = number(optarg, "connect-timeout", 0.001, 600); break;
        case 'L': opt_label = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!opt_port || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (opt_threads > opt_conns) opt_threads = opt_conns;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int gai = getaddrinfo(opt_host, opt_port, &hints, &ai);
    if (gai) {
        fprintf(stderr, "loadgen: %s: %s\n", opt_host, gai_strerror(gai));
        return 2;
    }
    if (!loopback(ai->ai_addr)) {
        fprintf(stderr, "loadgen: refusing non-loopback target %s\n", opt_host);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    build_pattern();

    struct conn *conns = calloc((size_t)opt_conns, sizeof *conns);
    uint64_t *started = calloc((size_t)opt_conns * opt_depth, sizeof *started);
    struct worker *workers = calloc((size_t)opt_threads, sizeof *workers);
    struct conn **slots = calloc((size_t)opt_conns, sizeof *slots);
    if (!conns || !started || !workers || !slots) {
        perror("loadgen: calloc");
        return 2;
    }
    for (int i = 0; i < opt_conns; i++) conns[i].started = started + (size_t)i * opt_depth;
    int connect_errors, connected = connect_all(conns, ai, &connect_errors);
    freeaddrinfo(ai);
    if (connect_errors) fprintf(stderr, "loadgen: %d of %d connections failed\n", connect_errors, opt_conns);

    int used = 0;
    for (int j = 0; j < opt_threads; j++) { /* connection i goes to worker i mod J */
        struct worker *w = &workers[j];
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->conns = slots + used;
        for (int i = j; i < opt_conns; i += opt_threads) {
            if (!conns[i].alive) continue;
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
            epoll_ctl(w->ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
            w->conns[w->count++] = &conns[i];
        }
        used += w->count;
    }
    warm_end_ns = now_ns() + (uint64_t)(opt_warmup * 1e9);
    end_ns = warm_end_ns + (uint64_t)(opt_duration * 1e9);
    for (int j = 0; j < opt_threads; j++)
        if (pthread_create(&workers[j].thread, NULL, worker_main, &workers[j])) {
            perror("loadgen: pthread_create");
            return 2;
        }
    static struct census others_before, others_after;
    sleep_until(warm_end_ns);
    long long server0 = opt_server_pid ? process_ticks(opt_server_pid, NULL) : -1;
    double client0, system0, client1, system1;
    own_cpu_s(&client0, &system0);
    uint64_t window0 = now_ns();
    take_census(&others_before);
    sleep_until(end_ns);
    long long server1 = opt_server_pid ? process_ticks(opt_server_pid, NULL) : -1;
    own_cpu_s(&client1, &system1);
    uint64_t window1 = now_ns();
    take_census(&others_after);
    for (int j = 0; j < opt_threads; j++) pthread_join(workers[j].thread, NULL);

    static uint64_t hist[BUCKETS];
    uint64_t requests = 0, warmup_requests = 0, errors = 0, mismatches = 0, protocol_errors = 0, sum = 0, max = 0;
    for (int j = 0; j < opt_threads; j++) {
        struct worker *w = &workers[j];
        requests += w->requests;
        warmup_requests += w->warmup_requests;
        errors += w->errors;
        mismatches += w->mismatches;
        protocol_errors += w->protocol_errors;
        sum += w->latency_sum;
        max = w->latency_max > max ? w->latency_max : max;
        for (int b = 0; b < BUCKETS; b++) hist[b] += w->hist[b];
        close(w->ep);
    }
    int alive = 0;
    for (int i = 0; i < opt_conns; i++) alive += conns[i].alive;
    double rps = (double)requests / opt_duration, window_s = (double)(window1 - window0) / 1e9;
    double ticks_per_s = (double)sysconf(_SC_CLK_TCK);

    printf("{\"tool\":\"loadgen\"");
    if (opt_label) {
        printf(",\"label\":");
        json_string(opt_label);
    }
    printf(",\"host\":");
    json_string(opt_host);
    printf(",\"port\":%s,\"connections\":%d,\"connected\":%d,\"size\":%zu,\"depth\":%u,\"threads\":%d", opt_port,
           opt_conns, connected, opt_size, opt_depth, opt_threads);
    printf(",\"duration_s\":%g,\"warmup_s\":%g,\"requests\":%llu,\"warmup_requests\":%llu,\"rps\":%.1f"
           ",\"mb_per_s\":%.3f",
           opt_duration, opt_warmup, (unsigned long long)requests, (unsigned long long)warmup_requests, rps,
           rps * (double)opt_size / 1e6);
    printf(",\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"mean_us\":%.1f",
           percentile_us(hist, requests, max, 50), percentile_us(hist, requests, max, 90),
           percentile_us(hist, requests, max, 99), percentile_us(hist, requests, max, 99.9), (double)max / 1000.0,
           requests ? (double)sum / (double)requests / 1000.0 : 0.0);
    printf(",\"errors\":%llu,\"connect_errors\":%d,\"protocol_errors\":%llu,\"mismatches\":%llu,\"alive_at_end\":%d",
           (unsigned long long)(errors + (uint64_t)connect_errors), connect_errors,
           (unsigned long long)protocol_errors, (unsigned long long)mismatches, alive);
    printf(",\"client_cpu_pct\":%.1f,\"client_system_cpu_pct\":%.1f", (client1 - client0) / window_s * 100.0,
           (system1 - system0) / window_s * 100.0);
    if (opt_server_pid) {
        printf(",\"server_pid\":%ld", opt_server_pid);
        if (server0 >= 0 && server1 >= 0)
            printf(",\"server_cpu_pct\":%.1f", (double)(server1 - server0) / ticks_per_s / window_s * 100.0);
        else
            printf(",\"server_cpu_pct\":null");
    }
    printf(",\"other_cpu_pct\":%.1f", (double)census_delta(&others_before, &others_after) / ticks_per_s / window_s * 100.0);
    printf(",\"interrupted\":%s}\n", interrupted ? "true" : "false");
    fflush(stdout);
    for (int i = 0; i < opt_conns; i++) close_conn(&conns[i]);
    int bad = errors || connect_errors || mismatches || protocol_errors || interrupted || !requests;
    return bad ? 1 : 0;
}
