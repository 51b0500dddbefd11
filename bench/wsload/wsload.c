/* wsload: WebSocket feeds against lstm-serve's WS /v1/stream, closed or open loop.
 *
 * Why C: the Python client (bench/loadgen, uvloop, a bare asyncio.Protocol) costs ~29 us
 * of CPU per feed; at 11,000 feeds/s that is a sixth of the 2-core box the server is
 * measured on, taken from the server. This one speaks the same protocol from one thread
 * and one epoll set: the HTTP upgrade, masked client text frames, pong, close.
 *
 * Each connection is one session (its "ready" comes first). Closed loop: every session
 * sends its next feed when the last one is answered. Open loop (--rate): feeds leave on
 * a fixed schedule, round robin over the sessions, and are timed from when they were due;
 * a session answers in arrival order, so answers are matched first in, first out.
 * Feeds started in the warm-up are left out; the window is duration - warm-up.
 *
 *   cc -O2 -o bench/out/wsload bench/wsload/wsload.c
 *   bench/out/wsload --port 8000 --connections 1000 --duration-s 15 --warmup-s 3 \
 *       --words words.txt [--rate 8000] [--api-key KEY] [--json out.json]
 *
 * --trace PATH writes each answered feed's due time and latency.
 * --words: one JSON string literal per line ("the", "said\n"), sent round robin as
 * {"type":"feed","text":<word>,"k":K,"id":N}. The JSON written has the shape of
 * lstm-serve-bench's (ops.ws_feed, client.cpu_util_per_process).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING 64 /* most feeds in flight on one session (open loop) */
#define MAX_CODES 32

enum { HANDSHAKE, AWAIT_READY, READY, DEAD };

typedef struct {
    int fd, state;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_cap;
    double due[RING]; /* when each feed in flight was due (closed loop: sent) */
    int head, count;
} Conn;

typedef struct {
    char name[64];
    long count;
} Code;

static struct {
    const char *host, *path, *words_path, *api_key, *json_path, *trace_path;
    int port, connections, k;
    double duration_s, warmup_s, grace_s, rate, connect_timeout_s;
} cfg = {"127.0.0.1", "/v1/stream", NULL, NULL, NULL, NULL, 8000, 1000, 5, 10, 0, 5, 0, 60};

static char **words;
static size_t n_words, next_word;
static uint64_t next_id;
static double *latencies, *dues; /* of each answered feed in the window */
static size_t n_lat, cap_lat;
static long ok_in_window, sent, connect_ok;
static Code feed_errors[MAX_CODES], connect_errors[MAX_CODES];
static int epfd;
static uint32_t mask_state = 2463534242u;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec * 1e-6 + r.ru_stime.tv_sec +
           r.ru_stime.tv_usec * 1e-6;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void count_code(Code *codes, const char *name, size_t len) {
    if (len >= sizeof codes[0].name) len = sizeof codes[0].name - 1;
    for (int i = 0; i < MAX_CODES; i++) {
        if (codes[i].count == 0) {
            memcpy(codes[i].name, name, len);
            codes[i].name[len] = 0;
            codes[i].count = 1;
            return;
        }
        if (strlen(codes[i].name) == len && memcmp(codes[i].name, name, len) == 0) {
            codes[i].count++;
            return;
        }
    }
}

/* The error code of an answer (its "code" field), or "client:unexpected". */
static void count_answer_error(Code *codes, const char *payload, size_t len) {
    const char *key = memmem(payload, len, "\"code\":\"", 8);
    if (key) {
        const char *start = key + 8;
        const char *end = memchr(start, '"', payload + len - start);
        if (end) {
            count_code(codes, start, end - start);
            return;
        }
    }
    count_code(codes, "client:unexpected", 17);
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n) {
    if (*len + n > *cap) {
        *cap = (*len + n) * 2 + 4096;
        *buf = realloc(*buf, *cap);
        if (!*buf) die("realloc");
    }
    memcpy(*buf + *len, data, n);
    *len += n;
}

