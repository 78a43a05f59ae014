package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/internal/reference"
)

// The data step's own flags (issue 19's goals): see data.
var (
	dataRounds = flag.Int("data-rounds", 3, "data step: interleaved rounds over the paths")
	dataBudget = flag.Duration("data-budget", 150*time.Millisecond,
		"data step: time one path spends on one size in one round (at least one call)")
	dataSums = flag.Int("data-sums", 7, "data step: timed calls of sum_float32 (256 MiB)")
)

const (
	// dataMaxReps caps the calls one path makes on one size in one round.
	dataMaxReps = 1000
	// dataMinReps calls per round at least (the first of a block may find its pages
	// trimmed), unless they would take longer than dataMinRepsWithin.
	dataMinReps       = 3
	dataMinRepsWithin = 2 * time.Second
	// dataSlowCall: a path whose call at a size is expected (from the size before) to
	// take longer makes one timed call there, in the first round, with no warm-up.
	dataSlowCall = 5 * time.Second
	// sumBytes is the float32 array the numpy reduction sums.
	sumBytes = 256 << 20
	// memBytes is the round trip the memory measurement makes.
	memBytes = 1 << 30
	// memBound is the bound on a process's RSS growth over a memBytes round trip.
	memBound = 2.2 * (1 << 30)
)

// dataSizes are the payload sizes of the round trips.
var dataSizes = []int{64 << 10, 1 << 20, 8 << 20, 16 << 20, 256 << 20, 1 << 30}

// The data paths, in the order of the tables.
const (
	dpCopy    = iota // pyvisor default API: WithPayload, the result copied to the heap
	dpInPlace        // Alloc'd Buffer, WithBuffer + WithResultView, Release
	dpFrames         // shared memory off: the payload in the gRPC frames
	dpSocket         // bare Unix-socket echo of the same Python
	dpMemmove        // Go's memmove
	dpCount
)

var dataPathNames = [dpCount]string{
	"pyvisor default (WithPayload, copy)",
	"pyvisor in-place (Alloc, WithBuffer, view)",
	"pyvisor frames (SharedMemory.Off)",
	"bare Unix-socket echo (floor)",
	"Go memmove (ceiling)",
}

// dataPyvisor are the pyvisor paths, judged against the goals.
var dataPyvisor = []int{dpCopy, dpInPlace, dpFrames}

// dataCase is one size's state: its buffers and what each path recorded.
type dataCase struct {
	size   int
	in     []byte          // the heap payload (default, frames, socket)
	out    []byte          // the socket echo's answer
	buf    *pyvisor.Buffer // the in-place payload, filled once
	reps   [dpCount]int    // calls per round
	single [dpCount]bool   // one call in all, in the first round, with no warm-up
	d      [dpCount][]time.Duration
	first  [dpCount][]time.Duration // the first call of each block
	rate   []float64                // memmove's bytes/s, one per round
	skip   [dpCount]string          // why a path was not measured at this size
}

// dataBench holds the data step's runtimes and floors.
type dataBench struct {
	shm    *pyvisor.Runtime // default shared memory
	frames *pyvisor.Runtime // SharedMemory.Off, MaxMessageBytes raised
	echo   *reference.SocketEcho
}

// dataConfig is the data step's one-worker pool with heartbeats off.
func dataConfig(python string) pyvisor.Config {
	cfg := config(python, 1)
	cfg.Pools[0].Heartbeat.Enabled = false
	return cfg
}

