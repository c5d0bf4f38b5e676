/* http_engine.c - the server's engine thread (see http_engine.h): takes jobs from the bounded
 * queue, tokenizes and submits them to the scheduler, steps it, turns each job's new tokens into
 * text (stop tokens, stop strings, deadlines, cancellation), runs embedding jobs between steps
 * (vb_embed on the sequence the scheduler leaves free), and publishes a metrics snapshot. */
#include "http_config.h"
#ifdef VB_HAVE_SERVE

#include "http_engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

srv_job *srv_job_new(void) {
    srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->params = vb_request_default_params();
    j->decoder = -1;
    j->n_logprobs = -1;
    j->refs = 1;
    return j;
}

static void job_free(srv_job *j) {
    free(j->prompt);
    free(j->prompt_user);
    free(j->prompt_tokens);
    free(j->logit_bias);
    vb_grammar_free(j->grammar);
    for (int i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->text);
    free(j->lp);
    free(j);
}

void srv_job_unref(srv_engine *e, srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&e->mu);
    bool last = --j->refs == 0;
    pthread_mutex_unlock(&e->mu);
    if (last) job_free(j);
}

/* Engine-side unref with mu already held. */
static void job_unref_locked(srv_job *j) {
    if (--j->refs == 0) job_free(j);
}

static void job_fail(srv_job *j, int status, const char *msg) {
    j->http_status = status;
    snprintf(j->error, sizeof j->error, "%s", msg);
    j->state = SRV_JOB_DONE;
    j->text_stable = j->text_len;
}

static void text_append(srv_job *j, const char *s, size_t n) {
    if (j->text_len + n + 1 > j->text_cap) {
        size_t cap = (j->text_cap ? j->text_cap * 2 : 256) + n;
        char *t = realloc(j->text, cap);
        if (!t) return;
        j->text = t;
        j->text_cap = cap;
    }
    memcpy(j->text + j->text_len, s, n);
    j->text_len += n;
    j->text[j->text_len] = 0;
}

/* Bytes of text the detokenizer writes before token t's own text: the U+FFFD of an incomplete
   character held from earlier tokens that t's first byte does not continue (3), else 0. */
static size_t held_replaced(const vb_model *model, const vb_detok *d, vb_token t) {
    char first, o[16];
    int n = d->utf8.n_pending;
    if (n == 0 || vb_token_to_bytes(model, t, &first, 1) < 1) return 0;
    vb_utf8_stream probe = d->utf8; /* as vb_detok_push would go on with the first byte */
    int w = vb_utf8_stream_push(&probe, &first, 1, false, o, sizeof o);
    bool completes = w == n + 1 && !memcmp(o, d->utf8.pending, (size_t)n) && o[n] == first;
    return w > 0 && !completes ? 3 : 0;
}

/* Record the log-probabilities of the token whose text starts `lead` bytes after text_len (a
   replaced held character before it, see held_replaced). */
static void lp_append(srv_job *j, const vb_logprobs *v, size_t lead) {
    if (j->n_lp == j->lp_cap) {
        int32_t cap = j->lp_cap ? 2 * j->lp_cap : 64;
        srv_token_lp *t = realloc(j->lp, (size_t)cap * sizeof *t);
        if (!t) return;
        j->lp = t;
        j->lp_cap = cap;
    }
    for (; j->lp_bytes < j->text_len; j->lp_bytes++) /* UTF-8: every byte but continuations */
        j->lp_chars += ((unsigned char)j->text[j->lp_bytes] & 0xc0) != 0x80;
    j->lp[j->n_lp++] = (srv_token_lp){*v, j->text_len + lead, j->lp_chars + (lead ? 1 : 0)};
}

/* Bytes of text that may be sent now: all when done, else all but a tail that could still
   become a stop string, never splitting a UTF-8 character. */
static void update_stable(srv_job *j) {
    if (j->state == SRV_JOB_DONE || j->stop_max <= 1) {
        j->text_stable = j->text_len;
        return;
    }
    size_t hold = j->stop_max - 1;
    size_t s = j->text_len > hold ? j->text_len - hold : 0;
    while (s > 0 && ((unsigned char)j->text[s] & 0xc0) == 0x80) s--;
    if (s > j->text_stable) j->text_stable = s;
}

