/* fuzz_loader_config.c - the loader's config file parser on arbitrary
 * bytes: it never crashes, and whatever it accepts can be finished or is
 * refused with a message. */
#include <string.h>

#include "fuzz_common.h"
#include "loader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_pool_t *p;
    loader_config_t c;
    const char *msg;

    fuzz_apr_init();
    if (apr_pool_create(&p, NULL) != APR_SUCCESS)
        return 0;
    loader_config_defaults(&c);
    msg = loader_config_parse(p, "fuzz.conf", (const char *)data, size, &c);
    if (!msg) {
        msg = loader_config_finish(p, &c, "fuzz-project");
        if (!msg) {
            FUZZ_CHECK(c.subscription
                       && !strncmp(c.subscription, "projects/", 9));
            FUZZ_CHECK(c.batch_max_rows >= 1);
            FUZZ_CHECK(c.lock_file != NULL);
        }
    }
    else {
        FUZZ_CHECK(strlen(msg) > 0);
    }
    apr_pool_destroy(p);
    return 0;
}
