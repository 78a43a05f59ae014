package shm

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Align is the alignment of every region an arena allocates: a page, so that a region
// suits any dtype and SIMD width, and whole pages can be given back to the system.
const Align = 4096

// Arena is one shared-memory file mapped into this process, with an allocator for the
// regions this process writes. It is safe for concurrent use.
//
// Its mapping lives as long as anyone holds a reference: New hands one to the creator,
// Acquire takes more (a view a caller has not released yet), and the last Release unmaps
// it and closes the file.
type Arena struct {
	name string
	file *os.File
	mem  []byte
	size uint64

	maxRegion uint64        // the largest region Alloc grants
	retain    uint64        // pages below this offset stay allocated when free
	trimAfter time.Duration // how long freed pages above retain wait before going back

	refs atomic.Int64

	mu      sync.Mutex
	free    []Region      // sorted by offset, coalesced; lengths are multiples of Align
	inUse   uint64        // bytes allocated (rounded to Align)
	regions int           // regions allocated
	freed   chan struct{} // closed (and replaced) whenever space is freed
	touched uint64        // the highest end allocated since the last trim
	trim    *time.Timer
	closed  bool
}

// Options tunes an arena; the zero value means: regions up to the whole arena, keep
// every page once touched.
type Options struct {
	// MaxRegion caps one region (0: the arena's size).
	MaxRegion uint64
	// Retain is how many bytes at the start of the arena keep their pages when free; the
	// pages of free space above it go back to the system TrimAfter after the last free
	// (0 with TrimAfter 0: keep all).
	Retain uint64
	// TrimAfter is how long free pages above Retain are kept before they go back: long
	// enough that a burst of large calls reuses them instead of faulting new ones in.
	TrimAfter time.Duration
}

// New creates an arena of size bytes (rounded up to Align): a sealed memory file, mapped
// read-write. name shows in /proc/<pid>/maps (as memfd:name); it is no path anyone can
// open.
func New(name string, size uint64, o Options) (*Arena, error) {
	size = roundUp(size)
	if size == 0 {
		return nil, fmt.Errorf("shm: arena %s: size must be positive", name)
	}
	file, mem, err := create(name, size)
	if err != nil {
		return nil, fmt.Errorf("shm: arena %s of %d bytes: %w", name, size, err)
	}
	a := &Arena{name: name, file: file, mem: mem, size: size, maxRegion: o.MaxRegion,
		retain: roundUp(o.Retain), trimAfter: o.TrimAfter, free: []Region{{0, size}}, freed: make(chan struct{})}
	if a.maxRegion == 0 || a.maxRegion > size {
		a.maxRegion = size
	}
	a.refs.Store(1)
	return a, nil
}

// Name is the arena's name.
func (a *Arena) Name() string { return a.name }

// Size is the arena's size in bytes.
func (a *Arena) Size() uint64 { return a.size }

// MaxRegion is the largest region Alloc grants.
func (a *Arena) MaxRegion() uint64 { return a.maxRegion }

// File is the arena's memory file, read-write, for a worker to inherit. It stays owned
// by the arena: don't close it.
func (a *Arena) File() *os.File { return a.file }

// ReadOnlyFile opens the arena's memory file again, read-only: a process given it can
// map the arena to read, never to write. The caller closes it.
func (a *Arena) ReadOnlyFile() (*os.File, error) { return reopenReadOnly(a.file) }

