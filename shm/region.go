package shm

// Region is a span of an arena: Len bytes from offset Off.
type Region struct {
	Off uint64
	Len uint64
}

// end is the offset just past the region.
func (r Region) end() uint64 { return r.Off + r.Len }
