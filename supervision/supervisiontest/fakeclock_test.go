package supervisiontest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pyvisor/pyvisor/supervision/supervisiontest"
)

func TestFakeClockFiresDueTimersInOrder(t *testing.T) {
	c := supervisiontest.NewFakeClock(time.Unix(0, 0))
	var got []string
	c.AfterFunc(2*time.Second, func() { got = append(got, "b") })
	c.AfterFunc(time.Second, func() { got = append(got, "a") })
	stopped := c.AfterFunc(time.Second, func() { got = append(got, "x") })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop reports whether it prevented the call, once")
	}
	c.Advance(time.Second - 1)
	if len(got) != 0 || c.Pending() != 2 {
		t.Fatalf("fired early: %v", got)
	}
	c.Advance(time.Hour)
	if strings.Join(got, "") != "ab" || c.Pending() != 0 {
		t.Fatalf("fired %v", got)
	}
}