// Acquire takes a reference that keeps the mapping alive; false once it is gone.
func (a *Arena) Acquire() bool {
	for {
		n := a.refs.Load()
		if n <= 0 {
			return false
		}
		if a.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release drops a reference; the last one unmaps the arena and closes its file. Views
// into it must not be used after that.
func (a *Arena) Release() {
	if a.refs.Add(-1) != 0 {
		return
	}
	a.mu.Lock()
	a.closed = true
	if a.trim != nil {
		a.trim.Stop()
	}
	close(a.freed) // waiters see closed
	a.freed = make(chan struct{})
	a.mu.Unlock()
	_ = unmap(a.mem)
	_ = a.file.Close()
}

// Check fails with ErrOutOfRange unless r lies inside the arena and within its cap on
// one region: every region a worker names passes here before the host touches it.
func (a *Arena) Check(r Region) error {
	if r.Len > a.maxRegion || r.Off > a.size || r.Len > a.size-r.Off {
		return fmt.Errorf("%w: %d bytes at offset %d of arena %s (%d bytes, %d per region)", ErrOutOfRange, r.Len, r.Off, a.name, a.size, a.maxRegion)
	}
	return nil
}

// Bytes is the memory of r, which must have passed Check (or come from Alloc). Its
// capacity ends with the region, so an append cannot write past it.
func (a *Arena) Bytes(r Region) []byte {
	return a.mem[r.Off:r.end():r.end()]
}

// InUse reports the bytes and the regions allocated now.
func (a *Arena) InUse() (bytes uint64, regions int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.inUse, a.regions
}

// Alloc allocates n bytes (n > 0), waiting while the arena is full, until ctx ends.
// A request larger than the arena or its cap fails at once with ErrTooLarge.
func (a *Arena) Alloc(ctx context.Context, n uint64) (Region, error) {
	m := roundUp(n)
	if n == 0 || n > a.maxRegion || m > a.size {
		return Region{}, fmt.Errorf("shm: %d bytes in arena %s (%d bytes, %d per region): %w", n, a.name, a.size, a.maxRegion, ErrTooLarge)
	}
	for {
		a.mu.Lock()
		if a.closed {
			a.mu.Unlock()
			return Region{}, ErrClosed
		}
		if off, ok := a.take(m); ok {
			a.mu.Unlock()
			return Region{Off: off, Len: n}, nil
		}
		freed := a.freed
		a.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return Region{}, fmt.Errorf("shm: waiting for %d bytes of arena %s: %w", n, a.name, ctx.Err())
		}
	}
}

// take carves m bytes (a multiple of Align) out of the first free span that fits.
// Called with the lock held.
func (a *Arena) take(m uint64) (uint64, bool) {
	for i, f := range a.free {
		if f.Len < m {
			continue
		}
		if f.Len == m {
			a.free = append(a.free[:i], a.free[i+1:]...)
		} else {
			a.free[i] = Region{f.Off + m, f.Len - m}
		}
		a.inUse += m
		a.regions++
		a.touched = max(a.touched, f.Off+m)
		return f.Off, true
	}
	return 0, false
}

// Free returns a region Alloc granted. Waiting allocations try again.
func (a *Arena) Free(r Region) {
	span := Region{r.Off, roundUp(r.Len)}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	i := 0
	for i < len(a.free) && a.free[i].Off < span.Off {
		i++
	}
	a.free = append(a.free, Region{})
	copy(a.free[i+1:], a.free[i:])
	a.free[i] = span
	// Coalesce with the next span, then with the previous one.
	if i+1 < len(a.free) && a.free[i].end() == a.free[i+1].Off {
		a.free[i].Len += a.free[i+1].Len
		a.free = append(a.free[:i+1], a.free[i+2:]...)
	}
	if i > 0 && a.free[i-1].end() == a.free[i].Off {
		a.free[i-1].Len += a.free[i].Len
		a.free = append(a.free[:i], a.free[i+1:]...)
	}
	a.inUse -= span.Len
	a.regions--
	close(a.freed)
	a.freed = make(chan struct{})
	if a.trimAfter > 0 && a.touched > a.retain {
		if a.trim == nil {
			a.trim = time.AfterFunc(a.trimAfter, a.trimFree)
		} else {
			a.trim.Reset(a.trimAfter)
		}
	}
}

// trimFree gives the pages of free space above Retain back to the system.
func (a *Arena) trimFree() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	high := a.retain
	for _, f := range a.free {
		lo, hi := max(f.Off, a.retain), min(f.end(), a.touched)
		if lo < hi {
			_ = punch(a.file, a.mem, lo, hi-lo)
		}
	}
	// What is still allocated above retain stays touched.
	at := uint64(0)
	for _, f := range a.free {
		if f.Off > at {
			high = max(high, f.Off) // [at, f.Off) is allocated
		}
		at = f.end()
	}
	if at < a.size {
		high = max(high, a.size)
	}
	a.touched = high
}

func roundUp(n uint64) uint64 { return (n + Align - 1) &^ (Align - 1) }
