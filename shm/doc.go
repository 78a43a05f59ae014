// Package shm is the shared memory between the runtime and its Python workers: arenas,
// the regions allocated in them, and the bounds checks on every region a worker names.
//
// An arena is an anonymous memory file (Linux memfd_create): it has no name in any file
// system, so no other user can guess or open it, and it is gone, pages and all, once the
// last process that maps it exits, whether it stopped or was SIGKILLed. Its size is fixed
// and sealed (F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_SEAL) before any worker sees it: a
// worker cannot shrink it under the host's mapping, which would turn the host's next read
// into a SIGBUS. Its pages are only allocated when first written, so a large arena costs
// address space, not memory, until it is used.
//
// Two kinds of arena serve one pool: the pool's input arena, which the host writes and
// every worker of the pool maps read-only (the payloads of calls, allocated before the
// pool picks the worker); and each worker's output arena, which the worker writes (the
// payloads it returns) and the host maps to read. The worker allocates in its own arena;
// the host only reads the regions the worker names, after Check.
package shm
