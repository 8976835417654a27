/* datos_pubsub_pull.c - reading subscriptions.pull answers
 * (docs/google-apis.md 1.5) without a tree.
 *
 * A pull answer is the loader's input: up to 1,000 messages, most of their
 * bytes base64. Building a jansson tree of it first, then copying out of
 * the tree, cost four times what validating and encoding the messages
 * does (make bench-record). So the answer is read in one pass: every value
 * is checked as RFC 8259 says (UTF-8, escapes, numbers, nesting), the
 * members the loader needs are remembered as byte ranges, and each entry
 * is built straight into the caller's pool once its object closes, in the
 * order and with the texts of the jansson reading it replaced
 * (tests/unit/dt_jansson.c keeps that reading, and the fuzz target
 * compares the two).
 *
 * Answers that cannot be read whole are datos_pubsub_scan.c's.
 */
#include <stdlib.h>
#include <string.h>
#include <apr_hash.h>
#include <apr_strings.h>

#include "datos_arena.h"
#include "datos_base64.h"
#include "datos_jsontext.h"
#include "datos_pubsub_pull.h"
#include "datos_utf8.h"

/* ------------------------------------------------------------ the parser */

enum {
    V_NONE = 0,
    V_STRING,
    V_NUMBER,
    V_LITERAL,
    V_OBJECT,
    V_ARRAY
};

/* A value found in the answer. */
typedef struct ref_t {
    int kind;
    int integer;           /* a number without fraction or exponent */
    int esc;               /* a string holding escapes */
    int nul;               /* a string holding \u0000 */
    apr_size_t start, end; /* a string: its body between the quotes; a
                            * number: its text */
} ref_t;

typedef struct pair_t {
    ref_t key, value;
} pair_t;

/* The members of a "message" object that matter. */
typedef struct msg_refs_t {
    ref_t data, attrs, id, time, okey;
    apr_array_header_t *pairs; /* attrs' members when it is an object */
} msg_refs_t;

typedef struct pp_t {
    apr_pool_t *p;
    const unsigned char *s;
    apr_size_t len, pos;
    int cut; /* the input ends after an entry: close the list there */
    const char *fail;
    apr_size_t fail_pos;
    apr_array_header_t *spare_pairs; /* reused for each message */
} pp_t;

#define PP_CUT 1 /* parse_list's answer when the cut was reached */

static int pp_fail(pp_t *pp, apr_size_t pos, const char *what)
{
    if (!pp->fail) {
        pp->fail = what;
        pp->fail_pos = pos;
    }
    return -1;
}

static void pp_ws(pp_t *pp)
{
    pp->pos = datos_jt_skip_ws(pp->s, pp->pos, pp->len);
}

/* The string whose opening quote is at pp->pos. */
static int pp_string(pp_t *pp, ref_t *r)
{
    const unsigned char *s = pp->s;
    apr_size_t len = pp->len, pos = pp->pos + 1, k, d;
    unsigned cp;

    r->kind = V_STRING;
    r->esc = 0;
    r->nul = 0;
    r->start = pos;
    for (;;) {
        unsigned char c;

        pos = datos_json_plain_run(s, pos, len);
        if (pos >= len) {
            return pp_fail(pp, pos, "an unterminated string");
        }
        c = s[pos];
        if (c == '"') {
            break;
        }
        if (c >= 0x80) {
            k = datos_utf8_seq(s + pos, len - pos);
            if (!k) {
                return pp_fail(pp, pos, "a byte that is not UTF-8");
            }
            pos += k;
        }
        else if (c == '\\') {
            k = datos_jt_escape_len(s, pos, len, &d, &cp);
            if (!k) {
                return pp_fail(pp, pos,
                               "an invalid escape (or a lone surrogate)");
            }
            r->esc = 1;
            r->nul |= cp == 0;
            pos += k;
        }
        else if (c < 0x20) {
            return pp_fail(pp, pos, "a control character in a string");
        }
        else {
            pos++;
        }
    }
    r->end = pos;
    pp->pos = pos + 1;
    return 0;
}

