/* datos_ids.c - Google resource identifiers checked at configuration time. */
#include <string.h>
#include <apr_strings.h>

#include "datos_ids.h"

static int is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

const char *datos_project_id_check(apr_pool_t *p, const char *id)
{
    apr_size_t len = id ? strlen(id) : 0, i;

    if (len < 6 || len > 30)
        return apr_psprintf(p, "project id '%s' must be 6 to 30 characters",
                            id ? id : "");
    if (!(id[0] >= 'a' && id[0] <= 'z'))
        return apr_psprintf(p,
                            "project id '%s' must start with a lowercase "
                            "letter",
                            id);
    for (i = 1; i < len; i++) {
        if (!is_lower_alnum(id[i]) && id[i] != '-')
            return apr_psprintf(p,
                                "project id '%s' may hold only lowercase "
                                "letters, digits and '-'",
                                id);
    }
    if (id[len - 1] == '-')
        return apr_psprintf(p, "project id '%s' must not end with '-'", id);
    return NULL;
}

const char *datos_location_check(apr_pool_t *p, const char *location)
{
    apr_size_t len = location ? strlen(location) : 0, i;

    if (len < 2 || len > 64)
        return apr_psprintf(p, "location '%s' must be 2 to 64 characters",
                            location ? location : "");
    for (i = 0; i < len; i++) {
        char c = location[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '-'))
            return apr_psprintf(p,
                                "location '%s' may hold only letters, "
                                "digits and '-' (e.g. US, EU, "
                                "southamerica-east1)",
                                location);
    }
    return NULL;
}
