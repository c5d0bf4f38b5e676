/* threadpool.h - a persistent pool of worker threads (created once, no per-call thread
 * creation) that runs one parallel task at a time: fn(arg, ith, nth) for ith in 0..nth-1,
 * the caller's thread taking ith = 0. */
#ifndef VB_THREADPOOL_H
#define VB_THREADPOOL_H

typedef struct vb_threadpool vb_threadpool;
typedef void (*vb_task_fn)(void *arg, int ith, int nth);

vb_threadpool *vb_threadpool_create(int n_threads); /* NULL on failure; n_threads >= 1 */
void vb_threadpool_free(vb_threadpool *tp);
int vb_threadpool_size(const vb_threadpool *tp);
/* Run fn on all threads and wait for all of them. tp may be NULL: runs fn(arg, 0, 1). */
void vb_threadpool_run(vb_threadpool *tp, vb_task_fn fn, void *arg);

#endif