#define KIND_SET(k, d, obj)                                    \
    ((obj) ? ((k)[(d) >> 3] |= (unsigned char)(1u << ((d)&7))) \
           : ((k)[(d) >> 3] &= (unsigned char)~(1u << ((d)&7))))
#define KIND_OBJ(k, d) ((k)[(d) >> 3] & (1u << ((d)&7)))

/* Checks the value at pp->pos, standing at nesting level `level` (the
 * answer itself is level 1), and moves past it; *r says what it was.
 * Iterative, with a bit per open container, so a hostile nesting costs no
 * C stack. */
static int pp_value(pp_t *pp, int level, ref_t *r)
{
    const unsigned char *s = pp->s;
    apr_size_t len = pp->len, n;
    unsigned char kinds[DATOS_PULL_MAX_DEPTH / 8 + 1];
    int depth = 0, integer;
    ref_t tmp;

    memset(r, 0, sizeof(*r));
value:
    if (level + depth > DATOS_PULL_MAX_DEPTH) {
        return pp_fail(pp, pp->pos, "nesting deeper than 2048 levels");
    }
    pp_ws(pp);
    if (pp->pos >= len) {
        return pp_fail(pp, pp->pos, "a value was expected");
    }
    switch (s[pp->pos]) {
    case '{':
    case '[':
        if (!depth) {
            r->kind = s[pp->pos] == '{' ? V_OBJECT : V_ARRAY;
            r->start = pp->pos;
        }
        KIND_SET(kinds, depth, s[pp->pos] == '{');
        depth++;
        pp->pos++;
        pp_ws(pp);
        if (pp->pos < len
            && s[pp->pos] == (KIND_OBJ(kinds, depth - 1) ? '}' : ']')) {
            pp->pos++;
            depth--;
            goto after;
        }
        if (KIND_OBJ(kinds, depth - 1)) {
            goto key;
        }
        goto value;
    case '"':
        if (pp_string(pp, depth ? &tmp : r)) {
            return -1;
        }
        goto after;
    case 't':
    case 'f':
    case 'n':
        n = datos_jt_literal_len(s, pp->pos, len);
        if (!n) {
            return pp_fail(pp, pp->pos, "an invalid literal");
        }
        if (!depth) {
            r->kind = V_LITERAL;
        }
        pp->pos += n;
        goto after;
    default:
        n = s[pp->pos] == '-' || datos_jt_digit(s[pp->pos])
                ? datos_jt_number(s, pp->pos, len, &integer)
                : 0;
        if (!n) {
            return pp_fail(pp, pp->pos, "a value was expected");
        }
        if (!depth) {
            r->kind = V_NUMBER;
            r->integer = integer;
            r->start = pp->pos;
            r->end = n;
        }
        pp->pos = n;
        goto after;
    }

after:
    if (!depth) {
        if (r->kind == V_OBJECT || r->kind == V_ARRAY) {
            r->end = pp->pos;
        }
        return 0;
    }
    pp_ws(pp);
    if (pp->pos >= len) {
        return pp_fail(pp, pp->pos, "an unexpected end");
    }
    if (s[pp->pos] == ',') {
        pp->pos++;
        if (KIND_OBJ(kinds, depth - 1)) {
            goto key;
        }
        goto value;
    }
    if (s[pp->pos] == (KIND_OBJ(kinds, depth - 1) ? '}' : ']')) {
        pp->pos++;
        depth--;
        goto after;
    }
    return pp_fail(pp, pp->pos, "',' or the end of a container was expected");

key:
    pp_ws(pp);
    if (pp->pos >= len || s[pp->pos] != '"') {
        return pp_fail(pp, pp->pos, "a string key was expected");
    }
    if (pp_string(pp, &tmp)) {
        return -1;
    }
    pp_ws(pp);
    if (pp->pos >= len || s[pp->pos] != ':') {
        return pp_fail(pp, pp->pos, "':' was expected after a key");
    }
    pp->pos++;
    goto value;
}

