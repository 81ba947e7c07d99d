/* scaleload: the load generator of bench/scale.py.
 *
 * One process holds up to about 19,000 WebSocket sessions to Presence nodes
 * (the open-files limit of one process is the bound), from one 127.0.0.x
 * source address, in one epoll loop: non-blocking connects paced at a rate,
 * the opening handshake (RFC 6455 4.1) with a ticket in the URL, the welcome,
 * then a subscribe to each of the session's shared channels (its account's
 * own channel it has from the start, docs/messages.md). Once open, a session:
 *
 *   - answers the server's heartbeat, a Ping frame, with a Pong carrying the
 *     same payload (RFC 6455 5.5.2, 5.5.3), and counts it;
 *   - reads channel messages whose data is {"q": SEQ, "t": NS}: NS is the
 *     publisher's CLOCK_MONOTONIC in nanoseconds (the same clock in every
 *     process of one machine), so now - NS is the delivery's latency; SEQ
 *     counts up per channel, so a repeat is a duplicate and the publisher's
 *     count minus the distinct ones received is what was lost;
 *   - when chosen (--ping-rate a second over all of this process's open
 *     sessions, round robin) sends {"type":"ping","id":NS} and takes the
 *     round trip from the pong (docs/messages.md).
 *
 * It is built by bench/scale.py with `cc -O2` into a cache folder; it is no
 * part of the package and no test needs it.
 *
 * usage: scaleload -s SOURCE_IP -p PORT[,PORT...] -f SESSIONS_FILE
 *                  [-r OPEN_RATE] [-c CONCURRENT_OPENS] [-g PING_RATE]
 *
 * SESSIONS_FILE has one line per session: TICKET ACCOUNT CHANNEL... where
 * ACCOUNT is the number n of account "u-n" and each CHANNEL the number k of a
 * shared channel "s-k". Session i connects to the i-th port, round robin.
 *
 * On stdout: "progress OPENED FAILED" every second while opening, "ready
 * OPENED FAILED" once every session was tried. On stdin: "report PATH" writes
 * the counts and histograms to PATH (and answers "reported" on stdout);
 * "quit", or the end of the input, closes everything and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_CHANNELS 8          /* shared channels per session */
#define IN_SIZE 4096            /* the largest frame expected: the welcome, ~300 bytes */
#define OUT_SIZE 1024
#define LAT_FINE 10000          /* 10 us buckets up to 100 ms ... */
#define LAT_COARSE 100000       /* ... then 1 ms buckets up to 100 s */
#define LAT_BUCKETS (LAT_FINE + LAT_COARSE)

enum stage { IDLE, CONNECTING, HANDSHAKE, WELCOME, SUBSCRIBING, OPEN, DEAD };

typedef struct {
    int fd;
    unsigned char stage, subscribed, nchannels, was_open;
    unsigned short inlen, outlen;
    unsigned short port_index;
    int account;
    int channel[MAX_CHANNELS];
    uint32_t last[MAX_CHANNELS + 1];      /* slot 0: the account's channel */
    uint32_t received[MAX_CHANNELS + 1];  /* distinct sequence numbers */
    uint32_t duplicates[MAX_CHANNELS + 1];
    char *ticket;
    char *in;
    char *out;
} session_t;

static session_t *sessions;
static int nsessions, nports, ports[64];
static struct in_addr source, target;
static int epfd;
static int opened, failed, fail_connect, fail_status, fail_closed, fail_other;
static int closed_after_open, close_codes[5000], pings_answered, bad_frames, errors_seen;
static long long unexpected;
static uint64_t latency[LAT_BUCKETS], rtt[LAT_BUCKETS], max_latency_us, max_rtt_us;
static uint64_t deliveries;
/* Per second since the first delivery: deliveries, and the slowest (a stall
 * shows as the second it happened in). */
#define SECONDS 3600
static uint64_t first_delivery_ns, per_second[SECONDS], per_second_max_us[SECONDS];

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void record(uint64_t *histogram, uint64_t *maximum, int64_t ns) {
    uint64_t us = ns < 0 ? 0 : (uint64_t)ns / 1000, index;
    if (us > *maximum) *maximum = us;
    if (us < 100000) index = us / 10;
    else if (us < 100000 + (uint64_t)LAT_COARSE * 1000) index = LAT_FINE + (us - 100000) / 1000;
    else index = LAT_BUCKETS - 1;
    histogram[index]++;
}

