package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/pyvisor/pyvisor"
)

// load is callers making back-to-back add calls until end: each call is checked, counted
// in the demo's tally (by add), and its start, end and node kept, so that the calls
// overlapping a window (an upgrade) can be counted.
type load struct {
	add  addFunc
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	calls []loadCall
	first error // the first call that went wrong
}

// addFunc makes one add call of the load, counted in the demo's tally, and says on which
// cluster node it ran ("" without a cluster).
type addFunc func(ctx context.Context, args map[string]int) (res pyvisor.Result, node string, err error)

// loadCall is one call of the load: when and where it ran and whether it went wrong.
type loadCall struct {
	began, ended time.Time
	node         string
	failed       bool
}

// startLoad starts n callers of the scenario's pool; end stops them.
func (s *scenario) startLoad(ctx context.Context, n int) *load {
	return startLoad(ctx, n, func(ctx context.Context, args map[string]int) (pyvisor.Result, string, error) {
		res, err := s.execute(ctx, "add", args)
		return res, "", err
	})
}

// startLoad starts n callers making their calls with add; end stops them.
func startLoad(ctx context.Context, n int, add addFunc) *load {
	l := &load{add: add, stop: make(chan struct{})}
	for c := range n {
		l.wg.Add(1)
		go l.caller(ctx, c)
	}
	return l
}

// caller makes calls one after the other until the load or ctx ends: its i-th adds i
// and c, the caller's number.
func (l *load) caller(ctx context.Context, c int) {
	defer l.wg.Done()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		l.call(ctx, i, c)
	}
}

// call makes one add call and notes how it went.
func (l *load) call(ctx context.Context, a, b int) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	began := time.Now()
	res, node, err := l.add(cctx, map[string]int{"a": a, "b": b})
	var sum int
	if err == nil {
		err = res.Decode(&sum)
	}
	if err == nil && sum != a+b {
		err = fmt.Errorf("add(%d, %d) returned %d", a, b, sum)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, loadCall{began: began, ended: time.Now(), node: node, failed: err != nil})
	if err != nil && l.first == nil {
		l.first = err
	}
}

// end stops the callers and waits for their last calls.
func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

// during counts the calls that ran, at least in part, between from and to, and how many
// of them failed.
func (l *load) during(from, to time.Time) (calls, failed int) {
	calls, failed, _ = l.duringByNode(from, to)
	return calls, failed
}

// duringByNode is during with the successful calls counted by the node they ran on.
func (l *load) duringByNode(from, to time.Time) (calls, failed int, byNode map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byNode = map[string]int{}
	for _, c := range l.calls {
		if c.began.After(to) || c.ended.Before(from) {
			continue
		}
		calls++
		if c.failed {
			failed++
		} else {
			byNode[c.node]++
		}
	}
	return calls, failed, byNode
}

// failures counts the load's calls and the failed ones, with the first error.
func (l *load) failures() (failed, calls int, first error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.calls {
		if c.failed {
			failed++
		}
	}
	return failed, len(l.calls), l.first
}