/* The unescaped bytes of a string, in p (NUL-terminated). */
static const char *pp_str(pp_t *pp, const ref_t *r, apr_size_t *len)
{
    apr_size_t n = r->end - r->start;

    if (!r->esc) {
        *len = n;
        return apr_pstrmemdup(pp->p, (const char *)pp->s + r->start, n);
    }
    return datos_jt_unescape(pp->p, pp->s + r->start, n, len);
}

/* The unescaped bytes of a string, pointing into the answer when it has
 * no escapes (for comparisons and decoding). */
static const char *pp_view(pp_t *pp, const ref_t *r, apr_size_t *len)
{
    if (!r->esc) {
        *len = r->end - r->start;
        return (const char *)pp->s + r->start;
    }
    return datos_jt_unescape(pp->p, pp->s + r->start, r->end - r->start, len);
}

static int pp_key_is(pp_t *pp, const ref_t *k, const char *name, apr_size_t n)
{
    const char *v;
    apr_size_t len;

    if (!k->esc) {
        return k->end - k->start == n && !memcmp(pp->s + k->start, name, n);
    }
    v = pp_view(pp, k, &len);
    return len == n && !memcmp(v, name, n);
}

/* An object at pp->pos: calls member() for each key with pp->pos at its
 * value (which member() must consume). */
typedef int member_fn(pp_t *pp, const ref_t *key, int level, void *baton);

static int pp_object(pp_t *pp, int level, member_fn *member, void *baton)
{
    ref_t key;

    pp->pos++;
    pp_ws(pp);
    if (pp->pos < pp->len && pp->s[pp->pos] == '}') {
        pp->pos++;
        return 0;
    }
    for (;;) {
        pp_ws(pp);
        if (pp->pos >= pp->len || pp->s[pp->pos] != '"') {
            return pp_fail(pp, pp->pos, "a string key was expected");
        }
        if (pp_string(pp, &key)) {
            return -1;
        }
        pp_ws(pp);
        if (pp->pos >= pp->len || pp->s[pp->pos] != ':') {
            return pp_fail(pp, pp->pos, "':' was expected after a key");
        }
        pp->pos++;
        pp_ws(pp);
        if (level + 1 > DATOS_PULL_MAX_DEPTH) {
            return pp_fail(pp, pp->pos, "nesting deeper than 2048 levels");
        }
        if (member(pp, &key, level + 1, baton)) {
            return -1;
        }
        pp_ws(pp);
        if (pp->pos >= pp->len) {
            return pp_fail(pp, pp->pos, "an unexpected end");
        }
        if (pp->s[pp->pos] == ',') {
            pp->pos++;
            continue;
        }
        if (pp->s[pp->pos] == '}') {
            pp->pos++;
            return 0;
        }
        return pp_fail(pp, pp->pos, "',' or '}' was expected");
    }
}

static int attrs_member(pp_t *pp, const ref_t *key, int level, void *baton)
{
    pair_t *pr = apr_array_push(baton);

    pr->key = *key;
    return pp_value(pp, level, &pr->value);
}

