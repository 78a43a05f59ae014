package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/pyvisor/pyvisor"
	"github.com/pyvisor/pyvisor/internal/reference"
)

// The clusterdata step's own flag: see clusterData.
var clusterDataRounds = flag.Int("clusterdata-rounds", 5, "clusterdata step: interleaved rounds (the median is shown)")

const (
	// cdPool is the pool only node b runs.
	cdPool = "remote"
	// cdBatch is the least bytes one path moves per size per round: several calls at a
	// small size, one at a large one.
	cdBatch = 64 << 20
	// cdGoal is the goal on pyvisor / bare gRPC at cdGoalSize, each direction.
	cdGoal     = 0.5
	cdGoalSize = 256 << 20
)

// cdSizes are the payload sizes of the clusterdata step.
var cdSizes = []int{16 << 20, 256 << 20}

// The clusterdata paths, in the order of each round.
const (
	cdGRPC    = iota // bare gRPC stream between two endpoints of this process
	cdPyvisor        // node a calls the pool on node b
	cdLocal          // node b calls its own pool (context: no hop)
	cdCount
)

var cdPathNames = [cdCount]string{"bare gRPC stream", "pyvisor a -> b's pool", "pyvisor b -> own pool"}

// cdCase is one direction and size: its calls and what each path recorded.
type cdCase struct {
	toB  bool // a -> b (payload_size, gRPC upload); else b -> a (fill, gRPC download)
	size int
	reps int // calls per path per round
	rate [cdCount][]float64
	d    [cdCount][]time.Duration // per call
	cpu  [cdCount][]time.Duration // Go CPU (this process: both nodes, both gRPC ends) per call
}

func (c *cdCase) dir() string {
	if c.toB {
		return "a -> b"
	}
	return "b -> a"
}

// clusterData measures bandwidth between two nodes of one automanaged cluster in this
// process: node a calls a 1-worker pool only node b runs, with a large payload one way
// (payload_size: a -> b, the answer a few bytes) or the other (fill: b -> a, the call a
// few bytes), against a bare gRPC stream moving as many bytes in 1 MiB messages
// between two endpoints of this process (reference.Stream: upload a -> b, download
// b -> a). For context, node b calling its own pool the same way (no hop: the Python
// side's and shared memory's share). Paths alternate call by call size by size, round
// by round, after a warm-up of each; the ratio is pyvisor's GB/s over the baseline's,
// median and spread over the rounds.
func clusterData(ctx context.Context, s settings) (err error) {
	if *clusterDataRounds < 1 {
		return fmt.Errorf("clusterdata: -clusterdata-rounds must be positive")
	}
	rts, stop, err := startCluster(ctx, s.python,
		clusterNode{name: "b", pools: []pyvisor.PoolConfig{namedPool(cdPool, 1)}},
		clusterNode{name: "a"},
	)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	b, a := rts[0], rts[1]
	ref, err := reference.StartStream()
	if err != nil {
		return fmt.Errorf("start the gRPC stream baseline: %w", err)
	}
	defer func() { err = errors.Join(err, ref.Close()) }()

	payload := make([]byte, cdSizes[len(cdSizes)-1])
	pattern(payload, 0)
	var cases []*cdCase
	for _, toB := range []bool{true, false} {
		for _, size := range cdSizes {
			cases = append(cases, &cdCase{toB: toB, size: size, reps: max(1, cdBatch/size)})
		}
	}
	call := func(ctx context.Context, c *cdCase, p int) error {
		rt := a
		if p == cdLocal {
			rt = b
		}
		switch {
		case p == cdGRPC && c.toB:
			return ref.Upload(ctx, payload[:c.size])
		case p == cdGRPC:
			return ref.Download(ctx, c.size)
		case c.toB:
			return cdPayloadSize(ctx, rt, payload[:c.size], "")
		default:
			return cdFill(ctx, rt, c.size, "")
		}
	}
	// Warm up, and check where the calls run: a's on b, b's on b.
	for _, c := range cases {
		if c.toB {
			if err := cdPayloadSize(ctx, a, payload[:c.size], "b"); err != nil {
				return err
			}
			if err := cdPayloadSize(ctx, b, payload[:c.size], "b"); err != nil {
				return err
			}
		} else {
			if err := cdFill(ctx, a, c.size, "b"); err != nil {
				return err
			}
			if err := cdFill(ctx, b, c.size, "b"); err != nil {
				return err
			}
		}
		for p := range cdCount {
			if err := call(ctx, c, p); err != nil {
				return fmt.Errorf("warm-up, %s, %s %s: %w", cdPathNames[p], c.dir(), sizeName(c.size), err)
			}
		}
	}

	began := time.Now()
	for round := range *clusterDataRounds {
		for _, c := range cases {
			purgeBufferPools()
			for p := range cdCount {
				cpu, t := goCPU(), time.Now()
				for range c.reps {
					ct := time.Now()
					if err := call(ctx, c, p); err != nil {
						return fmt.Errorf("round %d, %s, %s %s: %w", round+1, cdPathNames[p], c.dir(), sizeName(c.size), err)
					}
					c.d[p] = append(c.d[p], time.Since(ct))
				}
				el := time.Since(t)
				c.rate[p] = append(c.rate[p], float64(c.size*c.reps)/el.Seconds())
				c.cpu[p] = append(c.cpu[p], (goCPU()-cpu)/time.Duration(c.reps))
			}
		}
	}
	cdReport(cases, time.Since(began))
	return nil
}

