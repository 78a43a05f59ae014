// Package tables sends and receives Arrow tables with arrow-go: a table or record batch
// crosses to Python as a pyarrow.Table, and one a tool returns comes back as an
// arrow.Table, in the Arrow IPC streaming format, through shared memory when large.
//
// It is the only package of pyvisor that imports arrow-go: a program that does not import
// it does not link arrow-go.
package tables