static int message_member(pp_t *pp, const ref_t *key, int level, void *baton)
{
    msg_refs_t *mr = baton;
    ref_t *slot = NULL;
    apr_size_t n = key->end - key->start;

    if (key->esc || (n >= 4 && n <= 11)) {
        if (pp_key_is(pp, key, "data", 4)) {
            slot = &mr->data;
        }
        else if (pp_key_is(pp, key, "attributes", 10)) {
            slot = &mr->attrs;
        }
        else if (pp_key_is(pp, key, "messageId", 9)) {
            slot = &mr->id;
        }
        else if (pp_key_is(pp, key, "publishTime", 11)) {
            slot = &mr->time;
        }
        else if (pp_key_is(pp, key, "orderingKey", 11)) {
            slot = &mr->okey;
        }
    }
    if (slot == &mr->attrs && pp->pos < pp->len && pp->s[pp->pos] == '{') {
        mr->pairs->nelts = 0; /* a later "attributes" replaces an earlier */
        memset(slot, 0, sizeof(*slot));
        slot->kind = V_OBJECT;
        return pp_object(pp, level, attrs_member, mr->pairs);
    }
    if (slot) {
        return pp_value(pp, level, slot);
    }
    {
        ref_t skip;
        return pp_value(pp, level, &skip);
    }
}

typedef struct entry_refs_t {
    ref_t ack, msg, attempt;
    msg_refs_t mr;
} entry_refs_t;

static int entry_member(pp_t *pp, const ref_t *key, int level, void *baton)
{
    entry_refs_t *er = baton;
    ref_t skip;

    if (pp_key_is(pp, key, "ackId", 5)) {
        return pp_value(pp, level, &er->ack);
    }
    if (pp_key_is(pp, key, "message", 7)) {
        if (pp->pos < pp->len && pp->s[pp->pos] == '{') {
            apr_array_header_t *pairs = er->mr.pairs;

            memset(&er->mr, 0, sizeof(er->mr));
            er->mr.pairs = pairs;
            pairs->nelts = 0;
            memset(&er->msg, 0, sizeof(er->msg));
            er->msg.kind = V_OBJECT;
            return pp_object(pp, level, message_member, &er->mr);
        }
        return pp_value(pp, level, &er->msg);
    }
    if (pp_key_is(pp, key, "deliveryAttempt", 15)) {
        return pp_value(pp, level, &er->attempt);
    }
    return pp_value(pp, level, &skip);
}

/* deliveryAttempt: an int32, as a number or (proto3 JSON allows it) a
 * decimal string; -1 for anything else. As the jansson reading: a string
 * counts up to a U+0000 in it. */
static apr_int64_t attempt_value(pp_t *pp, const ref_t *r)
{
    apr_int64_t n = 0;
    const char *v, *end;
    apr_size_t len;
    int neg = 0;

    if (r->kind == V_NUMBER && r->integer) {
        v = (const char *)pp->s + r->start;
        end = (const char *)pp->s + r->end;
        if (*v == '-') {
            neg = 1;
            v++;
        }
        for (; v < end; v++) {
            if (n > APR_INT32_MAX) {
                return -1;
            }
            n = n * 10 + (*v - '0');
        }
        return neg && n ? -1 : n <= APR_INT32_MAX ? n : -1;
    }
    if (r->kind != V_STRING || r->end == r->start) {
        return -1;
    }
    v = pp_view(pp, r, &len);
    for (end = v + len; v < end && *v; v++) {
        if (*v < '0' || *v > '9' || n > APR_INT32_MAX) {
            return -1;
        }
        n = n * 10 + (*v - '0');
    }
    return n <= APR_INT32_MAX ? n : -1;
}

/* The attributes of the message, each key once: in the place of its first
 * appearance, with its last value (as jansson reads an object). */
