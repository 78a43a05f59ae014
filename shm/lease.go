package shm

import (
	"context"
	"sync/atomic"
)

// Lease is a region this process allocated and writes, held by references: its owner's
// (from Lease) and one per call that sends it (Acquire). The region goes back to the
// arena with the last Release, so a caller may release its buffer while a call still
// reads it.
type Lease struct {
	arena  *Arena
	region Region
	refs   atomic.Int32
}

// Lease allocates n bytes like Alloc and returns them held by one reference. A lease
// keeps its arena mapped until its last Release.
func (a *Arena) Lease(ctx context.Context, n uint64) (*Lease, error) {
	if !a.Acquire() {
		return nil, ErrClosed
	}
	r, err := a.Alloc(ctx, n)
	if err != nil {
		a.Release()
		return nil, err
	}
	l := &Lease{arena: a, region: r}
	l.refs.Store(1)
	return l, nil
}

// Arena is the arena the lease lies in.
func (l *Lease) Arena() *Arena { return l.arena }

// Region is where the lease lies in its arena.
func (l *Lease) Region() Region { return l.region }

// Bytes is the leased memory, writable until the last Release.
func (l *Lease) Bytes() []byte { return l.arena.Bytes(l.region) }

// Acquire takes one more reference; false once the lease is released.
func (l *Lease) Acquire() bool {
	for {
		n := l.refs.Load()
		if n <= 0 {
			return false
		}
		if l.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release drops one reference; the last frees the region. Extra calls do nothing.
func (l *Lease) Release() {
	for {
		n := l.refs.Load()
		if n <= 0 {
			return
		}
		if l.refs.CompareAndSwap(n, n-1) {
			if n == 1 {
				l.arena.Free(l.region)
				l.arena.Release()
			}
			return
		}
	}
}