static void watch(Conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void send_bytes(Conn *c, const char *data, size_t n) {
    if (c->out_len == 0) {
        ssize_t w = send(c->fd, data, n, MSG_NOSIGNAL);
        if (w == (ssize_t)n) return;
        if (w < 0 && errno != EAGAIN) {
            c->state = DEAD;
            return;
        }
        if (w > 0) data += w, n -= w;
        watch(c, EPOLLIN | EPOLLOUT);
    }
    append(&c->out, &c->out_len, &c->out_cap, data, n);
}

static void flush_out(Conn *c) {
    ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
    if (w < 0) {
        if (errno != EAGAIN) c->state = DEAD;
        return;
    }
    memmove(c->out, c->out + w, c->out_len - w);
    c->out_len -= w;
    if (c->out_len == 0) watch(c, EPOLLIN);
}

/* One masked client frame (RFC 6455 5.3: a client masks every frame). */
static void send_frame(Conn *c, int opcode, const char *payload, size_t n) {
    char frame[16 + 65536];
    size_t h = 0;
    if (n > 65535) return;
    frame[h++] = (char)(0x80 | opcode);
    if (n < 126) {
        frame[h++] = (char)(0x80 | n);
    } else {
        frame[h++] = (char)(0x80 | 126);
        frame[h++] = (char)(n >> 8);
        frame[h++] = (char)(n & 0xff);
    }
    mask_state ^= mask_state << 13, mask_state ^= mask_state >> 17, mask_state ^= mask_state << 5;
    unsigned char key[4];
    memcpy(key, &mask_state, 4);
    memcpy(frame + h, key, 4);
    h += 4;
    for (size_t i = 0; i < n; i++) frame[h + i] = (char)(payload[i] ^ key[i & 3]);
    send_bytes(c, frame, h + n);
}

static void send_feed(Conn *c, double due) {
    char message[1024];
    const char *word = words[next_word++ % n_words];
    int n = snprintf(message, sizeof message, "{\"type\":\"feed\",\"text\":%s,\"k\":%d,\"id\":%lu}",
                     word, cfg.k, (unsigned long)next_id++);
    c->due[(c->head + c->count) % RING] = due;
    c->count++;
    sent++;
    send_frame(c, 0x1, message, (size_t)n);
}

static void record(double due, double now, int ok, const char *payload, size_t len) {
    if (due < 0) return; /* started in the warm-up: not measured */
    if (ok) {
        if (n_lat == cap_lat) {
            cap_lat = cap_lat ? cap_lat * 2 : 1 << 16;
            latencies = realloc(latencies, cap_lat * sizeof *latencies);
            dues = realloc(dues, cap_lat * sizeof *dues);
            if (!latencies || !dues) die("realloc");
        }
        dues[n_lat] = due;
        latencies[n_lat++] = now - due;
        ok_in_window++;
    } else if (payload) {
        count_answer_error(feed_errors, payload, len);
    }
}

static double t_warm, t_stop; /* absolute: end of warm-up, end of sending */

static void on_text(Conn *c, const char *p, size_t n, double now, int closed_loop) {
    if (c->state == AWAIT_READY) {
        if (memmem(p, n, "\"type\":\"ready\"", 14)) {
            c->state = READY;
            connect_ok++;
        } else {
            count_answer_error(connect_errors, p, n);
            c->state = DEAD;
        }
        return;
    }
    if (c->count == 0) return; /* nothing asked: not an answer */
    double due = c->due[c->head];
    c->head = (c->head + 1) % RING;
    c->count--;
    static const char answer[] = "{\"type\":\"predictions\"";
    int ok = n >= sizeof answer - 1 && memcmp(p, answer, sizeof answer - 1) == 0;
    record(due >= t_warm && due < t_stop ? due : -1, now, ok, p, n);
    if (closed_loop && now < t_stop) send_feed(c, now);
}

/* Frames in c->in from `start`; returns the bytes consumed. */
static size_t on_frames(Conn *c, size_t start, double now, int closed_loop) {
    size_t at = start;
    while (c->state != DEAD && c->in_len - at >= 2) {
        unsigned char *b = (unsigned char *)c->in + at;
        int opcode = b[0] & 0x0f, fin = b[0] & 0x80;
        uint64_t n = b[1] & 0x7f;
        size_t h = 2;
        if (n == 126) {
            if (c->in_len - at < 4) break;
            n = ((uint64_t)b[2] << 8) | b[3], h = 4;
        } else if (n == 127) {
            if (c->in_len - at < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = (n << 8) | b[2 + i];
            h = 10;
        }
        if (b[1] & 0x80) h += 4; /* a server must not mask; skip the key if it does */
        if (c->in_len - at < h + n) break;
        const char *payload = c->in + at + h;
        at += h + n;
        if (!fin || opcode == 0x0) {
            count_code(feed_errors, "client:fragmented", 17);
            c->state = DEAD;
        } else if (opcode == 0x1) {
            on_text(c, payload, n, now, closed_loop);
        } else if (opcode == 0x9) {
            send_frame(c, 0xA, payload, n);
        } else if (opcode == 0x8) {
            c->state = DEAD;
        }
    }
    return at - start;
}

static void on_handshake(Conn *c) {
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) return;
    if (c->in_len < 12 || memcmp(c->in + 9, "101", 3) != 0) {
        char code[32];
        int status = c->in_len >= 12 ? atoi(c->in + 9) : 0;
        int len = snprintf(code, sizeof code, "http:%d", status);
        count_code(connect_errors, code, len);
        c->state = DEAD;
        return;
    }
    size_t header = end + 4 - c->in;
    memmove(c->in, c->in + header, c->in_len - header);
    c->in_len -= header;
    c->state = AWAIT_READY;
}

/* The feeds still in flight on ``c`` fail with ``code`` (those due in the window count). */
static void fail_pending(Conn *c, const char *code) {
    while (c->count > 0) {
        double due = c->due[c->head];
        c->head = (c->head + 1) % RING;
        c->count--;
        if (due >= t_warm && due < t_stop) count_code(feed_errors, code, strlen(code));
    }
}

static void on_readable(Conn *c, double now, int closed_loop) {
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap * 2 + 65536;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in) die("realloc");
        }
        ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            if (c->state == HANDSHAKE || c->state == AWAIT_READY)
                count_code(connect_errors, "client:closed", 13);
            c->state = DEAD;
            break;
        }
        if (r < 0) break;
        c->in_len += r;
        if (c->state == HANDSHAKE) on_handshake(c);
        if (c->state == AWAIT_READY || c->state == READY) {
            size_t used = on_frames(c, 0, now, closed_loop);
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= used;
        }
        if ((size_t)r < 65536) break;
    }
    if (c->state == DEAD) {
        fail_pending(c, "client:closed");
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
}

