package shm

import "errors"

var (
	// ErrTooLarge is an allocation larger than the arena or its per-region cap: it could
	// never fit, so it fails at once instead of waiting.
	ErrTooLarge = errors.New("larger than the shared memory allows")
	// ErrOutOfRange is a region that does not lie inside the arena (a worker sent a
	// handle the host never gave it, or one past the end).
	ErrOutOfRange = errors.New("shared-memory region out of range")
	// ErrClosed is an arena used after Close.
	ErrClosed = errors.New("shared-memory arena closed")
	// ErrUnsupported is an arena on a system without memfd_create (not Linux).
	ErrUnsupported = errors.New("shared memory is not supported on this system")
)