static uint64_t bucket_floor_us(int index) {
    return index < LAT_FINE ? (uint64_t)index * 10 : 100000 + (uint64_t)(index - LAT_FINE) * 1000;
}

static void finish(session_t *s, int *reason) {
    if (s->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->fd = -1;
    if (s->stage == OPEN) closed_after_open++;
    else if (s->stage != DEAD) { failed++; if (reason) (*reason)++; }
    s->stage = DEAD;
    free(s->in); s->in = NULL;
    free(s->out); s->out = NULL;
}

/* Write, or keep what the socket did not take and ask to be told when it can. */
static void send_bytes(session_t *s, const char *data, size_t length) {
    if (s->outlen == 0) {
        ssize_t n = write(s->fd, data, length);
        if (n == (ssize_t)length) return;
        if (n < 0 && errno != EAGAIN) { finish(s, &fail_other); return; }
        if (n < 0) n = 0;
        data += n; length -= n;
    }
    if (s->outlen + length > OUT_SIZE) { finish(s, &fail_other); return; }
    if (!s->out) s->out = malloc(OUT_SIZE);
    memcpy(s->out + s->outlen, data, length);
    s->outlen += length;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(s - sessions)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

/* A client frame: FIN, OPCODE, masked (RFC 6455 5.3), payload under 126 bytes. */
static void send_frame(session_t *s, int opcode, const char *payload, size_t length) {
    static const unsigned char mask[4] = {0x5a, 0x17, 0xc3, 0x2e};
    char frame[6 + 125];
    if (length > 125) return;
    frame[0] = (char)(0x80 | opcode);
    frame[1] = (char)(0x80 | length);
    memcpy(frame + 2, mask, 4);
    for (size_t i = 0; i < length; i++) frame[6 + i] = payload[i] ^ mask[i & 3];
    send_bytes(s, frame, 6 + length);
}

static void start_connect(int index) {
    session_t *s = &sessions[index];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (fd < 0) { s->stage = DEAD; failed++; fail_connect++; return; }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr = source};
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr = target,
                             .sin_port = htons(ports[s->port_index])};
    s->fd = fd;
    s->stage = CONNECTING;
    if (bind(fd, (struct sockaddr *)&from, sizeof from) < 0 ||
        (connect(fd, (struct sockaddr *)&to, sizeof to) < 0 && errno != EINPROGRESS)) {
        finish(s, &fail_connect);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)index};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void connected(session_t *s) {
    int error = 0;
    socklen_t size = sizeof error;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &error, &size);
    if (error) { finish(s, &fail_connect); return; }
    s->in = malloc(IN_SIZE);
    s->inlen = 0;
    s->stage = HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(s - sessions)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
    char request[512];
    int n = snprintf(request, sizeof request,
                     "GET /?ticket=%s HTTP/1.1\r\nHost: scale\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: c2NhbGUtYmVuY2htYXJrIQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", s->ticket);
    send_bytes(s, request, (size_t)n);
}

/* The number after "KEY": in a compact JSON text, or -1. */
static long long number_after(const char *text, size_t length, const char *key) {
    const char *at = memmem(text, length, key, strlen(key));
    if (!at) return -1;
    at += strlen(key);
    long long value = 0;
    int digits = 0;
    while (at < text + length && *at >= '0' && *at <= '9') {
        value = value * 10 + (*at++ - '0');
        digits++;
    }
    return digits ? value : -1;
}

/* Which of the session's slots a message's channel is: 0 its account's, 1.. its
 * shared channels; -1 none of them. */
static int slot_of(session_t *s, const char *text, size_t length) {
    long long shared = number_after(text, length, "\"channel\":\"s-");
    if (shared >= 0) {
        for (int i = 0; i < s->nchannels; i++) if (s->channel[i] == shared) return i + 1;
        return -1;
    }
    long long account = number_after(text, length, "\"channel\":\"account:u-");
    return account == s->account ? 0 : -1;
}