static void job_finish(srv_engine *e, srv_job *j, const char *finish) {
    vb_generate_stats gs;
    if (vb_sched_request_stats(e->sched, j->id, &gs) == VB_OK) j->n_forward = gs.n_forward_decode;
    j->finish = finish;
    j->state = SRV_JOB_DONE;
    update_stable(j);
    vb_sched_release(e->sched, j->id);
    if (j->cancel || j->timed_out) e->metrics.jobs_cancelled++;
    else e->metrics.jobs_completed++;
}

/* Tokenize and submit one job (mu not held). */
static void admit(srv_engine *e, srv_job *j) {
    char msg[256];
    /* special tokens only where the chat template put them (prompt_user marks message text); a
       completion prompt is user text too, unless the request asked for parse_special */
    vb_chat_prompt view = {j->prompt, j->prompt_user, j->prompt_len};
    int32_t n = j->prompt_tokens ? j->n_prompt_in
                : j->prompt_user ? vb_tokenize_chat(e->model, &view, NULL, 0)
                                 : vb_tokenize(e->model, j->prompt, j->prompt_len, true, j->parse_special, NULL, 0);
    vb_token *toks = n >= 0 ? malloc(((size_t)n + 1) * sizeof *toks) : NULL;
    if (toks && j->prompt_tokens) memcpy(toks, j->prompt_tokens, (size_t)n * sizeof *toks); /* given as token ids */
    else if (toks && j->prompt_user) n = vb_tokenize_chat(e->model, &view, toks, n);
    else if (toks) n = vb_tokenize(e->model, j->prompt, j->prompt_len, true, j->parse_special, toks, n);
    int status = 0;
    if (n < 0 || !toks) {
        snprintf(msg, sizeof msg, "cannot tokenize the prompt: %s", n < 0 ? vb_status_str(n) : "out of memory");
        status = n < 0 ? 400 : 500;
    } else {
        if (n == 0) {
            vb_token start = e->info->bos >= 0 ? e->info->bos : e->info->eos;
            if (start >= 0) toks[n++] = start;
        }
        j->params.decoding = e->decoding;
        if (j->decoder >= 0) j->params.decoding.decoder = j->decoder;
        j->params.decoding.grammar = j->grammar; /* the request copies it */
        j->params.decoding.n_logprobs = j->n_logprobs;
        j->decoder_used = j->params.decoding.decoder;
        int st = n > 0 ? vb_sched_submit(e->sched, toks, n, &j->params, &j->id) : VB_ERR_ARG;
        if (st != VB_OK) {
            snprintf(msg, sizeof msg, "%s", n > 0 ? vb_sched_error(e->sched) : "empty prompt");
            status = st == VB_ERR_STATE ? 503 : st == VB_ERR_ARG || st == VB_ERR_UNSUPPORTED ? 400 : 500;
        }
    }
    free(toks);
    pthread_mutex_lock(&e->mu);
    if (status) {
        job_fail(j, status, msg);
        job_unref_locked(j);
    } else {
        j->n_prompt_tokens = n;
        j->state = SRV_JOB_RUNNING;
        for (int i = 0; i < j->n_stop; i++) {
            size_t l = strlen(j->stop[i]);
            if (l > j->stop_max) j->stop_max = l;
        }
        e->active[e->n_active++] = j;
        e->metrics.jobs_submitted++;
    }
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

/* Move new tokens of job j into its text; finish it when done (mu held). Returns true when the
   job left the active list. */
static bool collect(srv_engine *e, srv_job *j) {
    double now = vb_time_now();
    if (j->cancel || now > j->deadline) {
        if (!j->cancel) j->timed_out = true;
        vb_sched_cancel(e->sched, j->id);
        job_finish(e, j, "length");
        return true;
    }
    vb_token toks[64];
    int finish = 0;
    int32_t n;
    while ((n = vb_sched_poll(e->sched, j->id, toks, 64, &finish)) > 0) {
        int32_t n_all = 0; /* the log-probabilities of every token so far (NULL: not asked) */
        const vb_logprobs *lps = j->n_logprobs >= 0 ? vb_sched_logprobs(e->sched, j->id, &n_all) : NULL;
        for (int32_t k = 0; k < n; k++) {
            vb_token t = toks[k];
            int32_t index = j->n_generated++;
            if (j->chat && ((e->im_end >= 0 && t == e->im_end) || vb_token_is_eog(e->model, t))) {
                vb_sched_cancel(e->sched, j->id);
                job_finish(e, j, "stop");
                return true;
            }
            if (t == e->info->eos && j->params.stop_at_eos) continue; /* EOS has no text */
            if (lps && index < n_all) lp_append(j, &lps[index], held_replaced(e->model, &j->detok, t));
            char buf[256];
            int w = vb_detok_push(e->model, &j->detok, t, buf, sizeof buf);
            if (w <= 0) continue;
            size_t old = j->text_len;
            text_append(j, buf, (size_t)w);
            for (int s = 0; s < j->n_stop; s++) {
                size_t from = old >= j->stop_max ? old - j->stop_max + 1 : 0;
                char *hit = strstr(j->text + from, j->stop[s]);
                if (hit) {
                    j->text_len = (size_t)(hit - j->text);
                    j->text[j->text_len] = 0;
                    while (j->n_lp > 0 && j->lp[j->n_lp - 1].offset >= j->text_len) j->n_lp--;
                    vb_sched_cancel(e->sched, j->id);
                    job_finish(e, j, "stop");
                    return true;
                }
            }
        }
    }
    if (finish != VB_FINISH_NONE) {
        char tail[16]; /* an incomplete UTF-8 sequence held back: U+FFFD */
        int w = vb_detok_flush(&j->detok, tail, sizeof tail);
        if (w > 0) text_append(j, tail, (size_t)w);
        if (finish == VB_FINISH_ERROR) {
            job_fail(j, 500, vb_sched_error(e->sched));
            vb_sched_release(e->sched, j->id);
            e->metrics.jobs_cancelled++;
        } else {
            /* a request the KV pool could not hold says so ("kv_full"), never "length" */
            job_finish(e, j, finish == VB_FINISH_EOS ? "stop" : finish == VB_FINISH_KV ? "kv_full" : "length");
        }
        return true;
    }
    update_stable(j);
    return false;
}

static void collect_all(srv_engine *e) {
    for (int32_t i = 0; i < e->n_active;) {
        srv_job *j = e->active[i];
        if (collect(e, j)) {
            e->active[i] = e->active[--e->n_active];
            job_unref_locked(j);
        } else {
            i++;
        }
    }
    e->metrics.sched = vb_sched_get_stats(e->sched);
    e->metrics.queue_len = e->queue_len;
}

srv_embed_job *srv_embed_job_new(int32_t n_inputs, int32_t n_embd) {
    srv_embed_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->n_inputs = n_inputs;
    j->tokens = calloc((size_t)n_inputs, sizeof *j->tokens);
    j->n_tokens = calloc((size_t)n_inputs, sizeof *j->n_tokens);
    j->out = malloc((size_t)n_inputs * (size_t)n_embd * sizeof *j->out);
    if (!j->tokens || !j->n_tokens || !j->out) {
        srv_embed_job_free(j);
        return NULL;
    }
    return j;
}

void srv_embed_job_free(srv_embed_job *j) {
    if (!j) return;
    for (int32_t i = 0; j->tokens && i < j->n_inputs; i++) free(j->tokens[i]);
    free(j->tokens);
    free(j->n_tokens);
    free(j->out);
    free(j);
}

/* Embedding tokens run between two scheduler steps (at least one input): a long list of inputs
   does not stall the requests being decoded. */
#define EMBED_TOKENS_PER_PASS 512

/* Run queued embedding inputs, up to EMBED_TOKENS_PER_PASS tokens (mu not held); jobs with inputs
   left stay queued, ahead of newer ones. An input the KV pool cannot take now, even after the
   cached prefixes gave their blocks back, waits while requests run and may free blocks; with
   none running it fails. */
static void run_embeds(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    srv_embed_job *list = e->embed_head, *wait_head = NULL, *wait_last = NULL;
    e->embed_head = e->embed_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    const int32_t E = e->info->n_embd;
    int32_t budget = EMBED_TOKENS_PER_PASS;
    while (list) {
        srv_embed_job *j = list;
        list = j->next;
        j->next = NULL;
        vb_embed_params ep = vb_embed_default_params();
        ep.pooling = j->pooling;
        ep.seq = e->embed_seq;
        int st = VB_OK, n_run = 0;
        for (; j->n_done < j->n_inputs && budget > 0; j->n_done++, n_run++) {
            budget -= j->n_tokens[j->n_done];
            float *v = j->out + (size_t)j->n_done * (size_t)E;
            st = vb_embed(e->ctx, j->tokens[j->n_done], j->n_tokens[j->n_done], &ep, v, E);
            if (st == VB_KV_FULL) {
                vb_sched_clear_cache(e->sched);
                st = vb_embed(e->ctx, j->tokens[j->n_done], j->n_tokens[j->n_done], &ep, v, E);
            }
            if (st != VB_OK) break;
        }
        const bool wait = st == VB_KV_FULL && !vb_sched_idle(e->sched);
        pthread_mutex_lock(&e->mu);
        e->metrics.embed_inputs += n_run;
        if (wait || (st == VB_OK && j->n_done < j->n_inputs)) { /* blocks, or this pass's budget */
            e->metrics.embed_waits += wait;
            if (wait_last) wait_last->next = j;
            else wait_head = j;
            wait_last = j;
        } else {
            if (st != VB_OK) {
                j->http_status = st == VB_ERR_ARG ? 400 : st == VB_ERR_UNSUPPORTED ? 501 : st == VB_KV_FULL ? 503 : 500;
                snprintf(j->error, sizeof j->error, j->n_inputs > 1 ? "%s (input %d)" : "%s", vb_context_error(e->ctx),
                         (int)j->n_done);
            }
            j->done = true;
        }
        pthread_mutex_unlock(&e->mu);
    }
    pthread_mutex_lock(&e->mu);
    if (wait_head) { /* ahead of jobs queued meanwhile */
        wait_last->next = e->embed_head;
        if (!e->embed_head) e->embed_tail = wait_last;
        e->embed_head = wait_head;
    }
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

static void *engine_main(void *arg) {
    srv_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        srv_job *fresh = e->queue_head;
        e->queue_head = e->queue_tail = NULL;
        e->queue_len = 0;
        pthread_mutex_unlock(&e->mu);
        while (fresh) {
            srv_job *next = fresh->next;
            fresh->next = NULL;
            admit(e, fresh);
            fresh = next;
        }
        run_embeds(e);
        pthread_mutex_lock(&e->mu);
        collect_all(e); /* cancellations and deadlines before the step */
        bool busy = !vb_sched_idle(e->sched);
        pthread_mutex_unlock(&e->mu);
        if (busy) vb_sched_step(e->sched);
        pthread_mutex_lock(&e->mu);
        if (busy) collect_all(e);
        pthread_cond_broadcast(&e->cond);
        if (!busy && !e->queue_head && !e->embed_head && !e->stopping) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&e->cond, &e->mu, &ts);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int srv_engine_start(srv_engine *e, vb_model *model, vb_context *ctx, int32_t max_queue,
                     const vb_generate_params *decoding, char *err, size_t err_len) {
    memset(e, 0, sizeof *e);
    e->model = model;
    e->ctx = ctx;
    e->info = vb_model_get_info(model);
    e->max_queue = max_queue;
    e->decoding = decoding ? *decoding : vb_generate_default_params();
    /* ChatML when the vocabulary has <|im_start|> and <|im_end|> as single special tokens */
    vb_token t[4];
    e->im_end = -1;
    if (vb_tokenize(model, "<|im_start|>", 12, false, true, t, 4) == 1 &&
        vb_tokenize(model, "<|im_end|>", 10, false, true, t, 4) == 1) {
        e->chatml = true;
        e->im_end = t[0];
    }
    vb_sched_params sp = vb_sched_default_params();
    int32_t n_seq = vb_context_n_seq(ctx) - 1; /* the last sequence: embeddings' */
    if (n_seq < 1) {
        snprintf(err, err_len, "the context needs at least 2 sequences (one for embeddings)");
        return VB_ERR_ARG;
    }
    e->embed_seq = n_seq;
    sp.n_seq = n_seq;
    e->max_active = max_queue + n_seq;
    sp.max_waiting = e->max_active;
    sp.max_requests = e->max_active;
    int st = vb_sched_init(ctx, &sp, &e->sched, err, err_len);
    if (st != VB_OK) return st;
    e->active = calloc((size_t)e->max_active, sizeof *e->active);
    if (!e->active) {
        snprintf(err, err_len, "out of memory");
        return VB_ERR_NOMEM;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cond, NULL);
    e->metrics.sched = vb_sched_get_stats(e->sched);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        snprintf(err, err_len, "cannot start the engine thread: %s", strerror(errno));
        return VB_ERR_STATE;
    }
    e->started = true;
    return VB_OK;
}

void srv_engine_stop(srv_engine *e) {
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
        e->started = false;
        pthread_mutex_lock(&e->mu);
        for (srv_job *j = e->queue_head, *next; j; j = next) {
            next = j->next;
            job_fail(j, 503, "server shutting down");
            job_unref_locked(j);
        }
        e->queue_head = e->queue_tail = NULL;
        for (int32_t i = 0; i < e->n_active; i++) {
            job_fail(e->active[i], 503, "server shutting down");
            job_unref_locked(e->active[i]);
        }
        e->n_active = 0;
        for (srv_embed_job *j = e->embed_head; j; j = j->next) {
            j->http_status = 503;
            snprintf(j->error, sizeof j->error, "server shutting down");
            j->done = true;
        }
        e->embed_head = e->embed_tail = NULL;
        pthread_cond_broadcast(&e->cond);
        pthread_mutex_unlock(&e->mu);
    }
    vb_sched_free(e->sched);
    e->sched = NULL;
    free(e->active);
    e->active = NULL;
    vb_context_free(e->ctx);
    vb_model_free(e->model);
    e->ctx = NULL;
    e->model = NULL;
}

