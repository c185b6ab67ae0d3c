/* LD_PRELOAD shim for running ringcast under valgrind 3.19 (perf/instr-per-delivery.sh).
 *
 * Valgrind runs one client thread at a time and hands the lock over only around system calls it
 * knows may block. io_uring_enter is not one of them in 3.19: a worker waiting for completions
 * holds the lock for its whole timeout, and the ingest thread (which wakes it) cannot run, so
 * ws:// deliveries trickle at a few per second. The io-uring crate enters the kernel through
 * libc's syscall(); this shim wraps it: before an io_uring_enter that would wait, it waits in
 * ppoll() on the ring's fd (readable when completions are there), which valgrind does treat as
 * blocking, for at most the same timeout; then the original call runs (and returns at once if
 * completions arrived). Only the wait moves; what the server does is unchanged.
 *
 *   gcc -O2 -shared -fPIC -o valgrind-uring-wait.so perf/valgrind-uring-wait.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#define ENTER_GETEVENTS 1u
#define ENTER_EXT_ARG 8u

struct getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t pad;
    uint64_t ts;
};

struct kernel_timespec {
    int64_t tv_sec;
    long long tv_nsec;
};

long syscall(long number, ...)
{
    static long (*real)(long, ...);
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (!real)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    if (number == SYS_io_uring_enter && (a4 & ENTER_GETEVENTS) && a3 > 0) {
        struct timespec ts = {1, 0}, *tsp = NULL;
        if ((a4 & ENTER_EXT_ARG) && a5) {
            const struct getevents_arg *arg = (const struct getevents_arg *)a5;
            if (arg->ts) {
                const struct kernel_timespec *k = (const struct kernel_timespec *)(uintptr_t)arg->ts;
                ts.tv_sec = k->tv_sec;
                ts.tv_nsec = k->tv_nsec;
                tsp = &ts;
            }
        }
        /* Submit first (without waiting), then wait where valgrind lets other threads run. */
        long submitted = 0;
        if (a2 > 0) {
            submitted = real(number, a1, a2, 0, 0, a5, a6);
            if (submitted < 0)
                return submitted;
        }
        struct pollfd p = {(int)a1, POLLIN, 0};
        ppoll(&p, 1, tsp, NULL);
        long r = real(number, a1, 0, a3, a4, a5, a6);
        return submitted > 0 ? submitted : r;
    }
    return real(number, a1, a2, a3, a4, a5, a6);
}