static void subscribe_all(session_t *s) {
    char message[125];
    for (int i = 0; i < s->nchannels; i++) {
        int n = snprintf(message, sizeof message, "{\"type\":\"subscribe\",\"channel\":\"s-%d\"}",
                         s->channel[i]);
        send_frame(s, 1, message, (size_t)n);
        if (s->stage == DEAD) return;
    }
    s->stage = SUBSCRIBING;
}

static int has(const char *text, size_t length, const char *what) {
    return memmem(text, length, what, strlen(what)) != NULL;
}

static void text_message(session_t *s, const char *text, size_t length, uint64_t now) {
    if (s->stage == OPEN && has(text, length, "\"type\":\"message\"")) {
        int slot = slot_of(s, text, length);
        long long seq = number_after(text, length, "\"q\":");
        long long sent = number_after(text, length, "\"t\":");
        if (slot < 0 || seq < 0 || sent < 0) { unexpected++; return; }
        deliveries++;
        record(latency, &max_latency_us, (int64_t)(now - (uint64_t)sent));
        if (!first_delivery_ns) first_delivery_ns = now;
        uint64_t second = (now - first_delivery_ns) / 1000000000ull;
        if (second < SECONDS) {
            uint64_t us = now > (uint64_t)sent ? (now - (uint64_t)sent) / 1000 : 0;
            per_second[second]++;
            if (us > per_second_max_us[second]) per_second_max_us[second] = us;
        }
        if (seq <= s->last[slot]) { s->duplicates[slot]++; return; }
        s->last[slot] = (uint32_t)seq;
        s->received[slot]++;
        return;
    }
    if (s->stage == WELCOME) {
        if (has(text, length, "\"type\":\"welcome\"")) subscribe_all(s);
        else finish(s, &fail_other);
        return;
    }
    if (has(text, length, "\"type\":\"pong\"")) {
        long long sent = number_after(text, length, "\"id\":");
        if (sent >= 0) record(rtt, &max_rtt_us, (int64_t)(now - (uint64_t)sent));
        return;
    }
    if (has(text, length, "\"type\":\"subscribed\"")) {
        if (s->stage == SUBSCRIBING && slot_of(s, text, length) > 0
            && ++s->subscribed == s->nchannels) {
            s->stage = OPEN;
            s->was_open = 1;
            opened++;
        }
        return;
    }
    if (has(text, length, "\"type\":\"error\"")) {
        if (errors_seen++ < 5) fprintf(stderr, "scaleload: %.*s\n", (int)length, text);
        if (s->stage != OPEN) finish(s, &fail_other);
        return;
    }
    unexpected++;
}

/* Every complete frame in the session's buffer (RFC 6455 5.2; a server's frames
 * are not masked, and Presence does not fragment its small messages). */
static void frames(session_t *s, uint64_t now) {
    unsigned char *b = (unsigned char *)s->in;
    size_t at = 0, avail = s->inlen;
    while (s->stage != DEAD && avail - at >= 2) {
        unsigned char *f = b + at;
        int opcode = f[0] & 0x0f;
        size_t length = f[1] & 0x7f, head = 2;
        if ((f[1] & 0x80) || !(f[0] & 0x80)) { bad_frames++; finish(s, &fail_other); return; }
        if (length == 126) {
            if (avail - at < 4) break;
            length = ((size_t)f[2] << 8) | f[3];
            head = 4;
        } else if (length == 127) {
            bad_frames++; finish(s, &fail_other); return;
        }
        if (head + length > IN_SIZE) { bad_frames++; finish(s, &fail_other); return; }
        if (avail - at < head + length) break;
        const char *payload = (const char *)f + head;
        if (opcode == 1) text_message(s, payload, length, now);
        else if (opcode == 9) { pings_answered++; send_frame(s, 10, payload, length); }
        else if (opcode == 8) {
            int code = length >= 2
                ? ((unsigned char)payload[0] << 8) | (unsigned char)payload[1] : 1005;
            if (code >= 0 && code < 5000) close_codes[code]++;
            if (s->stage == OPEN) finish(s, NULL);
            else finish(s, &fail_closed);
            return;
        }
        at += head + length;
    }
    if (s->stage == DEAD) return;
    memmove(s->in, s->in + at, avail - at);
    s->inlen = (unsigned short)(avail - at);
}