static void open_all(Conn *conns) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(cfg.port)};
    if (inet_pton(AF_INET, cfg.host, &addr.sin_addr) != 1) die("--host must be an IPv4 address");
    char request[2048];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     cfg.path, cfg.host, cfg.port, cfg.api_key ? "Authorization: Bearer " : "",
                     cfg.api_key ? cfg.api_key : "", cfg.api_key ? "\r\n" : "");
    for (int i = 0; i < cfg.connections; i++) {
        Conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0) die("socket");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            count_code(connect_errors, "client:connect", 14);
            close(c->fd);
            c->state = DEAD;
            continue;
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
        c->state = HANDSHAKE;
        send_bytes(c, request, n);
    }
}

static int settled(Conn *conns) {
    for (int i = 0; i < cfg.connections; i++)
        if (conns[i].state == HANDSHAKE || conns[i].state == AWAIT_READY) return 0;
    return 1;
}

static void poll_once(int timeout_ms, int closed_loop) {
    struct epoll_event events[512];
    int n = epoll_wait(epfd, events, 512, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    double now = now_s();
    for (int i = 0; i < n; i++) {
        Conn *c = events[i].data.ptr;
        if (c->state == DEAD) continue;
        if (events[i].events & EPOLLOUT) flush_out(c);
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c, now, closed_loop);
    }
}

