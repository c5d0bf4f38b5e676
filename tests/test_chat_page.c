/* test_chat_page.c - the chat page `vibee serve` answers at GET / (tools/vibee/chat_page.html)
 * through tests/server/chat_page.mjs: over HTTP its headers (type, CSP, caching), a body equal
 * to the repository file, 405 with Allow, the page open while the API needs --api-key; then the
 * page in headless Chromium (DevTools protocol on a pipe) with the sim model and with the shipped
 * model: real clicks and keys, the server's error shown, an answer that grows while it streams,
 * the conversation and key carried by each request, Stop, text never parsed as markup. The
 * browser tests are skipped (counted as skipped, not passed) when Chromium is not installed
 * (scripts/install_deps.sh installs the Debian package chromium). Needs node. In the sanitizer
 * pass the server is build-asan/vibee ($VB_ASAN_VIBEE). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* The server binary: the ASan build in the sanitizer pass, else $VIBEE. */
static const char *server_bin(void) {
    const char *asan = getenv("VB_ASAN_VIBEE");
    return asan && *asan && access(asan, X_OK) == 0 ? asan : vbt_vibee_bin();
}

/* Run chat_page.mjs MODE [MODEL]; returns its exit status (77: Chromium missing). */
static int run_page_script(const char *mode, const char *model, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 150 node tests/server/chat_page.mjs '%s' %s %s 2>&1", server_bin(), mode,
             model ? model : "");
    return vbt_run_cmd(cmd, out, cap);
}

static bool have_node(void) {
    char out[64];
    return vbt_run_cmd("command -v node >/dev/null && echo yes", out, sizeof out) == 0 && strstr(out, "yes");
}

static void page_test(const char *mode, const char *model) {
    CHECKF(have_node(), "node not found (scripts/install_deps.sh installs it)");
    static char out[65536];
    int rc = run_page_script(mode, model, out, sizeof out);
    if (rc == 77 && strncmp(out, "SKIP ", 5) == 0) {
        char why[256];
        snprintf(why, sizeof why, "%.*s", (int)strcspn(out + 5, "\n"), out + 5);
        vbt_skip(why);
        return;
    }
    const char *fail = strstr(out, "FAIL");
    CHECKF(rc == 0 && strstr(out, "all passed"), "chat_page.mjs %s %s exit %d: %.400s", mode, model ? model : "", rc,
           fail ? fail : out);
}

TEST(chat_page_http) { page_test("http", NULL); }

TEST(chat_page_browser_sim) { page_test("browser", "sim"); }

TEST(chat_page_browser_shipped_model) { page_test("browser", "shipped"); }