// data measures what issue 19's goals are stated in, in one run: round trips of
// 64 KiB to 1 GiB (Go -> echo_payload -> Go) through pyvisor's default API, its
// in-place API and its old in-frame path, against a bare Unix-socket echo of the same
// Python and Go's memmove, interleaved round by round; a numpy reduction of 256 MiB
// against numpy's own time; and the RSS growth of both processes over a 1 GiB in-place
// round trip. The memory figures are taken first, on a fresh runtime, so that nothing
// the other measurements left mapped hides a copy; they are printed last.
func data(ctx context.Context, s settings) (err error) {
	if *dataRounds < 1 || *dataBudget <= 0 || *dataSums < 1 {
		return fmt.Errorf("data: -data-rounds, -data-budget and -data-sums must be positive")
	}
	mem, err := dataMemory(ctx, s)
	if err != nil {
		return fmt.Errorf("data memory: %w", err)
	}

	var b dataBench
	defer func() {
		for _, rt := range []*pyvisor.Runtime{b.shm, b.frames} {
			if rt != nil {
				err = errors.Join(err, stopRuntime(rt))
			}
		}
		if b.echo != nil {
			err = errors.Join(err, b.echo.Close())
		}
	}()
	if b.shm, err = startConfig(ctx, dataConfig(s.python)); err != nil {
		return err
	}
	cfg := dataConfig(s.python)
	cfg.Pools[0].SharedMemory.Off = true
	// Room for the largest payload and the frame around it.
	cfg.Pools[0].MaxMessageBytes = slices.Max(dataSizes) + 1<<20
	if b.frames, err = startConfig(ctx, cfg); err != nil {
		return err
	}
	if b.echo, err = reference.StartSocketEcho(ctx, s.python); err != nil {
		return fmt.Errorf("start the socket echo: %w", err)
	}

	began := time.Now()
	cases, err := b.roundTrips(ctx)
	if err != nil {
		return err
	}
	elapsed := time.Since(began)
	for _, c := range cases {
		if c.buf != nil {
			c.buf.Release()
		}
		c.in, c.out = nil, nil
	}
	b.report(cases, elapsed)

	if err := b.reduction(ctx); err != nil {
		return err
	}
	mem.print()
	fmt.Println("(the 100-byte call's p50 against the gRPC-stream ceiling is the latency step's pool / bidi echo ratio)")
	return nil
}

// pattern fills p with a byte pattern that is not periodic at any power of two.
func pattern(p []byte, seed byte) {
	for i := range p {
		p[i] = byte(i%251) ^ seed
	}
}

// echoPayload is a round trip of the default API (WithPayload, the result a heap copy)
// through rt.
func echoPayload(ctx context.Context, rt *pyvisor.Runtime, in []byte, check bool) error {
	res, err := rt.Execute(ctx, poolName, "echo_payload", nil, pyvisor.WithPayload(in))
	if err != nil {
		return err
	}
	defer res.Release()
	return checkEcho(res.Payload, in, check)
}

// echoInPlace is a round trip of the in-place API: buf sent as it lies, the result a
// view of the worker's memory until Release.
func echoInPlace(ctx context.Context, rt *pyvisor.Runtime, buf *pyvisor.Buffer, check bool) error {
	res, err := rt.Execute(ctx, poolName, "echo_payload", nil, pyvisor.WithBuffer(buf), pyvisor.WithResultView())
	if err != nil {
		return err
	}
	defer res.Release()
	return checkEcho(res.Payload, buf.Bytes(), check)
}

// checkEcho checks got's length, and its bytes: all of them when full, else three.
func checkEcho(got, want []byte, full bool) error {
	if len(got) != len(want) {
		return fmt.Errorf("echo returned %d bytes, sent %d", len(got), len(want))
	}
	if full {
		if !bytes.Equal(got, want) {
			return fmt.Errorf("echo of %d bytes returned other bytes", len(want))
		}
		return nil
	}
	for _, i := range []int{0, len(want) / 2, len(want) - 1} {
		if len(want) > 0 && got[i] != want[i] {
			return fmt.Errorf("echo of %d bytes differs at %d", len(want), i)
		}
	}
	return nil
}

// roundTrip makes one round trip of path p at c's size; check compares every byte.
func (b *dataBench) roundTrip(ctx context.Context, p int, c *dataCase, check bool) error {
	switch p {
	case dpCopy:
		return echoPayload(ctx, b.shm, c.in, check)
	case dpInPlace:
		return echoInPlace(ctx, b.shm, c.buf, check)
	case dpFrames:
		return echoPayload(ctx, b.frames, c.in, check)
	case dpSocket:
		if err := b.echo.RoundTrip(c.in, c.out); err != nil {
			return err
		}
		return checkEcho(c.out, c.in, check)
	}
	return fmt.Errorf("path %d is no round trip", p)
}