static long in_flight(Conn *conns) {
    long total = 0;
    for (int i = 0; i < cfg.connections; i++)
        if (conns[i].state == READY) total += conns[i].count;
    return total;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double p) { /* nearest rank, as bench/loadgen/stats.py */
    if (n_lat == 0) return NAN;
    size_t rank = (size_t)ceil(p / 100.0 * n_lat);
    return latencies[(rank ? rank : 1) - 1] * 1e3;
}

static void write_codes(FILE *f, Code *codes) {
    fputc('{', f);
    for (int i = 0; i < MAX_CODES && codes[i].count; i++)
        fprintf(f, "%s\"%s\":%ld", i ? "," : "", codes[i].name, codes[i].count);
    fputc('}', f);
}

static long sum_codes(Code *codes) {
    long total = 0;
    for (int i = 0; i < MAX_CODES; i++) total += codes[i].count;
    return total;
}

static void write_json(FILE *f, double window, double elapsed, double cpu) {
    qsort(latencies, n_lat, sizeof *latencies, cmp_double);
    double mean = 0;
    for (size_t i = 0; i < n_lat; i++) mean += latencies[i];
    mean = n_lat ? mean / n_lat * 1e3 : NAN;
    double util = elapsed > 0 ? cpu / elapsed : 0;
    fprintf(f, "{\"scenario\":\"ws\",\"tool\":\"wsload\",\"mode\":\"%s\",\"concurrency\":%d,",
            cfg.rate > 0 ? "open" : "closed", cfg.connections);
    fprintf(f, "\"rate\":%s%.1f,\"processes\":1,\"elapsed_s\":%.3f,\"window_s\":%.3f,",
            "", cfg.rate, elapsed, window);
    fprintf(f, "\"dispatched\":%ld,\"ops\":{\"ws_connect\":{\"ok\":%ld,\"errors\":%ld,", sent,
            connect_ok, sum_codes(connect_errors));
    fputs("\"errors_by_code\":", f);
    write_codes(f, connect_errors);
    fprintf(f, "},\"ws_feed\":{\"ok\":%ld,\"errors\":%ld,\"throughput_rps\":%.1f,", ok_in_window,
            sum_codes(feed_errors), window > 0 ? ok_in_window / window : 0);
    fputs("\"errors_by_code\":", f);
    write_codes(f, feed_errors);
    const char *names[] = {"p50", "p90", "p99", "p99.9"};
    const double ps[] = {50, 90, 99, 99.9};
    fputs(",\"latency_ms\":{", f);
    for (int i = 0; i < 4; i++) fprintf(f, "\"%s\":%.3f,", names[i], n_lat ? pct(ps[i]) : -1.0);
    fprintf(f, "\"mean\":%.3f,\"max\":%.3f}}},", n_lat ? mean : -1.0,
            n_lat ? latencies[n_lat - 1] * 1e3 : -1.0);
    fprintf(f, "\"client\":{\"cpu_s\":%.3f,\"cpu_util_per_process\":[%.4f],\"saturated\":%s}}\n",
            cpu, util, util > 0.9 ? "true" : "false");
}

/* --trace: "seconds since the start it was due, latency in ms" for every answered feed
 * of the window, in the order answered (for a latency-over-time plot). */
static void write_trace(double start) {
    FILE *f = fopen(cfg.trace_path, "w");
    if (!f) die(cfg.trace_path);
    for (size_t i = 0; i < n_lat; i++) fprintf(f, "%.6f %.3f\n", dues[i] - start, latencies[i] * 1e3);
    fclose(f);
}

