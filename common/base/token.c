#include "common/base/token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base/error.h"

static int create_token(const char *path, char *err, size_t errlen)
{
    uint8_t raw[32];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        snprintf(err, errlen, "%s: cannot get random bytes: %s", path, strerror(errno));
        return -EIO;
    }
    char hex[2 * sizeof(raw) + 2];
    for (size_t i = 0; i < sizeof(raw); i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    hex[2 * sizeof(raw)] = '\n';
    hex[2 * sizeof(raw) + 1] = '\0';
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            return 0; /* someone else created it first: read theirs */
        snprintf(err, errlen, "%s: cannot create token file: %s", path, strerror(e));
        return -e;
    }
    ssize_t n = write(fd, hex, strlen(hex));
    int e = errno;
    if (fsync(fd) != 0 && n >= 0)
        n = -1;
    close(fd);
    if (n != (ssize_t)strlen(hex)) {
        snprintf(err, errlen, "%s: cannot write token file: %s", path, strerror(e));
        unlink(path);
        return -EIO;
    }
    return 0;
}

int apm_token_load(const char *path, bool create, uint8_t *buf, size_t cap, size_t *len, char *err,
                   size_t errlen)
{
    if (create && access(path, F_OK) != 0 && errno == ENOENT) {
        int rc = create_token(path, err, errlen);
        if (rc != 0)
            return rc;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot read token file: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "%s: cannot read token file: %s", path, strerror(e));
        return -e;
    }
    if ((st.st_mode & 077) != 0) {
        close(fd);
        snprintf(err, errlen,
                 "%s: token file has mode %04o: group or others may read it; "
                 "make it private (chmod 600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
        return APM_E_CONFIG;
    }
    char tmp[1024];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "%s: cannot read token file: %s", path, strerror(errno));
        return -EIO;
    }
    while (n > 0 &&
           (tmp[n - 1] == '\n' || tmp[n - 1] == '\r' || tmp[n - 1] == ' ' || tmp[n - 1] == '\t'))
        n--;
    if (n == 0) {
        snprintf(err, errlen, "%s: token file is empty", path);
        return APM_E_CONFIG;
    }
    if (n < APM_TOKEN_MIN) {
        snprintf(err, errlen, "%s: token is %zd bytes, shorter than the %d required", path, n,
                 APM_TOKEN_MIN);
        return APM_E_CONFIG;
    }
    if ((size_t)n > cap) {
        snprintf(err, errlen, "%s: token longer than %zu bytes", path, cap);
        return APM_E_CONFIG;
    }
    memcpy(buf, tmp, (size_t)n);
    *len = (size_t)n;
    return 0;
}

bool apm_token_equal(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen > blen ? alen : blen;
    unsigned diff = (unsigned)(alen ^ blen);
    for (size_t i = 0; i < n; i++) {
        uint8_t x = i < alen ? a[i] : 0;
        uint8_t y = i < blen ? b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0 && alen > 0;
}