static void handshake(session_t *s, uint64_t now) {
    char *end = memmem(s->in, s->inlen, "\r\n\r\n", 4);
    if (!end) {
        if (s->inlen == IN_SIZE) finish(s, &fail_status);
        return;
    }
    if (s->inlen < 12 || memcmp(s->in, "HTTP/1.1 101", 12) != 0) {
        if (errors_seen++ < 5)
            fprintf(stderr, "scaleload: refused: %.*s\n",
                    (int)((char *)memchr(s->in, '\r', s->inlen) - s->in), s->in);
        finish(s, &fail_status);
        return;
    }
    size_t head = (size_t)(end + 4 - s->in);
    memmove(s->in, s->in + head, s->inlen - head);
    s->inlen -= head;
    s->stage = WELCOME;
    frames(s, now);
}

static void readable(session_t *s, uint64_t now) {
    ssize_t n = read(s->fd, s->in + s->inlen, IN_SIZE - s->inlen);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        if (s->stage == OPEN) finish(s, NULL);
        else finish(s, &fail_closed);
        return;
    }
    if (n < 0) return;
    s->inlen += (unsigned short)n;
    if (s->stage == HANDSHAKE) handshake(s, now);
    else frames(s, now);
}

static void writable(session_t *s) {
    ssize_t n = write(s->fd, s->out, s->outlen);
    if (n < 0 && errno != EAGAIN) { finish(s, &fail_other); return; }
    if (n > 0) {
        memmove(s->out, s->out + n, s->outlen - n);
        s->outlen -= (unsigned short)n;
    }
    if (s->outlen == 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(s - sessions)};
        epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
    }
}

static void write_histogram(FILE *f, const char *name, uint64_t *histogram) {
    for (int i = 0; i < LAT_BUCKETS; i++)
        if (histogram[i]) fprintf(f, "%s %llu %llu\n", name, (unsigned long long)bucket_floor_us(i),
                                  (unsigned long long)histogram[i]);
}

static void report(const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); return; }
    fprintf(f, "opened %d\nfailed %d\nfail_connect %d\nfail_status %d\nfail_closed %d\n"
               "fail_other %d\nclosed_after_open %d\npings_answered %d\nbad_frames %d\n"
               "unexpected %lld\ndeliveries %llu\nmax_latency_us %llu\nmax_rtt_us %llu\n",
            opened, failed, fail_connect, fail_status, fail_closed, fail_other, closed_after_open,
            pings_answered, bad_frames, unexpected, (unsigned long long)deliveries,
            (unsigned long long)max_latency_us, (unsigned long long)max_rtt_us);
    for (int code = 0; code < 5000; code++)
        if (close_codes[code]) fprintf(f, "close %d %d\n", code, close_codes[code]);
    for (int second = 0; second < SECONDS; second++)
        if (per_second[second])
            fprintf(f, "second %d %llu %llu\n", second, (unsigned long long)per_second[second],
                    (unsigned long long)per_second_max_us[second]);
    write_histogram(f, "latency", latency);
    write_histogram(f, "rtt", rtt);
    for (int i = 0; i < nsessions; i++) {
        session_t *s = &sessions[i];
        /* 2: open now; 1: it was open, and the server closed it; 0: it never opened. */
        fprintf(f, "session %d %d", s->account, s->stage == OPEN ? 2 : s->was_open);
        for (int slot = 0; slot <= s->nchannels; slot++)
            fprintf(f, " %d:%u:%u", slot ? s->channel[slot - 1] : -1, s->received[slot],
                    s->duplicates[slot]);
        fputc('\n', f);
    }
    fclose(f);
}

static void load(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); exit(2); }
    char line[1024];
    int capacity = 1024;
    sessions = calloc(capacity, sizeof *sessions);
    while (fgets(line, sizeof line, f)) {
        if (nsessions == capacity) {
            sessions = realloc(sessions, (capacity *= 2) * sizeof *sessions);
            memset(sessions + nsessions, 0, (capacity - nsessions) * sizeof *sessions);
        }
        session_t *s = &sessions[nsessions];
        char *word = strtok(line, " \n");
        if (!word) continue;
        s->ticket = strdup(word);
        s->account = atoi(strtok(NULL, " \n"));
        while ((word = strtok(NULL, " \n")) && s->nchannels < MAX_CHANNELS)
            s->channel[s->nchannels++] = atoi(word);
        s->fd = -1;
        s->port_index = (unsigned short)(nsessions % nports);
        nsessions++;
    }
    fclose(f);
}

