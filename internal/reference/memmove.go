package reference

import "time"

// MemmoveRate is the machine's ceiling for moving bytes within one process: the rate, in
// bytes per second, of copy from one buffer of size bytes to another. Both buffers are
// allocated and written to (so their pages are mapped) before the clock starts; the copy
// is repeated for about d, and at least once. A size below 1 gives 0.
func MemmoveRate(size int, d time.Duration) float64 {
	if size < 1 {
		return 0
	}
	src, dst := make([]byte, size), make([]byte, size)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // touches dst, and warms up
	var n int
	start := time.Now()
	var elapsed time.Duration
	for {
		copy(dst, src)
		n++
		if elapsed = time.Since(start); elapsed >= d && elapsed > 0 {
			break
		}
	}
	return float64(n) * float64(size) / elapsed.Seconds()
}
