package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// load is callers making back-to-back add calls until end: each call is checked, counted
// in the scenario's tally, and its start and end kept, so that the calls overlapping a
// window (an upgrade) can be counted.
type load struct {
	s    *scenario
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	calls []loadCall
	first error // the first call that went wrong
}

// loadCall is one call of the load: when it ran and whether it went wrong.
type loadCall struct {
	began, ended time.Time
	failed       bool
}

// startLoad starts n callers; end stops them.
func (s *scenario) startLoad(ctx context.Context, n int) *load {
	l := &load{s: s, stop: make(chan struct{})}
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
	res, err := l.s.execute(cctx, "add", map[string]int{"a": a, "b": b})
	var sum int
	if err == nil {
		err = res.Decode(&sum)
	}
	if err == nil && sum != a+b {
		err = fmt.Errorf("add(%d, %d) returned %d", a, b, sum)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, loadCall{began: began, ended: time.Now(), failed: err != nil})
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
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.calls {
		if c.began.After(to) || c.ended.Before(from) {
			continue
		}
		calls++
		if c.failed {
			failed++
		}
	}
	return calls, failed
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