// cdPayloadSize calls payload_size with payload through rt and checks its answer, and,
// unless wantNode is "", that the call ran on wantNode.
func cdPayloadSize(ctx context.Context, rt *pyvisor.Runtime, payload []byte, wantNode string) error {
	var ran pyvisor.Ran
	res, err := rt.Execute(ctx, cdPool, "payload_size", nil, pyvisor.WithPayload(payload), pyvisor.WithRan(&ran))
	if err != nil {
		return fmt.Errorf("payload_size of %s from node %s: %w", sizeName(len(payload)), rt.Node(), err)
	}
	defer res.Release()
	var n int
	if err := json.Unmarshal(res.JSON, &n); err != nil || n != len(payload) {
		return fmt.Errorf("payload_size of %s from node %s answered %s", sizeName(len(payload)), rt.Node(), res.JSON)
	}
	return cdRanOn(rt, ran, wantNode)
}

// cdFillValue is the byte fill repeats.
const cdFillValue = 7

// cdFill calls fill of size bytes through rt and checks its answer's size and ends,
// and, unless wantNode is "", that the call ran on wantNode.
func cdFill(ctx context.Context, rt *pyvisor.Runtime, size int, wantNode string) error {
	var ran pyvisor.Ran
	args := json.RawMessage(fmt.Sprintf(`{"size":%d,"value":%d}`, size, cdFillValue))
	res, err := rt.Execute(ctx, cdPool, "fill", args, pyvisor.WithRan(&ran))
	if err != nil {
		return fmt.Errorf("fill of %s from node %s: %w", sizeName(size), rt.Node(), err)
	}
	defer res.Release()
	if p := res.Payload; len(p) != size || p[0] != cdFillValue || p[size-1] != cdFillValue {
		return fmt.Errorf("fill of %s from node %s returned %d bytes", sizeName(size), rt.Node(), len(p))
	}
	return cdRanOn(rt, ran, wantNode)
}

func cdRanOn(rt *pyvisor.Runtime, ran pyvisor.Ran, wantNode string) error {
	if wantNode != "" && (ran.Node != wantNode || ran.Worker == "") {
		return fmt.Errorf("a call of pool %s from node %s ran at %+v, want node %q", cdPool, rt.Node(), ran, wantNode)
	}
	return nil
}

// cdReport prints the bandwidth table and the goal.
func cdReport(cases []*cdCase, elapsed time.Duration) {
	fmt.Printf("\nCluster data: bytes between two nodes in this process, a 1-worker pool on node b only, %d interleaved rounds, %.0f s\n",
		*clusterDataRounds, elapsed.Seconds())
	fmt.Println("(a -> b: node a calls payload_size WithPayload (the answer a few bytes), against reference.Stream's upload, a client")
	fmt.Println(" stream of 1 MiB BytesValue messages the server counts; b -> a: node a calls fill (the call a few bytes), the result")
	fmt.Println(" a heap copy on a, against the stream's download, a server stream of 1 MiB messages the client counts. Both over")
	fmt.Println(" loopback TCP between two gRPC endpoints of this process. b's own: node b calls the same pool, no hop, for context.")
	fmt.Printf(" Per round each path makes max(1, %s / size) calls in a row; GB/s = bytes / time of the round's calls, median of\n", sizeName(cdBatch))
	fmt.Println(" rounds; × gRPC = pyvisor's over the baseline's, median and min–max of the rounds' ratios; Go CPU: this process's,")
	fmt.Println(" both nodes' or both gRPC ends', per call)")
	w := table()
	fmt.Fprintln(w, "direction\tsize\tpath\tcalls\tmedian call\tGB/s\tGo CPU per call\t× gRPC\tmin–max × gRPC\t")
	goals := map[string]float64{}
	for _, c := range cases {
		for p := range cdCount {
			dir, size := c.dir(), sizeName(c.size)
			if p > 0 {
				dir, size = "", ""
			}
			rel, spread := "", ""
			if p != cdGRPC {
				rs := make([]float64, len(c.rate[p]))
				for i := range rs {
					rs[i] = c.rate[p][i] / c.rate[cdGRPC][i]
				}
				lo, hi := minMax(rs)
				rel = fmt.Sprintf("%.2f", median(rs))
				spread = fmt.Sprintf("%.2f–%.2f", lo, hi)
				if p == cdPyvisor && c.size == cdGoalSize {
					goals[c.dir()] = median(rs)
				}
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%.2f\t%s\t%s\t%s\t\n", dir, size, cdPathNames[p], len(c.d[p]),
				dur(summarize(c.d[p]).p50), median(c.rate[p])/1e9, dur(cdMedianDur(c.cpu[p])), rel, spread)
		}
	}
	_ = w.Flush()
	fmt.Printf("Goal: pyvisor a -> b's pool / bare gRPC stream >= %.1f at %s: ", cdGoal, sizeName(cdGoalSize))
	for i, dir := range []string{"a -> b", "b -> a"} {
		if i > 0 {
			fmt.Print(", ")
		}
		fmt.Printf("%s %.2f× %s", dir, goals[dir], met(goals[dir] >= cdGoal))
	}
	fmt.Println()
}

func cdMedianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}
