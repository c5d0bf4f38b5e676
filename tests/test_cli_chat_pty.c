/* test_cli_chat_pty.c - `vibee chat` as a person uses it: on a terminal (a pseudo-terminal this
 * test drives: the prompt "> ", typed lines, Ctrl-D to end), with the shipped model, two turns,
 * the second forwarding only what the first left out of the KV. The answers are checked against
 * the same conversation piped in with --no-kv-reuse (the whole history re-prefilled each turn),
 * and the reuse counts against the first turn's prompt length. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

#define CHAT_ARGS "chat -n 24 -t 1 --chat-template chatml --seed 1"

/* "N prompt tokens (...; M more reused from the KV)" of a chat summary; -1 when absent */
static void summary_counts(const char *err, long *forwarded, long *reused) {
    *forwarded = *reused = -1;
    const char *t = strstr(err, "turns, ");
    if (t) *forwarded = strtol(t + 7, NULL, 10);
    const char *m = strstr(err, "more reused");
    if (!m) return;
    while (m > err && m[-1] == ' ') m--;
    while (m > err && m[-1] >= '0' && m[-1] <= '9') m--;
    *reused = strtol(m, NULL, 10);
}

/* Piped stdin: stdout into out, stderr into err. */
static int run_piped(const char *input, const char *extra, char *out, size_t out_cap, char *err, size_t err_cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "printf '%s' | '%s' " CHAT_ARGS " %s 2>/tmp/vb_pty_err.%d", input, vbt_vibee_bin(),
             extra, (int)getpid());
    int rc = vbt_run_cmd(cmd, out, out_cap);
    snprintf(cmd, sizeof cmd, "cat /tmp/vb_pty_err.%d; rm -f /tmp/vb_pty_err.%d", (int)getpid(), (int)getpid());
    vbt_run_cmd(cmd, err, err_cap);
    return rc;
}

/* Read from fd into buf (appending at *len) until `want` occurs `count` times after `from`, or
   `seconds` pass, or end of file. Returns whether it was seen. */
static int read_until(int fd, char *buf, size_t cap, size_t *len, size_t from, const char *want, int count,
                      double seconds) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int seen = 0;
        for (const char *p = buf + from; (p = strstr(p, want)) != NULL; p += strlen(want)) seen++;
        if (seen >= count) return 1;
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        double left = seconds - (double)(t.tv_sec - t0.tv_sec) - (double)(t.tv_nsec - t0.tv_nsec) * 1e-9;
        if (left <= 0 || *len + 1 >= cap) return 0;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(left * 1000) + 1) <= 0) continue;
        ssize_t n = read(fd, buf + *len, cap - 1 - *len);
        if (n <= 0) return 0; /* EIO once the child closed the terminal */
        *len += (size_t)n;
        buf[*len] = 0;
    }
}

/* The same two-turn conversation piped: with KV reuse the answers are those of re-prefilling the
   whole history, and the second turn reuses at least the whole first prompt. */
TEST(cli_chat_reuses_kv_same_answers) {
    static char one[8192], one_err[2048], fresh[16384], fresh_err[2048], reuse[16384], reuse_err[2048];
    CHECK_EQ_INT(run_piped("hello there\\n", "", one, sizeof one, one_err, sizeof one_err), 0);
    CHECK_EQ_INT(run_piped("hello there\\nand then?\\n", "--no-kv-reuse", fresh, sizeof fresh, fresh_err, sizeof fresh_err), 0);
    CHECK_EQ_INT(run_piped("hello there\\nand then?\\n", "", reuse, sizeof reuse, reuse_err, sizeof reuse_err), 0);
    long n1, r1, t_fresh, r_fresh, t_reuse, r_reuse;
    summary_counts(one_err, &n1, &r1);
    summary_counts(fresh_err, &t_fresh, &r_fresh);
    summary_counts(reuse_err, &t_reuse, &r_reuse);
    CHECKF(n1 > 0 && r1 == 0 && r_fresh == 0, "one turn: %s; without reuse: %s", one_err, fresh_err);
    CHECKF(strcmp(fresh, reuse) == 0, "answers differ:\n--no-kv-reuse: %s\nreuse: %s", fresh, reuse);
    CHECKF(t_reuse + r_reuse == t_fresh, "forwarded %ld + reused %ld != %ld prompt tokens without reuse",
           t_reuse, r_reuse, t_fresh);
    CHECKF(r_reuse >= n1, "reused %ld rows, fewer than the first prompt's %ld", r_reuse, n1);
    CHECKF(strncmp(reuse, one, strlen(one)) == 0, "first answers differ: %s / %s", one, reuse);
}

