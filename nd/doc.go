// Package nd is the typed data a call carries beside its JSON: n-dimensional arrays
// (numpy's ndarray on the Python side) and Arrow tables (as Arrow IPC; package tables
// reads and writes them with arrow-go).
//
// An Array is a description over bytes: its Data is a view, never a copy, whether it
// is Go memory, a pool's shared memory the caller filled in place, or a worker's output
// the caller asked to view (see pyvisor.WithResultView). Of and Values convert between
// Go slices and Arrays without copying.
package nd
