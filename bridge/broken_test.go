package bridge

import (
	"errors"
	"testing"
)

func TestAClientSaysWhenItsChannelBroke(t *testing.T) {
	ch := &channel{broken: make(chan struct{})}
	c := &Client{ch: ch}
	if c.Broken() {
		t.Fatal("a serving channel reported broken")
	}
	ch.err = errors.New("stream ended")
	close(ch.broken)
	if !c.Broken() {
		t.Fatal("a broken channel not reported: the pool would keep granting it calls")
	}
	if (&Client{}).Broken() {
		t.Fatal("a client without a channel (a TCP client before it opens one) reported broken")
	}
}