/* On a terminal: the banner, "> ", two typed turns, Ctrl-D; the summary counts the reuse. */
TEST(cli_chat_on_a_terminal_two_turns_reuse_kv) {
    static char one[8192], one_err[2048], piped[16384], piped_err[2048], tty[32768];
    CHECK_EQ_INT(run_piped("hello there\\n", "", one, sizeof one, one_err, sizeof one_err), 0);
    CHECK_EQ_INT(run_piped("hello there\\nand then?\\n", "", piped, sizeof piped, piped_err, sizeof piped_err), 0);
    long n1, r1, t_piped, r_piped;
    summary_counts(one_err, &n1, &r1);
    summary_counts(piped_err, &t_piped, &r_piped);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    CHECK(master >= 0);
    CHECK(grantpt(master) == 0 && unlockpt(master) == 0);
    const char *slave_name = ptsname(master);
    CHECK(slave_name);
    char err_path[64];
    snprintf(err_path, sizeof err_path, "/tmp/vb_pty_tty_err.%d", (int)getpid());
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) { /* the child: a session whose controlling terminal is the slave */
        setsid();
        int slave = open(slave_name, O_RDWR);
        int errfd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (slave < 0 || errfd < 0) _exit(126);
        dup2(slave, 0);
        dup2(slave, 1);
        dup2(errfd, 2);
        close(master);
        execl(vbt_vibee_bin(), "vibee", "chat", "-n", "24", "-t", "1", "--chat-template", "chatml", "--seed", "1",
              (char *)NULL);
        _exit(127);
    }
    size_t len = 0;
    tty[0] = 0;
    int ok = read_until(master, tty, sizeof tty, &len, 0, "> ", 1, 30);
    CHECKF(ok, "no prompt on the terminal: %s", tty);
    size_t mark = len;
    if (ok) ok = write(master, "hello there\n", 12) == 12 && read_until(master, tty, sizeof tty, &len, mark, "\n> ", 1, 60);
    CHECKF(ok, "first answer did not end with a new prompt: %s", tty);
    mark = len;
    if (ok) ok = write(master, "and then?\n", 10) == 10 && read_until(master, tty, sizeof tty, &len, mark, "\n> ", 1, 60);
    CHECKF(ok, "second answer did not end with a new prompt: %s", tty);
    if (ok) ok = write(master, "\x04", 1) == 1; /* Ctrl-D at the prompt: end of input */
    read_until(master, tty, sizeof tty, &len, len, "\x01never", 1, 30); /* drain until it closes */
    int status = 0;
    for (int i = 0; i < 300 && waitpid(pid, &status, WNOHANG) == 0; i++) usleep(100000);
    if (waitpid(pid, &status, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    close(master);
    static char err[4096];
    char cmd[160];
    snprintf(cmd, sizeof cmd, "cat %s; rm -f %s", err_path, err_path);
    vbt_run_cmd(cmd, err, sizeof err);
    CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "vibee chat on a terminal: status %d, %s", status, err);
    CHECKF(strstr(err, "Type a message") && strstr(err, "2 turns"), "terminal stderr: %s", err);
    long t_tty, r_tty;
    summary_counts(err, &t_tty, &r_tty);
    CHECKF(t_tty == t_piped && r_tty == r_piped && r_tty >= n1,
           "terminal forwarded %ld reused %ld; piped %ld / %ld; first prompt %ld", t_tty, r_tty, t_piped, r_piped, n1);
    /* the terminal shows the first answer as the piped run printed it (newlines as CR LF) */
    size_t w = 0;
    for (size_t i = 0; i < len; i++)
        if (tty[i] != '\r') tty[w++] = tty[i];
    tty[w] = 0;
    CHECKF(one[0] && strstr(tty, one), "the first answer is not on the terminal:\n%s\n---\n%s", one, tty);
}