// roundTrips prepares every size (buffers, a byte-exact warm-up call per path, the
// calls per round that fit the budget), then runs the rounds: each round takes every
// size, and at each size the paths in a random order, so that load changes hit every
// path alike.
func (b *dataBench) roundTrips(ctx context.Context) (_ []*dataCase, err error) {
	budget := *dataBudget
	cases := make([]*dataCase, len(dataSizes))
	defer func() {
		if err != nil {
			for _, c := range cases {
				if c != nil && c.buf != nil {
					c.buf.Release()
				}
			}
		}
	}()
	var perByte [dpCount]float64 // seconds per byte of the last size measured
	for i, size := range dataSizes {
		c := &dataCase{size: size, in: make([]byte, size), out: make([]byte, size)}
		cases[i] = c
		pattern(c.in, 0)
		buf, err := b.shm.Alloc(ctx, poolName, size)
		if err != nil {
			return nil, fmt.Errorf("alloc %s: %w", sizeName(size), err)
		}
		c.buf = buf
		pattern(buf.Bytes(), 0x5a)
		for p := range dpMemmove {
			if perByte[p]*float64(size) > dataSlowCall.Seconds() {
				c.single[p], c.reps[p] = true, 1
				continue
			}
			purgeBufferPools()
			est, err := b.warm(ctx, p, c, budget)
			if err != nil {
				if slices.Contains(dataPyvisor, p) { // a path that cannot carry a size: say so
					c.skip[p] = err.Error()
					continue
				}
				return nil, fmt.Errorf("%s, %s: %w", dataPathNames[p], sizeName(size), err)
			}
			perByte[p] = est.Seconds() / float64(size)
			c.reps[p] = max(1, min(dataMaxReps, int(budget/max(est, time.Microsecond))))
			if c.reps[p] < dataMinReps && dataMinReps*est <= dataMinRepsWithin {
				c.reps[p] = dataMinReps
			}
		}
		c.reps[dpMemmove] = 1
	}
	order := make([]int, dpCount)
	for i := range order {
		order[i] = i
	}
	for round := range *dataRounds {
		for _, c := range cases {
			purgeBufferPools()
			rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, p := range order {
				if c.skip[p] != "" || c.single[p] && round > 0 {
					continue
				}
				if p == dpMemmove {
					c.rate = append(c.rate, reference.MemmoveRate(c.size, budget))
					continue
				}
				for k := range c.reps[p] {
					t := time.Now()
					err := b.roundTrip(ctx, p, c, false)
					d := time.Since(t)
					if err != nil && c.single[p] && slices.Contains(dataPyvisor, p) {
						c.skip[p] = err.Error()
						break
					}
					if err != nil {
						return nil, fmt.Errorf("round %d, %s, %s: %w", round+1, dataPathNames[p], sizeName(c.size), err)
					}
					c.d[p] = append(c.d[p], d)
					if k == 0 {
						c.first[p] = append(c.first[p], d)
					}
				}
			}
		}
	}
	return cases, nil
}

// purgeBufferPools empties the sync.Pools of this process (two collections: the pools'
// victim caches too). grpc-go's pool for messages over 1 MiB hands a small message a
// buffer as large as the largest it has held and clears all of it first (since
// grpc-go#8670): after a 1 GiB frame, every frame over 1 MiB would cost a 1 GiB memclr
// until two collections. Each size is measured without what a larger size left there.
func purgeBufferPools() {
	runtime.GC()
	runtime.GC()
}

// warm makes byte-exact round trips of path p at c's size, untimed, until one budget
// has passed (at least two calls, one when the first exceeds the budget), and returns
// the last call's duration: the estimate the calls per round are sized by.
func (b *dataBench) warm(ctx context.Context, p int, c *dataCase, budget time.Duration) (time.Duration, error) {
	start := time.Now()
	var last time.Duration
	for n := 0; ; n++ {
		t := time.Now()
		if err := b.roundTrip(ctx, p, c, n == 0); err != nil {
			return 0, err
		}
		last = time.Since(t)
		if (n >= 1 || last > budget) && time.Since(start) >= budget/2 {
			return last, nil
		}
	}
}

