//go:build linux

package shm

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newArena(t *testing.T, size uint64, o Options) *Arena {
	t.Helper()
	a, err := New("test", size, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Release)
	return a
}

func TestAllocFreeCoalesces(t *testing.T) {
	a := newArena(t, 4*Align, Options{})
	ctx := context.Background()
	var rs []Region
	for range 4 {
		r, err := a.Alloc(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if b, n := a.InUse(); b != 4*Align || n != 4 {
		t.Fatalf("in use %d bytes in %d regions, want %d in 4", b, n, 4*Align)
	}
	// Free out of order; the whole arena must be one span again.
	for _, i := range []int{1, 3, 0, 2} {
		a.Free(rs[i])
	}
	if len(a.free) != 1 || a.free[0] != (Region{0, 4 * Align}) {
		t.Fatalf("free list %v, want one span of the arena", a.free)
	}
	if _, err := a.Alloc(ctx, 4*Align); err != nil {
		t.Fatalf("the whole arena after frees: %v", err)
	}
}

func TestRegionsAreAlignedAndDisjoint(t *testing.T) {
	a := newArena(t, 64*Align, Options{})
	ctx := context.Background()
	seen := map[uint64]bool{}
	for _, n := range []uint64{1, Align, Align + 1, 3 * Align} {
		r, err := a.Alloc(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if r.Off%Align != 0 || r.Len != n {
			t.Fatalf("region %+v for %d bytes", r, n)
		}
		for p := r.Off; p < r.end(); p += Align {
			if seen[p] {
				t.Fatalf("page %d granted twice", p)
			}
			seen[p] = true
		}
		b := a.Bytes(r)
		if len(b) != int(n) || cap(b) != int(n) {
			t.Fatalf("bytes len %d cap %d, want %d", len(b), cap(b), n)
		}
	}
}

func TestTooLargeFailsAtOnce(t *testing.T) {
	a := newArena(t, 8*Align, Options{MaxRegion: 2 * Align})
	for _, n := range []uint64{0, 2*Align + 1, 9 * Align} {
		if _, err := a.Alloc(context.Background(), n); n != 0 && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%d bytes: %v, want ErrTooLarge", n, err)
		}
	}
}

func TestFullArenaWaitsForSpaceOrDeadline(t *testing.T) {
	a := newArena(t, 2*Align, Options{})
	ctx := context.Background()
	r, err := a.Alloc(ctx, 2*Align)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := a.Alloc(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("full arena: %v, want the deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := a.Alloc(ctx, Align)
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("allocated from a full arena: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	a.Free(r)
	if err := <-got; err != nil {
		t.Fatalf("after a free: %v", err)
	}
}

func TestCheckRejectsRegionsOutsideTheArena(t *testing.T) {
	a := newArena(t, 4*Align, Options{MaxRegion: 2 * Align})
	good := []Region{{0, 1}, {3 * Align, Align}, {4 * Align, 0}}
	bad := []Region{{4*Align + 1, 0}, {3 * Align, Align + 1}, {0, 3 * Align}, {^uint64(0), 2}, {1, ^uint64(0)}}
	for _, r := range good {
		if err := a.Check(r); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	for _, r := range bad {
		if err := a.Check(r); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("%+v: %v, want ErrOutOfRange", r, err)
		}
	}
}

func TestSealsForbidResizing(t *testing.T) {
	a := newArena(t, 4*Align, Options{})
	fd := int(a.File().Fd())
	if err := unix.Ftruncate(fd, Align); err == nil {
		t.Fatal("shrank a sealed arena")
	}
	if err := unix.Ftruncate(fd, 8*Align); err == nil {
		t.Fatal("grew a sealed arena")
	}
}

func TestReadOnlyFileCannotBeMappedWritable(t *testing.T) {
	a := newArena(t, 4*Align, Options{})
	r, _ := a.Alloc(context.Background(), 5)
	copy(a.Bytes(r), "hello")
	ro, err := a.ReadOnlyFile()
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := unix.Mmap(int(ro.Fd()), 0, 4*Align, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err == nil {
		t.Fatal("mapped the read-only file writable")
	}
	m, err := unix.Mmap(int(ro.Fd()), 0, 4*Align, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	if string(m[r.Off:r.Off+5]) != "hello" {
		t.Fatalf("read-only mapping reads %q", m[r.Off:r.Off+5])
	}
}

func TestTrimGivesFreePagesAboveRetainBack(t *testing.T) {
	a := newArena(t, 8*Align, Options{Retain: 2 * Align, TrimAfter: time.Millisecond})
	ctx := context.Background()
	r, _ := a.Alloc(ctx, 8*Align)
	b := a.Bytes(r)
	for i := range b {
		b[i] = 1
	}
	a.Free(r)
	deadline := time.Now().Add(5 * time.Second)
	for a.mem[7*Align] != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if a.mem[7*Align] != 0 || a.mem[3*Align] != 0 {
		t.Fatal("free pages above retain were not given back")
	}
	if a.mem[0] != 1 || a.mem[2*Align-1] != 1 {
		t.Fatal("pages below retain were given back")
	}
}

func TestLastReleaseUnmaps(t *testing.T) {
	a, err := New("test", Align, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Acquire() {
		t.Fatal("acquire of a live arena")
	}
	a.Release()
	if a.mem == nil || a.file.Fd() == ^uintptr(0) {
		t.Fatal("unmapped while referenced")
	}
	a.Release()
	if a.Acquire() {
		t.Fatal("acquired an arena after its last release")
	}
	if _, err := a.Alloc(context.Background(), 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("alloc after release: %v", err)
	}
}

func TestLeaseFreesWithItsLastReference(t *testing.T) {
	a := newArena(t, 2*Align, Options{})
	l, err := a.Lease(context.Background(), 2*Align)
	if err != nil {
		t.Fatal(err)
	}
	l.Acquire() // a call sends it
	l.Release() // its owner is done
	if b, _ := a.InUse(); b == 0 {
		t.Fatal("freed while a call holds it")
	}
	l.Release()
	l.Release() // extra: nothing
	if b, n := a.InUse(); b != 0 || n != 0 {
		t.Fatalf("in use %d/%d after the last release", b, n)
	}
}

func TestPackAlignsEachPayload(t *testing.T) {
	offsets, total := Pack([]uint64{1, 64, 0, 100})
	want := []uint64{0, 64, 128, 128}
	for i := range want {
		if offsets[i] != want[i] {
			t.Fatalf("offsets %v, want %v", offsets, want)
		}
	}
	if total != 256 {
		t.Fatalf("total %d, want 256", total)
	}
}
