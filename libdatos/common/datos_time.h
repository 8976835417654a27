/* datos_time.h - BigQuery TIMESTAMP values as int64 microseconds since the
 * Unix epoch, over BigQuery's whole range (0001-01-01 .. 9999-12-31). */
#ifndef DATOS_TIME_H
#define DATOS_TIME_H

#include <apr.h>
#include <apr_errno.h>

#define DATOS_TS_MIN_US (-62135596800000000LL) /* 0001-01-01T00:00:00Z */
#define DATOS_TS_MAX_US (253402300799999999LL) /* 9999-12-31T23:59:59.999999Z */

/* "YYYY-MM-DDTHH:MM:SS+00:00" or "...SS.ffffff+00:00" plus the NUL. */
#define DATOS_TS_BUFSIZE 34

/* Decodes a TIMESTAMP cell of a query answer:
 * - the int64 form of formatOptions.useInt64Timestamp ("1705240800000000",
 *   optional '-'), parsed exactly;
 * - the float-seconds forms as a fallback ("1.7052408E9",
 *   "1.705240800123456E9", "1705240800.000000", "-1.0E-6"), decoded from
 *   the decimal text exactly and rounded to the nearest microsecond (half
 *   away from zero).
 * Anything else (empty, spaces, trailing bytes, NaN/Infinity, out of range)
 * is DATOS_EMALFORMED. */
apr_status_t datos_ts_parse_cell(const char *text, apr_size_t len,
                                 apr_int64_t *us);

/* Renders "YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00": six fraction digits when
 * the fraction is not zero. Returns the length, or 0 when us is out of
 * range. */
apr_size_t datos_ts_format(apr_int64_t us, char buf[DATOS_TS_BUFSIZE]);

/* Parses RFC 3339 with a zone (Z or +-hh:mm) and at most 6 fraction digits,
 * as the record rules require. */
apr_status_t datos_ts_parse_rfc3339(const char *text, apr_size_t len,
                                    apr_int64_t *us);

/* Parses an HTTP-date (RFC 9110 5.6.7) in any of its three forms:
 * IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850
 * "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994",
 * exactly (no extra spaces or bytes), for years 1970..9999. The weekday
 * name is checked for spelling, not against the date. */
apr_status_t datos_http_date_parse(const char *text, apr_size_t len,
                                   apr_int64_t *epoch_sec);

#endif