// report prints the round-trip table, the ratios side by side and the goals.
func (b *dataBench) report(cases []*dataCase, elapsed time.Duration) {
	fmt.Printf("\nData: round trips Go -> echo_payload -> Go, pool of 1 worker, %d interleaved rounds (paths in random order per size), %.0f s\n",
		*dataRounds, elapsed.Seconds())
	fmt.Println("(GB/s = 2 × size / median round trip; memmove: its own copy rate, size / time, fresh buffers each round.")
	fmt.Println(" default: WithPayload, Result.Payload a heap copy; in-place: one Alloc'd Buffer per size, filled once, WithBuffer +")
	fmt.Println(" WithResultView, Release, the view's bytes not read (the memory table reads them all); frames: SharedMemory.Off,")
	fmt.Println(" MaxMessageBytes raised; socket: reference.SocketEcho, same Python, answer read into a Go buffer)")
	gbps := make([][dpCount]float64, len(cases))
	for i, c := range cases {
		for p := range dpCount {
			switch {
			case c.skip[p] != "":
			case p == dpMemmove:
				gbps[i][p] = median(c.rate) / 1e9
			default:
				gbps[i][p] = 2 * float64(c.size) / summarize(c.d[p]).p50.Seconds() / 1e9
			}
		}
	}
	w := table()
	fmt.Fprintln(w, "size\tpath\tcalls\tmedian\tp90\tfirst of block\tGB/s\t× socket\t× memmove\t")
	for i, c := range cases {
		for p := range dpCount {
			name := sizeName(c.size)
			if p > 0 {
				name = ""
			}
			if c.skip[p] != "" {
				fmt.Fprintf(w, "%s\t%s\t\t\t\t\tskipped\t\t\t\n", name, dataPathNames[p])
				continue
			}
			if p == dpMemmove {
				fmt.Fprintf(w, "%s\t%s\t%d rounds\t\t\t\t%.2f\t%s\t%s\t\n", name, dataPathNames[p], len(c.rate),
					gbps[i][p], ratio(gbps[i][p], gbps[i][dpSocket]), ratio(gbps[i][p], gbps[i][dpMemmove]))
				continue
			}
			st := summarize(c.d[p])
			calls := strconv.Itoa(len(c.d[p]))
			if c.single[p] {
				calls += "*"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\t%s\t\n", name, dataPathNames[p], calls,
				dur(st.p50), dur(st.p90), dur(summarize(c.first[p]).p50), gbps[i][p],
				ratio(gbps[i][p], gbps[i][dpSocket]), ratio(gbps[i][p], gbps[i][dpMemmove]))
		}
	}
	_ = w.Flush()
	fmt.Println("(first of block: median of the first call of each round's block; * one call in all, in the first round,")
	fmt.Printf(" with no warm-up: expected to take over %v. sync.Pools purged before each size (see purgeBufferPools))\n", dataSlowCall)

	fmt.Println("\nRatios side by side (effective GB/s of each pyvisor path over the floor and over memmove)")
	w = table()
	fmt.Fprintln(w, "size\tdefault/socket\tin-place/socket\tframes/socket\tdefault/memmove\tin-place/memmove\tframes/memmove\t")
	for i, c := range cases {
		fmt.Fprintf(w, "%s\t", sizeName(c.size))
		for _, base := range []int{dpSocket, dpMemmove} {
			for _, p := range dataPyvisor {
				fmt.Fprintf(w, "%s\t", ratio(gbps[i][p], gbps[i][base]))
			}
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()

	for _, c := range cases {
		for _, p := range dataPyvisor {
			if c.skip[p] != "" {
				fmt.Printf("skipped: %s at %s, its first call failed: %s\n", dataPathNames[p], sizeName(c.size), c.skip[p])
			}
		}
	}

	fmt.Println("\nGoals (issue 19), for the default and the in-place API:")
	at := func(size int) int { return slices.Index(dataSizes, size) }
	goal := func(label string, size, base int, want float64) {
		i := at(size)
		var parts []string
		for _, p := range []int{dpCopy, dpInPlace} {
			name := map[int]string{dpCopy: "default", dpInPlace: "in-place"}[p]
			if gbps[i][p] == 0 {
				parts = append(parts, name+" not measured, NOT met")
				continue
			}
			r := gbps[i][p] / gbps[i][base]
			parts = append(parts, fmt.Sprintf("%s %.2f× %s", name, r, met(r >= want)))
		}
		fmt.Printf("  %-34s %s\n", label, strings.Join(parts, ", "))
	}
	for _, size := range []int{8 << 20, 16 << 20, 256 << 20, 1 << 30} {
		goal(fmt.Sprintf(">= 3× socket at %s:", sizeName(size)), size, dpSocket, 3)
	}
	goal(">= 0.5× memmove at 256 MiB:", 256<<20, dpMemmove, 0.5)
	goal(">= 1.5× socket at 1 MiB:", 1<<20, dpSocket, 1.5)
	goal(">= 0.4× socket at 64 KiB:", 64<<10, dpSocket, 0.4)
}

// reduction times sum_float32 over 256 MiB of float32 sent in place, against the
// seconds numpy itself took inside Python.
func (b *dataBench) reduction(ctx context.Context) error {
	buf, err := b.shm.Alloc(ctx, poolName, sumBytes)
	if err != nil {
		return fmt.Errorf("alloc %s: %w", sizeName(sumBytes), err)
	}
	defer buf.Release()
	p := buf.Bytes()
	const value = 0.5
	binary.LittleEndian.PutUint32(p, math.Float32bits(value))
	for n := 4; n < len(p); n *= 2 {
		copy(p[n:], p[:n])
	}
	want := value * float64(sumBytes/4)
	var calls, numpy, ratios []float64
	for i := range *dataSums + 1 {
		t := time.Now()
		res, err := b.shm.Execute(ctx, poolName, "sum_float32", nil, pyvisor.WithBuffer(buf))
		d := time.Since(t)
		if err != nil {
			return fmt.Errorf("sum_float32: %w", err)
		}
		var out struct {
			Sum     float64 `json:"sum"`
			Seconds float64 `json:"seconds"`
		}
		err = res.Decode(&out)
		res.Release()
		if err != nil {
			return fmt.Errorf("sum_float32: %w", err)
		}
		if out.Sum != want || out.Seconds <= 0 {
			return fmt.Errorf("sum_float32 returned %+v, want sum %v", out, want)
		}
		if i == 0 { // warm-up
			continue
		}
		calls = append(calls, d.Seconds())
		numpy = append(numpy, out.Seconds)
		ratios = append(ratios, d.Seconds()/out.Seconds)
	}
	fmt.Printf("\nNumpy reduction: sum_float32 over %s of float32 sent in place (Alloc, WithBuffer), %d calls after a warm-up\n",
		sizeName(sumBytes), *dataSums)
	w := table()
	fmt.Fprintln(w, "\tmedian\tmin\tmax\t")
	for _, r := range []struct {
		name string
		xs   []float64
		unit float64
		fmt  string
	}{
		{"call (Runtime.Execute)", calls, 1e3, "%.1f ms"},
		{"numpy inside Python", numpy, 1e3, "%.1f ms"},
		{"call / numpy (per call)", ratios, 1, "%.3f"},
	} {
		lo, hi := minMax(r.xs)
		f := r.fmt
		fmt.Fprintf(w, "%s\t"+f+"\t"+f+"\t"+f+"\t\n", r.name, median(r.xs)*r.unit, lo*r.unit, hi*r.unit)
	}
	_ = w.Flush()
	m := median(ratios)
	fmt.Printf("call / numpy = %.3f (goal <= 1.2): %s; overhead %.2f ms\n", m, met(m <= 1.2), (median(calls)-median(numpy))*1e3)
	return nil
}

// memFigures are the RSS figures of the memory measurement, in bytes.
type memFigures struct {
	hostPID, workerPID int
	workerNote         string // how the worker process was found
	host, worker       memSample
}

// memSample is one process's RSS: before, peak (VmHWM after a reset, or the polled
// maximum), and after the round trip with the result's view still held.
type memSample struct {
	before, peak, held procStatus
	hwm                bool // peak is the kernel's VmHWM since a reset (else polled)
	polled             int64
}

// procStatus is the RSS lines of /proc/<pid>/status, in bytes.
type procStatus struct {
	rss, hwm, anon, shmem int64
}

func readStatus(pid string) (procStatus, error) {
	f, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return procStatus{}, err
	}
	defer f.Close()
	var st procStatus
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &st.rss
		case "VmHWM":
			dst = &st.hwm
		case "RssAnon":
			dst = &st.anon
		case "RssShmem":
			dst = &st.shmem
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return st, fmt.Errorf("/proc/%s/status %s: %w", pid, k, err)
		}
		*dst = kb << 10
	}
	return st, sc.Err()
}

