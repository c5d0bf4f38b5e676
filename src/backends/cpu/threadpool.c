/* threadpool.c - persistent worker threads that run one parallel task at a time (see
 * threadpool.h). Dispatch is a generation counter: the caller publishes fn/arg, bumps the
 * generation and runs ith 0 itself; workers spin on the generation for a short while (so a
 * run that follows closely costs well under a microsecond) and then sleep on it with a futex
 * (Linux) so an idle pool costs no CPU. Completion is a countdown of pending workers that the
 * caller spins on, then sleeps on. Sleep/wake races are closed with the Dekker pattern on
 * sequentially consistent atomics: a sleeper announces itself and then re-checks the word,
 * a waker changes the word and then looks for announced sleepers. */
#include "threadpool.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* How long a waiting thread spins, then spins yielding the CPU, before it sleeps. */
#define VB_TP_SPIN_NS 20000LL
#define VB_TP_YIELD_NS 300000LL

typedef struct vb_worker {
    struct vb_threadpool *tp;
    int ith;
    pthread_t thread;
} vb_worker;

struct vb_threadpool {
    int n_threads;
    vb_worker *workers; /* [n_threads - 1]; worker i runs ith = i + 1 */
    vb_task_fn fn;      /* the task of the current generation */
    void *arg;
    _Atomic int generation;      /* futex word: bumped once per run (and once to stop) */
    _Atomic int pending;         /* futex word: workers not yet done with the current run */
    _Atomic int n_sleeping;      /* workers asleep (or about to be) on generation */
    _Atomic int caller_sleeping; /* callers asleep (or about to be) on pending: 0 or 1 */
    _Atomic int stop;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sleep while *word == expected (may return spuriously). */
static void word_wait(_Atomic int *word, int expected) {
#ifdef __linux__
    syscall(SYS_futex, (int *)word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
#else
    (void)word;
    (void)expected;
    sched_yield();
#endif
}

static void word_wake(_Atomic int *word, int n) {
#ifdef __linux__
    syscall(SYS_futex, (int *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
#else
    (void)word;
    (void)n;
#endif
}

/* Wait until *word differs from `old`; returns the new value. Spins with pause for
 * VB_TP_SPIN_NS, then spins with sched_yield (so an oversubscribed machine can run the thread
 * we wait for) until VB_TP_YIELD_NS, then sleeps on the futex, announced in *n_sleepers. */
static int wait_change(_Atomic int *word, int old, _Atomic int *n_sleepers) {
    long long t0 = 0;
    for (unsigned spins = 0;; spins++) {
        int v = atomic_load_explicit(word, memory_order_acquire);
        if (v != old) return v;
        if ((spins & 63) == 0) {
            long long t = now_ns();
            if (t0 == 0) t0 = t;
            if (t - t0 > VB_TP_YIELD_NS) {
                atomic_fetch_add(n_sleepers, 1);
                if (atomic_load(word) == old) word_wait(word, old);
                atomic_fetch_sub(n_sleepers, 1);
                t0 = 0;
                continue;
            }
            if (t - t0 > VB_TP_SPIN_NS) {
                sched_yield();
                continue;
            }
        }
        cpu_relax();
    }
}

static void *worker_main(void *p) {
    vb_worker *w = p;
    vb_threadpool *tp = w->tp;
    int seen = 0;
    for (;;) {
        seen = wait_change(&tp->generation, seen, &tp->n_sleeping);
        if (atomic_load(&tp->stop)) break;
        tp->fn(tp->arg, w->ith, tp->n_threads);
        if (atomic_fetch_sub(&tp->pending, 1) == 1 && atomic_load(&tp->caller_sleeping))
            word_wake(&tp->pending, 1);
    }
    return NULL;
}

/* Workers inherit the creating thread's CPU mask. An OpenMP runtime in the same process (the
   llamacpp backend's llama.cpp) binds the initial thread to one core when OMP_PROC_BIND is set,
   as llama.cpp's users are told to: every vibee worker would then share that core (measured on
   the 2-core bench VM: 2-thread decode 113 tok/s against 215 with 1 thread). When the inherited
   mask holds fewer CPUs than the pool has threads, the workers get every online CPU instead (the
   kernel keeps them inside any cpuset); a mask wide enough (taskset with room for the threads)
   is left as it is. Returns the attributes to create workers with, or NULL for the defaults. */
static pthread_attr_t *worker_attr(pthread_attr_t *attr, int n_threads) {
#if defined(__linux__) && defined(CPU_SET)
    cpu_set_t now;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (sched_getaffinity(0, sizeof now, &now) != 0 || CPU_COUNT(&now) >= n_threads || online <= CPU_COUNT(&now))
        return NULL;
    cpu_set_t all;
    CPU_ZERO(&all);
    for (long c = 0; c < online && c < CPU_SETSIZE; c++) CPU_SET((int)c, &all);
    if (pthread_attr_init(attr) != 0) return NULL;
    if (pthread_attr_setaffinity_np(attr, sizeof all, &all) != 0) {
        pthread_attr_destroy(attr);
        return NULL;
    }
    return attr;
#else
    (void)attr, (void)n_threads;
    return NULL;
#endif
}

vb_threadpool *vb_threadpool_create(int n_threads) {
    if (n_threads < 1) return NULL;
    vb_threadpool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->n_threads = n_threads;
    atomic_init(&tp->generation, 0);
    atomic_init(&tp->pending, 0);
    atomic_init(&tp->n_sleeping, 0);
    atomic_init(&tp->caller_sleeping, 0);
    atomic_init(&tp->stop, 0);
    if (n_threads > 1) {
        tp->workers = calloc((size_t)(n_threads - 1), sizeof *tp->workers);
        if (!tp->workers) {
            free(tp);
            return NULL;
        }
    }
    pthread_attr_t attr_storage;
    pthread_attr_t *attr = n_threads > 1 ? worker_attr(&attr_storage, n_threads) : NULL;
    for (int i = 0; i < n_threads - 1; i++) {
        tp->workers[i].tp = tp;
        tp->workers[i].ith = i + 1;
        if (pthread_create(&tp->workers[i].thread, attr, worker_main, &tp->workers[i]) != 0) {
            tp->n_threads = i + 1; /* the i workers started so far; free() stops them */
            if (attr) pthread_attr_destroy(attr);
            vb_threadpool_free(tp);
            return NULL;
        }
    }
    if (attr) pthread_attr_destroy(attr);
    return tp;
}

void vb_threadpool_free(vb_threadpool *tp) {
    if (!tp) return;
    int n_workers = tp->n_threads - 1;
    if (n_workers > 0) {
        atomic_store(&tp->stop, 1);
        atomic_fetch_add(&tp->generation, 1);
        word_wake(&tp->generation, INT_MAX);
        for (int i = 0; i < n_workers; i++) pthread_join(tp->workers[i].thread, NULL);
    }
    free(tp->workers);
    free(tp);
}

int vb_threadpool_size(const vb_threadpool *tp) { return tp ? tp->n_threads : 1; }

void vb_threadpool_run(vb_threadpool *tp, vb_task_fn fn, void *arg) {
    if (!tp || tp->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    tp->fn = fn;
    tp->arg = arg;
    atomic_store(&tp->pending, tp->n_threads - 1);
    atomic_fetch_add(&tp->generation, 1);
    if (atomic_load(&tp->n_sleeping) > 0) word_wake(&tp->generation, INT_MAX);

    fn(arg, 0, tp->n_threads);

    int p;
    while ((p = atomic_load(&tp->pending)) != 0) wait_change(&tp->pending, p, &tp->caller_sleeping);
}
