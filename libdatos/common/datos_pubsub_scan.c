/* datos_pubsub_scan.c - the pieces of a subscriptions.pull answer too
 * large to read whole (docs/google-apis.md 1.5).
 *
 * When an answer passes the loader's pull_max_bytes, the loader still has
 * to release every lease in it, and can keep the whole entries before the
 * bound. This scanner reads nothing but ack ids and entry boundaries, a
 * piece at a time as the body arrives, so that an answer of any size costs
 * one pass and no copy; datos_pubsub_pull.c then reads the entries kept.
 */
#include <string.h>
#include <apr_strings.h>

#include "datos_pubsub_scan.h"
#include "datos_utf8.h"

/* Longest string it captures: "receivedMessages", "ackId", and an ack id
 * (at most 164 bytes, docs/google-apis.md 1.5) with room to spare. */
#define SCAN_CAP 256

enum {
    CAP_NONE = 0,
    CAP_ROOT_KEY,
    CAP_ENTRY_KEY,
    CAP_ACK
};

struct datos_pull_scan_t {
    apr_pool_t *p;
    apr_array_header_t *entries;
    apr_size_t off, limit, cut;
    int depth;
    unsigned char obj[4];      /* the container at depth d is an object */
    unsigned char want_key[4]; /* in that object, a key comes next */
    int in_str, esc;
    int capture, cap_bad;
    char cap[SCAN_CAP];
    apr_size_t cap_len;
    int root_key_is_list; /* the root's last key was receivedMessages */
    int entry_key_is_ack; /* the entry's last key was ackId */
    int in_list;          /* depth 2 is receivedMessages */
    apr_size_t entry_start;
    const char *entry_ack;
};

datos_pull_scan_t *datos_pull_scan_create(apr_pool_t *p, apr_size_t cut_limit)
{
    datos_pull_scan_t *sc = apr_pcalloc(p, sizeof(*sc));

    sc->p = p;
    sc->limit = cut_limit;
    sc->entries = apr_array_make(p, 16, sizeof(datos_pull_entry_t));
    return sc;
}

static void scan_delimiter(datos_pull_scan_t *sc, apr_size_t at)
{
    if (at <= sc->limit) {
        sc->cut = at;
    }
}

static void scan_string_end(datos_pull_scan_t *sc)
{
    int ok = !sc->cap_bad;

    switch (sc->capture) {
    case CAP_ROOT_KEY:
        sc->root_key_is_list =
            ok && sc->cap_len == 16 && !memcmp(sc->cap, "receivedMessages", 16);
        break;
    case CAP_ENTRY_KEY:
        sc->entry_key_is_ack =
            ok && sc->cap_len == 5 && !memcmp(sc->cap, "ackId", 5);
        break;
    case CAP_ACK:
        sc->entry_ack = ok && sc->cap_len
                            ? apr_pstrmemdup(sc->p, sc->cap, sc->cap_len)
                            : NULL;
        break;
    default: break;
    }
    sc->capture = CAP_NONE;
}

static void scan_string_start(datos_pull_scan_t *sc)
{
    int d = sc->depth;

    sc->capture = CAP_NONE;
    if (d == 1 && sc->obj[1] && sc->want_key[1]) {
        sc->capture = CAP_ROOT_KEY;
    }
    else if (d == 3 && sc->in_list && sc->obj[3]) {
        sc->capture = sc->want_key[3]        ? CAP_ENTRY_KEY
                      : sc->entry_key_is_ack ? CAP_ACK
                                             : CAP_NONE;
    }
    sc->cap_len = 0;
    sc->cap_bad = 0;
}

static void scan_open(datos_pull_scan_t *sc, int object, apr_size_t at)
{
    int d = ++sc->depth;

    if (d <= 3) {
        sc->obj[d] = (unsigned char)object;
        sc->want_key[d] = (unsigned char)object;
    }
    if (d == 2 && !object && sc->obj[1] && !sc->want_key[1]
        && sc->root_key_is_list) {
        sc->in_list = 1;
        scan_delimiter(sc, at + 1);
    }
    else if (d == 3 && sc->in_list) {
        sc->entry_start = at;
        sc->entry_ack = NULL;
        sc->entry_key_is_ack = 0;
    }
}

static void scan_close(datos_pull_scan_t *sc, apr_size_t at)
{
    int d = sc->depth;

    if (d <= 0) {
        return;
    }
    if (d == 3 && sc->in_list) {
        datos_pull_entry_t *e = apr_array_push(sc->entries);
        e->start = sc->entry_start;
        e->end = at + 1;
        e->ack_id = sc->obj[3] ? sc->entry_ack : NULL;
    }
    else if (d == 2 && sc->in_list) {
        sc->in_list = 0;
        scan_delimiter(sc, at);
    }
    sc->depth--;
}

void datos_pull_scan_feed(datos_pull_scan_t *sc, const char *data, apr_size_t n)
{
    const unsigned char *s = (const unsigned char *)data;
    apr_size_t i = 0;

    while (i < n) {
        unsigned char c;

        if (sc->in_str) {
            if (sc->esc) {
                sc->esc = 0;
                i++;
                continue;
            }
#ifdef DATOS_SWAR
            if (sc->capture == CAP_NONE) {
                while (i + 8 <= n) {
                    uint64_t x = datos_swar_load(s + i);
                    uint64_t m = datos_swar_eq(x, '"') | datos_swar_eq(x, '\\');
                    if (m) {
                        i += datos_swar_first(m);
                        break;
                    }
                    i += 8;
                }
                if (i >= n) {
                    break;
                }
            }
#endif
            c = s[i];
            if (c == '\\') {
                sc->esc = 1;
                sc->cap_bad = 1;
            }
            else if (c == '"') {
                sc->in_str = 0;
                scan_string_end(sc);
            }
            else if (sc->capture != CAP_NONE) {
                if (sc->cap_len < SCAN_CAP) {
                    sc->cap[sc->cap_len++] = (char)c;
                }
                else {
                    sc->cap_bad = 1;
                }
            }
            i++;
            continue;
        }
        c = s[i];
        switch (c) {
        case '"':
            sc->in_str = 1;
            scan_string_start(sc);
            break;
        case '{': scan_open(sc, 1, sc->off + i); break;
        case '[': scan_open(sc, 0, sc->off + i); break;
        case '}':
        case ']': scan_close(sc, sc->off + i); break;
        case ':':
            if (sc->depth >= 1 && sc->depth <= 3) {
                sc->want_key[sc->depth] = 0;
            }
            break;
        case ',':
            if (sc->depth >= 1 && sc->depth <= 3 && sc->obj[sc->depth]) {
                sc->want_key[sc->depth] = 1;
            }
            if (sc->depth == 2 && sc->in_list) {
                scan_delimiter(sc, sc->off + i);
            }
            break;
        default: break;
        }
        i++;
    }
    sc->off += n;
}

const apr_array_header_t *datos_pull_scan_entries(const datos_pull_scan_t *sc)
{
    return sc->entries;
}

apr_size_t datos_pull_scan_bytes(const datos_pull_scan_t *sc)
{
    return sc->off;
}

apr_size_t datos_pull_scan_cut(const datos_pull_scan_t *sc)
{
    return sc->cut;
}
