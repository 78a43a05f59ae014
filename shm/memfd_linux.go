//go:build linux

package shm

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// seals fix the arena's size for good: nobody may shrink it (which would make the other
// side's reads fault), grow it, or lift the seals.
const seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// create makes a sealed memfd of size bytes and maps it read-write. The fd is
// close-on-exec: a worker gets it only as one of its ExtraFiles.
func create(name string, size uint64) (*os.File, []byte, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, fmt.Errorf("memfd_create: %w", err)
	}
	file := os.NewFile(uintptr(fd), "memfd:"+name)
	fail := func(op string, err error) (*os.File, []byte, error) {
		file.Close()
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fail("seal", err)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	return file, mem, nil
}

func unmap(mem []byte) error { return unix.Munmap(mem) }

// reopenReadOnly opens the memfd again through /proc, read-only: a mapping of that file
// can never be made writable.
func reopenReadOnly(f *os.File) (*os.File, error) {
	ro, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: reopen %s read-only: %w", f.Name(), err)
	}
	return ro, nil
}

// punch gives the pages of [off, off+n) back to the system; they read as zeros after.
func punch(f *os.File, _ []byte, off, n uint64) error {
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(off), int64(n))
}

// Supported reports whether this system has shared-memory arenas.
func Supported() bool { return true }
