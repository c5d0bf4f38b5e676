/* cli.c - option parsing helpers, model/context opening (embedded default model when no -m is
 * given), prompt files, seeds, thread limits and JSON output (jansson, strict UTF-8) for the
 * vibee command-line tool. */
#include "cli.h"

#include <errno.h>
#include <time.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_model_opts_init(cli_model_opts *o) {
    memset(o, 0, sizeof *o);
    vb_context_params cp = vb_context_default_params();
    o->kv_type = cp.kv_type;
    o->block_size = cp.block_size;
    o->n_seq_max = 4;
    o->n_batch_max = cp.n_batch_max;
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "vibee: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

bool cli_parse_int(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_float(const char *s, float *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || v != v) return false;
    *out = v;
    return true;
}

int cli_parse_int_list(const char *s, int **out) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    int *v = malloc((size_t)n * sizeof *v);
    if (!v) return -1;
    char *copy = strdup(s), *save = NULL;
    int k = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long x;
        if (!cli_parse_int(tok, -2147483647L, 2147483647L, &x)) {
            free(copy);
            free(v);
            return -1;
        }
        v[k++] = (int)x;
    }
    free(copy);
    if (k == 0) {
        free(v);
        return -1;
    }
    *out = v;
    return k;
}

#define INT_OPT(flag, field, lo, hi)                                                          \
    if (strcmp(a, flag) == 0) {                                                               \
        const char *v = cli_value(argc, argv, i);                                             \
        long x;                                                                               \
        if (!v || !cli_parse_int(v, lo, hi, &x)) {                                            \
            fprintf(stderr, "vibee: %s expects an integer in [%ld, %ld]\n", flag, (long)(lo), \
                    (long)(hi));                                                              \
            return -1;                                                                        \
        }                                                                                     \
        o->field = (int)x;                                                                    \
        return 1;                                                                             \
    }

int cli_parse_model_opt(cli_model_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
        if (!(o->model = cli_value(argc, argv, i))) return -1;
        return 1;
    }
    if (strcmp(a, "-b") == 0 || strcmp(a, "--backend") == 0) {
        if (!(o->backend = cli_value(argc, argv, i))) return -1;
        return 1;
    }
    if (strcmp(a, "--vocab") == 0) {
        if (!(o->vocab = cli_value(argc, argv, i))) return -1;
        return 1;
    }
    if (strcmp(a, "--backend-options") == 0) {
        if (!(o->backend_options = cli_value(argc, argv, i))) return -1;
        return 1;
    }
    if (strcmp(a, "--ep") == 0) {
        if (!(o->ep = cli_value(argc, argv, i))) return -1;
        return 1;
    }
    if (strcmp(a, "--cost-cache") == 0) {
        if (!(o->cost_cache = cli_value(argc, argv, i))) return -1;
        return 1;
    }
    if (strcmp(a, "--kv-type") == 0) {
        const char *v = cli_value(argc, argv, i);
        if (v && strcmp(v, "f32") == 0) o->kv_type = VB_KV_F32;
        else if (v && strcmp(v, "f16") == 0) o->kv_type = VB_KV_F16;
        else if (v && strcmp(v, "q8_0") == 0) o->kv_type = VB_KV_Q8_0;
        else {
            fprintf(stderr, "vibee: --kv-type expects f32, f16 or q8_0\n");
            return -1;
        }
        return 1;
    }
    INT_OPT("-t", threads, 0, 1 << 20)
    INT_OPT("--threads", threads, 0, 1 << 20)
    INT_OPT("-c", n_ctx, 0, 1 << 24)
    INT_OPT("--ctx-size", n_ctx, 0, 1 << 24)
    INT_OPT("--block-size", block_size, 1, 4096)
    INT_OPT("--batch-size", n_batch_max, 1, 65536)
    return 0;
}

/* The cost cache file of the decoders' measured K-row forward costs: --cost-cache, else
 * $VIBEE_COST_CACHE, else $XDG_CACHE_HOME/vibee/cost-tables.tsv or
 * ~/.cache/vibee/cost-tables.tsv (directories created); "off" or "" disables it. Writes the
 * path into buf and returns it, or NULL for none. */
static const char *cost_cache_path(const char *opt, char *buf, size_t len) {
    const char *v = opt ? opt : getenv("VIBEE_COST_CACHE");
    if (v) {
        if (!*v || strcmp(v, "off") == 0) return NULL;
        snprintf(buf, len, "%s", v);
        return buf;
    }
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[768];
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache", home);
    else return NULL;
    (void)mkdir(dir, 0755);
    size_t n = strlen(dir);
    snprintf(dir + n, sizeof dir - n, "/vibee");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return NULL;
    snprintf(buf, len, "%s/cost-tables.tsv", dir);
    return buf;
}

