#include "cli/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *apm_cli_json_str(const json_t *o, const char *key, const char *absent)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : absent;
}

double apm_cli_json_num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

bool apm_cli_json_true(const json_t *o, const char *key)
{
    return json_is_true(json_object_get(o, key));
}

void apm_cli_json_print(const char *text)
{
    if (text == NULL)
        return;
    fputs(text, stdout);
    size_t n = strlen(text);
    if (n > 0 && text[n - 1] != '\n')
        fputc('\n', stdout);
}

int apm_cli_json_get(struct apm_cli_client *c, const char *path, bool print, json_t **doc)
{
    char *text = NULL;
    int rc = apm_cli_client_get(c, path, print ? &text : NULL, doc);
    if (rc == 0 && print)
        apm_cli_json_print(text);
    free(text);
    return rc;
}
