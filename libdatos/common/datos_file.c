/* datos_file.c - files replaced whole. */
#include <unistd.h>

#include <apr_strings.h>
#include <apr_file_io.h>

#include "datos_file.h"

apr_status_t datos_file_replace(apr_pool_t *p, const char *path,
                                const void *data, apr_size_t len,
                                apr_fileperms_t perms)
{
    const char *tmp;
    apr_file_t *f = NULL;
    apr_status_t rv;

    /* The pid keeps two writers (httpd's processes, overlapping runs)
     * off each other's temporary file. */
    tmp = apr_psprintf(p, "%s.%ld.tmp", path, (long)getpid());
    rv = apr_file_open(&f, tmp,
                       APR_FOPEN_WRITE | APR_FOPEN_CREATE | APR_FOPEN_TRUNCATE,
                       perms, p);
    if (rv == APR_SUCCESS && len)
        rv = apr_file_write_full(f, data, len, NULL);
    if (rv == APR_SUCCESS)
        rv = apr_file_sync(f);
    if (f) {
        apr_status_t crv = apr_file_close(f);
        if (rv == APR_SUCCESS)
            rv = crv;
    }
    if (rv == APR_SUCCESS)
        rv = apr_file_rename(tmp, path, p);
    if (rv != APR_SUCCESS && f)
        apr_file_remove(tmp, p);
    return rv;
}