int cli_open(const cli_model_opts *o, vb_model **model, vb_context **ctx) {
    char err[1024];
    vb_model_params mp = vb_model_default_params();
    mp.vocab_path = o->vocab;
    int st;
    if (o->model) {
        st = vb_model_load(o->model, &mp, model, err, sizeof err);
    } else {
        size_t size;
        const void *data = vb_embedded_model(&size);
        if (!data) {
            fprintf(stderr, "vibee: no -m MODEL given and this build embeds no default model\n");
            return 1;
        }
        st = vb_model_load_from_memory(data, size, "wedlm-py-6m-f16 (embedded)", &mp, model, err,
                                       sizeof err);
    }
    if (st != VB_OK) {
        fprintf(stderr, "vibee: cannot load model: %s\n", err);
        return 1;
    }
    vb_context_params cp = vb_context_default_params();
    cp.backend = o->backend; /* NULL: chosen by the model's format */
    char opts[1024];
    if (o->ep) { /* --ep X is backend option ep=X */
        snprintf(opts, sizeof opts, "%s%sep=%s", o->backend_options ? o->backend_options : "",
                 o->backend_options ? "," : "", o->ep);
        cp.backend_options = opts;
    } else {
        cp.backend_options = o->backend_options;
    }
    cp.n_threads = cli_clamp_threads(o->threads);
    cp.n_ctx = o->n_ctx;
    cp.kv_type = o->kv_type;
    cp.block_size = o->block_size;
    cp.n_seq_max = o->n_seq_max;
    cp.n_batch_max = o->n_batch_max;
    char cost_path[1024];
    cp.cost_cache_path = cost_cache_path(o->cost_cache, cost_path, sizeof cost_path);
    st = vb_context_init(*model, &cp, ctx, err, sizeof err);
    if (st != VB_OK) {
        fprintf(stderr, "vibee: cannot start backend %s: %s\n", cp.backend ? cp.backend : "(default)", err);
        vb_model_free(*model);
        *model = NULL;
        return 1;
    }
    return 0;
}

#ifdef VB_HAVE_JANSSON
json_t *cli_json_text(const char *s, size_t len) {
    size_t need = vb_utf8_sanitize(s, len, NULL, 0);
    char *clean = malloc(need + 1);
    if (!clean) return NULL;
    vb_utf8_sanitize(s, len, clean, need + 1);
    json_t *j = json_stringn(clean, need);
    free(clean);
    return j;
}

int cli_json_print(FILE *f, json_t *j) {
    if (!j) {
        fprintf(stderr, "vibee: out of memory writing JSON\n");
        return -1;
    }
    int rc = json_dumpf(j, f, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    return rc;
}

void cli_json_string(FILE *f, const char *s, size_t len) { cli_json_print(f, cli_json_text(s, len)); }
#else
void cli_json_string(FILE *f, const char *s, size_t len) { /* without jansson: the same escaping by hand */
    size_t need = vb_utf8_sanitize(s, len, NULL, 0);
    char *clean = malloc(need + 1);
    if (!clean) return;
    vb_utf8_sanitize(s, len, clean, need + 1);
    fputc('"', f);
    for (size_t i = 0; i < need; i++) {
        unsigned char c = (unsigned char)clean[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    free(clean);
}
#endif

char *cli_read_prompt_file(const char *path, size_t *len) {
    struct stat sb;
    bool std_in = strcmp(path, "-") == 0;
    if (!std_in && stat(path, &sb) != 0) {
        fprintf(stderr, "vibee: cannot read prompt file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (!std_in && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "vibee: prompt file %s is a directory\n", path);
        return NULL;
    }
    FILE *f = std_in ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vibee: cannot read prompt file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *t = realloc(buf, cap *= 2);
            if (!t) {
                free(buf);
                buf = NULL;
            } else {
                buf = t;
            }
        }
    }
    bool bad = ferror(f);
    if (!std_in) fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "vibee: cannot read prompt file %s%s\n", path, buf ? ": read error" : ": out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

uint64_t cli_random_seed(void) {
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&v, sizeof v, 1, f) != 1) v = (uint64_t)time(NULL) * 6364136223846793005ull ^ (uint64_t)getpid();
    if (f) fclose(f);
    return v & 0x7fffffff; /* within --seed's range, so that a run can be repeated */
}

int cli_clamp_threads(int threads) {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1) ncpu = 1;
    long max = 4 * ncpu;
    if (threads > max) {
        fprintf(stderr, "vibee: warning: -t %d is more than 4x the %ld CPUs of this machine; using %ld threads\n",
                threads, ncpu, max);
        return (int)max;
    }
    return threads;
}