// parentOf returns the PPid of pid.
func parentOf(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no PPid in /proc/%d/status", pid)
}

// resetPeak resets pid's VmHWM to its current RSS (clear_refs 5, Linux 4.0).
func resetPeak(pid string) bool {
	return os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0) == nil
}

// dataMemory measures the RSS growth of this process and of its worker over one
// 1 GiB round trip through the in-place API, on a runtime of its own: Alloc, fill,
// Execute WithBuffer + WithResultView, read every byte of the view, then Release.
func dataMemory(ctx context.Context, s settings) (_ memFigures, err error) {
	rt, err := startConfig(ctx, dataConfig(s.python))
	if err != nil {
		return memFigures{}, err
	}
	defer func() { err = errors.Join(err, stopRuntime(rt)) }()
	var m memFigures
	m.hostPID = os.Getpid()
	_, m.workerPID, err = slot(ctx, rt, 0)
	if err != nil {
		return m, err
	}
	if m.workerPID == 0 {
		return m, fmt.Errorf("worker 0 is not ready")
	}
	switch ppid, err := parentOf(m.workerPID); {
	case err != nil:
		return m, err
	case ppid == m.hostPID:
		m.workerNote = "child of this process"
	default:
		m.workerNote = fmt.Sprintf("parent %d, not this process", ppid)
	}
	host, worker := "self", strconv.Itoa(m.workerPID)

	// A small shared-memory round trip first: the worker's first call imports and maps
	// what every later call uses.
	small := make([]byte, 64<<10)
	pattern(small, 1)
	if err := echoPayload(ctx, rt, small, true); err != nil {
		return m, err
	}
	runtime.GC()
	debug.FreeOSMemory()

	if m.host.before, err = readStatus(host); err != nil {
		return m, err
	}
	if m.worker.before, err = readStatus(worker); err != nil {
		return m, err
	}
	m.host.hwm, m.worker.hwm = resetPeak(host), resetPeak(worker)
	// Poll both as well, in case the kernel's peak cannot be reset.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := readStatus(host); err == nil {
				m.host.polled = max(m.host.polled, st.rss)
			}
			if st, err := readStatus(worker); err == nil {
				m.worker.polled = max(m.worker.polled, st.rss)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wg.Wait()
		}
	}()

	buf, err := rt.Alloc(ctx, poolName, memBytes)
	if err != nil {
		return m, fmt.Errorf("alloc %s: %w", sizeName(memBytes), err)
	}
	defer buf.Release()
	pattern(buf.Bytes(), 0x33)
	res, err := rt.Execute(ctx, poolName, "echo_payload", nil, pyvisor.WithBuffer(buf), pyvisor.WithResultView())
	if err != nil {
		return m, fmt.Errorf("echo_payload of %s: %w", sizeName(memBytes), err)
	}
	defer res.Release()
	if err := checkEcho(res.Payload, buf.Bytes(), true); err != nil { // reads every byte
		return m, err
	}
	if m.host.held, err = readStatus(host); err != nil {
		return m, err
	}
	if m.worker.held, err = readStatus(worker); err != nil {
		return m, err
	}
	close(stop)
	wg.Wait()
	m.host.peak, m.worker.peak = m.host.held, m.worker.held
	return m, nil
}

