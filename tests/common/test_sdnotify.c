#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/base/sdnotify.h"

/* A datagram socket bound at path ("@x": abstract), as systemd's notify socket. */
static int listen_at(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    assert_int_equal(
        bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
        0);
    return fd;
}

static void expect_message(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_string_equal(buf, want);
}

static void test_sdnotify_sends_to_a_path_and_an_abstract_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/apm-sdnotify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = listen_at(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(apm_sd_notify_builtin(0, "READY=1\nSTATUS=up"), 1);
    expect_message(fd, "READY=1\nSTATUS=up");
    apm_sd_status("busy");
    expect_message(fd, "STATUS=busy");
    apm_sd_stopping("draining");
    expect_message(fd, "STOPPING=1\nSTATUS=draining");
    assert_int_equal(apm_sd_notify_builtin(1, "WATCHDOG=1"), 1); /* and forget the socket */
    expect_message(fd, "WATCHDOG=1");
    assert_null(getenv("NOTIFY_SOCKET"));
    assert_int_equal(apm_sd_notify_builtin(0, "WATCHDOG=1"), 0); /* not under systemd: nothing */
    close(fd);
    unlink(path);
    rmdir(dir);

    char abstract[64];
    snprintf(abstract, sizeof(abstract), "@apm-sdnotify-test-%d", (int)getpid());
    fd = listen_at(abstract);
    setenv("NOTIFY_SOCKET", abstract, 1);
    assert_int_equal(apm_sd_notify_builtin(0, "READY=1"), 1);
    expect_message(fd, "READY=1");
    close(fd);
    /* Nobody listens: an error, never a hang. */
    assert_true(apm_sd_notify_builtin(0, "READY=1") < 0);
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(apm_sd_notify_builtin(0, "READY=1"), -EINVAL);
    unsetenv("NOTIFY_SOCKET");
}

static void test_sdnotify_watchdog_environment(void **state)
{
    (void)state;
    uint64_t usec = 0;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    assert_int_equal(apm_sd_watchdog_builtin(0, &usec), 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    assert_int_equal(apm_sd_watchdog_builtin(0, &usec), 1);
    assert_int_equal(usec, 30000000);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    assert_int_equal(apm_sd_watchdog_builtin(0, &usec), 1);
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1); /* another process's watchdog */
    assert_int_equal(apm_sd_watchdog_builtin(0, &usec), 0);
    setenv("WATCHDOG_PID", "x", 1);
    assert_int_equal(apm_sd_watchdog_builtin(0, &usec), -EINVAL);
    unsetenv("WATCHDOG_PID");
    static const char *const bad[] = {"", "0", "-5", "12s", " 5", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        setenv("WATCHDOG_USEC", bad[i], 1);
        if (apm_sd_watchdog_builtin(0, &usec) != -EINVAL)
            fail_msg("WATCHDOG_USEC='%s' accepted", bad[i]);
    }
    setenv("WATCHDOG_USEC", "1000", 1);
    assert_int_equal(apm_sd_watchdog_builtin(1, &usec), 1);
    assert_null(getenv("WATCHDOG_USEC"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdnotify_sends_to_a_path_and_an_abstract_socket),
        cmocka_unit_test(test_sdnotify_watchdog_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