int srv_engine_submit(srv_engine *e, srv_job *j) {
    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->queue_len + e->n_active >= e->max_active || e->queue_len >= e->max_queue) {
        pthread_mutex_unlock(&e->mu);
        return 503;
    }
    j->refs++; /* the engine's reference */
    j->state = SRV_JOB_QUEUED;
    j->next = NULL;
    if (e->queue_tail) e->queue_tail->next = j;
    else e->queue_head = j;
    e->queue_tail = j;
    e->queue_len++;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int srv_engine_embed(srv_engine *e, srv_embed_job *j) {
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        return 503;
    }
    j->next = NULL;
    if (e->embed_tail) e->embed_tail->next = j;
    else e->embed_head = j;
    e->embed_tail = j;
    pthread_cond_broadcast(&e->cond);
    while (!j->done) pthread_cond_wait(&e->cond, &e->mu);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void srv_engine_cancel(srv_engine *e, srv_job *j) {
    pthread_mutex_lock(&e->mu);
    j->cancel = true;
    pthread_cond_broadcast(&e->cond);
    pthread_mutex_unlock(&e->mu);
}

srv_metrics srv_engine_metrics(srv_engine *e) {
    pthread_mutex_lock(&e->mu);
    srv_metrics m = e->metrics;
    m.queue_len = e->queue_len;
    pthread_mutex_unlock(&e->mu);
    return m;
}

void srv_engine_count_http(srv_engine *e, int status) {
    pthread_mutex_lock(&e->mu);
    e->metrics.http_requests++;
    if (status >= 400 && status < 500) e->metrics.http_errors_4xx++;
    else if (status >= 500) e->metrics.http_errors_5xx++;
    pthread_mutex_unlock(&e->mu);
}

#else
typedef int vb_http_engine_unused; /* built without the server (see cmd_serve.c) */
#endif
