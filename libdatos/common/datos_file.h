/* datos_file.h - files replaced whole, never seen half written. */
#ifndef DATOS_FILE_H
#define DATOS_FILE_H

#include <apr_pools.h>
#include <apr_file_info.h>

/* Writes len bytes to "<path>.<pid>.tmp" in the same directory, syncs it,
 * and renames it over path: a reader, or a crash, finds the old file or
 * the new one, never a mix. On failure the temporary file is removed and
 * path is as it was. perms as APR_FPROT_* (the umask applies). The
 * directory entry is not synced: callers that need the rename itself to
 * survive a crash sync the directory. */
apr_status_t datos_file_replace(apr_pool_t *p, const char *path,
                                const void *data, apr_size_t len,
                                apr_fileperms_t perms);

#endif
