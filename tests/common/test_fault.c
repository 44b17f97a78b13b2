/*
 * Crash points (common/base/fault.c): inert without APM_FAULT or under another
 * name, SIGKILL at the named pass otherwise. Each case runs in a child
 * process, since the point kills its caller.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/base/fault.h"

/*
 * Passes point `name` `passes` times in a child with APM_FAULT=env (NULL:
 * unset). Returns how many passes it survived (passes when none killed it),
 * and whether SIGKILL ended it.
 */
static int run_child(const char *env, const char *name, int passes, bool *killed)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (env != NULL)
            setenv("APM_FAULT", env, 1);
        else
            unsetenv("APM_FAULT");
        for (int i = 0; i < passes; i++) {
            apm_fault_point(name);
            if (write(fds[1], "x", 1) != 1)
                _exit(3);
        }
        _exit(0);
    }
    close(fds[1]);
    int survived = 0;
    char c;
    while (read(fds[0], &c, 1) == 1)
        survived++;
    close(fds[0]);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    if (!*killed)
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return survived;
}

static void test_fault_inert_unless_named(void **state)
{
    (void)state;
    bool killed = true;
    assert_int_equal(run_child(NULL, "rw-acked", 5, &killed), 5);
    assert_false(killed);
    assert_int_equal(run_child("", "rw-acked", 5, &killed), 5);
    assert_false(killed);
    /* A prefix or a longer name is another point. */
    assert_int_equal(run_child("rw-ack", "rw-acked", 5, &killed), 5);
    assert_false(killed);
    assert_int_equal(run_child("rw-acked-x", "rw-acked", 5, &killed), 5);
    assert_false(killed);
}

static void test_fault_kills_at_the_named_pass(void **state)
{
    (void)state;
    bool killed = false;
    assert_int_equal(run_child("rw-acked", "rw-acked", 5, &killed), 0);
    assert_true(killed);
    assert_int_equal(run_child("rw-acked:3", "rw-acked", 5, &killed), 2);
    assert_true(killed);
    assert_int_equal(run_child("rw-acked:9", "rw-acked", 5, &killed), 5);
    assert_false(killed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_inert_unless_named),
        cmocka_unit_test(test_fault_kills_at_the_named_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