static const char *build_attrs(pp_t *pp, const msg_refs_t *mr,
                               datos_pubsub_msg_t *m)
{
    const pair_t *pairs = (const pair_t *)mr->pairs->elts;
    int n = mr->pairs->nelts, i, j, *slot_of, *last;
    const char **keys;
    apr_size_t *klens;
    apr_hash_t *seen = NULL;

    keys = apr_palloc(pp->p, sizeof(*keys) * (apr_size_t)(n + 1));
    klens = apr_palloc(pp->p, sizeof(*klens) * (apr_size_t)(n + 1));
    slot_of = apr_palloc(pp->p, sizeof(*slot_of) * (apr_size_t)(n + 1));
    last = apr_palloc(pp->p, sizeof(*last) * (apr_size_t)(n + 1));
    if (n > 16) {
        seen = apr_hash_make(pp->p);
    }
    /* slot_of[i]: the pair whose place pair i's key takes */
    for (i = 0; i < n; i++) {
        keys[i] = pp_view(pp, &pairs[i].key, &klens[i]);
        slot_of[i] = i;
        if (seen) {
            int *at = apr_hash_get(seen, keys[i], (apr_ssize_t)klens[i]);
            if (at) {
                slot_of[i] = *at;
            }
            else {
                at = apr_palloc(pp->p, sizeof(*at));
                *at = i;
                apr_hash_set(seen, keys[i], (apr_ssize_t)klens[i], at);
            }
            continue;
        }
        for (j = 0; j < i; j++) {
            if (slot_of[j] == j && klens[j] == klens[i]
                && !memcmp(keys[j], keys[i], klens[i])) {
                slot_of[i] = j;
                break;
            }
        }
    }
    for (i = 0; i < n; i++) {
        last[slot_of[i]] = i;
    }
    for (i = 0; i < n; i++) {
        const ref_t *v;
        datos_attr_t *a;

        if (slot_of[i] != i) {
            continue;
        }
        v = &pairs[last[i]].value;
        if (v->kind != V_STRING) {
            return apr_psprintf(pp->p,
                                "message %s: attribute value is not a string",
                                m->message_id);
        }
        if (pairs[i].key.nul) {
            return apr_psprintf(pp->p, "message %s: attribute key holds U+0000",
                                m->message_id);
        }
        a = apr_array_push(m->attributes);
        a->key = pairs[i].key.esc ? keys[i]
                                  : apr_pstrmemdup(pp->p, keys[i], klens[i]);
        a->value = pp_str(pp, v, &a->value_len);
    }
    return NULL;
}

/* Fills m from one entry, checking in the order of the jansson reading:
 * the first defect goes to m->problem and stops the entry (the ack id is
 * read first, so a marked entry keeps it whenever it has one). */
static void build_entry(pp_t *pp, const entry_refs_t *er, int index,
                        datos_pubsub_msg_t *m)
{
    const msg_refs_t *mr = &er->mr;
    apr_int64_t n;
    apr_size_t len;
    const char *v;

    memset(m, 0, sizeof(*m));
    m->data = (const unsigned char *)"";
    m->attributes =
        apr_array_make(pp->p,
                       er->msg.kind == V_OBJECT && mr->attrs.kind == V_OBJECT
                           ? mr->pairs->nelts
                           : 0,
                       sizeof(datos_attr_t));

    /* An ack id holding U+0000 could not be sent back as one. */
    if (er->ack.kind != V_STRING || er->ack.end == er->ack.start
        || er->ack.nul) {
        m->problem =
            apr_psprintf(pp->p, "receivedMessages[%d] has no ackId", index);
        return;
    }
    m->ack_id = pp_str(pp, &er->ack, &len);

    n = er->attempt.kind != V_NONE ? attempt_value(pp, &er->attempt) : 0;
    if (n < 0) {
        m->problem = apr_psprintf(pp->p,
                                  "receivedMessages[%d].deliveryAttempt is "
                                  "not a count",
                                  index);
        return;
    }
    m->delivery_attempt = (int)n;

    if (er->msg.kind != V_OBJECT) {
        m->problem = apr_psprintf(pp->p,
                                  "receivedMessages[%d] has no message "
                                  "object",
                                  index);
        return;
    }
    if (mr->id.kind != V_STRING || mr->id.end == mr->id.start || mr->id.nul) {
        m->problem = apr_psprintf(pp->p,
                                  "receivedMessages[%d].message has no "
                                  "messageId",
                                  index);
        return;
    }
    m->message_id = pp_str(pp, &mr->id, &len);

    v = mr->time.kind == V_STRING ? pp_view(pp, &mr->time, &len) : NULL;
    if (!v
        || datos_pubsub_parse_time(v, len, &m->publish_time_us)
               != APR_SUCCESS) {
        m->problem = apr_psprintf(pp->p, "message %s has no valid publishTime",
                                  m->message_id);
        return;
    }
    m->publish_time = pp_str(pp, &mr->time, &len);

    if (mr->data.kind != V_NONE) {
        unsigned char *bytes = NULL;

        /* The data is most of a batch's memory: in huge pages
         * (datos_arena.h says why). */
        v = mr->data.kind == V_STRING ? pp_view(pp, &mr->data, &len) : NULL;
        if (v) {
            bytes = datos_arena_alloc(pp->p, DATOS_BASE64_DECODE_ROOM(len));
            if (!bytes) {
                bytes = apr_palloc(pp->p, DATOS_BASE64_DECODE_ROOM(len));
            }
        }
        if (!bytes
            || datos_base64_decode_to(v, len, bytes, &m->data_len)
                   != APR_SUCCESS) {
            m->problem = apr_psprintf(pp->p, "message %s: data is not base64",
                                      m->message_id);
            return;
        }
        m->data = bytes;
    }

    if (mr->attrs.kind != V_NONE && mr->attrs.kind != V_OBJECT) {
        m->problem = apr_psprintf(
            pp->p, "message %s: attributes is not an object", m->message_id);
        return;
    }
    if (mr->attrs.kind == V_OBJECT && mr->pairs->nelts
        && (m->problem = build_attrs(pp, mr, m))) {
        return;
    }

    if (mr->okey.kind != V_NONE && mr->okey.kind != V_STRING) {
        m->problem = apr_psprintf(
            pp->p, "message %s: orderingKey is not a string", m->message_id);
        return;
    }
    m->ordering_key =
        mr->okey.kind == V_STRING ? pp_str(pp, &mr->okey, &len) : NULL;
}