// growth is the sample's peak RSS minus its RSS before.
func (s memSample) growth() int64 {
	peak := s.polled
	if s.hwm {
		peak = max(peak, s.peak.hwm)
	}
	peak = max(peak, s.held.rss)
	return peak - s.before.rss
}

func (m memFigures) print() {
	fmt.Printf("\nMemory: RSS growth over one %s round trip through the in-place API (Alloc, fill, WithBuffer + WithResultView,\n", sizeName(memBytes))
	fmt.Printf("every byte of the view read, then Release), on a fresh 1-worker runtime; host pid %d, worker pid %d (%s)\n",
		m.hostPID, m.workerPID, m.workerNote)
	fmt.Println("(peak: VmHWM after a clear_refs reset, or RSS polled every 5 ms, whichever is higher; held: after the call, view held)")
	w := table()
	fmt.Fprintln(w, "process\tVmRSS before\tpeak\tgrowth\theld: VmRSS\tRssAnon\tRssShmem\tRssShmem growth\tgoal <= 2.2 GiB\t")
	for _, p := range []struct {
		name string
		s    memSample
	}{{"host (this process)", m.host}, {"worker", m.worker}} {
		g := p.s.growth()
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.name, mib(p.s.before.rss), mib(p.s.growth()+p.s.before.rss),
			mib(g), mib(p.s.held.rss), mib(p.s.held.anon), mib(p.s.held.shmem), mib(p.s.held.shmem-p.s.before.shmem),
			met(float64(g) <= memBound))
	}
	_ = w.Flush()
	if !m.host.hwm || !m.worker.hwm {
		fmt.Printf("(VmHWM reset: host %v, worker %v; where false, the peak is the polled one)\n", m.host.hwm, m.worker.hwm)
	}
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func ratio(x, base float64) string {
	if x == 0 || base == 0 {
		return "—"
	}
	if r := x / base; r < 0.1 {
		return fmt.Sprintf("%.3f", r)
	}
	return fmt.Sprintf("%.2f", x/base)
}

func sizeName(n int) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// dur prints d in µs below 1 ms, else in ms.
func dur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.0f µs", us(d))
	}
	return fmt.Sprintf("%.1f ms", ms(d))
}