static void command(char *line) {
    char path[512];
    if (sscanf(line, "report %511s", path) == 1) {
        report(path);
        printf("reported\n");
        fflush(stdout);
    } else if (strncmp(line, "quit", 4) == 0) {
        exit(0);
    }
}

int main(int argc, char **argv) {
    const char *file = NULL;
    double open_rate = 1000, ping_rate = 10;
    int concurrent = 200, option;
    inet_pton(AF_INET, "127.0.0.1", &source);
    inet_pton(AF_INET, "127.0.0.1", &target);
    while ((option = getopt(argc, argv, "s:t:p:f:r:c:g:")) != -1) {
        if (option == 's') inet_pton(AF_INET, optarg, &source);
        else if (option == 't') inet_pton(AF_INET, optarg, &target);
        else if (option == 'p') {
            for (char *p = strtok(optarg, ","); p && nports < 64; p = strtok(NULL, ","))
                ports[nports++] = atoi(p);
        } else if (option == 'f') file = optarg;
        else if (option == 'r') open_rate = atof(optarg);
        else if (option == 'c') concurrent = atoi(optarg);
        else if (option == 'g') ping_rate = atof(optarg);
        else { fprintf(stderr, "usage: see the comment at the top of scaleload.c\n"); return 2; }
    }
    if (!file || !nports) { fprintf(stderr, "scaleload: -f and -p are needed\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    load(file);
    epfd = epoll_create1(0);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event stdin_event = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &stdin_event);

    struct epoll_event events[512];
    char input[1024];
    size_t input_length = 0;
    uint64_t started = now_ns(), last_progress = started, pinged_at = started;
    int next = 0, ready_said = 0, ping_cursor = 0;
    for (;;) {
        uint64_t now = now_ns();
        /* Open at most open_rate sessions a second, at most `concurrent` at once. */
        int pending = next - opened - failed;
        while (next < nsessions && pending < concurrent &&
               next < (now - started) / 1e9 * open_rate + 1) {
            start_connect(next++);
            pending++;
        }
        if (!ready_said && now - last_progress > 1000000000ull) {
            printf("progress %d %d\n", opened, failed);
            fflush(stdout);
            last_progress = now;
        }
        if (!ready_said && next == nsessions && opened + failed >= nsessions) {
            printf("ready %d %d\n", opened, failed);
            fflush(stdout);
            ready_said = 1;
        }
        /* The client's own pings, spread over the open sessions. */
        if (ping_rate > 0 && opened) {
            int due = (int)((now - pinged_at) / 1e9 * ping_rate);
            if (due > 0) {
                pinged_at = now;
                for (int tries = 0; due > 0 && tries < nsessions; tries++) {
                    session_t *s = &sessions[ping_cursor];
                    ping_cursor = (ping_cursor + 1) % nsessions;
                    if (s->stage != OPEN) continue;
                    char ping[64];
                    int n = snprintf(ping, sizeof ping, "{\"type\":\"ping\",\"id\":%llu}",
                                     (unsigned long long)now_ns());
                    send_frame(s, 1, ping, (size_t)n);
                    due--;
                }
            }
        }
        int n = epoll_wait(epfd, events, 512, 2);
        now = now_ns();
        for (int i = 0; i < n; i++) {
            uint32_t index = events[i].data.u32;
            if (index == UINT32_MAX) {
                ssize_t got = read(0, input + input_length, sizeof input - 1 - input_length);
                if (got == 0) exit(0);  /* the benchmark is gone */
                if (got < 0) continue;
                input_length += (size_t)got;
                input[input_length] = 0;
                char *newline;
                while ((newline = strchr(input, '\n'))) {
                    *newline = 0;
                    command(input);
                    input_length -= (size_t)(newline + 1 - input);
                    memmove(input, newline + 1, input_length + 1);
                }
                continue;
            }
            session_t *s = &sessions[index];
            if (s->stage == DEAD) continue;
            if (s->stage == CONNECTING) { connected(s); continue; }
            if ((events[i].events & EPOLLOUT) && s->outlen) writable(s);
            if (s->stage != DEAD && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                readable(s, now);
        }
    }
}