/* receivedMessages at pp->pos ('['), at level 2: its entries into *out.
 * PP_CUT when a cut answer ended after an entry. */
static int parse_list(pp_t *pp, apr_array_header_t **out)
{
    apr_array_header_t *msgs =
        apr_array_make(pp->p, 64, sizeof(datos_pubsub_msg_t));
    entry_refs_t er;
    int index = 0;

    *out = msgs;
    memset(&er, 0, sizeof(er));
    er.mr.pairs = pp->spare_pairs;
    pp->pos++;
    pp_ws(pp);
    if (pp->cut && pp->pos == pp->len) {
        return PP_CUT;
    }
    if (pp->pos < pp->len && pp->s[pp->pos] == ']') {
        pp->pos++;
        return 0;
    }
    for (;;) {
        datos_pubsub_msg_t *m;

        pp_ws(pp);
        if (pp->pos < pp->len && pp->s[pp->pos] == '{') {
            memset(&er.ack, 0, sizeof(er.ack));
            memset(&er.msg, 0, sizeof(er.msg));
            memset(&er.attempt, 0, sizeof(er.attempt));
            memset(&er.mr, 0, sizeof(er.mr));
            er.mr.pairs = pp->spare_pairs;
            er.mr.pairs->nelts = 0;
            if (pp_object(pp, 3, entry_member, &er)) {
                return -1;
            }
            build_entry(pp, &er, index, apr_array_push(msgs));
        }
        else {
            ref_t skip;

            if (pp_value(pp, 3, &skip)) {
                return -1;
            }
            m = apr_array_push(msgs);
            memset(m, 0, sizeof(*m));
            m->data = (const unsigned char *)"";
            m->attributes = apr_array_make(pp->p, 0, sizeof(datos_attr_t));
            m->problem = apr_psprintf(
                pp->p, "receivedMessages[%d] is not an object", index);
        }
        index++;
        pp_ws(pp);
        if (pp->cut && pp->pos == pp->len) {
            return PP_CUT;
        }
        if (pp->pos >= pp->len) {
            return pp_fail(pp, pp->pos, "an unexpected end");
        }
        if (pp->s[pp->pos] == ',') {
            pp->pos++;
            continue;
        }
        if (pp->s[pp->pos] == ']') {
            pp->pos++;
            return 0;
        }
        return pp_fail(pp, pp->pos, "',' or ']' was expected");
    }
}