static void load_words(void) {
    FILE *f = fopen(cfg.words_path, "r");
    if (!f) die(cfg.words_path);
    char line[512];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        size_t n = strcspn(line, "\r\n");
        if (n < 2 || line[0] != '"') continue;
        line[n] = 0;
        if (n_words == cap) cap = cap * 2 + 1024, words = realloc(words, cap * sizeof *words);
        words[n_words++] = strdup(line);
    }
    fclose(f);
    if (!n_words) {
        fprintf(stderr, "wsload: no JSON string literals in %s\n", cfg.words_path);
        exit(2);
    }
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        i++;
        if (!strcmp(a, "--host")) cfg.host = v;
        else if (!strcmp(a, "--port")) cfg.port = atoi(v);
        else if (!strcmp(a, "--path")) cfg.path = v;
        else if (!strcmp(a, "--connections")) cfg.connections = atoi(v);
        else if (!strcmp(a, "--duration-s")) cfg.duration_s = atof(v);
        else if (!strcmp(a, "--warmup-s")) cfg.warmup_s = atof(v);
        else if (!strcmp(a, "--grace-s")) cfg.grace_s = atof(v);
        else if (!strcmp(a, "--rate")) cfg.rate = atof(v);
        else if (!strcmp(a, "--words")) cfg.words_path = v;
        else if (!strcmp(a, "--k")) cfg.k = atoi(v);
        else if (!strcmp(a, "--api-key")) cfg.api_key = v;
        else if (!strcmp(a, "--json")) cfg.json_path = v;
        else if (!strcmp(a, "--trace")) cfg.trace_path = v;
        else goto usage;
    }
    if (cfg.words_path && cfg.connections > 0 && cfg.duration_s > cfg.warmup_s) return;
usage:
    fprintf(stderr, "usage: wsload --words FILE [--host H] [--port P] [--path P] "
                    "[--connections N] [--duration-s S] [--warmup-s S] [--grace-s S] "
                    "[--rate R] [--k K] [--api-key KEY] [--json PATH] [--trace PATH]\n");
    exit(2);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    load_words();
    epfd = epoll_create1(0);
    Conn *conns = calloc(cfg.connections, sizeof *conns);
    if (epfd < 0 || !conns) die("setup");
    open_all(conns);
    double deadline = now_s() + cfg.connect_timeout_s;
    while (!settled(conns) && now_s() < deadline) poll_once(50, 0);

    int closed_loop = cfg.rate <= 0;
    double start = now_s(), cpu0 = cpu_s();
    t_warm = start + cfg.warmup_s;
    t_stop = start + cfg.duration_s;
    long arrivals = 0, last = (long)(cfg.rate * cfg.duration_s);
    if (closed_loop)
        for (int i = 0; i < cfg.connections; i++)
            if (conns[i].state == READY) send_feed(&conns[i], start);
    for (;;) {
        double now = now_s();
        if (!closed_loop) {
            for (; arrivals < last && start + arrivals / cfg.rate <= now; arrivals++) {
                double due = start + arrivals / cfg.rate;
                Conn *c = &conns[arrivals % cfg.connections];
                if (c->state == READY && c->count < RING) {
                    send_feed(c, due);
                } else if (due >= t_warm) {
                    count_code(feed_errors, c->state == READY ? "client:backlog" : "client:no_stream",
                               c->state == READY ? 14 : 16);
                }
            }
        }
        if (now >= t_stop && (in_flight(conns) == 0 || now >= t_stop + cfg.grace_s)) break;
        int timeout_ms = 50;
        if (!closed_loop && arrivals < last) {
            double wait = start + arrivals / cfg.rate - now;
            timeout_ms = wait <= 0 ? 0 : (int)ceil(wait * 1e3);
        }
        poll_once(timeout_ms, closed_loop);
    }
    double end = now_s(), cpu = cpu_s() - cpu0;
    for (int i = 0; i < cfg.connections; i++)
        if (conns[i].state == READY) fail_pending(&conns[i], "client:unfinished");
    if (cfg.trace_path) write_trace(start);
    FILE *out = cfg.json_path ? fopen(cfg.json_path, "w") : stdout;
    if (!out) die(cfg.json_path);
    write_json(out, cfg.duration_s - cfg.warmup_s, end - start, cpu);
    if (out != stdout) fclose(out);
    fprintf(stderr,
            "wsload: %s loop, %ld/%d sessions ready, %.1f feeds/s, p50 %.2f ms, p99 %.2f ms, "
            "errors %ld, client CPU %.2f cores\n",
            closed_loop ? "closed" : "open", connect_ok, cfg.connections,
            ok_in_window / (cfg.duration_s - cfg.warmup_s), pct(50), pct(99),
            sum_codes(feed_errors), cpu / (end - start));
    return 0;
}
