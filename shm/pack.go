package shm

// PackAlign is where each of several payloads packed into one region starts: enough for
// any dtype.
const PackAlign = 64

// Pack lays payloads of sizes out one after another in one region, each at a multiple of
// PackAlign: their offsets in the region, and the region's size.
func Pack(sizes []uint64) (offsets []uint64, total uint64) {
	offsets = make([]uint64, len(sizes))
	for i, s := range sizes {
		offsets[i] = total
		total += (s + PackAlign - 1) &^ (PackAlign - 1)
	}
	return offsets, total
}