typedef struct root_t {
    apr_array_header_t *msgs;
    int list_kind; /* of the last receivedMessages, V_NONE when absent */
    int cut;       /* the cut was reached */
} root_t;

static int root_member(pp_t *pp, const ref_t *key, int level, void *baton)
{
    root_t *rt = baton;
    ref_t v;
    int rc;

    if (!pp_key_is(pp, key, "receivedMessages", 16)) {
        return pp_value(pp, level, &v);
    }
    if (pp->pos < pp->len && pp->s[pp->pos] == '[') {
        rt->list_kind = V_ARRAY;
        rc = parse_list(pp, &rt->msgs);
        if (rc == PP_CUT) {
            rt->cut = 1;
            return -1; /* stops the walk; not a failure */
        }
        return rc;
    }
    if (pp_value(pp, level, &v)) {
        return -1;
    }
    rt->list_kind = v.kind;
    rt->msgs = NULL;
    return 0;
}

static apr_status_t parse(apr_pool_t *p, const char *body, apr_size_t len,
                          int cut, apr_array_header_t **msgs, datos_err_t *err)
{
    pp_t pp;
    root_t rt;
    ref_t v;
    int rc;

    memset(&pp, 0, sizeof(pp));
    memset(&rt, 0, sizeof(rt));
    pp.p = p;
    pp.s = (const unsigned char *)(body ? body : "");
    pp.len = body ? len : 0;
    pp.cut = cut;
    pp.spare_pairs = apr_array_make(p, 8, sizeof(pair_t));
    pp_ws(&pp);
    if (pp.pos < pp.len && pp.s[pp.pos] == '{') {
        rc = pp_object(&pp, 1, root_member, &rt);
        if (rc && rt.cut) {
            rc = 0;
        }
        else if (!rc && cut) {
            /* a cut answer must end inside its list */
            rc = pp_fail(&pp, pp.pos, "a cut that is not inside the list");
        }
    }
    else {
        rc = pp_value(&pp, 1, &v);
        if (!rc) {
            pp_ws(&pp);
            if (pp.pos == pp.len) {
                return datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                                     "pull answer is not a JSON object");
            }
        }
    }
    if (!rc && !rt.cut) {
        pp_ws(&pp);
        if (pp.pos != pp.len) {
            rc = pp_fail(&pp, pp.pos, "data after the JSON value");
        }
    }
    if (rc) {
        return datos_err_set(
            err, p, DATOS_EMALFORMED, 0, NULL,
            "pull answer is not JSON: %s at byte %" APR_SIZE_T_FMT,
            pp.fail ? pp.fail : "a syntax error", pp.fail_pos);
    }
    if (rt.list_kind != V_NONE && rt.list_kind != V_ARRAY) {
        return datos_err_set(err, p, DATOS_EMALFORMED, 0, NULL,
                             "pull answer: receivedMessages is not an array");
    }
    *msgs =
        rt.msgs ? rt.msgs : apr_array_make(p, 1, sizeof(datos_pubsub_msg_t));
    return APR_SUCCESS;
}

apr_status_t datos_pubsub_parse_pull(apr_pool_t *p, const char *body,
                                     apr_size_t len, apr_array_header_t **msgs,
                                     datos_err_t *err)
{
    return parse(p, body, len, 0, msgs, err);
}

apr_status_t datos_pubsub_parse_pull_cut(apr_pool_t *p, const char *body,
                                         apr_size_t len,
                                         apr_array_header_t **msgs,
                                         datos_err_t *err)
{
    return parse(p, body, len, 1, msgs, err);
}
