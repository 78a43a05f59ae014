//go:build !linux

package shm

import "os"

func create(string, uint64) (*os.File, []byte, error) { return nil, nil, ErrUnsupported }

func unmap([]byte) error { return nil }

func reopenReadOnly(*os.File) (*os.File, error) { return nil, ErrUnsupported }

func punch(*os.File, []byte, uint64, uint64) error { return nil }

// Supported reports whether this system has shared-memory arenas.
func Supported() bool { return false }