int cli_parse_sampler_opt(vb_sampler_params *sp, int argc, char **argv, int *i) {
    static const struct { const char *flag; int is_int; long lo, hi; } opts[] = {
        {"--seed", 1, 0, 0x7fffffffL},     {"--top-k", 1, 0, 1 << 24}, {"--repeat-last-n", 1, 0, 1 << 24},
        {"--temp", 0, 0, 0},                {"--top-p", 0, 0, 0},       {"--min-p", 0, 0, 0},
        {"--repeat-penalty", 0, 0, 0},
    };
    const char *a = argv[*i];
    if (!strcmp(a, "-s")) a = "--seed"; /* llama.cpp's short spelling */
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        if (strcmp(a, opts[k].flag) != 0) continue;
        const char *v = cli_value(argc, argv, i);
        long x = 0;
        float f = 0;
        if (!v || (opts[k].is_int ? !cli_parse_int(v, opts[k].lo, opts[k].hi, &x) : !cli_parse_float(v, &f))) {
            if (opts[k].is_int)
                fprintf(stderr, "vibee: %s expects an integer in [%ld, %ld]\n", a, opts[k].lo, opts[k].hi);
            else
                fprintf(stderr, "vibee: %s expects a number\n", a);
            return -1;
        }
        switch (k) {
        case 0: sp->seed = (uint64_t)x; return 2;
        case 1: sp->top_k = (int32_t)x; break;
        case 2: sp->repeat_last_n = (int32_t)x; break;
        case 3: sp->temp = f; break;
        case 4: sp->top_p = f; break;
        case 5: sp->min_p = f; break;
        default: sp->repeat_penalty = f; break;
        }
        return 1;
    }
    return 0;
}

void cli_default_decoder(vb_generate_params *gp, const vb_model_info *info) {
    if (gp->decoder >= 0) return;
    const bool wedlm_file = info && !strcmp(info->arch, "wedlm") && info->mask >= 0;
    gp->decoder = wedlm_file ? VB_DECODER_WEDLM : VB_DECODER_AR;
}

int cli_decoder_from_name(const char *name) {
    static const char *names[] = {[VB_DECODER_AR] = "ar", [VB_DECODER_WEDLM] = "wedlm",
                                  [VB_DECODER_VERIFY] = "verify"};
    for (int d = 0; d < (int)(sizeof names / sizeof names[0]); d++)
        if (name && !strcmp(name, names[d])) return d;
    return -1;
}

const char *cli_decoder_name(int decoder) {
    switch (decoder) {
    case VB_DECODER_WEDLM: return "wedlm";
    case VB_DECODER_VERIFY: return "verify";
    default: return "ar";
    }
}

int cli_parse_decoder_opt(vb_generate_params *gp, int argc, char **argv, int *i) {
    static const struct { const char *flag; int kind; long lo, hi; } opts[] = {
        {"--decoder", 2, 0, 0},     {"--window", 1, 0, 256},  {"--draft-max", 1, 0, 256},
        {"--mask-token", 1, 0, 1 << 24}, {"--tau", 0, 0, 0}, {"--lambda", 0, 0, 0},
        {"--wedlm-official", 3, 0, 0}, {"--wedlm-exact", 3, 0, 0},
    };
    const char *a = argv[*i];
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        if (strcmp(a, opts[k].flag) != 0) continue;
        const char *v = opts[k].kind == 3 ? "" : cli_value(argc, argv, i);
        long x = 0;
        float f = 0;
        if (!v || (opts[k].kind == 1 && !cli_parse_int(v, opts[k].lo, opts[k].hi, &x)) ||
            (opts[k].kind == 0 && !cli_parse_float(v, &f)) ||
            (opts[k].kind == 2 && (x = cli_decoder_from_name(v)) < 0)) {
            if (opts[k].kind == 1)
                fprintf(stderr, "vibee: %s expects an integer in [%ld, %ld]\n", a, opts[k].lo, opts[k].hi);
            else if (opts[k].kind == 2)
                fprintf(stderr, "vibee: --decoder expects ar, wedlm or verify\n");
            else
                fprintf(stderr, "vibee: %s expects a number\n", a);
            return -1;
        }
        switch (k) {
        case 0: gp->decoder = (int32_t)x; break;
        case 1: gp->window = (int32_t)x; break;
        case 2: gp->draft_max = (int32_t)x; break;
        case 3: gp->mask_token = (vb_token)x; break;
        case 4: gp->tau = f; break;
        case 5: gp->lambda = f; break;
        case 6: gp->wedlm_d0_ar = gp->wedlm_leftmost_fallback = false; break;
        default: gp->wedlm_exact = true; break;
        }
        return 1;
    }
    return 0;
}
